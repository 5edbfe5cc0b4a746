"""Where a Jetson keeps its clock, load and power files, relative to a root directory.

The root is `/` on a robot and a temporary directory holding a simulated tree here; every path the
package touches goes through these helpers, so the simulated and the real board share one code path.
"""
from __future__ import annotations

from pathlib import Path

CPU_DIR = "sys/devices/system/cpu"
CPUFREQ_DIR = f"{CPU_DIR}/cpufreq"
DEVFREQ_CLASS_DIR = "sys/class/devfreq"
EMC_CLK_DIR = "sys/kernel/debug/bpmp/debug/clk/emc"
EMC_ISO_CAP = "sys/kernel/nvpmodel_emc_cap/emc_iso_cap"
I2C_DEVICES_DIR = "sys/bus/i2c/devices"
THERMAL_DIR = "sys/class/thermal"
PROC_STAT = "proc/stat"
GPU_OF_NODE_NAMES = ("gv11b", "gp10b", "ga10b", "gpu")


class UnsafePathError(PermissionError):
    """A clock file resolved to a place outside the configured root (a symlink escape)."""


def inside_root(root: Path, path: Path) -> Path:
    """Resolve `path` and refuse it unless it stays under `root` (symlinks followed)."""
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise UnsafePathError(f"{path} resolves to {real}, outside the root {real_root}")
    return real


def read_text(path: Path) -> str:
    return path.read_text().strip()


def read_int(path: Path) -> int:
    return int(read_text(path).split()[0])


def read_ints(path: Path) -> list[int]:
    return [int(v) for v in read_text(path).split()]
