# SPDX-License-Identifier: Apache-2.0
"""launch_testing test of the whole system as `ros2 launch dyndnn_ros dyndnn.launch.py` starts it.

On a simulated Jetson tree with the default (hierarchical) policy: a target published from this
test is taken by the manager, the inference node runs the sub-network the manager chose, the DVFS
node pins the board's clock files, and on shutdown (launch sends SIGINT, as Ctrl-C does) every node
exits cleanly and every file of the board is as it was before the launch.
Run by `make test` (pytest's launch_testing plugin), `launch_test` and `colcon test`.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launch_support  # noqa: E402  (skips this file where launch is not installed)
import launch  # noqa: E402
import launch_testing.actions  # noqa: E402

from dyndnn_ros.msg import (  # noqa: E402
    DvfsCommand,
    InferenceStats,
    ManagerStatus,
    PerformanceTarget,
)
from dyndnn_ros.nodes import common  # noqa: E402

BOARD = launch_support.simulated_board()
BOOT_FILES = launch_support.file_contents(BOARD)


@pytest.mark.launch_test
def generate_test_description():
    system = launch_support.include_system(sysfs_root=str(BOARD), hardware_source="simulation")
    return launch.LaunchDescription([system, launch_testing.actions.ReadyToTest()])


class TestTargetIsManaged(launch_support.ProbeTest):
    probe_name = "dyndnn_launch_test"

    def test_target_switches_subnet_and_pins_clocks(self, proc_output):
        probe = self.probe
        stats = probe.collect(InferenceStats, common.INFERENCE_STATS_TOPIC, common.STATS_QOS)
        status = probe.collect(ManagerStatus, common.MANAGER_STATUS_TOPIC,
                               common.LATCHED_READER_QOS)
        applied = probe.collect(DvfsCommand, common.DVFS_APPLIED_TOPIC, common.LATCHED_READER_QOS)
        targets = probe.node.create_publisher(PerformanceTarget, common.TARGETS_TOPIC,
                                              common.TARGETS_QOS)
        self.assertTrue(probe.spin_until(lambda: stats, 60), "no InferenceStats within 60 s")
        model = stats[-1].model_id
        targets.publish(PerformanceTarget(app_id="launch_test", model_id=model,
                                          max_latency_ms=1000.0))

        def managed():
            return status and any(t.app_id == "launch_test" for t in status[-1].targets)

        self.assertTrue(probe.spin_until(managed, 30), "the manager never took the target")
        self.assertEqual(status[-1].policy, "hierarchical")
        chosen = {c.model_id: c.subnet_id for c in status[-1].choices}[model]
        self.assertTrue(probe.spin_until(lambda: stats[-1].active_subnet == chosen, 30),
                        f"the inference node never ran {chosen!r}")
        self.assertTrue(probe.spin_until(lambda: any(m.mode == DvfsCommand.MODE_SET
                                                     for m in applied), 30),
                        "the DVFS node never reported pinned clocks")
        self.assertNotEqual(launch_support.file_contents(BOARD), BOOT_FILES,
                            "the DVFS node reported clocks but the board's files are unchanged")
        proc_output.assertWaitFor("target of app 'launch_test'", timeout=10, stream="stderr")


TestCleanShutdown = launch_support.clean_shutdown_test(BOARD, BOOT_FILES)
