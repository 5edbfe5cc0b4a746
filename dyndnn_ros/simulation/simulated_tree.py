# SPDX-License-Identifier: Apache-2.0
"""Lay out a Jetson's files under a directory, from its board fixture (board_fixtures.py).

The DVFS node, the hardware monitor and the platform simulator then use it exactly as they use `/`
on a robot: same file names, units, symlinks (cpuN/cpufreq -> policy, class/devfreq -> device),
owners and modes (root-owned, 0644 where the kernel accepts writes, 0444 elsewhere, debugfs 0700).
Clocks start where a freshly booted board has them: default governors, the power mode's caps in
the max files, its offline CPUs' policies inactive, and on JetPack 6 no GPU devfreq node until
`BoardKernel.power_up_gpu()`.

A plain directory cannot answer -EBUSY, clamp a write or round a rate, so two stand-ins:
- an inactive policy's attribute files are directories: reading or writing them fails (EISDIR),
  as the kernel's -EBUSY does, for root too;
- `BoardKernel.settle()` does afterwards what the kernel does on a write: limits clamped to the
  thermal cap and to each other, the EMC rate rounded to a rate BPMP offers.
"""

from __future__ import annotations

import os
from pathlib import Path

from dyndnn_ros.hardware import sysfs_paths as paths
from dyndnn_ros.simulation.board_fixtures import BoardFixture, fixture_for
from dyndnn_ros.platforms.description import PlatformDescription

THERMAL_ZONES = ("CPU-therm", "GPU-therm", "AUX-therm")
WRITABLE = 0o644
READ_ONLY = 0o444
CPU_GOVERNORS = "interactive conservative ondemand userspace powersave performance schedutil"
GPU_GOVERNORS = "wmark_active nvhost_podgov userspace performance simple_ondemand"


def _write(path: Path, value: object, mode: int = READ_ONLY) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        path.rmdir()
    path.write_text(f"{value}\n")
    os.chmod(path, mode)


def _symlink(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(target, link.parent))


def _policy_files(fixture: BoardFixture, cpus: tuple) -> dict:
    mode = fixture.mode
    lo, hi = fixture.cpu_khz[0], fixture.cpu_khz[-1]
    listed = " ".join(str(c) for c in cpus)
    return {
        "affected_cpus": (listed, READ_ONLY),
        "related_cpus": (listed, READ_ONLY),
        "cpuinfo_min_freq": (lo, READ_ONLY),
        "cpuinfo_max_freq": (hi, READ_ONLY),
        "cpuinfo_cur_freq": (mode.cpu_max_khz, 0o400),
        "scaling_min_freq": (lo, WRITABLE),
        "scaling_max_freq": (mode.cpu_max_khz, WRITABLE),
        "scaling_cur_freq": (mode.cpu_max_khz, READ_ONLY),
        "scaling_available_frequencies": (" ".join(map(str, fixture.cpu_khz)), READ_ONLY),
        "scaling_available_governors": (CPU_GOVERNORS, READ_ONLY),
        "scaling_governor": ("schedutil", WRITABLE),
        "scaling_setspeed": ("<unsupported>", WRITABLE),
    }


def _cpus(root: Path, fixture: BoardFixture) -> None:
    cpu_dir, cpufreq_dir = root / paths.CPU_DIR, root / paths.CPUFREQ_DIR
    online = set(fixture.mode.online_cpus)
    for cpus in fixture.cpu_policies:
        policy = cpufreq_dir / f"policy{cpus[0]}"
        active = any(c in online for c in cpus)
        for name, (value, mode) in _policy_files(fixture, cpus).items():
            if active:
                _write(policy / name, value, mode)
            else:  # inactive policy: every attribute answers -EBUSY (here: EISDIR)
                (policy / name).mkdir(parents=True, exist_ok=True)
        for cpu in cpus:
            _write(cpu_dir / f"cpu{cpu}" / "online", int(cpu in online), WRITABLE)
            _symlink(cpu_dir / f"cpu{cpu}" / "cpufreq", policy)
    _write(cpu_dir / "online", _ranges(sorted(online)))
    _write(cpu_dir / "present", _ranges(list(fixture.cpus)))


def _ranges(cpus: list) -> str:
    """Kernel cpu list format: 0-3,6."""
    groups: list = []
    for c in cpus:
        if groups and c == groups[-1][1] + 1:
            groups[-1][1] = c
        else:
            groups.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in groups)


def gpu_files(root: Path, fixture: BoardFixture) -> None:
    """The GPU devfreq device and its class link (what appears when nvgpu registers it)."""
    devfreq = root / fixture.gpu_devfreq_path
    device = devfreq.parent.parent
    lo, hi = fixture.gpu_hz[0], fixture.mode.gpu_max_hz
    for name, (value, mode) in {
        "available_frequencies": (" ".join(map(str, fixture.gpu_hz)), READ_ONLY),
        "available_governors": (GPU_GOVERNORS, READ_ONLY),
        "governor": ("nvhost_podgov", WRITABLE),
        "min_freq": (lo, WRITABLE),
        "max_freq": (hi, WRITABLE),
        "cur_freq": (hi, READ_ONLY),
        "target_freq": (hi, READ_ONLY),
    }.items():
        _write(devfreq / name, value, mode)
    _symlink(devfreq / "device", device)
    _write(device / "of_node" / "name", fixture.gpu_of_node_name)
    _write(device / "load", 0)
    _write(device / "railgate_enable", 1, WRITABLE)
    _symlink(root / paths.DEVFREQ_CLASS_DIR / devfreq.name, devfreq)


def _emc(root: Path, fixture: BoardFixture) -> None:
    emc = root / paths.EMC_CLK_DIR
    lo, hi = fixture.emc_possible_hz[0], fixture.emc_possible_hz[-1]
    boot = fixture.mode.emc_cap_hz or hi
    for name, value in {
        "rate": boot,
        "min_rate": lo,
        "max_rate": hi,
        "mrq_rate_locked": 0,
    }.items():
        _write(emc / name, value, WRITABLE)
    _write(root / paths.EMC_POSSIBLE_RATES, " ".join(map(str, fixture.emc_possible_hz)))
    _write(root / paths.EMC_ISO_CAP, fixture.mode.emc_cap_hz, WRITABLE)
    os.chmod(root / paths.DEBUGFS_DIR, 0o700)  # debugfs: root only


def _power_and_thermal(root: Path, fixture: BoardFixture) -> None:
    for index, (device, labels) in enumerate(sorted(fixture.rails.items()), start=1):
        hwmon = root / paths.I2C_DEVICES_DIR / device / "hwmon" / f"hwmon{index}"
        _write(hwmon.parent.parent / "name", "ina3221")
        for channel, rail in enumerate(labels, start=1):
            _write(hwmon / f"in{channel}_label", rail)
            _write(hwmon / f"in{channel}_input", 5000 if "IN" in rail else 1000)  # mV
            _write(hwmon / f"curr{channel}_input", 0)  # mA
    for index, zone in enumerate(THERMAL_ZONES):
        _write(root / paths.THERMAL_DIR / f"thermal_zone{index}" / "type", zone)
        _write(root / paths.THERMAL_DIR / f"thermal_zone{index}" / "temp", 40000)  # milli-degC
    stat_lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    stat_lines += [f"cpu{c} 0 0 0 0 0 0 0 0 0 0" for c in fixture.mode.online_cpus]
    _write(root / paths.PROC_STAT, "\n".join(stat_lines))


def _identity(root: Path, fixture: BoardFixture) -> None:
    model = root / paths.DEVICE_TREE_MODEL
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(fixture.model.encode() + b"\x00")
    conf = [f"< PM_CONFIG DEFAULT={fixture.mode_id} >"]
    conf += [f"< POWER_MODEL ID={m.id} NAME={m.name} >" for m in fixture.modes]
    _write(root / paths.NVPMODEL_CONF, "\n".join(conf))
    _write(root / paths.NVPMODEL_STATUS, f"pmode:{fixture.mode_id:04d}", WRITABLE)


def create_board_tree(root: str | Path, fixture: BoardFixture) -> Path:
    """Create (or reset) the tree of `fixture` under `root` and return `root`."""
    root = Path(root)
    if (root / paths.DEBUGFS_DIR).is_dir():
        os.chmod(root / paths.DEBUGFS_DIR, 0o755)
    _cpus(root, fixture)
    if not fixture.gpu_appears_late:
        gpu_files(root, fixture)
    (root / paths.DEVFREQ_CLASS_DIR).mkdir(parents=True, exist_ok=True)
    _emc(root, fixture)
    _power_and_thermal(root, fixture)
    _identity(root, fixture)
    return root


def create_simulated_jetson(root: str | Path, platform: PlatformDescription) -> Path:
    """The tree of the board and power mode `platform` describes; its GPU is powered up."""
    fixture = fixture_for(platform.name)
    create_board_tree(root, fixture)
    BoardKernel(Path(root), fixture).power_up_gpu()
    return Path(root)


class BoardKernel:
    """What the kernel does on a real board after a write, done on demand."""

    def __init__(self, root: Path, fixture: BoardFixture):
        self.root = root
        self.fixture = fixture
        self.thermal_cap_khz: dict = {}
        """policy directory name -> a cooling device's cap (cpufreq QoS max)"""

    def power_up_gpu(self) -> None:
        if not (
            self.root / paths.DEVFREQ_CLASS_DIR / Path(self.fixture.gpu_devfreq_path).name
        ).exists():
            gpu_files(self.root, self.fixture)

    def settle(self) -> None:
        """Effective limits: min <= max <= caps; the EMC rate rounded up to a possible rate."""
        for policy in (self.root / paths.CPUFREQ_DIR).glob("policy*"):
            if (policy / "scaling_max_freq").is_file():
                cap = self.thermal_cap_khz.get(policy.name, self.fixture.cpu_khz[-1])
                self._clamp(policy / "scaling_min_freq", policy / "scaling_max_freq", cap)
        devfreq = self.root / self.fixture.gpu_devfreq_path
        if (devfreq / "max_freq").is_file():
            self._clamp(devfreq / "min_freq", devfreq / "max_freq", self.fixture.gpu_hz[-1])
        rate = self.root / paths.EMC_CLK_DIR / "rate"
        wanted = paths.read_int(rate)
        offered = [r for r in self.fixture.emc_possible_hz if r >= wanted] or [
            self.fixture.emc_possible_hz[-1]
        ]
        _keep_mode_write(rate, offered[0])

    @staticmethod
    def _clamp(lo_file: Path, hi_file: Path, cap: int) -> None:
        hi = min(paths.read_int(hi_file), cap)
        _keep_mode_write(hi_file, hi)
        _keep_mode_write(lo_file, min(paths.read_int(lo_file), hi))


def _keep_mode_write(path: Path, value: int) -> None:
    if paths.read_int(path) != value:
        path.write_text(f"{value}\n")
