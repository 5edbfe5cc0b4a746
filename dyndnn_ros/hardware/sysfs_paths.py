# SPDX-License-Identifier: Apache-2.0
"""Where a Jetson keeps its clock, load and power files, relative to a root directory.

The root is `/` on a robot and a temporary directory holding a simulated tree here; every path the
package touches goes through these helpers, so the simulated and the real board share one code
path.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

CPU_DIR = "sys/devices/system/cpu"
CPUFREQ_DIR = f"{CPU_DIR}/cpufreq"
DEVFREQ_CLASS_DIR = "sys/class/devfreq"
DEBUGFS_DIR = "sys/kernel/debug"
EMC_CLK_DIR = "sys/kernel/debug/bpmp/debug/clk/emc"
EMC_POSSIBLE_RATES = "sys/kernel/debug/bpmp/debug/emc/possible_rates"
EMC_ISO_CAP = "sys/kernel/nvpmodel_emc_cap/emc_iso_cap"
I2C_DEVICES_DIR = "sys/bus/i2c/devices"
THERMAL_DIR = "sys/class/thermal"
PROC_STAT = "proc/stat"
DEVICE_TREE_MODEL = "proc/device-tree/model"
NVPMODEL_CONF = "etc/nvpmodel.conf"
NVPMODEL_STATUS = "var/lib/nvpmodel/status"
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


def read_ints(path: Path) -> List[int]:
    return [int(v) for v in read_text(path).split()]


def find_file(path: Path) -> str:
    """'' if `path` is a readable file, else why not. Below a root-only directory (debugfs) even
    is_file() raises PermissionError for an unprivileged user; that is an answer, not a crash."""
    try:
        if path.is_file() and os.access(path, os.R_OK):
            return ""
        if not path.exists():
            return f"{path} is missing"
        return f"{path} is not readable by uid {os.geteuid()}"
    except PermissionError:
        return f"{path} cannot be reached by uid {os.geteuid()} (a directory above is root-only)"


def writable(path: Path) -> str:
    """'' if this process may write `path`, else why not."""
    if os.access(path, os.W_OK):
        return ""
    return f"{path} is not writable by uid {os.geteuid()} (run as root or grant write access)"
