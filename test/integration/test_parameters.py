# SPDX-License-Identifier: Apache-2.0
"""`ros2 param set` on running nodes, as a user types it: a change takes effect, a value out of its
range, one the policy refuses, and a read-only parameter are refused with the reason, and the
value stays."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from test_dvfs_node import dvfs_node, send
from test_ros2_commands import ros2, ros2_until, stop_daemon  # noqa: F401  (fixture)

from dyndnn_ros.bringup import NodeProcess, executable_path
from dyndnn_ros.msg import InferenceResult, TargetStatus
from dyndnn_ros.nodes import common

pytestmark = pytest.mark.skipif(
    shutil.which("ros2") is None,
    reason="the ros2 command is not installed (it comes with a ROS 2 install; `make test` builds "
           "it from ../shared/ros2-tooling)")

MANAGER = "/resource_manager_node"


def param(*arguments: str) -> str:
    """`ros2 param ...`'s output; repeated while the node is not found: the ros2 daemon's view of
    the graph can miss a node for a moment on a loaded machine (it waits 1 s by default)."""
    result = ros2_until(lambda r: "Node not found" not in r.stdout + r.stderr, "param",
                        *arguments)
    return result.stdout + result.stderr


def manager() -> NodeProcess:
    return NodeProcess("resource_manager_node", "resource_manager_node",
                       {"platform": "xavier_nx", "control_period_s": 0.3})


@pytest.mark.timeout(240)
def test_ros2_param_set_changes_the_manager_and_refuses_bad_values(start_nodes, client,
                                                                   stop_daemon):  # noqa: F811
    group = start_nodes(manager())
    ready = ros2_until(lambda r: r.returncode == 0, "param", "get", MANAGER,
                       "parked_target_timeout_s", timeout_s=60)
    assert "300.0" in ready.stdout, ready.stdout + ready.stderr

    assert "Set parameter successful" in param("set", MANAGER, "parked_target_timeout_s", "1.0")
    verdict = client.set_target("early", "not_announced", min_accuracy=0.5, wait_for_manager_s=20)
    assert verdict is not None and verdict.state == TargetStatus.STATE_PARKED, verdict
    assert "expires in 1 s" in verdict.reason
    assert client.wait_until(lambda: any(v.app_id == "early"
                                         and v.state == TargetStatus.STATE_EXPIRED
                                         for v in client.verdicts_seen()), 10), (
        "the new timeout holds")

    assert "Set parameter successful" in param("set", MANAGER, "control_period_s", "0.8")
    assert group.wait_for_line("resource_manager_node", "parameter control_period_s set to 0.8",
                               10)
    assert "Set parameter successful" in param("set", MANAGER, "hold_periods", "1")

    refused = {
        ("control_period_s", "0.0"): "out of range",
        ("headroom", "0.7"): "out of range",
        ("headroom", "0.5"): "0 <= headroom < 0.5",  # in the range; the policy refuses it
        ("policy", "subnet_only"): "read-only",
        ("control_period_s", "fast"): "Wrong parameter type",
    }
    for (name, value), reason in refused.items():
        output = param("set", MANAGER, name, value)
        assert "Setting parameter failed" in output and reason in output, (name, value, output)
    kept = {"control_period_s": "0.8", "headroom": "0.03", "policy": "hierarchical",
            "hold_periods": "1"}
    for name, value in kept.items():
        assert value in param("get", MANAGER, name), name

    described = param("describe", MANAGER, "control_period_s")
    assert "Min value: 0.01" in described and "Max value: 60.0" in described, described
    assert "Read only" not in described, described
    assert "Read only: true" in param("describe", MANAGER, "policy")
    assert sorted(group.running()) == ["resource_manager_node"]


@pytest.mark.timeout(180)
def test_ros2_param_set_arms_the_dvfs_watchdog(start_nodes, client, sim_root,
                                               stop_daemon):  # noqa: F811
    group = start_nodes(dvfs_node(sim_root, watchdog_s=0.0))
    ready = ros2_until(lambda r: r.returncode == 0, "param", "get", "/dvfs_node", "watchdog_s",
                       timeout_s=60)
    assert "0.0" in ready.stdout, ready.stdout + ready.stderr
    assert "Set parameter successful" in param("set", "/dvfs_node", "watchdog_s", "1.0")
    assert "out of range" in param("set", "/dvfs_node", "watchdog_s", "-1.0")
    assert send(client, lambda: bool(client.dvfs_applied), gpu_frequency_hz=306_000_000)
    assert group.wait_for_line("dvfs_node", "watchdog: no DVFS command for 1 s", 10), (
        group.output("dvfs_node"))


def test_a_value_out_of_range_at_start_is_one_clear_line():
    result = subprocess.run(
        [str(executable_path("resource_manager_node")), "--ros-args", "-p", "platform:=xavier_nx",
         "-p", "control_period_s:=0.0"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stderr
    assert "parameter control_period_s" in result.stderr and "Min" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.timeout(240)
def test_ros2_param_set_changes_the_inference_results_and_the_camera_rate(
        start_nodes, client, stop_daemon):  # noqa: F811
    from test_faults import inference

    results = []
    client.node.create_subscription(InferenceResult, "/inference_node/result",
                                    lambda m: client._append(results, m), common.STATS_QOS)
    start_nodes(NodeProcess("camera_node", "camera_node",
                            {"rate_hz": 10.0, "width": 32, "height": 32}),
                inference(top_k=3))
    assert client.wait_until(lambda: bool(results), 60), "no inference result"
    assert len(results[-1].top_k) == 3
    ready = ros2_until(lambda r: r.returncode == 0, "param", "get", "/inference_node", "top_k",
                       timeout_s=60)
    assert "3" in ready.stdout, ready.stdout + ready.stderr
    assert "Set parameter successful" in param("set", "/inference_node", "top_k", "1")
    assert client.wait_until(lambda: len(results[-1].top_k) == 1, 15), "top_k never changed"
    assert "out of range" in param("set", "/inference_node", "top_k", "0")

    assert "Set parameter successful" in param("set", "/camera_node", "rate_hz", "20.0")
    assert "out of range" in param("set", "/camera_node", "rate_hz", "0.0")
    assert "20.0" in param("get", "/camera_node", "rate_hz")
    assert "read-only" in param("set", "/camera_node", "width", "16")
