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


class ConfigNotFoundError(ValueError):
    """A configuration name or path that names no file."""


def config_path(kind: str, name_or_path: str | Path) -> Path:
    """Where a configuration of `kind` (models, platforms, profiles, scenarios, subnets) lives.

    A name without a suffix is config/<kind>/<name>.yaml. A file name is taken as given; a
    relative one that is not there is looked up in config/<kind>/ too, so a scenario can name
    its profile by file name. The path may not exist: `resolve_config` checks."""
    path = Path(name_or_path)
    if not path.suffix:
        return config_dir() / kind / f"{path}.yaml"
    if path.is_absolute() or path.is_file():
        return path
    shipped = config_dir() / kind / path
    return shipped if shipped.is_file() else path


def known_configs(kind: str) -> list[str]:
    """The names of the shipped configurations of `kind`: config/<kind>/*.yaml."""
    return sorted(p.stem for p in (config_dir() / kind).glob("*.yaml"))


def resolve_config(
    kind: str, name_or_path: str | Path, what: str, error: type[Exception] = ConfigNotFoundError
) -> Path:
    """The existing file `config_path` finds, else `error` saying where it looked and which
    names are known (`what` names one of the kind in the message, e.g. "scenario")."""
    path = config_path(kind, name_or_path)
    if not path.is_file():
        raise error(
            f"no {what} {str(name_or_path)!r} (looked at {path}); "
            f"known {what}s: {known_configs(kind)}"
        )
    return path
