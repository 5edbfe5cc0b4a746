# SPDX-License-Identifier: Apache-2.0
"""The real dvfs_node and hardware_monitor_node executables against a simulated Xavier NX tree."""
from __future__ import annotations

import signal
from pathlib import Path

from conftest import PLATFORM, send

from dyndnn_ros.bringup import NodeProcess
from dyndnn_ros.msg import DvfsCommand

GPU = PLATFORM.clocks.gpu_devfreq_path
CPU0 = "sys/devices/system/cpu/cpufreq/policy0"


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def read(root: Path, rel: str) -> str:
    return (root / rel).read_text().strip()


def dvfs_node(root: Path, watchdog_s: float = 0.0) -> NodeProcess:
    return NodeProcess(
        "dvfs_node",
        "dvfs_node",
        {"sysfs_root": str(root), "platform": "xavier_nx", "watchdog_s": watchdog_s},
    )


def test_writes_only_allowed_frequencies_and_restores_on_sigterm(start_nodes, client, sim_root):
    boot = snapshot(sim_root)
    group = start_nodes(dvfs_node(sim_root))
    # 500 MHz is not in the Xavier NX GPU table: the node snaps it up to 510 MHz; 1 GHz CPU ->
    # 1036.8 MHz
    assert send(client, lambda: any(m.mode == DvfsCommand.MODE_SET for m in client.dvfs_applied),
                cpu=[("cluster0", 1_000_000)], gpu_frequency_hz=500_000_000,
                emc_frequency_hz=1_600_000_000)
    applied = [m for m in client.dvfs_applied if m.mode == DvfsCommand.MODE_SET][-1]
    assert applied.gpu_frequency_hz == 510_000_000
    assert [(c.cluster, c.frequency_khz) for c in applied.cpu_clocks] == [("cluster0", 1_036_800)]
    assert read(sim_root, f"{GPU}/min_freq") == read(sim_root, f"{GPU}/max_freq") == "510000000"
    assert read(sim_root, f"{CPU0}/scaling_max_freq") == "1036800"
    for rel, text in snapshot(sim_root).items():
        if rel.endswith(("min_freq", "max_freq")) and "devfreq" in rel:
            assert int(text) in PLATFORM.clocks.gpu_available_hz

    group.signal("dvfs_node", signal.SIGTERM)
    assert group.node("dvfs_node").process.wait(timeout=10) == 0
    assert snapshot(sim_root) == boot, "SIGTERM must put every clock file back as it was at start"


def test_restores_on_watchdog_timeout(start_nodes, client, sim_root):
    boot = snapshot(sim_root)
    group = start_nodes(dvfs_node(sim_root, watchdog_s=1.0))
    assert send(
        client,
        lambda: read(sim_root, f"{GPU}/max_freq") == "306000000",
        gpu_frequency_hz=306_000_000,
    )
    assert group.wait_for_line("dvfs_node", "watchdog: no DVFS command", timeout=6)
    assert snapshot(sim_root) == boot
    assert client.wait_until(
        lambda: client.dvfs_applied and client.dvfs_applied[-1].mode == DvfsCommand.MODE_RESTORE, 5
    )


def test_rejects_malformed_commands_and_changes_nothing(start_nodes, client, sim_root):
    boot = snapshot(sim_root)
    group = start_nodes(dvfs_node(sim_root))
    logged = lambda text: lambda: text in group.output("dvfs_node")  # noqa: E731
    assert send(client, logged("above the board's maximum"), gpu_frequency_hz=9_000_000_000)
    assert send(client, logged("unknown CPU cluster"), cpu=[("cluster7", 729600)])
    assert send(client, logged("clusters listed twice: ['cluster0']"),
                cpu=[("cluster0", 729600), ("cluster0", 1_036_800)])
    assert send(client, logged("unknown mode 7"), mode=7)
    output = group.output("dvfs_node")
    assert "above the board's maximum" in output and "unknown CPU cluster" in output
    assert "listed twice" in output
    assert snapshot(sim_root) == boot
    assert group.running() == ["dvfs_node"], "the node must keep running after bad input"


def test_hardware_monitor_reads_the_simulated_board(start_nodes, client, sim_root):
    (sim_root / "sys/bus/i2c/devices/7-0040/hwmon/hwmon1/curr1_input").write_text(
        "1500\n"
    )  # 5 V x 1.5 A on VDD_IN
    start_nodes(
        NodeProcess(
            "hardware_monitor_node",
            "hardware_monitor_node",
            {"sysfs_root": str(sim_root), "source": "simulation", "period_s": 0.2},
        )
    )
    assert client.wait_until(lambda: client.hardware is not None, 15)
    status = client.hardware
    assert status.source == "simulation" and status.platform == "xavier_nx"
    assert [c.name for c in status.cpu_clusters] == ["cluster0", "cluster1", "cluster2"]
    assert status.gpu_frequency_hz == PLATFORM.clocks.gpu_available_hz[-1]
    assert abs(status.total_power_w - 7.5) < 1e-6
    assert {r.name for r in status.rails} == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}


def test_hardware_monitor_falls_back_from_jtop_with_one_warning(start_nodes, client, sim_root):
    group = start_nodes(
        NodeProcess(
            "hardware_monitor_node",
            "hardware_monitor_node",
            {"sysfs_root": str(sim_root), "source": "jtop", "period_s": 0.2},
        )
    )
    assert client.wait_until(lambda: client.hardware is not None, 15)
    assert client.hardware.source == "sysfs"
    assert group.output("hardware_monitor_node").count("jtop unavailable") == 1


def test_jtop_control_without_the_service_is_a_clear_startup_error(start_nodes, sim_root):
    group = start_nodes(
        NodeProcess("dvfs_node", "dvfs_node", {"sysfs_root": str(sim_root), "control": "jtop"})
    )
    assert group.node("dvfs_node").process.wait(timeout=20) == 1
    assert "jtop control unavailable" in group.output(
        "dvfs_node"
    ) and "use control:=sysfs" in group.output("dvfs_node")
