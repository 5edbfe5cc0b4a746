# SPDX-License-Identifier: Apache-2.0
"""The clock controller, the status source and platform detection on every board fixture: caps,
inactive policies, EMC cap 0, a GPU devfreq node that appears late, an unknown board."""

from __future__ import annotations

from pathlib import Path

import pytest

from dyndnn_ros.hardware import sysfs_paths
from dyndnn_ros.simulation.board_fixtures import FIXTURES
from dyndnn_ros.simulation.simulated_tree import (
    BoardKernel,
    create_board_tree,
    create_simulated_jetson,
)
from dyndnn_ros.hardware.status import SysfsStatusSource
from dyndnn_ros.hardware.sysfs_clocks import ClockRejected, ClockRequest, SysfsClockController
from dyndnn_ros.platforms.description import PlatformError, load_platform
from dyndnn_ros.hardware.detect import detect_platform, resolve_platform

BOARDS = sorted(FIXTURES)


def files(root: Path) -> dict:
    return {p: p.read_text() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def tree_of(tmp_path: Path, board: str) -> Path:
    return create_simulated_jetson(tmp_path / board, load_platform(board))


@pytest.mark.parametrize("board", BOARDS)
def test_each_board_is_detected_from_its_model_and_power_mode(tmp_path, board):
    root = tree_of(tmp_path, board)
    name, model, mode = detect_platform(root)
    assert (name, model, mode) == (board, FIXTURES[board].model, FIXTURES[board].mode.name)
    assert resolve_platform("auto", root).name == board


def test_an_unknown_board_or_mode_is_a_clear_error(tmp_path):
    root = tree_of(tmp_path, "xavier_nx")
    (root / sysfs_paths.NVPMODEL_STATUS).write_text(
        "pmode:0001\n"
    )  # MODE_15W_4CORE: not described
    with pytest.raises(PlatformError, match="no description for .*MODE_15W_4CORE"):
        detect_platform(root)
    (root / sysfs_paths.DEVICE_TREE_MODEL).write_bytes(b"Raspberry Pi 5\x00")
    with pytest.raises(PlatformError, match="Raspberry Pi 5"):
        detect_platform(root)
    with pytest.raises(PlatformError, match="this is no Jetson"):
        detect_platform(tmp_path / "empty")


@pytest.mark.parametrize("board", BOARDS)
def test_pins_every_described_clock_within_the_power_modes_caps_and_restores(tmp_path, board):
    platform = load_platform(board)
    fixture = FIXTURES[board]
    root = tree_of(tmp_path, board)
    boot = files(root)
    controller = SysfsClockController(root, platform)
    top = ClockRequest(
        {c.name: platform.clocks.cpu_available_khz[-1] for c in platform.clocks.cpu_clusters},
        platform.clocks.gpu_available_hz[-1],
        platform.clocks.emc_available_hz[-1],
    )
    applied = controller.apply(top)
    assert set(applied.cpu_khz) == {c.name for c in platform.clocks.cpu_clusters}
    assert all(khz <= fixture.mode.cpu_max_khz for khz in applied.cpu_khz.values())
    assert applied.gpu_hz <= fixture.mode.gpu_max_hz
    emc_cap = fixture.mode.emc_cap_hz or fixture.emc_possible_hz[-1]  # 0 = no cap
    assert applied.emc_hz == max(r for r in fixture.emc_possible_hz if r <= emc_cap)
    low = ClockRequest({c.name: 1 for c in platform.clocks.cpu_clusters}, 1, 1)
    assert controller.apply(low).gpu_hz == fixture.gpu_hz[0]
    assert controller.restore_originals() == []
    assert files(root) == boot


def test_a_request_above_the_mode_cap_is_capped_and_said_so(tmp_path):
    controller = SysfsClockController(tree_of(tmp_path, "xavier_nx"), load_platform("xavier_nx"))
    resolved = controller.resolve(ClockRequest({"cluster0": 1907200}, emc_hz=1866000000))
    assert resolved.cpu_khz == {"cluster0": 1420800} and resolved.emc_hz == 1600000000
    assert "above the power mode's maximum" in resolved.notes["cpu/cluster0"]
    with pytest.raises(ClockRejected, match="above the board's maximum"):
        controller.resolve(ClockRequest({"cluster0": 2500000}))


@pytest.mark.parametrize(
    "board, offline", [("xavier_nx_2core", ["policy2", "policy4"]), ("orin_nano_7w", ["policy4"])]
)
def test_offline_clusters_are_left_out_with_their_reason(tmp_path, board, offline):
    root = tree_of(tmp_path, board)
    policy_dir = root / sysfs_paths.CPUFREQ_DIR / offline[0]
    with pytest.raises(OSError):  # the fixture refuses like the kernel (-EBUSY), root or not
        (policy_dir / "scaling_max_freq").write_text("960000\n")
    controller = SysfsClockController(root, load_platform(board))
    assert sorted(d[4:] for d in controller.unavailable) == offline
    assert all("offline" in why for why in controller.unavailable.values())
    resolved = controller.resolve(ClockRequest({"cluster0": 729600, offline[0]: 729600}))
    assert (
        resolved.cpu_khz == {"cluster0": 729600}
        and "offline" in resolved.notes[f"cpu/{offline[0]}"]
    )
    sample = SysfsStatusSource(root, load_platform(board)).sample()
    by_name = {c.name: c for c in sample.cpu_clusters}
    assert by_name[offline[0]].online_cores == 0 and by_name["cluster0"].online_cores > 0


def test_gpu_devfreq_node_that_appears_after_start_is_found_and_restored(tmp_path):
    fixture = FIXTURES["agx_orin_maxn"]
    platform = load_platform("agx_orin_maxn")
    root = create_board_tree(tmp_path / "orin", fixture)
    controller = SysfsClockController(root, platform)
    monitor = SysfsStatusSource(root, platform)
    assert "first powers up" in controller.unavailable["gpu"]
    assert controller.resolve(ClockRequest(gpu_hz=612000000)).gpu_hz == 0
    assert monitor.sample().gpu_frequency_hz == 0
    BoardKernel(root, fixture).power_up_gpu()
    boot = files(root)
    assert controller.apply(ClockRequest(gpu_hz=612000000)).gpu_hz == 612000000
    assert (root / fixture.gpu_devfreq_path / "max_freq").read_text().strip() == "612000000"
    assert monitor.sample().gpu_frequency_hz == fixture.gpu_hz[-1]
    assert controller.restore_originals() == []
    assert files(root) == boot


def test_agx_orin_total_power_is_the_sum_of_its_rails(tmp_path):
    root = tree_of(tmp_path, "agx_orin_maxn")
    hwmon = root / "sys/bus/i2c/devices/1-0040/hwmon/hwmon1"
    (hwmon / "curr1_input").write_text("2000\n")  # VDD_GPU_SOC: 1 V x 2 A
    (hwmon / "curr3_input").write_text("1000\n")  # VIN_SYS_5V0: 5 V x 1 A
    sample = SysfsStatusSource(root, load_platform("agx_orin_maxn")).sample()
    assert "VDD_IN" not in sample.rails_w and "NC" not in sample.rails_w
    assert sample.total_power_w == pytest.approx(7.0)


def test_kernel_clamps_limits_to_a_thermal_cap_and_rounds_emc_rates(tmp_path):
    fixture = FIXTURES["xavier_nx"]
    root = tree_of(tmp_path, "xavier_nx")
    controller = SysfsClockController(root, load_platform("xavier_nx"))
    controller.apply(ClockRequest({"cluster0": 1420800}))
    kernel = BoardKernel(root, fixture)
    kernel.thermal_cap_khz["policy0"] = 1190400
    (root / sysfs_paths.EMC_CLK_DIR / "rate").write_text("1500000000\n")
    kernel.settle()
    policy = root / sysfs_paths.CPUFREQ_DIR / "policy0"
    assert (
        (policy / "scaling_max_freq").read_text().strip()
        == (policy / "scaling_min_freq").read_text().strip()
        == "1190400"
    )
    assert (root / sysfs_paths.EMC_CLK_DIR / "rate").read_text().strip() == "1600000000"
