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

from rich.console import Console
from rich.live import Live

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


def system_nodes(args: argparse.Namespace, sysfs_root: Path, simulated: bool) -> list[NodeProcess]:
    monitor_source = "simulation" if simulated else args.hardware_source
    return [
        NodeProcess("camera_node", "camera_node", {"rate_hz": args.camera_rate_hz}),
        NodeProcess("inference_node", "inference_node", {"model_config": args.model_config, "backend": args.backend}),
        NodeProcess("resource_manager_node", "resource_manager_node", {"policy": args.policy, "platform": args.platform}),
        NodeProcess("dvfs_node", "dvfs_node", {"sysfs_root": str(sysfs_root), "platform": args.platform}),
        NodeProcess("hardware_monitor_node", "hardware_monitor_node",
                    {"sysfs_root": str(sysfs_root), "platform": args.platform, "source": monitor_source}),
    ]


def start_system(args: argparse.Namespace, echo: bool) -> tuple[NodeGroup, Path, bool]:
    sysfs_root, simulated = resolve_sysfs_root(args.sysfs_root, args.platform)
    where = f"a simulated {args.platform} sysfs tree at {sysfs_root}" if simulated else f"the clocks under {sysfs_root}"
    console.print(f"[bold]starting dyndnn[/bold] on {where}")
    show = (lambda name, line: console.print(f"[dim]\\[{name}][/dim] {line}", highlight=False)) if echo else None
    log_dir = Path(tempfile.mkdtemp(prefix="dyndnn_logs_"))
    console.print(f"node logs: {log_dir}")
    group = NodeGroup(system_nodes(args, sysfs_root, simulated), params_file=config_dir() / "dyndnn.yaml",
                      on_line=show, log_dir=log_dir)
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
        p.add_argument("--sysfs-root", default="auto", help="'/' on a Jetson; 'auto' = '/' if it has clock files, else a new simulated tree")
        p.add_argument("--platform", default="xavier_nx", help="board description (config/platforms/<name>.yaml)")
        p.add_argument("--policy", default="hierarchical", help="hierarchical, subnet_only, dvfs_only or static")
        p.add_argument("--model-config", default="groupconv_fashion",
                       help="config/models/<name>.yaml")
        p.add_argument("--backend", default="torch", help="torch, tensorrt or simulation")
        p.add_argument("--hardware-source", default="auto", help="auto, jtop, sysfs or simulation")
        p.add_argument("--camera-rate-hz", type=float, default=10.0)

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
    demo.add_argument("--skip-tour", action="store_true", help="skip the group-conv model tour")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
