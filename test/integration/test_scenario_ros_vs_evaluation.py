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
run measured, as its scenario's `host_overhead_ms` assumption, and the test prints it. The fast run
is pooled over FAST_SEEDS simulator seeds: one 20 s run's late frames move by 0.0-0.8 points (a
frame is 0.27) with its latency draws, so the ROS run, itself one draw, is held against what the
policy decides rather than against another single draw.
Settled late frames leave out the first second after the start and after each change, when DDS
hops make the ROS run lag.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dyndnn_ros.cli.ros_client import DyndnnClient
from dyndnn_ros.cli.scenario_run import RosScenarioRun
from dyndnn_ros.evaluation.report import pooled_metrics
from dyndnn_ros.evaluation.runner import DEFAULT_SPECS, run_policy
from dyndnn_ros.evaluation.scenario import load_scenario, with_host_overhead
from dyndnn_ros.platforms.model import PlatformModel

ENERGY_TOLERANCE = 0.05  # relative
MEAN_LATENCY_TOLERANCE = 0.15  # relative
ACCURACY_TOLERANCE = 0.01  # absolute, top-1 fraction
LATE_TOLERANCE_PP = 1.0  # points of frames over their latency target (settled)
FRAME_SHARE_TOLERANCE = 0.1  # |ROS frames / fast-run frames - 1|: one timeline, one overhead

FAST_SEEDS = 4  # fast runs pooled (about 4 s each here)

SCENARIO = Path(__file__).parent / "scenarios" / "short_two_models.yaml"


def cycle_beyond_latency_ms(stats) -> tuple[float, float]:
    """Mean time between consecutive results beyond the second one's latency, over the pairs
    where a frame was already waiting (frames were dropped during the first), against the mean
    host overhead the node reported: whether the node's measurement accounts for its cycle."""
    stamps = np.array([s.header.stamp.sec + s.header.stamp.nanosec * 1e-9 for s in stats])
    latency = np.array([s.latency_ms for s in stats])
    reported = np.array([s.host_overhead_ms for s in stats])
    dropped = np.array([s.frames_dropped for s in stats])
    waited = np.concatenate([[False], dropped[1:-1] > dropped[:-2]])
    beyond = np.diff(stamps) * 1e3 - latency[1:]
    if not waited.any():
        return float("nan"), float("nan")
    return float(beyond[waited].mean()), float(reported[1:][waited].mean())


# Measured on this 2-core machine shared with other jobs, 2026-11-27, with the measured overhead
# fed to one fast run (simulator seed 0), 14 runs (load average 2-6; 3 with three busy loops
# beside them): 97.8-102.5 % of the fast run's frames, energy -0.5 to -2.7 %, settled late
# frames -0.8 to 0.0 points.
# Before (20 runs): 88-106 % of the frames, energy -9.9 to +2.3 %, late frames +2.2 to +11.7
# points. What was behind it, traced per control step in both runs:
# - the manager's feedback counted 1-4 frames per 0.25 s window: the managed apps' GPU share from
#   those counts read as unmanaged GPU load (0.16 over ROS, 0.05-0.16 in the fast run), and right
#   after a switch or on a short early step (0 frames) as up to 0.5, giving navigation up. Rates
#   now come from frame finish times; latencies count only frames that ran wholly in the
#   configuration predicted for (observed_frames.py: over ROS a board reading shows new clocks up
#   to a period late), and no unmanaged load is inferred until the rates are measured again;
# - the real-time board stretched each app by the others' rates measured under contention, the
#   fast run by their demand (navigation 5-20 % faster and inspection slower over ROS, slowdowns
#   0.80 against 0.94): both now take the demand (the back ends announce their camera rate);
# - a frame run under the governors before the first decision (up to 0.4 s at boot clocks) set a
#   slowdown of 1.8-4.5; the driver sent the second app's target 1-2 s after the first (it waited
#   for each verdict, and a new writer is matched late) and started the timeline before the nodes
#   ran frames. Still different: the ROS run starts a few frames later (its switches wait for a
#   DDS hop), hence about 1 % less energy and a few late frames fewer. The node's measured host
#   overhead accounts for its cycle (the report's last line, e.g. 2.5 / 2.5 ms).
# One fast run (seed 0) came out 1.07 % late against the ROS run's 0.0 in CI on 2026-11-28: over
# simulator seeds 0-7, with overheads of 1.9-2.8 ms, single fast runs are 0.0-0.8 % late and their
# pool 0.2-0.3 %.
@pytest.mark.timeout(300)
def test_ros_run_matches_the_fast_evaluation(tmp_path):
    scenario = load_scenario(SCENARIO)
    run = RosScenarioRun(scenario, policy="hierarchical", work_dir=tmp_path)
    with DyndnnClient(node_name="scenario_test", history=100_000) as client:
        try:
            run.start(client)
            run.drive(client)
            ros = run.metrics(client)
            with client.lock:
                navigation = list(client.stats["ofa_gpu_a"])
        finally:
            codes = run.stop()
    assert all(code == 0 for code in codes.values()), codes
    spec = next(s for s in DEFAULT_SPECS if s.label == "hierarchical")
    fast_scenario = with_host_overhead(scenario, run.host_overhead_ms)
    model = PlatformModel.load("xavier_nx")
    fast_runs = [run_policy(fast_scenario, spec, model, seed=s) for s in range(FAST_SEEDS)]
    fast = pooled_metrics(fast_runs)
    fast_frames, fast_energy_j = fast.frames / FAST_SEEDS, fast.energy_j / FAST_SEEDS
    beyond_ms, reported_ms = cycle_beyond_latency_ms(navigation)
    report = (
        f"ROS {ros}\nfast, {FAST_SEEDS} runs pooled {fast}\n"
        "host overhead measured and given to the fast run (ms): "
        f"{run.host_overhead_ms}\nframes {ros.frames / fast_frames:.1%} of a fast run's, "
        f"energy {ros.energy_j / fast_energy_j - 1:+.1%}, settled late frames "
        f"{ros.violation_settled_pct - fast.violation_settled_pct:+.1f} points\n"
        "navigation, cycle beyond its latency where the next frame was waiting / overhead it "
        f"reported (ms): {beyond_ms:.2f} / {reported_ms:.2f}"
    )
    print(report)  # the figures behind the tolerances below (pytest -s shows them)
    outside = [
        name
        for name, within in (
            ("frames", abs(ros.frames / fast_frames - 1) <= FRAME_SHARE_TOLERANCE),
            ("energy", abs(ros.energy_j / fast_energy_j - 1) <= ENERGY_TOLERANCE),
            ("mean latency",
             abs(ros.mean_latency_ms / fast.mean_latency_ms - 1) <= MEAN_LATENCY_TOLERANCE),
            ("accuracy", abs(ros.mean_accuracy - fast.mean_accuracy) <= ACCURACY_TOLERANCE),
            ("settled late frames",
             abs(ros.violation_settled_pct - fast.violation_settled_pct) <= LATE_TOLERANCE_PP),
        )
        if not within
    ]
    assert not outside, f"ROS and fast runs differ in {', '.join(outside)}:\n{report}"
