# SPDX-License-Identifier: Apache-2.0
"""The hierarchical manager and DVFS-only policy on hand-made profile tables."""
import dataclasses
import math

import pytest
from hypothesis import given, settings, strategies as st

from dyndnn_ros.platforms.model import AppLoad, PlatformModel
from dyndnn_ros.policies import (
    ClockSetting,
    Observation,
    PerformanceGoal,
    create_policy,
    policy_names,
)
from dyndnn_ros.policies.search import GOAL_QUANTILE, AppDemand, predict, setting_to_point
from dyndnn_ros.profiles import ModelProfile, SubnetProfile

MODEL = PlatformModel.load("xavier_nx")
TABLES = MODEL.description.clocks


def subnet(sid, accuracy, latency_ms):
    return SubnetProfile(
        sid, accuracy, latency_ms, latency_ms * 1.05, latency_ms * 1.07, latency_ms
    )


def table(model="m1"):
    return ModelProfile(
        model,
        "xavier_nx/gpu",
        (subnet("s", 0.72, 30.0), subnet("m", 0.75, 40.0), subnet("l", 0.78, 55.0)),
    )


PROFILES = {"m1": table("m1"), "m2": table("m2")}


def latency_alone(subnet, clocks, fps=10.0):
    """The model's latency for app "cam" running `subnet` of "m1" at `clocks`, no other load."""
    s = PROFILES["m1"].subnet(subnet)
    demand = AppDemand("cam", s.latency_mean_ms, 1.07, fps, 0)
    mean, _ = predict(MODEL, [demand], setting_to_point(MODEL, clocks))
    return mean[0]


def observe(decision, slowdown=1.0, jitter=1.0, fps=10.0):
    """What the board reports after running `decision` for app "cam" on model "m1": its clocks,
    sub-network and a latency `slowdown` x the model's prediction for them (x `jitter`)."""
    return Observation(
        latency_ms={"cam": latency_alone(decision.subnets["m1"], decision.clocks, fps)
                    * slowdown * jitter},
        frames={"cam": 5},
        active_subnets=dict(decision.subnets),
        clocks=decision.clocks or ClockSetting(),
        input_fps={"cam": fps},
    )


def test_registry_knows_every_policy():
    assert {"hierarchical", "subnet_only", "dvfs_only", "static", "oracle"} <= set(policy_names())


def test_hierarchical_cheapest_subnet_meeting_accuracy_and_lowest_clocks_meeting_latency():
    policy = create_policy("hierarchical", MODEL)
    goal = PerformanceGoal("cam", "m1", max_latency_ms=80, min_accuracy=0.74)
    d = policy.decide({"cam": goal}, PROFILES, Observation(input_fps={"cam": 10}))
    assert d.subnets == {"m1": "m"} and not d.given_up
    assert d.predicted_latency_ms["cam"] <= 80
    assert d.clocks.gpu_hz < TABLES.gpu_available_hz[-1]  # slack is turned into lower clocks


@pytest.mark.parametrize("name", ["hierarchical", "subnet_only", "dvfs_only", "oracle"])
def test_a_goal_whose_profile_has_not_arrived_is_given_up_and_nothing_fails(name):
    """The manager hears targets before the inference node announces its model (the static
    baselines run what they were given and report nothing)."""
    policy = create_policy(name, MODEL)
    goal = PerformanceGoal("cam", "not_announced", max_latency_ms=80, min_accuracy=0.7)
    d = policy.decide({"cam": goal}, PROFILES, Observation(input_fps={"cam": 10}))
    assert "cam" in d.given_up and not d.subnets


@settings(max_examples=25, deadline=None)
@given(st.floats(35, 300), st.floats(0, 0.78), st.floats(0, 40))
def test_chosen_clocks_are_always_in_the_tables(latency, accuracy, fps):
    policy = create_policy("hierarchical", MODEL)
    goal = PerformanceGoal("cam", "m1", max_latency_ms=latency, min_accuracy=accuracy)
    d = policy.decide({"cam": goal}, PROFILES, Observation(input_fps={"cam": fps}))
    assert (
        d.clocks.gpu_hz in TABLES.gpu_available_hz and d.clocks.emc_hz in TABLES.emc_available_hz
    )
    assert all(f in TABLES.cpu_available_khz for f in d.clocks.cpu_khz.values())
    assert set(d.clocks.cpu_khz) == {c.name for c in TABLES.cpu_clusters}


def test_infeasible_goals_give_up_the_lowest_priority_with_a_reason():
    policy = create_policy("hierarchical", MODEL)
    goals = {
        "nav": PerformanceGoal("nav", "m1", max_latency_ms=60, min_accuracy=0.75, priority=2),
        # "l" cannot meet 45 ms even alone at max clocks: arm must give way, nav must not
        "arm": PerformanceGoal("arm", "m2", max_latency_ms=45, min_accuracy=0.78, priority=1),
    }
    d = policy.decide(goals, PROFILES, Observation(input_fps={"nav": 10, "arm": 10}))
    assert "arm" in d.given_up and "priority 1" in d.given_up["arm"]
    assert "nav" not in d.given_up
    assert d.predicted_latency_ms["nav"] <= 60


def test_slowdown_raises_clocks_then_steps_the_subnet_down():
    policy = create_policy("hierarchical", MODEL, hold_periods=1)
    goal = {"cam": PerformanceGoal("cam", "m1", max_latency_ms=70, min_accuracy=0.75)}
    first = policy.decide(goal, PROFILES, Observation(input_fps={"cam": 10}))
    d = first
    for _ in range(5):  # the board is 25 % slower than the model says (another job on the GPU)
        d = policy.decide(goal, PROFILES, observe(d, slowdown=1.25))
    assert d.clocks.gpu_hz > first.clocks.gpu_hz and d.subnets["m1"] == "m"
    for _ in range(8):  # 80 % slower: "m" misses 70 ms on most frames, "s" on none but is
        # below the accuracy goal on every frame: a frame a little late beats one never on goal
        d = policy.decide(goal, PROFILES, observe(d, slowdown=1.8))
    assert d.subnets["m1"] == "m"
    assert "its own goals conflict" in d.given_up["cam"]  # a lone app: latency vs accuracy
    for _ in range(8):  # 2x slower: "m" puts no frame within 70 ms: step below the accuracy goal
        d = policy.decide(goal, PROFILES, observe(d, slowdown=2.0))
    assert d.subnets["m1"] == "s"
    assert "relaxed" in d.given_up["cam"]


def test_hysteresis_no_oscillation_under_measurement_noise():
    policy = create_policy("hierarchical", MODEL)
    goal = {"cam": PerformanceGoal("cam", "m1", max_latency_ms=70, min_accuracy=0.75)}
    d = policy.decide(goal, PROFILES, Observation(input_fps={"cam": 10}))
    seen = []
    for k in range(30):  # +-1.5 % jitter around the prediction, alternating
        d = policy.decide(goal, PROFILES, observe(d, jitter=1.015 if k % 2 else 0.985))
        seen.append(
            (d.subnets["m1"], d.clocks.gpu_hz, tuple(d.clocks.cpu_khz.values()), d.clocks.emc_hz)
        )
    changes = sum(a != b for a, b in zip(seen, seen[1:]))
    assert changes <= 2


def test_dvfs_only_keeps_its_fixed_subnet():
    policy = create_policy("dvfs_only", MODEL, subnets={"m1": "l"})
    d = policy.decide(
        {"cam": PerformanceGoal("cam", "m1", max_latency_ms=90)},
        PROFILES,
        Observation(input_fps={"cam": 10}),
    )
    assert d.subnets == {"m1": "l"} and d.clocks is not None


def test_hysteresis_does_not_pay_to_keep_a_subnet():
    policy = create_policy("hierarchical", MODEL, hold_periods=3)
    strict = {"cam": PerformanceGoal("cam", "m1", max_latency_ms=90, min_accuracy=0.78)}
    assert policy.decide(strict, PROFILES, Observation(input_fps={"cam": 10})).subnets["m1"] == "l"
    # the accuracy goal drops and the latency goal tightens: keeping "l" would need far higher
    # clocks
    relaxed = {"cam": PerformanceGoal("cam", "m1", max_latency_ms=62, min_accuracy=0.72)}
    d = policy.decide(relaxed, PROFILES, Observation(input_fps={"cam": 10}))
    assert d.subnets["m1"] == "s"


def test_profiles_without_a_mean_latency_use_the_median():
    # a profiler may leave latency_mean_ms at 0; ordering and predictions then use the p50
    profile = ModelProfile(
        "m",
        "x",
        (SubnetProfile("s", 0.7, 20, 21, 22, 0.0), SubnetProfile("l", 0.8, 40, 42, 44, 0.0)),
    )
    goal = {"a": PerformanceGoal("a", "m", max_latency_ms=50)}
    # the cheapest for the clock-setting policies, the most accurate meeting 50 ms for subnet_only
    for name, expected in (("hierarchical", "s"), ("oracle", "s"), ("subnet_only", "l")):
        d = create_policy(name, MODEL).decide(
            goal, {"m": profile}, Observation(input_fps={"a": 10})
        )
        assert d.subnets == {"m": expected} and not d.given_up, name


def test_a_goal_only_the_headroom_makes_infeasible_is_held_not_relaxed():
    """p99 at max clocks sits between target * (1 - headroom) and the target: feasible, so no
    relaxing."""
    top = MODEL.max_point()
    demand = AppDemand("cam", 55.0, 1.07, 0.0, 0)
    p99 = predict(MODEL, [demand], top)[0][0] * 1.07
    goal = PerformanceGoal("cam", "m1", max_latency_ms=p99 / 0.99, min_accuracy=0.78)
    d = create_policy("hierarchical", MODEL, headroom=0.03).decide(
        {"cam": goal}, PROFILES, Observation(input_fps={"cam": 0})
    )
    assert not d.given_up and d.subnets == {"m1": "l"}
    assert d.predicted_latency_ms["cam"] <= goal.max_latency_ms


def test_a_given_up_app_keeps_a_best_effort_latency():
    """The given-up app gets the least lateness the kept goals leave it, not clocks that ignore
    it."""
    from dyndnn_ros.policies.search import search_clocks

    goals = {
        "nav": PerformanceGoal("nav", "m1", max_latency_ms=60, min_accuracy=0.75, priority=2),
        "arm": PerformanceGoal("arm", "m2", max_latency_ms=45, min_accuracy=0.78, priority=1),
    }
    d = create_policy("hierarchical", MODEL).decide(
        goals, PROFILES, Observation(input_fps={"nav": 10, "arm": 10})
    )
    assert "arm" in d.given_up
    arm = PROFILES["m2"].subnet(d.subnets["m2"])
    nav = PROFILES["m1"].subnet(d.subnets["m1"])
    ignored = search_clocks(
        MODEL,
        [
            AppDemand("nav", nav.latency_mean_ms, 1.07, 10.0, 0, 1.0, 60 * 0.97),
            AppDemand("arm", arm.latency_mean_ms, 1.07, 10.0, 1),
        ],
        per_cluster=True,
    )
    assert d.predicted_latency_ms["arm"] < 0.6 * ignored.tail_ms[1]  # 45.1 ms against 84 ms here


def test_where_no_frame_can_be_on_goal_the_most_frames_are_held_in_time():
    """Only "l" has the accuracy and it cannot come near 32 ms. The report (and the oracle) then
    rank frames within their latency goal whatever their accuracy before energy: the manager runs
    what the oracle runs, not the cheapest clocks of the same p99 lateness step."""
    goals = {"cam": PerformanceGoal("cam", "m1", max_latency_ms=32, min_accuracy=0.78)}
    observation = Observation(input_fps={"cam": 10}, app_cluster={"cam": "cluster0"})
    d = create_policy("hierarchical", MODEL).decide(goals, PROFILES, observation)
    o = create_policy("oracle", MODEL).decide(goals, PROFILES, observation)
    assert "cam" in d.given_up
    assert (d.subnets, d.clocks) == (o.subnets, o.clocks)


def test_a_new_target_is_not_delayed_by_a_relaxation_held_for_the_old_one():
    """Relaxed under a tight target; a looser one arrives: the accurate sub-network runs at
    once."""
    policy = create_policy("hierarchical", MODEL, hold_periods=3)
    tight = PerformanceGoal("cam", "m1", max_latency_ms=45, min_accuracy=0.78, priority=1)
    first = policy.decide({"cam": tight}, PROFILES, Observation(input_fps={"cam": 10}))
    assert first.subnets["m1"] != "l" and "cam" in first.given_up
    loose = PerformanceGoal("cam", "m1", max_latency_ms=200, min_accuracy=0.78, priority=1)
    second = policy.decide({"cam": loose}, PROFILES, observe(first))
    assert second.subnets["m1"] == "l" and not second.given_up


def energy_ceiling_of(policy_name: str, **params):
    """The energy per frame the policy spends on one app without a ceiling, and its decision for
    a ceiling 10 % below that."""
    goal = PerformanceGoal("cam", "m1", max_latency_ms=90, min_accuracy=0.74)
    free = create_policy(policy_name, MODEL, **params).decide(
        {"cam": goal}, PROFILES, Observation(input_fps={"cam": 10})
    )
    demand = AppDemand("cam", PROFILES["m1"].subnet(free.subnets["m1"]).latency_mean_ms, 1.07,
                       10.0, 0)
    latency, power = predict(MODEL, [demand], setting_to_point(MODEL, free.clocks))
    spent = power * latency[0]
    bound = PerformanceGoal("cam", "m1", max_latency_ms=90, min_accuracy=0.74,
                            max_energy_mj=0.9 * spent)
    d = create_policy(policy_name, MODEL, **params).decide(
        {"cam": bound}, PROFILES, Observation(input_fps={"cam": 10})
    )
    latency, power = predict(MODEL, [demand], setting_to_point(MODEL, d.clocks))
    return spent, d, power * latency[0]


def test_clock_setting_policies_honour_an_energy_ceiling_per_frame():
    for name, params in (("hierarchical", {}), ("dvfs_only", {"subnets": {"m1": "m"}})):
        spent, d, now = energy_ceiling_of(name, **params)
        assert not d.given_up and d.subnets == {"m1": "m"}, name
        assert now <= 0.9 * spent, (name, now, spent)
        assert "mJ/frame" in d.reasons["m1"]


def test_an_energy_ceiling_no_clocks_meet_relaxes_the_lowest_priority_first():
    policy = create_policy("hierarchical", MODEL)
    goals = {
        "nav": PerformanceGoal("nav", "m1", max_latency_ms=90, min_accuracy=0.72, priority=2),
        "arm": PerformanceGoal("arm", "m2", max_latency_ms=90, min_accuracy=0.78, priority=1,
                               max_energy_mj=0.01),
    }
    d = policy.decide(goals, PROFILES, Observation(input_fps={"nav": 10, "arm": 10}))
    assert "nav" not in d.given_up
    assert "energy 0.01 mJ" in d.given_up["arm"] and d.subnets["m2"] == "s"


def test_noise_in_the_counted_frames_is_not_read_as_unmanaged_gpu_load():
    """The managed GPU share comes from the frames counted in one period (a few over ROS): its
    noise must average out, not leave a load nobody runs; a real background job is still found.
    With Poisson(3) counts the filter clipped at 0 inside its loop read 0.13 of phantom load (0.16
    in a traced ROS run) and a 0.3 job as 0.35; unclipped inside, 0.08 and 0.31 (the estimate
    itself must stay >= 0, which keeps part of the bias where the true share is 0)."""
    import numpy as np

    from dyndnn_ros.policies.feedback import SharedLoadFilter

    rng = np.random.default_rng(0)
    for background, (low, high) in ((0.0, (0.0, 0.1)), (0.3, (0.27, 0.33))):
        shared, estimates = SharedLoadFilter(), []
        for _ in range(400):
            shared.update(0.6 + background, 0.6 * rng.poisson(3) / 3)
            estimates.append(shared.estimate)
        assert low <= float(np.mean(estimates[100:])) <= high, background


def test_gpu_load_is_not_inferred_from_frame_rates_not_measured_since_a_switch():
    """Right after a switch the frames seen ran the old sub-network: a GPU reading then says
    nothing of load the manager does not run (NaN: too few frames yet), and the unmanaged share
    stays as it was; once the rate is measured, the reading counts."""
    policy = create_policy("hierarchical", MODEL)
    goal = {"cam": PerformanceGoal("cam", "m1", max_latency_ms=80, min_accuracy=0.72)}
    first = policy.decide(goal, PROFILES, Observation(input_fps={"cam": 10}))
    base = observe(first)
    for k in range(1, 6):
        policy.decide(goal, PROFILES, dataclasses.replace(
            base, time_s=0.25 * k, gpu_util=0.95, frame_rate_hz={"cam": math.nan}))
    assert policy._shared.estimate == 0.0
    point = setting_to_point(MODEL, base.clocks)
    s = PROFILES["m1"].subnet(first.subnets["m1"])
    alone = MODEL.steady_state([AppLoad(s.latency_mean_ms, 10.0, 0, measured_rate_hz=10.0)],
                               point.cpu_khz, point.gpu_hz, point.emc_hz)
    for k in range(6, 14):
        policy.decide(goal, PROFILES, dataclasses.replace(
            base, time_s=0.25 * k, gpu_util=float(alone.gpu_busy) + 0.3,
            frame_rate_hz={"cam": 10.0}))
    assert policy._shared.estimate == pytest.approx(0.3, abs=0.03)


def first_decision_for_one_camera():
    """A fresh manager's first decision for app "cam" on "m1" at 10 fps, the clocks it chose and
    the demand its sub-network makes there."""
    policy = create_policy("hierarchical", MODEL)
    goal = {"cam": PerformanceGoal("cam", "m1", max_latency_ms=80, min_accuracy=0.72)}
    first = policy.decide(goal, PROFILES, Observation(input_fps={"cam": 10}))
    s = PROFILES["m1"].subnet(first.subnets["m1"])
    demand = AppDemand("cam", s.latency_mean_ms, 1.07, 10.0, 0)
    return policy, goal, first, setting_to_point(MODEL, first.clocks), demand


@pytest.mark.parametrize("busy", [1.0, 0.9])
def test_other_gpu_load_is_read_from_how_far_it_stretches_the_frames(busy):
    """A GPU busy reading of 100 % is capped: it cannot say how much of the GPU a background job
    took; nor can a lower one be split into the apps' part and the rest while their frame rates
    are not measured yet (NaN, since the last change). The unmanaged share is then read from the
    frames' latencies, the stretch the model predicts for it, in one period (their jitter is
    small), with no slowdown left over; from the first period the configuration stood through
    (the first decision's clocks and sub-network are new at 0.25 s)."""
    policy, goal, first, point, demand = first_decision_for_one_camera()
    stretched, _ = predict(MODEL, [demand], point, 0.5)
    seen = dataclasses.replace(  # saturated: with a measured rate; below: none yet
        observe(first), gpu_util=busy, latency_ms={"cam": stretched[0]},
        frame_rate_hz={"cam": 10.0 if busy >= 1.0 else math.nan},
    )
    policy.decide(goal, PROFILES, dataclasses.replace(seen, time_s=0.25))
    assert policy._shared.estimate == 0.0
    policy.decide(goal, PROFILES, dataclasses.replace(seen, time_s=0.5))
    assert policy._shared.estimate == pytest.approx(0.5, abs=0.05)
    assert policy._slowdown["cam"].estimate == pytest.approx(1.0, abs=0.05)


def _saturated_with_half_the_gpu_taken():
    """A manager that has read a 0.5 unmanaged share from two saturated periods, and what the
    board reported."""
    policy, goal, first, point, demand = first_decision_for_one_camera()
    stretched, _ = predict(MODEL, [demand], point, 0.5)
    seen = dataclasses.replace(observe(first), gpu_util=1.0, latency_ms={"cam": stretched[0]},
                               frame_rate_hz={"cam": 10.0})
    for k in (1, 2):
        policy.decide(goal, PROFILES, dataclasses.replace(seen, time_s=0.25 * k))
    assert policy._shared.estimate == pytest.approx(0.5, abs=0.05)
    return policy, goal, seen


@pytest.mark.parametrize("change", ["clock", "sub-network"])
def test_frames_of_a_period_the_configuration_changed_in_are_not_read_as_unmanaged_load(change):
    """Frames counted in a period that saw new clocks or a switch started after it and finished
    before the period's end: the fast ones, as the slow one still runs. Their stretch would read
    the unmanaged share low; it is read from the next period the configuration stands through."""
    policy, goal, seen = _saturated_with_half_the_gpu_taken()
    clocks, subnet = seen.clocks, seen.active_subnets["m1"]
    if change == "clock":  # the cluster the app's thread runs on
        cluster = policy.clusters_in_use(goal, seen).pop()
        clocks = dataclasses.replace(
            clocks, cpu_khz=dict(clocks.cpu_khz, **{cluster: TABLES.cpu_available_khz[0]}))
    else:
        subnet = next(s.id for s in PROFILES["m1"].subnets if s.id != subnet)
    assert (clocks, subnet) != (seen.clocks, seen.active_subnets["m1"])
    changed = dataclasses.replace(seen, time_s=0.75,
                                  latency_ms={"cam": latency_alone(subnet, clocks)},
                                  clocks=clocks, active_subnets={"m1": subnet})
    policy.decide(goal, PROFILES, changed)
    assert policy._shared.estimate == pytest.approx(0.5, abs=0.05)  # not read
    policy.decide(goal, PROFILES, dataclasses.replace(changed, time_s=1.0))
    assert policy._shared.estimate < 0.25  # the same frames, once it stood: most of the way to 0


def test_a_cluster_no_app_runs_on_does_not_hold_the_unmanaged_load_reading_back():
    """The manager node leaves the clusters no app runs on to their governor, whose clocks move
    from one reading to the next: they are not the apps' configuration, and the share is still
    read every period."""
    policy, goal, seen = _saturated_with_half_the_gpu_taken()
    in_use = policy.clusters_in_use(goal, seen)
    idle = [c.name for c in TABLES.cpu_clusters if c.name not in in_use]
    assert idle
    alone = latency_alone(seen.active_subnets["m1"], seen.clocks)
    governed = dataclasses.replace(seen, time_s=0.75, latency_ms={"cam": alone}, clocks=(
        dataclasses.replace(seen.clocks, cpu_khz=dict(
            seen.clocks.cpu_khz, **{name: TABLES.cpu_available_khz[1] for name in idle}))))
    policy.decide(goal, PROFILES, governed)
    assert policy._shared.estimate < 0.25


def test_a_slowdown_gives_back_what_the_gpu_busy_reading_explains():
    """Before a GPU busy reading comes (the hardware status not yet received), the frames a
    background job stretched are read as the app's slowdown; once the reading explains them, the
    slowdown gives that back, so the job does not count twice (predictions for a sub-network or
    clocks not run would stretch by both)."""
    policy, goal, first, point, demand = first_decision_for_one_camera()
    stretched, _ = predict(MODEL, [demand], point, 0.3)
    alone = MODEL.steady_state([AppLoad(demand.reference_latency_ms, 10.0, 0,
                                        measured_rate_hz=10.0)],
                               point.cpu_khz, point.gpu_hz, point.emc_hz)
    seen = dataclasses.replace(observe(first), latency_ms={"cam": stretched[0]},
                               gpu_util=float(alone.gpu_busy) + 0.3)
    for k in range(1, 4):  # no busy reading yet: only the slowdown learns
        policy.decide(goal, PROFILES, dataclasses.replace(
            seen, time_s=0.25 * k, gpu_util=0.0, frame_rate_hz={"cam": 10.0}))
    assert policy._slowdown["cam"].estimate > 1.1 and policy._shared.estimate == 0.0
    for k in range(4, 16):
        policy.decide(goal, PROFILES, dataclasses.replace(
            seen, time_s=0.25 * k, frame_rate_hz={"cam": 10.0}))
        # at every step the two estimates together predict the latency the app ran at
        predicted, _ = predict(MODEL, [demand], point, policy._shared.estimate)
        assert predicted[0] * policy._slowdown["cam"].estimate == pytest.approx(
            stretched[0], rel=0.02), k
    assert policy._shared.estimate == pytest.approx(0.3, abs=0.03)
    assert policy._slowdown["cam"].estimate == pytest.approx(1.0, abs=0.03)


def test_a_slowdown_gives_back_only_what_it_holds():
    """Giving back moves a slowdown towards 1 and never past it: one at 1 took none of the load
    another filter now explains, and keeps learning from its own measurements."""
    from dyndnn_ros.policies.feedback import SlowdownFilter

    assert SlowdownFilter(estimate=1.3).give_back(1 / 1.2) == pytest.approx(1.3 / 1.2)
    assert SlowdownFilter(estimate=1.1).give_back(1 / 1.2) == 1.0
    assert SlowdownFilter(estimate=1.0).give_back(1 / 1.2) == 1.0
    assert SlowdownFilter(estimate=0.9).give_back(1.2) == 1.0
    assert SlowdownFilter(estimate=0.9).give_back(1 / 1.2) == 0.9


def test_a_held_relaxation_quotes_the_other_apps_shares_at_the_clocks_it_runs(monkeypatch):
    """Where the conflict rule decided and an app's relaxation is then held back, the clocks are
    searched again for the sub-networks that run: the other apps' reasons quote their predicted
    share of frames on goal at those clocks (the last search), not at the ones searched first,
    and an app served in full there gives no reason. In generated seed 25 on the AGX Orin the
    other app's reason quoted 33 % where the clocks it ran at predicted 100 %."""
    import re

    from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, run_policy
    from dyndnn_ros.evaluation.scenario import generate_scenario
    from dyndnn_ros.policies.system_level import SystemLevelPolicy

    searched, checked = [], []
    most_on_goal, decide = SystemLevelPolicy._most_on_goal, SystemLevelPolicy.decide

    def recording_most_on_goal(self, goals, *args):
        best = most_on_goal(self, goals, *args)
        searched.append(best and dict(zip((g.app for g in goals), best[2])))
        return best

    def checking_decide(self, goals, profiles, observation):
        searched.clear()
        decision = decide(self, goals, profiles, observation)
        held = {a for a, why in decision.given_up.items() if "still relaxed" in why}
        if held and searched and searched[-1]:
            for app, share in searched[-1].items():
                why = decision.given_up.get(app, "")
                quoted = re.search(r"goals conflict; runs \S+, (\d+) % of frames", why)
                if app not in held:
                    checked.append(app)
                    assert (quoted is None) == (share >= GOAL_QUANTILE), why
                    assert quoted is None or int(quoted.group(1)) == round(100 * share), why
        return decision

    monkeypatch.setattr(SystemLevelPolicy, "_most_on_goal", recording_most_on_goal)
    monkeypatch.setattr(SystemLevelPolicy, "decide", checking_decide)
    spec = next(s for s in DEFAULT_SPECS if s.label == "hierarchical")
    run_policy(generate_scenario(25, duration_s=10.0), spec, PlatformModel.load("agx_orin_maxn"))
    assert checked, "AGX Orin seed 25 no longer holds a relaxation after a conflict: pick another"


@pytest.mark.parametrize("fps", [10.0, 16.0])
def test_a_stopped_gpu_job_is_read_as_gone_within_a_few_periods(fps):
    """Once a background job stops, the GPU busy reading is the app's own frames: the share held
    falls to nothing within a few periods (0.5, 0.33, 0.18, 0.09, 0.05), whatever it was. The
    app's part is the frames it ran times the GPU time each takes. Read as the fraction of time
    a frame runs (capped at 1) times the GPU's part of it, it was capped where the held share
    stretched the predicted latency past the frame period (an app near its frame rate, 16 fps
    here; at 10 fps, a control, it is not), and about half of the held share was read back each
    period: 0.18 of 0.5 left after four periods (Xavier NX seed 374, where the slowdown filters
    took up the rest and the manager ran the priority app late at a lower GPU clock they
    predicted would do)."""
    policy = create_policy("hierarchical", MODEL)
    goal = {"cam": PerformanceGoal("cam", "m1", max_latency_ms=200, min_accuracy=0.72)}
    decision = policy.decide(goal, PROFILES, Observation(input_fps={"cam": fps}))
    for k in range(1, 13):
        s = PROFILES["m1"].subnet(decision.subnets["m1"])
        point = setting_to_point(MODEL, decision.clocks)
        background = 0.5 if k <= 4 else 0.0
        state = MODEL.steady_state([AppLoad(s.latency_mean_ms, fps, 0)], point.cpu_khz,
                                   point.gpu_hz, point.emc_hz, background)
        decision = policy.decide(goal, PROFILES, Observation(
            time_s=0.25 * k, latency_ms={"cam": float(state.latency_ms[0])}, frames={"cam": 4},
            active_subnets=dict(decision.subnets), clocks=decision.clocks,
            input_fps={"cam": fps}, frame_rate_hz={"cam": float(state.rate_hz[0])},
            gpu_util=float(state.gpu_busy)))
        if k == 4:
            held = policy._shared.estimate
            assert held == pytest.approx(0.5, abs=0.1)
        if k == 8:  # four periods after the stop: a tenth of it left (a third with the cap)
            assert policy._shared.estimate < held / 4
    assert policy._shared.estimate < 0.01
