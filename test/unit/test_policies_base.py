# SPDX-License-Identifier: Apache-2.0
"""The decision interface: goal validation, the registry, and the first sub-network-only policy."""
import math

import pytest
from hypothesis import given, strategies as st

from dyndnn_ros.policies import (
    GoalError,
    Observation,
    PerformanceGoal,
    PolicyError,
    create_policy,
    validate_goal,
    validate_goals,
)
from dyndnn_ros.policies.feedback import SlowdownFilter, SwitchHysteresis
from dyndnn_ros.profiles import ModelProfile, SubnetProfile


def subnet(sid, accuracy, latency_ms, energy_mj=None):
    return SubnetProfile(
        sid,
        accuracy,
        latency_ms,
        latency_ms * 1.05,
        latency_ms * 1.08,
        latency_ms,
        energy_mj=energy_mj,
    )


def table():
    return ModelProfile(
        "ofa", "gpu", (subnet("s", 0.72, 20.0), subnet("m", 0.75, 40.0), subnet("l", 0.78, 60.0))
    )


@pytest.mark.parametrize(
    "field", ["max_latency_ms", "min_accuracy", "max_power_w", "max_energy_mj"]
)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_goal_rejects_nan_inf_negative(field, bad):
    with pytest.raises(GoalError, match=field):
        validate_goal(PerformanceGoal("cam", "ofa", **{field: bad}))


def test_goal_rejects_percent_accuracy_and_shared_model():
    with pytest.raises(GoalError, match="fraction"):
        validate_goal(PerformanceGoal("cam", "ofa", min_accuracy=75))
    with pytest.raises(GoalError, match="both use model"):
        validate_goals({"a": PerformanceGoal("a", "ofa"), "b": PerformanceGoal("b", "ofa")})


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.floats(min_value=0, max_value=1))
def test_goal_accepts_finite_nonnegative(latency, accuracy):
    validate_goal(PerformanceGoal("cam", "ofa", max_latency_ms=latency, min_accuracy=accuracy))


def test_unknown_policy_lists_names():
    with pytest.raises(PolicyError) as err:
        create_policy("fastest")
    for name in ("subnet_only", "static"):
        assert name in str(err.value)


def decide(policy, goal, observation=Observation()):
    return policy.decide({goal.app: goal}, {"ofa": table()}, observation)


def test_subnet_only_most_accurate_meeting_latency():
    d = decide(
        create_policy("subnet_only", use_feedback=False),
        PerformanceGoal("cam", "ofa", max_latency_ms=45),
    )
    assert d.subnets == {"ofa": "m"} and d.clocks is None and not d.given_up


def test_subnet_only_infeasible_runs_fastest_and_says_why():
    d = decide(create_policy("subnet_only"), PerformanceGoal("cam", "ofa", max_latency_ms=10))
    assert d.subnets == {"ofa": "s"}
    assert "cam" in d.given_up and "p99" in d.given_up["cam"]


def test_subnet_only_feedback_steps_down_when_slowed():
    policy = create_policy("subnet_only", hold_periods=1)
    goal = PerformanceGoal("cam", "ofa", max_latency_ms=70)
    assert decide(policy, goal).subnets["ofa"] == "l"
    slowed = Observation(latency_ms={"cam": 90.0}, frames={"cam": 10}, active_subnets={"ofa": "l"})
    assert decide(policy, goal, slowed).subnets["ofa"] in ("s", "m")


def test_subnet_only_hysteresis_holds_improvements():
    policy = create_policy("subnet_only", hold_periods=3, use_feedback=False)
    tight, loose = (PerformanceGoal("cam", "ofa", max_latency_ms=v) for v in (45, 70))
    assert decide(policy, tight).subnets["ofa"] == "m"
    # A looser target proposes "l"; it must persist 3 periods before the switch.
    seen = [decide(policy, loose if i % 2 == 0 else tight).subnets["ofa"] for i in range(6)]
    assert seen == ["m"] * 6
    assert [decide(policy, loose).subnets["ofa"] for _ in range(3)] == ["m", "m", "l"]


def test_static_runs_most_accurate_or_configured():
    goal = PerformanceGoal("cam", "ofa", max_latency_ms=10)
    assert decide(create_policy("static"), goal).subnets == {"ofa": "l"}
    assert decide(create_policy("static", subnets={"ofa": "s"}), goal).subnets == {"ofa": "s"}


def test_slowdown_filter_converges_and_ignores_garbage():
    f = SlowdownFilter()
    for _ in range(20):
        f.update(150.0, 100.0)
    assert f.estimate == pytest.approx(1.5, rel=0.02)
    f.update(math.nan, 100.0)
    f.update(0.0, 100.0)
    assert f.estimate == pytest.approx(1.5, rel=0.02)


def test_hysteresis_forced_switch_is_immediate():
    h = SwitchHysteresis(hold_periods=5)
    assert h.apply("a", True) == "a"
    assert h.apply("b", current_still_ok=False) == "b"


def test_the_oracle_is_for_the_evaluation_only():
    from dyndnn_ros.policies import PolicyError, create_policy, policy_names

    assert "oracle" in policy_names() and "oracle" not in policy_names(runtime_only=True)
    assert "hierarchical" in policy_names(runtime_only=True)
    with pytest.raises(PolicyError, match="unknown policy 'oracle'; known policies: \\["):
        create_policy("oracle", "xavier_nx", runtime_only=True)
    create_policy("oracle", "xavier_nx")
