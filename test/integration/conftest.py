# SPDX-License-Identifier: Apache-2.0
"""Fixtures that start the installed node executables and talk to them over DDS on loopback.

Each test run uses its own ROS_DOMAIN_ID and discovery stays on this machine; every process is
stopped and reaped at the end of its test, and every wait is bounded.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pytest

# Set before rclpy is initialised anywhere in this process, and inherited by the node processes.
os.environ.setdefault("ROS_DOMAIN_ID", str(20 + os.getpid() % 80))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

try:
    from dyndnn_ros.bringup import NodeGroup, NodeProcess, executable_path
    from dyndnn_ros.msg import PerformanceTarget  # noqa: F401  (generated: only in the colcon install)

    executable_path("dvfs_node")
    INSTALLED, WHY_NOT = True, ""
except Exception as exc:  # ImportError, BringupError: not built / not sourced
    INSTALLED, WHY_NOT = False, f"dyndnn_ros is not built and sourced ({exc}); run `make test`"

from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson
from dyndnn_ros.platforms.description import load_platform

if TYPE_CHECKING:
    from dyndnn_ros.cli.ros_client import DyndnnClient

PLATFORM = load_platform("xavier_nx")
MODEL = "digits"


def send(client, until, timeout: float = 15.0, cpu=(), **fields) -> bool:
    """Publish a DVFS command every 0.5 s until `until()` holds: discovery may still be completing
    on the node's side when our publisher already sees it, and a volatile topic drops what came
    before. `cpu`: (cluster, kHz) pairs."""
    from dyndnn_ros.msg import CpuClock, DvfsCommand

    clocks = [CpuClock(cluster=name, frequency_khz=khz) for name, khz in cpu]
    msg = DvfsCommand(mode=fields.pop("mode", DvfsCommand.MODE_SET), reason="test",
                      cpu_clocks=clocks, **fields)
    pub = client.node.create_publisher(DvfsCommand, "dyndnn/dvfs/command", 10)
    assert client.wait_until(lambda: pub.get_subscription_count() > 0, 15), (
        "dvfs_node never subscribed"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish(msg)
        if client.wait_until(until, 0.5):
            return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "test/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if not INSTALLED:
                item.add_marker(pytest.mark.skip(reason=WHY_NOT))


@pytest.fixture()
def sim_root(tmp_path: Path) -> Path:
    return create_simulated_jetson(tmp_path / "jetson", PLATFORM)


@pytest.fixture()
def client() -> Iterator["DyndnnClient"]:
    from dyndnn_ros.cli.ros_client import DyndnnClient

    with DyndnnClient(node_name=f"test_client_{os.getpid()}") as c:
        yield c


@pytest.fixture()
def start_nodes(tmp_path: Path) -> Iterator[Callable[..., "NodeGroup"]]:
    groups: list[NodeGroup] = []

    def start(*nodes: NodeProcess) -> NodeGroup:
        group = NodeGroup(list(nodes), log_dir=tmp_path).start()
        groups.append(group)
        return group

    yield start
    for group in groups:
        group.stop(timeout=10)


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory) -> Path:
    """The group-convolution digits model, trained for real with a small budget (about 15 s)."""
    out = tmp_path_factory.mktemp("groupconv_digits")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dyndnn_ros.training.train_groupconv",
            "--out",
            str(out),
            "--epochs",
            "3",
            "--no-baseline",
            "--threads",
            "1",
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return out / "checkpoint.pt"


@pytest.fixture()
def digits_system(start_nodes, sim_root, digits_checkpoint):
    group = start_nodes(
        NodeProcess("camera_node", "camera_node", {"rate_hz": 20.0, "dataset": "digits"}),
        NodeProcess(
            "inference_node",
            "inference_node",
            {
                "model_id": MODEL,
                "model_config": "groupconv_digits",
                "checkpoint": str(digits_checkpoint),
                "threads": 1,
                "profile_frames": 30,
            },
        ),
        NodeProcess(
            "resource_manager_node",
            "resource_manager_node",
            {"policy": "hierarchical", "control_period_s": 0.3, "sysfs_root": str(sim_root)},
        ),
        NodeProcess("dvfs_node", "dvfs_node", {"sysfs_root": str(sim_root), "watchdog_s": 5.0}),
        NodeProcess(
            "hardware_monitor_node",
            "hardware_monitor_node",
            {"sysfs_root": str(sim_root), "source": "simulation", "period_s": 0.3},
        ),
    )
    return group, sim_root
