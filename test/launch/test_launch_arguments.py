# SPDX-License-Identifier: Apache-2.0
"""launch_testing test of the launch arguments a robot user sets, over their own parameter file.

    ros2 launch dyndnn_ros dyndnn.launch.py params_file:=<theirs> namespace:=robot1 camera:=false \
        policy:=subnet_only sysfs_root:=<board> hardware_source:=simulation

Their file asks for policy dvfs_only; the argument must win. What their file sets and no argument
overrides (the control period, the model id) must stay. With camera:=false their own driver
publishes image_raw in the namespace. subnet_only leaves the clocks to the governors, so the
board's files never change; on shutdown every node exits cleanly.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launch_support  # noqa: E402  (skips this file where launch is not installed)
import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from dyndnn_ros.msg import (  # noqa: E402
    DvfsCommand,
    InferenceResult,
    InferenceStats,
    ManagerStatus,
    PerformanceTarget,
)
from dyndnn_ros.nodes import common  # noqa: E402

NS = "robot1"
MODEL = "front_camera_classifier"
BOARD = launch_support.simulated_board()
BOOT_FILES = launch_support.file_contents(BOARD)
USER_PARAMS = launch_support.temporary_dir("dyndnn_user_params_") / "my_robot.yaml"
USER_PARAMS.write_text(f"""\
/**:
  ros__parameters:
    platform: xavier_nx
resource_manager_node:
  ros__parameters:
    policy: dvfs_only
    control_period_s: 0.25
inference_node:
  ros__parameters:
    model_id: {MODEL}
    model_config: groupconv_digits
    threads: 1
    profile_frames: 10
""")


@pytest.mark.launch_test
def generate_test_description():
    system = launch_support.include_system(
        params_file=str(USER_PARAMS), namespace=NS, camera="false", policy="subnet_only",
        sysfs_root=str(BOARD), hardware_source="simulation")
    return launch.LaunchDescription([system, launch_testing.actions.ReadyToTest()])


def image(frame_id: str) -> Image:
    msg = Image(height=32, width=32, encoding="mono8", step=32, data=bytes(range(256)) * 4)
    msg.header.frame_id = frame_id
    return msg


class TestArgumentsReachTheirNodes(launch_support.ProbeTest):
    probe_name = "dyndnn_launch_arguments_test"

    def test_subnet_only_external_camera_namespace(self, proc_output):
        probe = self.probe

        def topic(relative: str) -> str:
            return f"/{NS}/{relative}"

        stats = probe.collect(InferenceStats, topic(common.INFERENCE_STATS_TOPIC),
                              common.STATS_QOS)
        results = probe.collect(InferenceResult, f"/{NS}/inference_node/result", common.STATS_QOS)
        status = probe.collect(ManagerStatus, topic(common.MANAGER_STATUS_TOPIC),
                               common.LATCHED_READER_QOS)
        applied = probe.collect(DvfsCommand, topic(common.DVFS_APPLIED_TOPIC),
                                common.LATCHED_READER_QOS)
        camera = probe.node.create_publisher(Image, topic(common.IMAGE_TOPIC), common.IMAGE_QOS)
        targets = probe.node.create_publisher(PerformanceTarget, topic(common.TARGETS_TOPIC),
                                              common.TARGETS_QOS)

        def frames_processed():
            camera.publish(image("robot1_front_camera"))
            return bool(results)

        self.assertTrue(probe.spin_until(frames_processed, 60),
                        f"no result on /{NS}/inference_node/result for images on /{NS}/image_raw")
        self.assertEqual(results[-1].header.frame_id, "robot1_front_camera")
        self.assertEqual(results[-1].model_id, MODEL)
        targets.publish(PerformanceTarget(app_id="arguments_test", model_id=MODEL,
                                          max_latency_ms=1000.0))

        def managed():
            camera.publish(image("robot1_front_camera"))
            return status and any(t.app_id == "arguments_test" for t in status[-1].targets)

        self.assertTrue(probe.spin_until(managed, 30), "the manager never took the target")
        self.assertEqual(status[-1].policy, "subnet_only")
        chosen = {c.model_id: c.subnet_id for c in status[-1].choices}[MODEL]

        def runs_chosen():
            camera.publish(image("robot1_front_camera"))
            return stats and stats[-1].active_subnet == chosen

        self.assertTrue(probe.spin_until(runs_chosen, 30), f"the node never ran {chosen!r}")
        self.assertTrue(probe.spin_until(lambda: len(status) >= 8, 10))
        self.assertFalse([m for m in applied if m.mode == DvfsCommand.MODE_SET],
                         "subnet_only must leave the clocks to the governors")
        self.assertEqual(launch_support.file_contents(BOARD), BOOT_FILES)
        proc_output.assertWaitFor("policy 'subnet_only' on xavier_nx, control period 0.25 s",
                                  timeout=10, stream="stderr")


TestCleanShutdown = launch_support.clean_shutdown_test(BOARD, BOOT_FILES)
