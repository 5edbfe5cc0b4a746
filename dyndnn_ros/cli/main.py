# SPDX-License-Identifier: Apache-2.0
"""`dyndnn`: run and talk to the dyndnn system from a shell.

dyndnn up                         start every node (simulated Xavier NX when this is no Jetson)
dyndnn target --app tracker --model classifier --max-latency-ms 2 --min-accuracy 0.9
dyndnn status                     live view of targets, sub-networks, clocks, latency, power
dyndnn demo                       the walking-skeleton tour: target -> switch -> stats, DVFS ->
clock files
dyndnn doctor                     on a robot: what will work, before anything is launched
"""
from __future__ import annotations

import argparse
import faulthandler
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from dyndnn_ros import system
from dyndnn_ros.bringup import NodeGroup, NodeProcess
from dyndnn_ros.hardware import sysfs_paths
from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson
from dyndnn_ros.simulation.sysfs_board import board_process
from dyndnn_ros.paths import config_dir
from dyndnn_ros.platforms.description import load_platform
from dyndnn_ros.hardware.detect import AUTO

console = Console()


def board_has_clock_files(root: Path) -> bool:
    return (root / sysfs_paths.CPUFREQ_DIR).is_dir() and any(
        (root / sysfs_paths.DEVFREQ_CLASS_DIR).glob("*")
    )


RUN_DIR_PREFIX = "dyndnn_up_"
LAUNCHER_PID_FILE = "launcher.pid"


def remove_abandoned_run_dirs(parent: Path) -> list[Path]:
    """Run folders of launchers that died without cleaning up (SIGKILL): their nodes died with
    them (PR_SET_PDEATHSIG), so nothing uses the folder any more."""
    removed = []
    for run_dir in parent.glob(f"{RUN_DIR_PREFIX}*"):
        try:
            pid = int((run_dir / LAUNCHER_PID_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours to judge
        if not Path(f"/proc/{pid}").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
            removed.append(run_dir)
    return removed


def new_run_dir() -> Path:
    """A temporary folder for this run's simulated tree and logs, named for its launcher."""
    remove_abandoned_run_dirs(Path(tempfile.gettempdir()))
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))
    (run_dir / LAUNCHER_PID_FILE).write_text(f"{os.getpid()}\n")
    return run_dir


SIMULATED_DEFAULT_PLATFORM = "xavier_nx"


def resolve_sysfs_root(requested: str, platform: str, run_dir: Path) -> tuple[Path, bool]:
    """The root to run on, and whether it is a simulated tree made for this run."""
    if requested != "auto":
        return Path(requested), False
    if board_has_clock_files(Path("/")):
        return Path("/"), False
    simulated = simulated_platform(platform)
    return create_simulated_jetson(run_dir / f"sim_{simulated}", load_platform(simulated)), True


def simulated_platform(platform: str) -> str:
    """The board to simulate where there is none: the one asked for, the Xavier NX for `auto` (the
    nodes then detect it from the tree's /proc/device-tree/model, as they would on the robot)."""
    return SIMULATED_DEFAULT_PLATFORM if platform == AUTO else platform


def system_nodes(args: argparse.Namespace, sysfs_root: Path, simulated: bool,
                 log_dir: Path) -> list[NodeProcess]:
    """The nodes of dyndnn_ros/system.py, each with the parameters `ros2 launch` would give it,
    written to <log_dir>/<node>.params.yaml so a user can see what each node was started with."""
    parameter_file = system.load_parameter_file(Path(args.params_file))
    overrides = {name: getattr(args, name) for name in system.ARGUMENT_NAMES}
    overrides["sysfs_root"] = str(sysfs_root)
    if simulated:
        overrides["hardware_source"] = "simulation"
    nodes = []
    for name in system.NODES:
        if name == "camera_node" and args.no_camera:
            continue
        params_file = log_dir / f"{name}.params.yaml"
        parameters = system.node_parameters(parameter_file, name, overrides)
        params_file.write_text(yaml.safe_dump({name: {"ros__parameters": parameters}}))
        nodes.append(NodeProcess(name, name, params_file=params_file))
    return nodes


def start_system(args: argparse.Namespace, echo: bool,
                 board: bool = False) -> tuple[NodeGroup, Path, bool]:
    """Start the nodes; with `board`, a simulated tree also gets the simulated board process."""
    run_dir = new_run_dir()
    sysfs_root, simulated = resolve_sysfs_root(args.sysfs_root, args.platform, run_dir)
    where = (f"a simulated {simulated_platform(args.platform)} sysfs tree at {sysfs_root}"
             if simulated else f"the clocks under {sysfs_root}")
    console.print(f"[bold]starting dyndnn[/bold] on {where}")
    # escape(): a log line's own "[node_name]" is text, not rich markup
    show = (lambda name, line: console.print(f"[dim]\\[{name}][/dim] {escape(line)}",
                                             highlight=False)) if echo else None
    log_dir = run_dir / "logs"
    log_dir.mkdir()
    console.print(f"node logs and parameters: {log_dir}")
    nodes = system_nodes(args, sysfs_root, simulated, log_dir)
    if simulated and board:
        nodes.append(board_process(sysfs_root, simulated_platform(args.platform)))
    group = NodeGroup(nodes, on_line=show, log_dir=log_dir, work_dir=run_dir)
    return group.start(), sysfs_root, simulated


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def cmd_up(args: argparse.Namespace) -> int:
    # What `kill`, `timeout`, `docker stop`, systemd and a closed terminal send all mean "stop":
    # end the wait below, then stop the nodes in order. Installed before the nodes start, so no
    # signal can end the launcher between the two; SIG_IGN inherited from a non-interactive
    # shell (`dyndnn up &`) is overridden too.
    stop = threading.Event()
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: stop.set())
    group, _, _ = start_system(args, echo=True, board=True)
    try:
        deadline = time.monotonic() + args.duration if args.duration else None
        while (group.running() and not stop.is_set()
               and (deadline is None or time.monotonic() < deadline)):
            stop.wait(0.2)
    finally:
        codes = group.stop()
        console.print(f"stopped: {codes}")
        if args.keep_temp:
            console.print(f"kept {group.work_dir}")
        else:
            group.remove_work_dir()
    return 0 if all(code == 0 for code in codes.values()) else 1


VERDICT_STYLE = {1: "green", 2: "yellow", 3: "red", 4: "green", 5: "red"}
VERDICT_NAME = {1: "accepted", 2: "parked", 3: "rejected", 4: "withdrawn", 5: "expired"}


def show_verdict(verdict) -> None:
    style = VERDICT_STYLE.get(verdict.state, "red")
    name = VERDICT_NAME.get(verdict.state, f"state {verdict.state}")
    console.print(f"[{style}]target of app {verdict.app_id!r} {name}[/{style}]: {verdict.reason}",
                  highlight=False)


def cmd_target(args: argparse.Namespace) -> int:
    """Exit status: 0 accepted, parked or withdrawn; 1 rejected or no answer; 2 invalid."""
    from dyndnn_ros.cli.ros_client import DyndnnClient
    from dyndnn_ros.msg import TargetStatus
    from dyndnn_ros.policies import GoalError, PerformanceGoal

    if not args.clear and not args.model:
        Console(stderr=True).print("dyndnn target: --model is required (or --clear to withdraw)")
        return 2
    try:  # the manager would reject it too; saying so here spares a round trip
        if not args.clear:
            PerformanceGoal(args.app, args.model, args.max_latency_ms, args.min_accuracy,
                            args.max_power_w, args.max_energy_mj, args.priority).validate()
    except GoalError as exc:
        Console(stderr=True).print(f"dyndnn target: {exc}")
        return 2

    stop = threading.Event()
    if args.keep_alive:
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda signum, _frame: stop.set())
    with DyndnnClient(node_name="dyndnn_target") as client:
        if args.clear:
            verdict = client.clear_target(args.app, wait_for_manager_s=args.wait)
        else:
            verdict = client.set_target(args.app, args.model, args.max_latency_ms,
                                        args.min_accuracy, args.max_power_w, args.max_energy_mj,
                                        args.priority, wait_for_manager_s=args.wait)
        if verdict is None:
            console.print(f"[yellow]no resource manager answered within {args.wait:g} s"
                          + ("; the target stays published while this runs" if args.keep_alive else
                             "; the target was published but may be lost") + "[/yellow]")
        else:
            show_verdict(verdict)
        if args.keep_alive and (verdict is None or verdict.state != TargetStatus.STATE_REJECTED):
            hold_target(client, args.app, stop)
    return 0 if verdict is not None and verdict.state != TargetStatus.STATE_REJECTED else 1


def hold_target(client, app: str, stop: threading.Event) -> None:
    """Keep the latched publisher alive, so a manager that (re)starts later gets the target; show
    every later verdict on it (a restarted manager answers again). Until SIGINT, SIGTERM or
    SIGHUP."""
    console.print("holding the target (latched) until Ctrl-C or SIGTERM")

    def answers() -> dict:
        with client.lock:
            return {(v.header.stamp.sec, v.header.stamp.nanosec): v
                    for v in client.verdicts if v.app_id == app}

    shown = set(answers())
    while not stop.wait(0.2):
        for key, verdict in answers().items():
            if key not in shown:
                shown.add(key)
                show_verdict(verdict)


def cmd_status(args: argparse.Namespace) -> int:
    from dyndnn_ros.cli.ros_client import DyndnnClient
    from dyndnn_ros.cli.status_view import render

    with DyndnnClient(node_name="dyndnn_status") as client:
        if args.once:
            client.wait_until(
                lambda: (
                    client.hardware is not None
                    and bool(client.stats)
                    and client.manager is not None
                ),
                args.duration or 3.0,
            )
            console.print(render(client))
            return 0
        deadline = time.monotonic() + args.duration if args.duration else None
        try:
            with Live(render(client), console=console, refresh_per_second=4) as live:
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(0.25)
                    live.update(render(client))
        except KeyboardInterrupt:
            pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dyndnn_ros.cli.demo import run_demo

    return run_demo(args, start_system, console)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dyndnn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def system_options(p: argparse.ArgumentParser) -> None:
        # The same arguments as `ros2 launch dyndnn_ros dyndnn.launch.py` (dyndnn_ros/system.py);
        # one left out keeps the value of --params-file.
        p.add_argument("--params-file", default=str(config_dir() / "dyndnn.yaml"),
                       help="ROS 2 parameter file of every node")
        p.add_argument("--no-camera", action="store_true",
                       help="do not start the camera source (your driver publishes image_raw)")
        for argument in system.ARGUMENTS:
            if argument.name == "sysfs_root":
                p.add_argument("--sysfs-root", default="auto",
                               help="'/' on a Jetson; 'auto' = '/' if it has clock files, "
                                    "else a new simulated tree")
            else:
                p.add_argument("--" + argument.name.replace("_", "-"), default=None,
                               help=argument.description)

    up = sub.add_parser("up", help="start every node; Ctrl-C stops them and restores the clocks")
    system_options(up)
    up.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after this many seconds (0 = run until Ctrl-C)",
    )
    up.add_argument("--keep-temp", action="store_true",
                    help="keep this run's temporary folder (simulated tree, node logs)")
    up.set_defaults(func=cmd_up)

    target = sub.add_parser("target", help="publish a performance target for one application")
    target.add_argument("--app", required=True)
    target.add_argument("--model", default="", help="model_id of the inference node")
    target.add_argument("--max-latency-ms", type=float, default=0.0)
    target.add_argument("--min-accuracy", type=float, default=0.0, help="fraction in [0, 1]")
    target.add_argument("--max-power-w", type=float, default=0.0)
    target.add_argument("--max-energy-mj", type=float, default=0.0)
    target.add_argument("--priority", type=int, default=0)
    target.add_argument("--wait", type=float, default=10.0,
                        help="seconds to wait for the manager's verdict")
    target.add_argument("--clear", action="store_true", help="withdraw the app's target")
    target.add_argument("--keep-alive", action="store_true",
                        help="stay running, holding the latched target, so a manager that "
                             "starts or restarts later still gets it (until Ctrl-C or SIGTERM)")
    target.set_defaults(func=cmd_target)

    status = sub.add_parser("status", help="show the live system")
    status.add_argument("--once", action="store_true", help="print one snapshot and exit")
    status.add_argument("--duration", type=float, default=0.0)
    status.set_defaults(func=cmd_status)

    demo = sub.add_parser(
        "demo", help="run the whole system on a simulated Jetson and show what it does"
    )
    system_options(demo)
    demo.add_argument(
        "--scenario",
        default="b_two_models",
        help="evaluation scenario to run live after the tour ('' = none)",
    )
    demo.add_argument("--skip-tour", action="store_true", help="skip the group-conv model tour")
    demo.set_defaults(func=cmd_demo)

    from dyndnn_ros.cli.doctor import add_parser as add_doctor

    add_doctor(sub)
    return parser


def with_parameter_file_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill every system option left out with the value the parameter file gives it."""
    if getattr(args, "params_file", None) is None:
        return args
    parameter_file = system.load_parameter_file(Path(args.params_file))
    for argument in system.ARGUMENTS:
        if hasattr(args, argument.name) and getattr(args, argument.name) is None:
            setattr(args, argument.name, system.default_of(parameter_file, argument))
    return args


def main(argv: list[str] | None = None) -> None:
    faulthandler.enable()  # a crash in rclpy's C code shows every thread's stack, not just a code
    args = with_parameter_file_defaults(build_parser().parse_args(argv))
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
