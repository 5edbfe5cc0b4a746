# SPDX-License-Identifier: Apache-2.0
"""/diagnostics with real levels from the running nodes on a simulated Xavier NX tree: the DVFS
node warns while a pinned clock is throttled and reports an ERROR when a write fails, the hardware
monitor an ERROR while its sample cannot be read, the manager a WARN for a target whose model has
no profile and for a board status that never came."""

from __future__ import annotations

import threading
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from test_dvfs_node import CPU0, dvfs_node, send

from dyndnn_ros.bringup import NodeProcess
from dyndnn_ros.msg import TargetStatus
from dyndnn_ros.nodes import common

STEP_S = 15.0


class Diagnostics:
    """The latest status of each name published on /diagnostics."""

    def __init__(self, client):
        self.client = client
        self.lock = threading.Lock()
        self.latest: dict[str, DiagnosticStatus] = {}
        client.node.create_subscription(DiagnosticArray, common.DIAGNOSTICS_TOPIC, self.keep,
                                        common.STATUS_QOS)

    def keep(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.latest.update({status.name: status for status in msg.status})

    def wait_for(self, name: str, level: bytes, text: str = "") -> bool:
        def seen() -> bool:
            with self.lock:
                status = self.latest.get(name)
            return status is not None and status.level == level and text in status.message

        return self.client.wait_until(seen, STEP_S)

    def message(self, name: str) -> str:
        with self.lock:
            status = self.latest.get(name)
        return f"{name}: {status.level!r} {status.message}" if status else f"{name}: none"


def test_dvfs_node_warns_when_throttled_and_errs_when_a_write_fails(start_nodes, client,
                                                                    sim_root: Path):
    diagnostics = Diagnostics(client)
    group = start_nodes(dvfs_node(sim_root))
    assert send(client, lambda: bool(client.dvfs_applied), cpu=[("cluster0", 1190400)])
    name = "dyndnn/dvfs"
    assert diagnostics.wait_for(name, DiagnosticStatus.OK, "clocks pinned"), (
        diagnostics.message(name))

    # what a cooling device does: the CPU runs below the pinned minimum
    (sim_root / CPU0 / "scaling_cur_freq").write_text("729600\n")
    assert diagnostics.wait_for(name, DiagnosticStatus.WARN,
                                "cpu/cluster0 runs at 729600, pinned at 1190400: throttled"), (
        diagnostics.message(name))

    # a file the kernel refuses (as an inactive policy's files do): the write fails
    minimum = sim_root / CPU0 / "scaling_min_freq"
    minimum.unlink()
    minimum.mkdir()
    assert send(client, lambda: "DVFS write failed" in group.output("dvfs_node"),
                cpu=[("cluster0", 1420800)])
    assert diagnostics.wait_for(name, DiagnosticStatus.ERROR, "write failed"), (
        diagnostics.message(name))


def test_hardware_monitor_reports_an_error_while_its_sample_cannot_be_read(start_nodes, client,
                                                                           sim_root: Path):
    diagnostics = Diagnostics(client)
    start_nodes(NodeProcess("hardware_monitor_node", "hardware_monitor_node",
                            {"sysfs_root": str(sim_root), "source": "simulation",
                             "period_s": 0.2}))
    name = "dyndnn/hardware_sample"
    assert diagnostics.wait_for(name, DiagnosticStatus.OK), diagnostics.message(name)

    label = sorted(sim_root.rglob("in1_label"))[0]  # an INA3221 channel the kernel cannot read
    text = label.read_text()
    label.unlink()
    label.mkdir()
    assert diagnostics.wait_for(name, DiagnosticStatus.ERROR, "sample failed"), (
        diagnostics.message(name))
    assert "last good sample" in diagnostics.message(name)

    label.rmdir()
    label.write_text(text)
    assert diagnostics.wait_for(name, DiagnosticStatus.OK), diagnostics.message(name)


def test_manager_warns_about_a_model_without_profile_and_no_board_status(start_nodes, client):
    diagnostics = Diagnostics(client)
    start_nodes(NodeProcess("resource_manager_node", "resource_manager_node",
                            {"platform": "xavier_nx", "control_period_s": 0.3}))
    verdict = client.set_target("early", "not_announced", min_accuracy=0.5,
                                wait_for_manager_s=STEP_S)
    assert verdict is not None and verdict.state == TargetStatus.STATE_PARKED
    targets = "dyndnn/manager/targets"
    assert diagnostics.wait_for(targets, DiagnosticStatus.WARN,
                                "early: no profile of model 'not_announced'"), (
        diagnostics.message(targets))
    board = "dyndnn/manager/board_status"
    assert diagnostics.wait_for(board, DiagnosticStatus.WARN, "no board status received"), (
        diagnostics.message(board))
