# SPDX-License-Identifier: Apache-2.0
"""DVFS node: applies DvfsCommand messages to the board's clock files and reports what it applied.

It saves the clock settings it finds at start and puts them back on shutdown (Ctrl-C, SIGTERM), on
a MODE_RESTORE command, after a failed write, and when no command has arrived for `watchdog_s`, so
a crashed or silent manager never leaves the board pinned. The saved settings are also kept in a
state file; a node killed outright (SIGKILL, OOM) leaves it behind, and the next one restores from
it before it saves anew. Clocks it cannot control (offline CPUs, files this user cannot write,
root-only debugfs) are named once with the reason and left alone. /diagnostics says, once a second
and after each command, whether the clocks are pinned, throttled (held a table step or more below
the pin), uncontrollable, or in trouble (a failed write or restore: ERROR).
"""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray

from dyndnn_ros.diagnostics import DvfsHealth, throttled
from dyndnn_ros.hardware.jtop_control import JtopClockControl
from dyndnn_ros.hardware.sysfs_clocks import (
    ClockError,
    ClockRejected,
    ClockRequest,
    ClockState,
    SysfsClockController,
    default_state_file,
    restore_leftover,
)
from dyndnn_ros.msg import CpuClock, DvfsCommand
from dyndnn_ros.nodes import common
from dyndnn_ros.nodes.diagnostic_messages import diagnostic_array
from dyndnn_ros.hardware.detect import resolve_platform


def clock_domains(clocks) -> dict:
    """domain name ("cpu/<cluster>", "gpu", "emc", as the controller describes them) -> frequency,
    for a ClockRequest or ClockState; 0: not set"""
    found = {f"cpu/{name}": int(khz) for name, khz in clocks.cpu_khz.items()}
    found.update({"gpu": int(clocks.gpu_hz), "emc": int(clocks.emc_hz)})
    return {domain: value for domain, value in found.items() if value}


def cpu_clocks(cpu_khz: dict) -> list:
    return [CpuClock(cluster=name, frequency_khz=int(khz)) for name, khz in cpu_khz.items()]


DIAGNOSTICS_PERIOD_S = 1.0
"""as diagnostic_updater publishes"""


class DvfsNode(common.DyndnnNode):
    def __init__(self) -> None:
        super().__init__("dvfs_node")
        root = common.declare(
            self,
            "sysfs_root",
            "/",
            "Directory the board's /sys and /proc live under: '/' on a robot, a simulated tree's "
            "directory elsewhere",
        )
        platform_name = common.declare(
            self, "platform", "auto", "Board description (config/platforms/<name>.yaml or a path; "
            "auto: detected from the board); gives cluster names and the EMC rate table")
        snap = common.declare(
            self,
            "snap_to_available",
            True,
            "Round a requested frequency up to the next one the board offers; if false such "
            "requests are rejected",
        )
        self.watchdog_s = float(common.declare(
            self, "watchdog_s", 5.0, "Restore the saved clocks when no command arrived for this "
            "long [s]; 0 disables", read_only=False, limits=(0.0, 3600.0)))
        control = common.declare(
            self,
            "control",
            "sysfs",
            "How clocks are set: sysfs (per-clock frequencies) or jtop (jetson_clocks on/off and "
            "nvpmodel only)",
        )
        nvpmodel = common.declare(
            self,
            "nvpmodel",
            "",
            "jtop control only: power mode to select at start (empty = leave it)",
        )
        state_dir = common.declare(self, "state_dir", "", "Directory of the saved-clocks "
                                   "state file "
                                   "(empty: /run/dyndnn, "
                                   "else $XDG_RUNTIME_DIR/dyndnn, else /tmp/dyndnn-<uid>)")
        platform = resolve_platform(platform_name, root) if platform_name else None
        self.noted: set = set()
        if control == "sysfs":
            state_file = default_state_file(root, state_dir)
            failed = restore_leftover(state_file, root)
            if failed is not None:
                self.get_logger().warning(
                    f"a previous DVFS node left pinned clocks ({state_file}): restored"
                    + (f", except {failed}" if failed else ""))
            self.controller = SysfsClockController(root, platform, snap, state_file)
            for why in self.controller.unavailable.values():
                self.get_logger().warning(f"not controlled: {why}")
        elif control == "jtop":
            if platform is None:
                raise ValueError(
                    "control:=jtop needs a platform description (parameter 'platform')"
                )
            try:
                self.controller = JtopClockControl(platform, nvpmodel)
            # ImportError or JtopException: service missing, access denied, version
            except Exception as exc:
                raise RuntimeError(
                    f"jtop control unavailable ({type(exc).__name__}: {exc}); use control:=sysfs"
                ) from exc
        else:
            raise ValueError(f"unknown control {control!r}; choose sysfs or jtop")
        self.controller.save_originals()
        self.health = DvfsHealth(getattr(self.controller, "unavailable", {}))
        self.pinned = False
        self.last_command_time = time.monotonic()
        self.last_applied: ClockState | None = None
        self.applied_pub = self.create_publisher(
            DvfsCommand, common.DVFS_APPLIED_TOPIC, common.DVFS_APPLIED_QOS
        )
        self.diag_pub = self.create_publisher(DiagnosticArray, common.DIAGNOSTICS_TOPIC,
                                              common.STATUS_QOS)
        self.create_subscription(
            DvfsCommand, common.DVFS_COMMAND_TOPIC, self.on_command, common.COMMAND_QOS
        )
        self.watchdog_timer = None
        self.start_watchdog(self.watchdog_s)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics)
        common.on_parameter_change(self, {"watchdog_s": self.change_watchdog})
        domains = ", ".join(
            f"{name} ({len(freqs)} steps)" for name, freqs in self.controller.describe().items()
        )
        domains = domains or "none controllable (reasons above)"
        self.get_logger().info(
            f"clocks under {root}: {domains}; boot settings saved, watchdog {self.watchdog_s:g} s"
        )

    def on_command(self, msg: DvfsCommand) -> None:
        self.last_command_time = time.monotonic()
        if msg.mode == DvfsCommand.MODE_RESTORE:
            self.restore(f"restore requested ({msg.reason or 'no reason given'})")
            return
        if msg.mode != DvfsCommand.MODE_SET:
            self.get_logger().warning(f"rejected DVFS command: unknown mode {msg.mode}")
            return
        cpu_khz = {clock.cluster: int(clock.frequency_khz) for clock in msg.cpu_clocks}
        if len(cpu_khz) != len(msg.cpu_clocks):
            named = [clock.cluster for clock in msg.cpu_clocks]
            twice = sorted({name for name in named if named.count(name) > 1})
            self.get_logger().warning(f"rejected DVFS command: clusters listed twice: {twice}")
            return
        request = ClockRequest(
            cpu_khz,
            int(msg.gpu_frequency_hz),
            int(msg.emc_frequency_hz),
        )
        try:
            resolved = self.controller.resolve(request)
        except ClockRejected as exc:
            self.get_logger().warning(f"rejected DVFS command: {exc}")
            return
        for note in getattr(resolved, "notes", {}).values():
            if note not in self.noted:  # once each: the manager repeats its command every period
                self.noted.add(note)
                self.get_logger().warning(f"left out of DVFS commands: {note}")
        if not (resolved.cpu_khz or resolved.gpu_hz or resolved.emc_hz):
            return
        if self.pinned and self.last_applied is not None and self._already_applied(resolved):
            return  # the manager repeats its decision every period as a heartbeat
        try:
            applied = self.controller.apply(resolved)
        except ClockError as exc:
            self.get_logger().error(f"DVFS write failed, boot settings restored: {exc}")
            self.pinned = False
            self.health.failed(str(exc), [])
            self.publish_applied(DvfsCommand.MODE_RESTORE, None, f"write failed: {exc}")
            self.publish_diagnostics()
            return
        self.pinned = True
        self.health.applied(clock_domains(resolved), clock_domains(applied))
        self.last_applied = self._merge(applied)
        self.get_logger().info(
            f"applied {self._describe(applied)} ({msg.reason or 'no reason given'})"
        )
        self.publish_applied(DvfsCommand.MODE_SET, self.last_applied, msg.reason)
        self.publish_diagnostics()

    def _already_applied(self, resolved: ClockRequest) -> bool:
        last = self.last_applied
        return (
            all(last.cpu_khz.get(name) == khz for name, khz in resolved.cpu_khz.items())
            and resolved.gpu_hz in (0, last.gpu_hz)
            and resolved.emc_hz in (0, last.emc_hz)
        )

    def _merge(self, applied: ClockState) -> ClockState:
        """Clocks pinned so far, this command's on top of earlier ones it left alone."""
        before = self.last_applied if self.pinned and self.last_applied else ClockState({}, 0, 0)
        return ClockState(
            {**before.cpu_khz, **applied.cpu_khz},
            applied.gpu_hz or before.gpu_hz,
            applied.emc_hz or before.emc_hz,
        )

    @staticmethod
    def _describe(state: ClockState) -> str:
        parts = [f"{name} {khz / 1000:g} MHz" for name, khz in state.cpu_khz.items()]
        if state.gpu_hz:
            parts.append(f"GPU {state.gpu_hz / 1e6:g} MHz")
        if state.emc_hz:
            parts.append(f"EMC {state.emc_hz / 1e6:g} MHz")
        return ", ".join(parts) or "nothing"

    def publish_applied(self, mode: int, state: ClockState | None, reason: str) -> None:
        msg = DvfsCommand()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.mode = mode
        msg.reason = reason
        if state is not None:
            msg.cpu_clocks = cpu_clocks(state.cpu_khz)
            msg.gpu_frequency_hz = int(state.gpu_hz)
            msg.emc_frequency_hz = int(state.emc_hz)
        self.applied_pub.publish(msg)

    def restore(self, reason: str) -> None:
        failed = self.controller.restore_originals()
        self.pinned = False
        self.last_applied = None
        self.health.restored(failed)
        if failed:
            self.get_logger().error(f"{reason}: could not restore {failed}")
        else:
            self.get_logger().info(f"{reason}: boot clock settings restored")
        self.publish_applied(DvfsCommand.MODE_RESTORE, None, reason)
        self.publish_diagnostics()

    # -- watchdog and diagnostics ----------------------------------------------------------------
    def start_watchdog(self, seconds: float) -> None:
        if self.watchdog_timer is not None:
            self.destroy_timer(self.watchdog_timer)
            self.watchdog_timer = None
        self.watchdog_s = seconds
        if seconds > 0:
            self.watchdog_timer = self.create_timer(min(1.0, seconds / 4), self.check_watchdog)

    def change_watchdog(self, seconds: float):
        # counted from the last command: a shorter watchdog may restore at its first check
        return lambda: self.start_watchdog(seconds)

    def publish_diagnostics(self) -> None:
        read_state = getattr(self.controller, "read_state", None)
        if self.pinned and self.last_applied is not None and read_state is not None:
            try:
                current = clock_domains(read_state())
            except (OSError, ValueError) as exc:
                current = {}
                self.get_logger().warning(f"could not read the clocks back: {exc}",
                                          throttle_duration_sec=10.0)
            self.health.observed(throttled(clock_domains(self.last_applied), current,
                                           self.controller.describe()))
        self.diag_pub.publish(diagnostic_array([self.health.report()], self.get_name(),
                                               self.get_clock().now().to_msg()))

    def check_watchdog(self) -> None:
        if self.pinned and time.monotonic() - self.last_command_time > self.watchdog_s:
            self.restore(f"watchdog: no DVFS command for {self.watchdog_s:g} s")

    def on_shutdown(self) -> None:
        self.restore("shutting down")
        self.controller.close()


def main() -> None:
    common.main_entry(DvfsNode)
