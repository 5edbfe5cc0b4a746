# SPDX-License-Identifier: Apache-2.0
"""The sysfs clock back end on a simulated Xavier NX tree: discovery, snapping, safe order,
restore."""

from pathlib import Path

import pytest

from dyndnn_ros.hardware import sysfs_paths
from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson
from dyndnn_ros.hardware.sysfs_clocks import (
    ClockError,
    ClockRejected,
    ClockRequest,
    SysfsClockController,
)
from dyndnn_ros.platforms.description import load_platform

PLATFORM = load_platform("xavier_nx")
GPU_DIR = PLATFORM.clocks.gpu_devfreq_path
CPU0 = "sys/devices/system/cpu/cpufreq/policy0"


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return create_simulated_jetson(tmp_path / "root", PLATFORM)


@pytest.fixture()
def controller(tree: Path) -> SysfsClockController:
    return SysfsClockController(tree, PLATFORM)


def read(tree: Path, rel: str) -> str:
    return (tree / rel).read_text().strip()


def test_discovers_every_clock_domain(controller):
    found = controller.describe()
    assert set(found) == {"cpu/cluster0", "cpu/cluster1", "cpu/cluster2", "gpu", "emc"}
    assert found["gpu"] == PLATFORM.clocks.gpu_available_hz


def test_pins_min_and_max_and_reads_back(controller, tree):
    applied = controller.apply(
        ClockRequest({"cluster0": 729600}, gpu_hz=510000000, emc_hz=1600000000)
    )
    assert applied.cpu_khz == {"cluster0": 729600}
    assert (
        read(tree, f"{CPU0}/scaling_min_freq")
        == read(tree, f"{CPU0}/scaling_max_freq")
        == "729600"
    )
    assert read(tree, f"{GPU_DIR}/min_freq") == read(tree, f"{GPU_DIR}/max_freq") == "510000000"
    assert read(tree, f"{sysfs_paths.EMC_CLK_DIR}/rate") == "1600000000"
    assert read(tree, f"{sysfs_paths.EMC_CLK_DIR}/mrq_rate_locked") == "1"


def test_snaps_up_to_an_available_frequency(controller):
    assert controller.apply(ClockRequest(gpu_hz=500000000)).gpu_hz == 510000000


def test_rejects_unoffered_frequency_without_snapping(tree):
    strict = SysfsClockController(tree, PLATFORM, snap=False)
    with pytest.raises(ClockRejected, match="not offered"):
        strict.apply(ClockRequest(gpu_hz=500000000))
    assert read(tree, f"{GPU_DIR}/min_freq") == str(PLATFORM.clocks.gpu_available_hz[0])


@pytest.mark.parametrize(
    "request_, message",
    [
        (ClockRequest(gpu_hz=5_000_000_000), "above the board's maximum"),
        (ClockRequest({"cluster9": 729600}), "unknown CPU cluster"),
        (ClockRequest(gpu_hz=-1), "negative"),
    ],
)
def test_rejects_bad_requests_and_writes_nothing(controller, tree, request_, message):
    before = {p: p.read_text() for p in tree.rglob("*") if p.is_file()}
    with pytest.raises(ClockRejected, match=message):
        controller.apply(request_)
    assert before == {p: p.read_text() for p in tree.rglob("*") if p.is_file()}


def test_moving_down_then_up_keeps_min_below_max(controller, tree):
    # A naive writer that sets min before max when moving up is refused by the kernel (min > max).
    controller.apply(ClockRequest(gpu_hz=204000000))
    controller.apply(ClockRequest(gpu_hz=1109250000))
    assert read(tree, f"{GPU_DIR}/min_freq") == read(tree, f"{GPU_DIR}/max_freq") == "1109250000"


def test_restore_puts_back_the_boot_settings(controller, tree):
    boot = {p: p.read_text() for p in tree.rglob("*") if p.is_file()}
    controller.apply(
        ClockRequest({"cluster1": 422400, "cluster2": 1420800}, gpu_hz=306000000, emc_hz=665600000)
    )
    assert controller.restore_originals() == []
    assert boot == {p: p.read_text() for p in tree.rglob("*") if p.is_file()}


def test_failed_write_restores_and_raises(controller, tree):
    max_file = tree / GPU_DIR / "max_freq"
    controller.apply(ClockRequest(gpu_hz=510000000))
    max_file.unlink()
    max_file.mkdir()  # the next write to it fails like a refused sysfs write
    with pytest.raises(ClockError):
        controller.apply(ClockRequest(gpu_hz=1109250000))
    assert read(tree, f"{GPU_DIR}/min_freq") == str(PLATFORM.clocks.gpu_available_hz[0])


def test_symlink_escaping_the_root_is_refused(tree, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "max_freq").write_text("1\n")
    victim = tree / GPU_DIR / "max_freq"
    victim.unlink()
    victim.symlink_to(outside / "max_freq")
    controller = SysfsClockController(tree, PLATFORM)
    with pytest.raises((sysfs_paths.UnsafePathError, ClockError)):
        controller.apply(ClockRequest(gpu_hz=510000000))
    assert (outside / "max_freq").read_text() == "1\n"


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(ClockError, match="does not exist"):
        SysfsClockController(tmp_path / "nope", PLATFORM)
