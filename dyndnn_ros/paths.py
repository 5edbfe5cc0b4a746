"""Where the package's data lives: the installed share/ directory on a ROS install, else the source tree."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

PACKAGE = "dyndnn_ros"
SOURCE_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=None)
def share_dir() -> Path:
    """share/dyndnn_ros of the colcon install that holds this package, or the source checkout."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:  # plain Python use without ROS: the source tree is the data directory
        return SOURCE_ROOT
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset (no ROS environment sourced)
        return SOURCE_ROOT


def config_dir() -> Path:
    return share_dir() / "config"
