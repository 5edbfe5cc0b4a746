"""Lay out a Jetson-like sysfs tree under a directory, from a platform description.

The DVFS node, the hardware monitor and the platform simulator then use it exactly as they use `/`
on a robot: same file names, same units, same symlinks (cpuN/cpufreq -> policy, class/devfreq ->
device). Clocks start where a freshly booted board has them: default governors, full range.
"""
from __future__ import annotations

import os
from pathlib import Path

from dyndnn_ros.hardware import sysfs_paths as paths
from dyndnn_ros.platforms.description import PlatformDescription

# INA3221 channels of the Xavier NX / AGX Xavier carrier boards (JetPack 5 hwmon layout).
DEFAULT_RAILS = ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")
DEFAULT_THERMAL_ZONES = ("CPU-therm", "GPU-therm", "AUX-therm")
INA3221_DEVICE = "7-0040"


def _write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


def _symlink(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(target, link.parent))


def create_simulated_jetson(root: str | Path, platform: PlatformDescription) -> Path:
    """Create (or reset) the tree under `root` and return `root`."""
    root = Path(root)
    clocks = platform.clocks
    cpu_lo, cpu_hi = clocks.cpu_available_khz[0], clocks.cpu_available_khz[-1]
    cpu_dir, cpufreq_dir = root / paths.CPU_DIR, root / paths.CPUFREQ_DIR
    for cluster in clocks.cpu_clusters:
        policy = cpufreq_dir / f"policy{cluster.policy_cpu}"
        cpus = " ".join(str(c) for c in cluster.cpus)
        for name, value in {
            "affected_cpus": cpus,
            "related_cpus": cpus,
            "cpuinfo_min_freq": cpu_lo,
            "cpuinfo_max_freq": cpu_hi,
            "cpuinfo_cur_freq": cpu_hi,
            "scaling_min_freq": cpu_lo,
            "scaling_max_freq": cpu_hi,
            "scaling_cur_freq": cpu_hi,
            "scaling_available_frequencies": " ".join(map(str, clocks.cpu_available_khz)),
            "scaling_available_governors": "interactive conservative ondemand userspace powersave performance schedutil",
            "scaling_governor": clocks.cpu_governor,
            "scaling_setspeed": "<unsupported>",
        }.items():
            _write(policy / name, value)
        for cpu in cluster.cpus:
            _write(cpu_dir / f"cpu{cpu}" / "online", 1)
            _symlink(cpu_dir / f"cpu{cpu}" / "cpufreq", policy)

    devfreq = root / clocks.gpu_devfreq_path
    gpu_device = devfreq.parent.parent  # .../17000000.gv11b/devfreq/17000000.gv11b -> the device
    gpu_lo, gpu_hi = clocks.gpu_available_hz[0], clocks.gpu_available_hz[-1]
    for name, value in {
        "available_frequencies": " ".join(map(str, clocks.gpu_available_hz)),
        "available_governors": "wmark_active nvhost_podgov userspace performance simple_ondemand",
        "governor": clocks.gpu_governor,
        "min_freq": gpu_lo,
        "max_freq": gpu_hi,
        "cur_freq": gpu_hi,
        "target_freq": gpu_hi,
    }.items():
        _write(devfreq / name, value)
    _symlink(devfreq / "device", gpu_device)
    _write(gpu_device / "of_node" / "name", clocks.gpu_of_node_name)
    _write(gpu_device / "load", 0)
    _write(gpu_device / "railgate_enable", 1)
    _symlink(root / paths.DEVFREQ_CLASS_DIR / devfreq.name, devfreq)

    emc = root / paths.EMC_CLK_DIR
    emc_lo, emc_hi = clocks.emc_available_hz[0], clocks.emc_available_hz[-1]
    for name, value in {"rate": emc_hi, "min_rate": emc_lo, "max_rate": emc_hi, "mrq_rate_locked": 0}.items():
        _write(emc / name, value)
    _write(root / paths.EMC_ISO_CAP, emc_hi)

    hwmon = root / paths.I2C_DEVICES_DIR / INA3221_DEVICE / "hwmon" / "hwmon1"
    _write(hwmon.parent.parent / "name", "ina3221")
    for channel, rail in enumerate(DEFAULT_RAILS, start=1):
        _write(hwmon / f"in{channel}_label", rail)
        _write(hwmon / f"in{channel}_input", 5000 if rail == "VDD_IN" else 1000)  # mV
        _write(hwmon / f"curr{channel}_input", 0)  # mA
    for index, zone in enumerate(DEFAULT_THERMAL_ZONES):
        _write(root / paths.THERMAL_DIR / f"thermal_zone{index}" / "type", zone)
        _write(root / paths.THERMAL_DIR / f"thermal_zone{index}" / "temp", 40000)  # milli-degC

    n_cpus = sum(len(c.cpus) for c in clocks.cpu_clusters)
    stat_lines = ["cpu  0 0 0 0 0 0 0 0 0 0"] + [f"cpu{i} 0 0 0 0 0 0 0 0 0 0" for i in range(n_cpus)]
    _write(root / paths.PROC_STAT, "\n".join(stat_lines))
    return root
