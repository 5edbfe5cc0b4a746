# SPDX-License-Identifier: Apache-2.0
"""Where the package's data lives: the source checkout when run from one, else share/dyndnn_ros."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

PACKAGE = "dyndnn_ros"
SOURCE_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=None)
def share_dir() -> Path:
    """The source checkout holding this module, or share/dyndnn_ros of the ROS install that holds
    it."""
    if (SOURCE_ROOT / "config").is_dir() and (SOURCE_ROOT / "package.xml").is_file():
        return SOURCE_ROOT
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE))


def config_dir() -> Path:
    return share_dir() / "config"
