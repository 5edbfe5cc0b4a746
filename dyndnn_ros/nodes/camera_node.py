# SPDX-License-Identifier: Apache-2.0
"""Camera source for demos and tests: dataset test images or a folder's images, at a set rate."""
from __future__ import annotations

from sensor_msgs.msg import Image

from dyndnn_ros.imaging import DATASETS, FrameSource
from dyndnn_ros.nodes import common


class CameraNode(common.DyndnnNode):
    def __init__(self) -> None:
        super().__init__("camera_node")
        rate = float(common.declare(self, "rate_hz", 10.0, "Frames per second",
                                    read_only=False, limits=(0.01, 1000.0)))
        folder = common.declare(self, "image_folder", "", "Folder of .png/.jpg/.npy images to "
                                "loop over; empty = the dataset's test images")
        dataset = common.declare(self, "dataset", DATASETS[0], "Test images served when "
                                 f"image_folder is empty: {' or '.join(DATASETS)}")
        width = int(common.declare(self, "width", 64, "Dataset frame width [px] (scaled up)",
                                   limits=(1, 8192)))
        height = int(common.declare(self, "height", 64, "Dataset frame height [px] (scaled up)",
                                    limits=(1, 8192)))
        self.frame_id = common.declare(
            self, "frame_id", "camera", "frame_id written in each image header"
        )
        self.frames = FrameSource(folder or None, width, height, dataset)
        self.pub = self.create_publisher(Image, common.IMAGE_TOPIC, common.IMAGE_QOS)
        self.timer = self.create_timer(1.0 / rate, self.publish_frame)
        common.on_parameter_change(self, {"rate_hz": self.change_rate})
        self.get_logger().info(
            f"publishing {self.frames.describe()} at {rate:g} Hz on {self.pub.topic_name}"
        )

    def change_rate(self, rate: float):
        def apply() -> None:  # the range keeps the rate > 0
            self.destroy_timer(self.timer)
            self.timer = self.create_timer(1.0 / rate, self.publish_frame)
        return apply

    def publish_frame(self) -> None:
        frame = self.frames.next()
        msg = Image()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        msg.height, msg.width = frame.shape[:2]
        msg.encoding = "rgb8"
        msg.step = msg.width * 3
        msg.data = frame.tobytes()
        self.pub.publish(msg)


def main() -> None:
    common.main_entry(CameraNode)
