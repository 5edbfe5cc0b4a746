# SPDX-License-Identifier: Apache-2.0
"""What the launch tests share: a simulated board to launch on, a probe node to talk to it, and
the checks after shutdown.

Imported by the launch test files (pytest's launch_testing plugin, `launch_test` and `colcon test`
all load them as plain files, so each puts this folder on sys.path first). Where launch is not
installed, importing this skips the test file that imports it.
"""
import atexit
import os
import shutil
import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch", reason="launch is not installed (it comes with a ROS 2 install; "
                    "`make test` builds it from ../shared/ros2-tooling)")
pytest.importorskip("launch_testing", reason="launch_testing is not installed")
pytest.importorskip("launch_ros", reason="launch_ros is not installed")

import launch_testing  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from dyndnn_ros.platforms.description import load_platform  # noqa: E402
from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson  # noqa: E402

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


class ProbeTest(unittest.TestCase):
    """Active tests with a probe node of their own (`probe_name`), for the class's lifetime."""

    probe_name = "dyndnn_launch_test"

    @classmethod
    def setUpClass(cls):
        cls.probe = Probe(cls.probe_name)

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()


def clean_shutdown_test(board: Path, boot_files: dict) -> type:
    """The post-shutdown tests every launch test makes; bind the result to a name in the test
    file, where launch_testing looks for test cases: every node exited cleanly and every file of
    the simulated board is as it was before the launch."""

    @launch_testing.post_shutdown_test()
    class TestCleanShutdown(unittest.TestCase):
        def test_every_node_exited_cleanly(self, proc_info):
            launch_testing.asserts.assertExitCodes(proc_info)

        def test_board_is_as_it_was(self):
            self.assertEqual(file_contents(board), boot_files)

    return TestCleanShutdown
