# SPDX-License-Identifier: Apache-2.0
"""Which board and power mode this is, for `platform: auto`.

The board is named by /proc/device-tree/model (NUL-terminated, e.g. "NVIDIA Jetson AGX Orin
Developer Kit"); the power mode by `nvpmodel -q` ("NV Power Mode: MAXN" then the id), or, where
that cannot run (no binary, a simulated tree), by nvpmodel's own record of it:
/var/lib/nvpmodel/status ("pmode:0002") and the mode names in /etc/nvpmodel.conf
("< POWER_MODEL ID=2 NAME=MODE_15W_6CORE >"). Each config/platforms/*.yaml says in `detect:`
which model and mode it describes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Tuple

from dyndnn_ros.hardware import sysfs_paths as paths
from dyndnn_ros.platforms.description import (
    PlatformDescription,
    PlatformError,
    known_platforms,
    load_platform,
)

AUTO = "auto"


def board_model(root: Path) -> str:
    try:
        return (
            (root / paths.DEVICE_TREE_MODEL)
            .read_bytes()
            .rstrip(b"\x00\n")
            .decode(errors="replace")
        )
    except OSError as exc:
        raise PlatformError(
            f"platform 'auto': no board model at {root / paths.DEVICE_TREE_MODEL} "
            f"({exc.strerror}); this is no Jetson: name the platform, one of {known_platforms()}"
        ) from exc


def _query_nvpmodel() -> Optional[str]:
    if not shutil.which("nvpmodel"):
        return None
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"NV Power Mode:\s*(\S+)", out)
    return found.group(1) if found else None


def _recorded_mode(root: Path) -> Optional[str]:
    try:
        status = (root / paths.NVPMODEL_STATUS).read_text()
        conf = (root / paths.NVPMODEL_CONF).read_text()
    except OSError:
        return None
    mode_id = re.search(r"pmode:\s*0*(\d+)", status)
    if not mode_id:
        return None
    for number, name in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", conf):
        if int(number) == int(mode_id.group(1)):
            return name
    return None


def power_mode(root: Path) -> Optional[str]:
    """The nvpmodel mode name, or None where nvpmodel is absent."""
    mode = _query_nvpmodel() if Path(root).resolve() == Path("/") else None
    return mode or _recorded_mode(root)


def detect_platform(root: str | Path = "/") -> Tuple[str, str, Optional[str]]:
    """(platform name, board model, power mode) of the board whose files are under `root`."""
    root = Path(root)
    model, mode = board_model(root), power_mode(root)
    described = []
    for name in known_platforms():
        rule = load_platform(name).raw.get("detect") or {}
        if not rule:
            continue
        described.append(f"{rule['model']} / {rule['nvpmodel']} -> {name}")
        if str(rule["model"]) in model and str(rule["nvpmodel"]) == mode:
            return name, model, mode
    raise PlatformError(
        f"platform 'auto': no description for {model!r} in power mode {mode!r}; described: "
        f"{described}. Write config/platforms/<name>.yaml with a `detect:` entry, "
        "or set platform:=<name>"
    )


def resolve_platform(name: str, root: str | Path = "/") -> PlatformDescription:
    """`name`'s description, or for 'auto' that of the board detected under `root`."""
    if name == AUTO:
        name = detect_platform(root)[0]
    return load_platform(name)
