# SPDX-License-Identifier: Apache-2.0
"""Hardware monitor: publishes HardwareStatus and /diagnostics (as NVIDIA's ros2_jetson_stats
does).

A sample that cannot be read is reported on /diagnostics as an ERROR with the age of the last good
one, each period until reading works again; nothing stale goes out as HardwareStatus.
"""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from dyndnn_ros.diagnostics import Diagnostic, Level

from dyndnn_ros.hardware.status import HardwareSample, open_status_source
from dyndnn_ros.msg import CpuClusterStatus, HardwareStatus, PowerRail, Temperature
from dyndnn_ros.nodes import common
from dyndnn_ros.nodes.diagnostic_messages import diagnostic_array
from dyndnn_ros.hardware.detect import resolve_platform


def to_message(sample: HardwareSample) -> HardwareStatus:
    msg = HardwareStatus()
    msg.source = sample.source
    msg.platform = sample.platform
    for c in sample.cpu_clusters:
        msg.cpu_clusters.append(
            CpuClusterStatus(
                name=c.name,
                online_cores=c.online_cores,
                total_cores=c.total_cores,
                frequency_khz=int(c.frequency_khz),
                utilization=float(c.utilization),
            )
        )
    msg.gpu_frequency_hz = int(sample.gpu_frequency_hz)
    msg.gpu_utilization = float(sample.gpu_utilization)
    msg.emc_frequency_hz = int(sample.emc_frequency_hz)
    msg.emc_utilization = float(sample.emc_utilization)
    msg.total_power_w = float(sample.total_power_w)
    msg.rails = [PowerRail(name=name, power_w=float(w)) for name, w in sample.rails_w.items()]
    msg.temperatures = [
        Temperature(name=name, celsius=float(c)) for name, c in sample.temperatures_c.items()
    ]
    return msg


SAMPLE_STATUS = "dyndnn/hardware_sample"


def to_diagnostics(sample: HardwareSample, hardware_id: str) -> list[DiagnosticStatus]:
    def status(name: str, values: dict[str, object]) -> DiagnosticStatus:
        return DiagnosticStatus(
            level=DiagnosticStatus.OK,
            name=f"dyndnn/{name}",
            message="OK",
            hardware_id=hardware_id,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    statuses = [
        status(
            f"cpu/{c.name}",
            {
                "frequency_khz": c.frequency_khz,
                "utilization": f"{c.utilization:.3f}",
                "online_cores": f"{c.online_cores}/{c.total_cores}",
            },
        )
        for c in sample.cpu_clusters
    ]
    statuses.append(
        status(
            "gpu",
            {
                "frequency_hz": sample.gpu_frequency_hz,
                "utilization": f"{sample.gpu_utilization:.3f}",
            },
        )
    )
    statuses.append(status("emc", {"frequency_hz": sample.emc_frequency_hz}))
    statuses.append(status("power", {"total_w": f"{sample.total_power_w:.3f}",
                                      **{k: f"{v:.3f}" for k, v in sample.rails_w.items()}}))
    statuses.append(
        status("temperature", {k: f"{v:.1f}" for k, v in sample.temperatures_c.items()})
    )
    statuses.append(status("hardware_sample", {"source": sample.source}))
    return statuses


def sample_failed(error: str, last_good: float | None, now: float) -> Diagnostic:
    age = "never read" if last_good is None else f"last good sample {now - last_good:.1f} s ago"
    return Diagnostic(SAMPLE_STATUS, Level.ERROR, f"sample failed ({age}): {error}")


class HardwareMonitorNode(common.DyndnnNode):
    def __init__(self) -> None:
        super().__init__("hardware_monitor_node")
        kind = common.declare(
            self,
            "source",
            "auto",
            "Where to read the board's state: auto (jtop, else sysfs), jtop, sysfs, or simulation",
        )
        root = common.declare(
            self,
            "sysfs_root",
            "/",
            "Directory /sys and /proc live under ('/' on a robot, a simulated tree elsewhere)",
        )
        platform_name = common.declare(self, "platform", "auto", "Board description name or path "
                                       "(auto: detected from "
                                       "the board; '' to discover clocks without one)")
        period = float(common.declare(
            self, "period_s", 0.5, "Sampling period [s] (ros2_jetson_stats' default interval "
            "is 0.5 s)", read_only=False, limits=(0.01, 60.0)))
        platform = resolve_platform(platform_name, root) if platform_name else None
        self.source, warning = open_status_source(kind, root, platform, period)
        if warning:
            self.get_logger().warning(warning)
        self.status_pub = self.create_publisher(
            HardwareStatus, common.HARDWARE_STATUS_TOPIC, common.STATUS_QOS
        )
        self.diag_pub = self.create_publisher(
            DiagnosticArray, common.DIAGNOSTICS_TOPIC, common.STATUS_QOS
        )
        self.timer = self.create_timer(period, self.publish_sample)
        self.last_good: float | None = None
        common.on_parameter_change(self, {"period_s": self.change_period})
        self.get_logger().info(
            f"publishing hardware status from {self.source.name} every {period:g} s"
        )

    def change_period(self, period: float):
        def apply() -> None:  # the range keeps the period > 0
            self.destroy_timer(self.timer)
            self.timer = self.create_timer(period, self.publish_sample)
        return apply

    def publish_sample(self) -> None:
        try:
            sample = self.source.sample()
        except (OSError, ValueError) as exc:
            self.get_logger().warning(f"hardware sample failed: {exc}", throttle_duration_sec=10.0)
            self.diag_pub.publish(diagnostic_array(
                [sample_failed(str(exc), self.last_good, time.monotonic())], "board",
                self.get_clock().now().to_msg()))
            return
        self.last_good = time.monotonic()
        stamp = self.get_clock().now().to_msg()
        msg = to_message(sample)
        msg.header.stamp = stamp
        self.status_pub.publish(msg)
        diag = DiagnosticArray()
        diag.header.stamp = stamp
        diag.status = to_diagnostics(sample, sample.platform or "board")
        self.diag_pub.publish(diag)

    def on_shutdown(self) -> None:
        self.source.close()


def main() -> None:
    common.main_entry(HardwareMonitorNode)
