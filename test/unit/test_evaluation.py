"""Scenarios load, the runner closes the loop, metrics count what they say, the report is written."""
import dataclasses

from dyndnn_ros.evaluation.report import metrics, write_report
from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, baseline_subnets, run_policy
from dyndnn_ros.evaluation.scenario import all_scenarios, load_scenario
from dyndnn_ros.platforms.model import PlatformModel
from dyndnn_ros.platforms.simulator import Frame

MODEL = PlatformModel.load("xavier_nx")


def short(name, seconds=3.0):
    return dataclasses.replace(load_scenario(name), duration_s=seconds)


def test_every_scenario_loads_with_goals_from_time_zero():
    names = {s.name for s in all_scenarios()}
    assert {"a_changing_target", "b_two_models", "c_background_load", "d_power_cap"} <= names
    c = load_scenario("c_background_load")
    assert c.phase_at(25).background_gpu == 0.4 and c.phase_at(45).background_gpu == 0.0
    assert c.phase_at(25).goals == c.phase_at(0).goals  # a phase without goals keeps them


def test_baseline_subnet_is_the_most_accurate_meeting_the_tightest_target():
    a = load_scenario("a_changing_target")  # tightest 60 ms: a3 (p99 54.7) fits, a4 (60.7) does not
    assert baseline_subnets(a) == {"ofa_gpu_a": "a3"}


def test_runner_closes_the_loop_for_every_policy(tmp_path):
    scenario = short("b_two_models", 2.0)
    results = [run_policy(scenario, spec, MODEL) for spec in DEFAULT_SPECS]
    for r in results:
        m = metrics(r)
        assert r.energy_j > 0 and m.frames > 0, r.spec.label
    by_label = {r.spec.label: metrics(r) for r in results}
    assert by_label["performance, fixed"].energy_j > by_label["powersave, fixed"].energy_j
    report = write_report(results, tmp_path, "test", 0.0)
    assert "| hierarchical |" in report.read_text() and (tmp_path / "b_two_models.png").stat().st_size > 10_000


def test_violations_and_settling_window_are_counted_per_frame():
    scenario = short("a_changing_target", 20.0)  # target 90 ms until 15 s, then 60 ms; settle 1 s
    result = run_policy(scenario, DEFAULT_SPECS[0], MODEL)
    result.frames[:] = [
        Frame("camera", 5.0, 95.0, "a3", 0.7754),  # late
        Frame("camera", 6.0, 80.0, "a3", 0.7754),
        Frame("camera", 15.2, 70.0, "a3", 0.7754),  # late, inside the settling window
        Frame("camera", 17.0, 50.0, "a3", 0.7754),
    ]
    m = metrics(result)
    assert m.violation_pct == 50.0
    assert abs(m.violation_settled_pct - 100 / 3) < 1e-9
    assert m.accuracy_short_pct == 0.0  # 0.7754 >= 0.76 and 0.74
