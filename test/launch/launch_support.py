# SPDX-License-Identifier: Apache-2.0
"""What the launch tests share: a simulated board to launch on, and a probe node to talk to it.

Imported by the launch test files (pytest's launch_testing plugin, `launch_test` and `colcon test`
all load them as plain files, so each puts this folder on sys.path first).
"""
import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import rclpy
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson
from dyndnn_ros.platforms.description import load_platform

# Set before any rclpy context exists; the launched nodes inherit them.
os.environ.setdefault("ROS_DOMAIN_ID", str(20 + os.getpid() % 80))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


def temporary_dir(prefix: str) -> Path:
    """A folder removed when the test process exits (launch tests build theirs at import)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


def simulated_board(platform: str = "xavier_nx") -> Path:
    return create_simulated_jetson(temporary_dir("dyndnn_launch_test_"), load_platform(platform))


def file_contents(root: Path) -> dict:
    """Every regular file under the tree and its text: what 'the clocks as they were' means."""
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def include_system(**arguments: str) -> IncludeLaunchDescription:
    """launch/dyndnn.launch.py from the install, with launch arguments as a user passes them."""
    launch_file = Path(get_package_share_directory("dyndnn_ros")) / "launch" / "dyndnn.launch.py"
    return IncludeLaunchDescription(PythonLaunchDescriptionSource(str(launch_file)),
                                    launch_arguments=list(arguments.items()))


class Probe:
    """A node of the test's own, with bounded waits."""

    def __init__(self, name: str):
        rclpy.init()
        self.node = rclpy.create_node(name)

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.shutdown()

    def collect(self, msg_type, topic: str, qos) -> list:
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def spin_until(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return bool(condition())
