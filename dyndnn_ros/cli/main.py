"""`dyndnn`: run and talk to the dyndnn system from a shell.

    dyndnn up                         start every node (simulated Xavier NX when this is no Jetson)
    dyndnn target --app tracker --model digits --max-latency-ms 2 --min-accuracy 0.9
    dyndnn status                     live view of targets, sub-networks, clocks, latency, power
    dyndnn demo                       the walking-skeleton tour: target -> switch -> stats, DVFS -> clock files
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from dyndnn_ros import system
from dyndnn_ros.bringup import NodeGroup, NodeProcess
from dyndnn_ros.hardware import sysfs_paths
from dyndnn_ros.hardware.simulated_tree import create_simulated_jetson
from dyndnn_ros.paths import config_dir
from dyndnn_ros.platforms.description import load_platform

console = Console()


def board_has_clock_files(root: Path) -> bool:
    return (root / sysfs_paths.CPUFREQ_DIR).is_dir() and any((root / sysfs_paths.DEVFREQ_CLASS_DIR).glob("*"))


def resolve_sysfs_root(requested: str, platform: str) -> tuple[Path, bool]:
    """The root to run on, and whether it is a simulated tree made for this run."""
    if requested != "auto":
        return Path(requested), False
    if board_has_clock_files(Path("/")):
        return Path("/"), False
    root = Path(tempfile.mkdtemp(prefix=f"dyndnn_sim_{platform}_"))
    create_simulated_jetson(root, load_platform(platform))
    return root, True


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


def start_system(args: argparse.Namespace, echo: bool) -> tuple[NodeGroup, Path, bool]:
    sysfs_root, simulated = resolve_sysfs_root(args.sysfs_root, args.platform)
    where = f"a simulated {args.platform} sysfs tree at {sysfs_root}" if simulated else f"the clocks under {sysfs_root}"
    console.print(f"[bold]starting dyndnn[/bold] on {where}")
    # escape(): a log line's own "[node_name]" is text, not rich markup
    show = (lambda name, line: console.print(f"[dim]\\[{name}][/dim] {escape(line)}",
                                             highlight=False)) if echo else None
    log_dir = Path(tempfile.mkdtemp(prefix="dyndnn_logs_"))
    console.print(f"node logs and parameters: {log_dir}")
    group = NodeGroup(system_nodes(args, sysfs_root, simulated, log_dir), on_line=show,
                      log_dir=log_dir)
    return group.start(), sysfs_root, simulated


def cmd_up(args: argparse.Namespace) -> int:
    group, _, _ = start_system(args, echo=True)
    try:
        deadline = time.monotonic() + args.duration if args.duration else None
        while group.running() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        codes = group.stop()
        console.print(f"stopped: {codes}")
    return 0 if all(code == 0 for code in codes.values()) else 1


def cmd_target(args: argparse.Namespace) -> int:
    from dyndnn_ros.cli.ros_client import DyndnnClient
    from dyndnn_ros.policies import GoalError, PerformanceGoal

    try:  # the manager would reject it too; saying so here spares a round trip
        PerformanceGoal(args.app, args.model, args.max_latency_ms, args.min_accuracy, args.max_power_w,
                        args.max_energy_mj, args.priority).validate()
    except GoalError as exc:
        Console(stderr=True).print(f"dyndnn target: {exc}")
        return 2

    with DyndnnClient(node_name="dyndnn_target") as client:
        delivered = client.set_target(args.app, args.model, args.max_latency_ms, args.min_accuracy, args.max_power_w,
                                      args.max_energy_mj, args.priority, wait_for_manager_s=args.wait)
    if not delivered:
        console.print(f"[yellow]no resource manager answered within {args.wait:g} s; the target was published but may be lost[/yellow]")
        return 1
    console.print(f"target of app {args.app!r} for model {args.model!r} delivered to the resource manager")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from dyndnn_ros.cli.ros_client import DyndnnClient
    from dyndnn_ros.cli.status_view import render

    with DyndnnClient(node_name="dyndnn_status") as client:
        if args.once:
            client.wait_until(lambda: client.hardware is not None and bool(client.stats) and client.manager is not None,
                              args.duration or 3.0)
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
    parser = argparse.ArgumentParser(prog="dyndnn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    up.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = run until Ctrl-C)")
    up.set_defaults(func=cmd_up)

    target = sub.add_parser("target", help="publish a performance target for one application")
    target.add_argument("--app", required=True)
    target.add_argument("--model", required=True, help="model_id of the inference node")
    target.add_argument("--max-latency-ms", type=float, default=0.0)
    target.add_argument("--min-accuracy", type=float, default=0.0, help="fraction in [0, 1]")
    target.add_argument("--max-power-w", type=float, default=0.0)
    target.add_argument("--max-energy-mj", type=float, default=0.0)
    target.add_argument("--priority", type=int, default=0)
    target.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the resource manager")
    target.set_defaults(func=cmd_target)

    status = sub.add_parser("status", help="show the live system")
    status.add_argument("--once", action="store_true", help="print one snapshot and exit")
    status.add_argument("--duration", type=float, default=0.0)
    status.set_defaults(func=cmd_status)

    demo = sub.add_parser("demo", help="run the whole system on a simulated Jetson and show what it does")
    system_options(demo)
    demo.add_argument("--scenario", default="b_two_models", help="evaluation scenario to run live after the tour ('' = none)")
    demo.add_argument("--skip-tour", action="store_true", help="skip the digits-model tour")
    demo.set_defaults(func=cmd_demo)
    return parser


def with_parameter_file_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill every system option left out with the value the parameter file gives it."""
    if getattr(args, "params_file", None) is None:
        return args
    parameter_file = system.load_parameter_file(Path(args.params_file))
    for argument in system.ARGUMENTS:
        if getattr(args, argument.name) is None:
            setattr(args, argument.name, system.default_of(parameter_file, argument))
    return args


def main(argv: list[str] | None = None) -> None:
    args = with_parameter_file_defaults(build_parser().parse_args(argv))
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
