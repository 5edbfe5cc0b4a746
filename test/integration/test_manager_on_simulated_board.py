# SPDX-License-Identifier: Apache-2.0
"""The resource manager over DDS on the simulated Xavier NX (simulation back end), issue cases
(a)-(c), and the inference node keeping only the newest frame.

Each test starts the real executables with RosScenarioRun (simulated board, cameras, inference
nodes, manager, DVFS node, hardware monitor) and publishes targets as an application would.
"""
from __future__ import annotations

import time

import pytest

from dyndnn_ros.cli.ros_client import DyndnnClient
from dyndnn_ros.cli.scenario_run import RosScenarioRun
from dyndnn_ros.evaluation.scenario import parse_scenario
from dyndnn_ros.msg import DvfsCommand
from dyndnn_ros.simulation.sysfs_board import SIM_DIR

NAV, INSPECT = "ofa_gpu_a", "ofa_gpu_b"
SETTLE_S = 4.0
STEP_S = 20.0


NAVIGATION = {
    "app": "navigation", "profile": "dynamic_ofa_xavier_nx_gpu.yaml", "fps": 10,
    "cluster": "cluster0",
}
INSPECTION = {
    "app": "inspection", "profile": "dynamic_ofa_xavier_nx_gpu_b.yaml", "fps": 5,
    "cluster": "cluster1",
}


def board(tmp_path, apps: list[dict], policy: str = "hierarchical") -> RosScenarioRun:
    scenario = parse_scenario(
        {
            "name": "test",
            "duration_s": 60,
            "control_period_s": 0.25,
            "apps": apps,
            "phases": [{"at_s": 0}],
        }
    )
    return RosScenarioRun(scenario, policy=policy, work_dir=tmp_path)


@pytest.fixture()
def client():
    with DyndnnClient(node_name="board_test", history=100_000) as c:
        yield c


def applied_gpu_hz(client) -> int:
    with client.lock:
        applied = [m for m in client.dvfs_applied if m.mode == DvfsCommand.MODE_SET]
    return applied[-1].gpu_frequency_hz if applied else 0


def recent(client, model: str, seconds: float) -> list:
    with client.lock:
        stats = list(client.stats[model])
    now = time.time()
    return [
        s for s in stats if now - (s.header.stamp.sec + s.header.stamp.nanosec * 1e-9) <= seconds
    ]


def mean_latency(client, model: str, seconds: float = 2.0) -> float:
    frames = recent(client, model, seconds)
    return sum(s.latency_ms for s in frames) / len(frames) if frames else float("nan")


@pytest.mark.timeout(180)
def test_a_looser_latency_target_lowers_the_clocks(tmp_path, client):
    run = board(tmp_path, [NAVIGATION])
    try:
        run.start(client)
        client.set_target("navigation", NAV, max_latency_ms=60.0)
        assert client.wait_until(lambda: applied_gpu_hz(client) > 0, STEP_S)
        time.sleep(SETTLE_S)
        tight_gpu, tight_latency = applied_gpu_hz(client), mean_latency(client, NAV)
        client.set_target("navigation", NAV, max_latency_ms=200.0)
        assert client.wait_until(lambda: 0 < applied_gpu_hz(client) < tight_gpu, STEP_S), (
            f"GPU stayed at {applied_gpu_hz(client)} Hz after the target was loosened (was "
            f"{tight_gpu})"
        )
        time.sleep(SETTLE_S)
        loose_latency = mean_latency(client, NAV)
        assert tight_latency < loose_latency <= 200.0, (tight_latency, loose_latency)
        assert tight_latency <= 60.0
    finally:
        assert all(code == 0 for code in run.stop().values())


@pytest.mark.timeout(180)
def test_b_two_apps_are_managed_at_once(tmp_path, client):
    run = board(tmp_path, [NAVIGATION, INSPECTION])
    try:
        run.start(client)
        client.set_target("navigation", NAV, max_latency_ms=150.0, min_accuracy=0.76, priority=2)
        client.set_target(
            "inspection", INSPECT, max_latency_ms=200.0, min_accuracy=0.77, priority=1
        )
        for model, accuracy in ((NAV, 0.76), (INSPECT, 0.77)):
            assert client.wait_for_stats(
                model, lambda s, a=accuracy: s.accuracy >= a - 1e-6, STEP_S
            ), f"{model} never ran a sub-network meeting its accuracy target"
        assert client.wait_until(
            lambda: (
                client.manager is not None
                and len(client.manager.targets) == 2
                and not client.manager.given_up
            ),
            STEP_S,
        )
        time.sleep(SETTLE_S)
        assert mean_latency(client, NAV) <= 150.0 and mean_latency(client, INSPECT) <= 200.0
        assert {m.model_id for m in client.switches} == {NAV, INSPECT}
    finally:
        assert all(code == 0 for code in run.stop().values())


@pytest.mark.timeout(180)
def test_c_a_background_gpu_job_is_absorbed_by_the_feedback(tmp_path, client):
    run = board(tmp_path, [NAVIGATION])
    try:
        run.start(client)
        client.set_target("navigation", NAV, max_latency_ms=100.0, min_accuracy=0.76)
        assert client.wait_until(lambda: applied_gpu_hz(client) > 0, STEP_S)
        time.sleep(SETTLE_S)
        quiet_gpu = applied_gpu_hz(client)
        with client.lock:
            quiet_subnet = client.stats[NAV][-1].active_subnet
        (run.root / SIM_DIR / "background_gpu").write_text(
            "0.5\n"
        )  # another job takes half the GPU
        assert client.wait_until(
            lambda: (
                applied_gpu_hz(client) > quiet_gpu
                or client.stats[NAV][-1].active_subnet != quiet_subnet
            ),
            STEP_S,
        ), (
            "the manager neither raised the clocks nor changed the sub-network under a 50% "
            "background load"
        )
        time.sleep(SETTLE_S)
        assert mean_latency(client, NAV, seconds=3.0) <= 100.0, (
            "the target is not held under the background load"
        )
    finally:
        assert all(code == 0 for code in run.stop().values())


@pytest.mark.timeout(120)
def test_slow_inference_keeps_only_the_newest_frame(tmp_path, client):
    # 60 fps into a model taking 40-60 ms per frame: most frames must be dropped, none queued
    run = board(tmp_path, [{**NAVIGATION, "fps": 60}], policy="static")
    try:
        run.start(client)
        assert client.wait_until(lambda: len(client.stats[NAV]) >= 40, STEP_S)
        stats = list(client.stats[NAV])[10:]
        ages_ms = [
            (
                (s.header.stamp.sec - s.frame_stamp.sec)
                + (s.header.stamp.nanosec - s.frame_stamp.nanosec) * 1e-9
            )
            * 1e3
            for s in stats
        ]
        assert stats[-1].frames_dropped > len(stats), "frames should be dropped, not queued"
        # a frame waits at most for the frame in progress, then runs: bounded, not growing
        assert max(ages_ms) <= 3 * max(s.latency_ms for s in stats) + 50, ages_ms
        assert ages_ms[-1] <= 3 * max(s.latency_ms for s in stats) + 50
    finally:
        assert all(code == 0 for code in run.stop().values())
