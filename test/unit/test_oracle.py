"""The oracle finds the true optimum: compared with a brute force over every point, one at a time."""
import itertools

import pytest

from dyndnn_ros.platforms.model import AppLoad, PlatformModel
from dyndnn_ros.policies import Observation, PerformanceGoal, create_policy
from dyndnn_ros.profiles import ModelProfile, SubnetProfile

MODEL = PlatformModel.load("xavier_nx")


def subnet(sid, accuracy, latency_ms):
    return SubnetProfile(sid, accuracy, latency_ms, latency_ms * 1.05, latency_ms * 1.07, latency_ms)


PROFILE = ModelProfile("m", "xavier_nx/gpu", (subnet("s", 0.72, 30.0), subnet("m", 0.75, 40.0), subnet("l", 0.78, 55.0)))


def brute_force(goal, fps, background):
    clocks = MODEL.description.clocks
    best = None
    for s, g, e, c in itertools.product(PROFILE.subnets, clocks.gpu_available_hz, clocks.emc_available_hz, clocks.cpu_available_khz):
        if s.accuracy < goal.min_accuracy:
            continue
        cpu = (c, clocks.cpu_available_khz[0], clocks.cpu_available_khz[0])
        state = MODEL.steady_state([AppLoad(s.latency_mean_ms, fps, 0)], cpu, g, e, background)
        if float(state.latency_ms[0]) * 1.07 <= goal.max_latency_ms and (best is None or float(state.power_w) < best[0]):
            best = (float(state.power_w), s.id, g, e, c)
    return best


@pytest.mark.parametrize("latency,accuracy,background", [(70, 0.74, 0.0), (120, 0.0, 0.3)])
def test_oracle_matches_brute_force(latency, accuracy, background):
    goal = PerformanceGoal("cam", "m", max_latency_ms=latency, min_accuracy=accuracy)
    oracle = create_policy("oracle", MODEL)
    oracle.set_truth(background)
    d = oracle.decide({"cam": goal}, {"m": PROFILE}, Observation(input_fps={"cam": 10}, app_cluster={"cam": "cluster0"}))
    power, sid, g, e, c = brute_force(goal, 10, background)
    assert d.predicted_power_w == pytest.approx(power, rel=1e-9)
    assert (d.subnets["m"], d.clocks.gpu_hz, d.clocks.emc_hz, d.clocks.cpu_khz["cluster0"]) == (sid, g, e, c)


def test_oracle_gives_up_lowest_priority_when_infeasible():
    goals = {
        "a": PerformanceGoal("a", "m", max_latency_ms=60, min_accuracy=0.75, priority=3),
        # "l" cannot meet 45 ms even alone at max clocks: b must give way, a must not
        "b": PerformanceGoal("b", "m2", max_latency_ms=45, min_accuracy=0.78, priority=1),
    }
    profiles = {"m": PROFILE, "m2": ModelProfile("m2", "x", PROFILE.subnets)}
    d = create_policy("oracle", MODEL).decide(goals, profiles, Observation(input_fps={"a": 10, "b": 10}))
    assert "b" in d.given_up and "a" not in d.given_up
