# SPDX-License-Identifier: Apache-2.0
"""Hardware status from a simulated tree: clocks, utilisation from /proc/stat deltas, rails,
temperatures."""

from pathlib import Path

import pytest

from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson
from dyndnn_ros.hardware.status import SysfsStatusSource, open_status_source
from dyndnn_ros.platforms.description import load_platform

PLATFORM = load_platform("xavier_nx")


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return create_simulated_jetson(tmp_path, PLATFORM)


def write_stat(root: Path, busy: list[int], idle: list[int]) -> None:
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"] + [
        f"cpu{i} {b} 0 0 {d} 0 0 0 0 0 0" for i, (b, d) in enumerate(zip(busy, idle))
    ]
    (root / "proc/stat").write_text("\n".join(lines) + "\n")


def test_reads_clusters_gpu_emc_rails_and_temperatures(root):
    hwmon = root / "sys/bus/i2c/devices/7-0040/hwmon/hwmon1"
    (hwmon / "curr1_input").write_text("1200\n")  # VDD_IN: 5000 mV x 1200 mA = 6 W
    (hwmon / "curr2_input").write_text("2000\n")  # VDD_CPU_GPU_CV: 1000 mV x 2000 mA = 2 W
    sample = SysfsStatusSource(root, PLATFORM, name="simulation").sample()
    assert sample.source == "simulation" and sample.platform == "xavier_nx"
    assert [(c.name, c.online_cores, c.total_cores) for c in sample.cpu_clusters] == [
        ("cluster0", 2, 2), ("cluster1", 2, 2), ("cluster2", 2, 2)]
    # MODE_15W_6CORE caps the EMC at 1600 MHz (emc_iso_cap): the boot rate
    assert sample.gpu_frequency_hz == 1109250000 and sample.emc_frequency_hz == 1600000000
    assert sample.total_power_w == pytest.approx(6.0) and sample.rails_w[
        "VDD_CPU_GPU_CV"
    ] == pytest.approx(2.0)
    assert sample.temperatures_c["CPU-therm"] == pytest.approx(40.0)


def test_utilisation_from_proc_stat_deltas_and_offline_cores(root):
    source = SysfsStatusSource(root, PLATFORM)
    write_stat(root, [0] * 6, [0] * 6)
    source.sample()
    write_stat(root, [75, 75, 0, 0, 100, 100], [25, 25, 100, 100, 0, 0])
    (root / "sys/devices/system/cpu/cpu3/online").write_text("0\n")
    (root / "sys/devices/platform/17000000.gv11b/load").write_text("640\n")
    sample = source.sample()
    assert [round(c.utilization, 2) for c in sample.cpu_clusters] == [0.75, 0.0, 1.0]
    assert sample.cpu_clusters[1].online_cores == 1
    assert sample.gpu_utilization == pytest.approx(0.64)


def test_missing_jtop_falls_back_to_sysfs_with_a_warning(root):
    source, warning = open_status_source("jtop", root, PLATFORM)
    assert source.name == "sysfs"
    assert "jtop unavailable" in warning


def test_unknown_source_is_rejected(root):
    with pytest.raises(ValueError, match="unknown hardware status source"):
        open_status_source("magic", root, PLATFORM)
