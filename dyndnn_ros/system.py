# SPDX-License-Identifier: Apache-2.0
"""The running system, defined once: its nodes, the arguments a user sets, how they reach them.

Both `launch/dyndnn.launch.py` (`ros2 launch`) and `dyndnn up` read this module, so the node list,
the user-facing arguments and their precedence cannot drift apart. Each node gets ONE parameter
dictionary: the parameter file's `/**` section, then its own section, then every argument the user
gave. Merging here, instead of handing rcl a file plus overrides, matters because rcl lets a
node-specific file entry beat a wildcard override, which silently dropped `policy:=...` before.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml

# In start order; they are stopped in reverse, so the DVFS node, which restores the clocks, stops
# after every node that could still ask for a change.
NODES = ("dvfs_node", "hardware_monitor_node", "resource_manager_node", "inference_node",
         "camera_node")


@dataclass(frozen=True)
class Argument:
    """A launch argument / `dyndnn up` option that sets parameters of one or more nodes."""

    name: str
    description: str
    parameters: Tuple[Tuple[str, str], ...]
    """(node, parameter) pairs it sets"""


ARGUMENTS = (
    Argument("model_config", "config/models/<name>.yaml or a path",
             (("inference_node", "model_config"),)),
    Argument("backend", "inference back end: torch, tensorrt or simulation",
             (("inference_node", "backend"),)),
    Argument("device", "torch device of the inference node, e.g. cpu or cuda:0",
             (("inference_node", "device"),)),
    Argument("checkpoint", "model checkpoint (torch) or engine folder (tensorrt)",
             (("inference_node", "checkpoint"),)),
    Argument("profile", "sub-network profile file; empty: measured at start-up",
             (("inference_node", "profile"),)),
    Argument("engine_dir", "tensorrt: folder of the engines (absolute, or in the package share)",
             (("inference_node", "engine_dir"),)),
    Argument("policy", "manager policy: hierarchical, subnet_only, dvfs_only or static",
             (("resource_manager_node", "policy"),)),
    Argument("control_period_s", "control period of the resource manager [s]",
             (("resource_manager_node", "control_period_s"),)),
    Argument("platform", "board description: config/platforms/<name>.yaml or a path",
             (("resource_manager_node", "platform"), ("dvfs_node", "platform"),
              ("hardware_monitor_node", "platform"), ("inference_node", "platform"))),
    Argument("sysfs_root", "where /sys lives: '/' on a Jetson, a simulated tree elsewhere",
             (("dvfs_node", "sysfs_root"), ("hardware_monitor_node", "sysfs_root"),
              ("resource_manager_node", "sysfs_root"), ("inference_node", "sysfs_root"))),
    Argument("watchdog_s", "DVFS node: restore the clocks when no command came for this long [s]",
             (("dvfs_node", "watchdog_s"),)),
    Argument("hardware_source", "hardware monitor source: auto, jtop, sysfs or simulation",
             (("hardware_monitor_node", "source"),)),
    Argument("camera_rate_hz", "frames per second of the camera source",
             (("camera_node", "rate_hz"),)),
)
ARGUMENT_NAMES = tuple(argument.name for argument in ARGUMENTS)


class SystemConfigError(ValueError):
    """A parameter file or argument the system cannot be started with."""


def load_parameter_file(path: Path) -> Dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SystemConfigError(f"cannot read the parameter file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SystemConfigError(f"{path} is not a ROS 2 parameter file (a mapping of node names)")
    return data


def _section_matches(key: str, node: str, namespace: str) -> int:
    """0: not this node's; 1: a wildcard section; 2: the node's own section."""
    key = key.strip("/")
    if key in ("**", "*"):
        return 1
    own = {node, f"**/{node}", f"{namespace.strip('/')}/{node}".strip("/")}
    return 2 if key in own else 0


def node_parameters(
    parameter_file: Mapping[str, Any],
    node: str,
    overrides: Mapping[str, Any],
    namespace: str = "",
) -> Dict[str, Any]:
    """The parameters `node` starts with: wildcard sections, its own section, then the overrides
    (argument name -> value; None or '' means "not given") for the parameters it owns."""
    merged: Dict[str, Any] = {}
    for rank in (1, 2):
        for key, section in parameter_file.items():
            if _section_matches(str(key), node, namespace) == rank:
                merged.update((section or {}).get("ros__parameters", {}) or {})
    unknown = set(overrides) - set(ARGUMENT_NAMES)
    if unknown:
        raise SystemConfigError(f"unknown argument(s) {sorted(unknown)}; known: {ARGUMENT_NAMES}")
    for argument in ARGUMENTS:
        value = overrides.get(argument.name)
        if value is None or value == "":
            continue
        for owner, parameter in argument.parameters:
            if owner == node:
                merged[parameter] = typed_like(merged.get(parameter), value, argument.name)
    return merged


def typed_like(current: Any, value: Any, name: str) -> Any:
    """A launch argument arrives as text: give it the type the parameter file uses, so a node
    that declared a double gets 1.0 for "1", and a bad number is caught here, argument named."""
    if not isinstance(value, str) or isinstance(current, str) or current is None:
        return value
    try:
        if isinstance(current, bool):
            lowered = value.lower()
            if lowered not in ("true", "false"):
                raise ValueError(value)
            return lowered == "true"
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    except ValueError:
        raise SystemConfigError(
            f"argument {name}:={value!r} is not a {type(current).__name__}") from None
    return value


def default_of(parameter_file: Mapping[str, Any], argument: Argument) -> Optional[Any]:
    """What the parameter file gives the argument's first parameter (shown in `--show-args`)."""
    node, parameter = argument.parameters[0]
    return node_parameters(parameter_file, node, {}).get(parameter)
