# SPDX-License-Identifier: Apache-2.0
"""`dyndnn doctor`: on a robot, say what will work before anything is launched.

Reads the parameters the launch would use (config/dyndnn.yaml, or --params-file, with the
options on top) and checks, without writing anything: board and power mode, the clock files this
user may write, the jtop service, TensorRT and CUDA, engines, profiles and checkpoint of the
configured model, the ROS interfaces and the DDS discovery range. Each check prints one line:
OK, WARN (starts, but something will not be controlled or measured) or FAIL (a node would
exit at start). The exit status is 0 only if the configured launch would start.
"""

from __future__ import annotations

import argparse
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List

from dyndnn_ros import system
from dyndnn_ros.hardware import sysfs_paths
from dyndnn_ros.paths import ConfigNotFoundError, config_dir, config_path, resolve_config

OK, WARN, FAIL = "OK", "WARN", "FAIL"
JTOP_SOCKET = "run/jtop.sock"


@dataclass
class Finding:
    level: str
    check: str
    detail: str


def launch_parameters(params_file: Path, args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
    """node name -> the parameters `ros2 launch` would start it with (dyndnn_ros/system.py)."""
    parameter_file = system.load_parameter_file(params_file)
    overrides = {name: getattr(args, name, None) for name in system.ARGUMENT_NAMES}
    return {node: system.node_parameters(parameter_file, node, overrides) for node in system.NODES}


class Doctor:
    def __init__(self, params: Dict[str, Dict[str, Any]]):
        self.params = params
        self.findings: List[Finding] = []
        self.root = Path(params["dvfs_node"].get("sysfs_root", "/") or "/")
        self.platform = None

    def say(self, level: str, check: str, detail: str) -> None:
        self.findings.append(Finding(level, check, detail))

    def run(self) -> List[Finding]:
        for check in (
            self.interfaces,
            self.board,
            self.clocks,
            self.monitor,
            self.model,
            self.dds,
        ):
            try:
                check()
            except Exception as exc:  # a check that breaks is a finding, not a crash of the doctor
                self.say(FAIL, check.__name__, f"{type(exc).__name__}: {exc}")
        return self.findings

    def interfaces(self) -> None:
        try:
            importlib.import_module("dyndnn_ros.msg")
            importlib.import_module("rclpy")
        except ImportError as exc:
            self.say(
                FAIL, "ROS interfaces", f"{exc}: build the package and source install/setup.bash"
            )
            return
        self.say(OK, "ROS interfaces", "rclpy and dyndnn_ros messages import")

    def board(self) -> None:
        from dyndnn_ros.platforms.description import PlatformError, load_platform
        from dyndnn_ros.hardware.detect import AUTO, detect_platform
        from dyndnn_ros.platforms.model import PlatformModel

        name = str(self.params["dvfs_node"].get("platform", AUTO))
        try:
            found = detect_platform(self.root)
        except PlatformError as exc:
            found = None
            if name == AUTO:
                self.say(FAIL, "board", str(exc))
                return
            self.say(WARN, "board", f"not detected ({exc}); using platform {name!r} as configured")
        if found:
            detail = f"{found[1]}, power mode {found[2]} -> config/platforms/{found[0]}.yaml"
            if name not in (AUTO, found[0]):
                self.say(WARN, "board", f"{detail}, but platform {name!r} is configured")
            else:
                self.say(OK, "board", detail)
        chosen = found[0] if name == AUTO else name
        try:
            self.platform = load_platform(chosen)
            PlatformModel(self.platform)
        except (PlatformError, KeyError, TypeError, ValueError) as exc:
            self.say(FAIL, "platform model", f"{chosen}: {exc} (the resource manager needs it)")

    def clocks(self) -> None:
        from dyndnn_ros.hardware.sysfs_clocks import (
            ClockError,
            SysfsClockController,
            default_state_file,
        )

        dvfs = self.params["dvfs_node"]
        if dvfs.get("control", "sysfs") != "sysfs":
            self.say(OK, "clocks", f"control {dvfs.get('control')}: clocks set through jtop")
            return
        try:
            controller = SysfsClockController(self.root, self.platform)
        except ClockError as exc:
            self.say(FAIL, "clocks", f"{exc}: the DVFS node would exit at start")
            return
        domains = ", ".join(controller.describe()) or "none"
        self.say(
            OK if controller.describe() else WARN,
            "clocks",
            f"writable by uid {os.geteuid()}: {domains}",
        )
        for why in controller.unavailable.values():
            self.say(WARN, "clocks", f"not controlled: {why}")
        state = default_state_file(self.root, str(dvfs.get("state_dir", "")))
        if state.exists():
            self.say(
                WARN,
                "clocks",
                f"{state}: a DVFS node died with clocks pinned; the next start restores them",
            )

    def monitor(self) -> None:
        source = str(self.params["hardware_monitor_node"].get("source", "auto"))
        if source not in ("auto", "jtop"):
            self.say(OK, "hardware monitor", f"source {source}")
            return
        socket = self.root / JTOP_SOCKET
        try:
            importlib.import_module("jtop")
        except ImportError:
            level = FAIL if source == "jtop" else WARN
            self.say(
                level,
                "jtop",
                "jetson-stats is not installed (pip install jetson-stats); "
                + (
                    "the monitor would exit"
                    if level == FAIL
                    else "the monitor reads sysfs instead"
                ),
            )
            return
        if not socket.exists():
            self.say(
                WARN,
                "jtop",
                f"no {socket}: the jtop service is not running (sudo systemctl start jtop); "
                "the monitor reads sysfs instead",
            )
        elif not os.access(socket, os.R_OK | os.W_OK):
            self.say(
                WARN,
                "jtop",
                f"{socket} refuses uid {os.geteuid()}: add the user to group jtop; "
                "the monitor reads sysfs instead",
            )
        else:
            self.say(OK, "jtop", f"service socket {socket}")
        emc_problem = sysfs_paths.find_file(self.root / sysfs_paths.EMC_CLK_DIR / "rate")
        if emc_problem:
            self.say(WARN, "hardware monitor", f"EMC rate unreadable ({emc_problem}): reported as "
                     "0 unless jtop provides it")

    def model(self) -> None:
        inference = self.params["inference_node"]
        backend = str(inference.get("backend", "torch"))
        model_config = str(inference.get("model_config", "groupconv_digits"))
        device = str(inference.get("device", "") or ("cuda:0" if backend == "tensorrt" else "cpu"))
        if backend == "tensorrt":
            self._tensorrt(model_config, device, str(inference.get("engine_dir", "")))
        elif backend == "torch":
            self._torch(model_config, device, str(inference.get("checkpoint", "")))
        elif backend != "simulation":
            self.say(FAIL, "back end", f"unknown back end {backend!r}")
            return
        self._profile(backend, model_config, str(inference.get("profile", "")))

    def _cuda(self, device: str) -> bool:
        import torch

        if not device.startswith("cuda"):
            return True
        if not torch.cuda.is_available():
            self.say(
                FAIL,
                "CUDA",
                f"device {device} asked for, but torch {torch.__version__} sees no CUDA device",
            )
            return False
        self.say(
            OK,
            "CUDA",
            f"{torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}",
        )
        return True

    def _tensorrt(self, model_config: str, device: str, engine_dir: str) -> None:
        from dyndnn_ros.backends.base import BackendError
        from dyndnn_ros.backends.tensorrt_backend import read_manifest, resolve_engine_dir

        try:
            trt = importlib.import_module("tensorrt")
            self.say(OK, "TensorRT", f"tensorrt {getattr(trt, '__version__', '?')}")
        except ImportError:
            self.say(
                FAIL,
                "TensorRT",
                "the tensorrt Python package is missing (JetPack: python3-libnvinfer)",
            )
        if not device.startswith("cuda"):
            self.say(
                FAIL, "device", f"the tensorrt back end runs on a CUDA device, not {device!r}"
            )
        self._cuda(device)
        folder = resolve_engine_dir(engine_dir, model_config)
        try:
            manifest = read_manifest(folder)
        except BackendError as exc:
            self.say(FAIL, "engines", str(exc))
            return
        missing = [
            e["engine"] for e in manifest["subnets"] if not (folder / e["engine"]).is_file()
        ]
        if missing:
            self.say(FAIL, "engines", f"{folder}: missing {missing}")
        else:
            self.say(
                OK,
                "engines",
                f"{len(manifest['subnets'])} in {folder} "
                f"(TensorRT {manifest.get('tensorrt', '?')})",
            )
        self.engine_ids = [str(e["id"]) for e in manifest["subnets"]]

    def _torch(self, model_config: str, device: str, checkpoint: str) -> None:
        try:
            self.say(OK, "model", str(resolve_config("models", model_config, "model config")))
        except ConfigNotFoundError as exc:
            self.say(FAIL, "model", str(exc))
        if checkpoint and not Path(checkpoint).is_file():
            self.say(FAIL, "checkpoint", f"no checkpoint at {checkpoint}")
        elif not checkpoint:
            self.say(WARN, "checkpoint", "none set: the model runs with untrained random weights")
        self._cuda(device)

    def _profile(self, backend: str, model_config: str, profile: str) -> None:
        from dyndnn_ros.profiles import ProfileError, load_profile

        path = Path(profile) if profile else config_path("profiles", Path(model_config).stem)
        if not path.is_file():
            if backend == "tensorrt":
                self.say(
                    FAIL,
                    "profile",
                    f"none at {path}: the tensorrt back end needs one (set 'profile')",
                )
            else:
                self.say(OK, "profile", f"no file at {path}: measured at start-up")
            return
        try:
            ids = load_profile(path).ids
        except ProfileError as exc:
            self.say(FAIL, "profile", f"{path}: {exc}")
            return
        lacking = sorted(set(getattr(self, "engine_ids", [])) - set(ids))
        if lacking:
            self.say(FAIL, "profile", f"{path} lacks sub-networks {lacking} of the engines")
        else:
            self.say(OK, "profile", f"{path}: {len(ids)} sub-networks")

    def dds(self) -> None:
        domain = os.environ.get("ROS_DOMAIN_ID", "0 (default)")
        scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
        rmw = os.environ.get("RMW_IMPLEMENTATION", "the default RMW")
        detail = f"domain {domain}, discovery range {scope or 'SUBNET (default)'}, {rmw}"
        if scope in ("", "SUBNET"):
            self.say(
                WARN,
                "DDS",
                f"{detail}: every host on the subnet can command the clocks; "
                "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST keeps the nodes on this machine",
            )
        else:
            self.say(OK, "DDS", detail)


def cmd_doctor(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
    params = launch_parameters(
        Path(args.params_file) if args.params_file else config_dir() / "dyndnn.yaml", args
    )
    findings = Doctor(params).run()
    for f in findings:
        echo(f"{f.level:<4}  {f.check:<16} {f.detail}")
    failed = [f for f in findings if f.level == FAIL]
    echo(
        f"verdict: the launch would {'NOT start' if failed else 'start'}"
        f" ({len(failed)} failing, {sum(f.level == WARN for f in findings)} warnings)"
    )
    return 1 if failed else 0


def add_parser(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor", help="check, before launching, what will work on this machine"
    )
    doctor.add_argument(
        "--params-file",
        default=None,
        help="parameter file of the launch (default config/dyndnn.yaml)",
    )
    doctor.add_argument(
        "--sysfs-root", default=None, help="where the board's /sys, /proc, /etc live (default '/')"
    )
    for argument in system.ARGUMENTS:  # the launch file's arguments (dyndnn_ros/system.py)
        if argument.name != "sysfs_root":
            doctor.add_argument(f"--{argument.name.replace('_', '-')}", default=None,
                                help=argument.description)
    doctor.set_defaults(func=cmd_doctor)
