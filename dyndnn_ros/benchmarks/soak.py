# SPDX-License-Identifier: Apache-2.0
"""Soak and load: the whole system on the simulated Xavier NX with many applications at high rates.

    python -m dyndnn_ros.benchmarks.soak [--duration-s 600] [--apps 8] [--target-rate-hz 100]
                                         [--camera-fps 100] [--out build/bench/soak.json]

Starts the simulated board, per application a camera (small frames) and an inference node
(simulation back end, published Xavier NX GPU profile), the resource manager, the DVFS node and the
hardware monitor. Each application publishes its target through its own latched publisher, every
target a new message (own stamp), alternating between two latency limits every second so the
targets in force change too. Two phases, measured in the same run:

- baseline (`--baseline-s`): the same system with targets at 1 Hz per application;
- load (`--duration-s`): targets at `--target-rate-hz` per application.

Figures (written to `--out` as JSON and beside it as Markdown):

- control-timer lateness of the manager (ManagerStatus.control_lateness_ms): p50, p99, max, and the
  control periods that were missed outright, per phase;
- memory: RSS of every process sampled every `--rss-period-s`; slope (MB/min, least squares) over
  the load phase after its first quarter (start-up allocations), and the first and last sample;
- targets: published, answered (a TargetStatus for that app and stamp seen by this process), and
  lost = applications whose LAST target is not the one the manager has in force SETTLE_S after the
  load stops (superseded targets may be dropped by design: depth-1 latched publishers), and how
  long after the load every last target was in force;
- frames per second served per application, and whether every node is still alive at the end.

It is a benchmark, not a test: it asserts nothing; on a loaded machine its figures say so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import psutil
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from dyndnn_ros.bringup import NodeGroup, NodeProcess
from dyndnn_ros.cli.ros_client import BackgroundSpinner
from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson
from dyndnn_ros.msg import InferenceStats, ManagerStatus, PerformanceTarget, TargetStatus
from dyndnn_ros.nodes import common
from dyndnn_ros.platforms.description import load_platform
from dyndnn_ros.simulation.sysfs_board import board_process

PROFILE = "dynamic_ofa_xavier_nx_gpu"
LATENCY_LIMITS_MS = (70.0, 120.0)
"""each app alternates between these every second: the targets in force change during the run"""
SETTLE_S = 60.0
"""a last target not in force this long after the load stops counts as lost"""
STARTUP_S = 120.0
DEEP = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10_000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def system(
    root: Path, apps: int, camera_fps: float, platform_name: str, control_period_s: float
) -> list[NodeProcess]:
    clusters = load_platform(platform_name).clocks.cluster_names
    nodes = [
        board_process(root, platform_name),
        NodeProcess(
            "resource_manager_node",
            "resource_manager_node",
            {"platform": platform_name, "control_period_s": control_period_s},
        ),
        NodeProcess(
            "dvfs_node", "dvfs_node", {"sysfs_root": str(root), "platform": platform_name}
        ),
        NodeProcess(
            "hardware_monitor_node",
            "hardware_monitor_node",
            {"sysfs_root": str(root), "platform": platform_name, "source": "simulation"},
        ),
    ]
    for i in range(apps):
        topic = f"app{i}/image_raw"
        nodes.append(
            NodeProcess(
                "camera_node",
                f"camera_app{i}",
                {"rate_hz": camera_fps, "width": 32, "height": 32},
                remaps={"image_raw": topic},
            )
        )
        nodes.append(
            NodeProcess(
                "inference_node",
                f"inference_app{i}",
                {
                    "backend": "simulation",
                    "model_id": f"model{i}",
                    "model_config": PROFILE,
                    "sysfs_root": str(root),
                    "platform": platform_name,
                    "cpu_cluster": clusters[i % len(clusters)],
                },
                remaps={"image_raw": topic},
            )
        )
    return nodes


class Observer:
    """Publishes the applications' targets and records what the system reports."""

    def __init__(self, apps: int):
        self.node = Node("soak_benchmark")
        self.lock = threading.Lock()
        self.publishers = [
            self.node.create_publisher(PerformanceTarget, common.TARGETS_TOPIC, common.TARGETS_QOS)
            for _ in range(apps)
        ]
        self.apps = [f"app{i}" for i in range(apps)]
        self.sent: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.last_sent: dict[str, PerformanceTarget] = {}
        self.answered: set[tuple[str, int, int]] = set()
        self.lateness: list[tuple[float, float]] = []
        self.manager: ManagerStatus | None = None
        self.frames: dict[str, int] = defaultdict(int)
        self.profiles_seen: set[str] = set()
        self.node.create_subscription(
            TargetStatus, common.TARGET_STATUS_TOPIC, self._on_verdict, DEEP
        )
        self.node.create_subscription(
            ManagerStatus, common.MANAGER_STATUS_TOPIC, self._on_manager, common.LATCHED_READER_QOS
        )
        self.node.create_subscription(
            InferenceStats, common.INFERENCE_STATS_TOPIC, self._on_stats, common.STATS_QOS
        )
        self.spinner = BackgroundSpinner(self.node)

    def _on_verdict(self, msg: TargetStatus) -> None:
        with self.lock:
            self.answered.add((msg.app_id, msg.target_stamp.sec, msg.target_stamp.nanosec))

    def _on_manager(self, msg: ManagerStatus) -> None:
        with self.lock:
            self.manager = msg
            self.lateness.append((time.monotonic(), float(msg.control_lateness_ms)))

    def _on_stats(self, msg: InferenceStats) -> None:
        with self.lock:
            self.frames[msg.model_id] += 1

    def publish_round(self, now: float) -> None:
        limit = LATENCY_LIMITS_MS[int(now) % 2]
        stamp = self.node.get_clock().now().to_msg()
        for i, (app, pub) in enumerate(zip(self.apps, self.publishers)):
            msg = PerformanceTarget(
                app_id=app, model_id=f"model{i}", max_latency_ms=limit, priority=i % 3
            )
            msg.header.stamp = stamp
            pub.publish(msg)
            with self.lock:
                self.sent[app].append((stamp.sec, stamp.nanosec))
                self.last_sent[app] = msg

    def close(self) -> None:
        self.spinner.close()


def drive(observer: Observer, rate_hz: float, duration_s: float, on_tick) -> None:
    """Publish a round of targets at `rate_hz` (absolute schedule, no drift) for `duration_s`."""
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < duration_s:
        observer.publish_round(time.monotonic())
        on_tick()
        k += 1
        delay = start + k / rate_hz - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def lateness_figures(samples: list[float], period_s: float, duration_s: float) -> dict[str, float]:
    ms = np.asarray(samples) if samples else np.asarray([np.nan])
    return {
        "p50_ms": float(np.nanpercentile(ms, 50)),
        "p99_ms": float(np.nanpercentile(ms, 99)),
        "max_ms": float(np.nanmax(ms)),
        "steps": len(samples),
        "missed_periods": max(0, int(duration_s / period_s) - len(samples)),
    }


def rss_figures(series: dict[str, list[tuple[float, float]]], start: float) -> dict[str, dict]:
    out = {}
    for name, samples in series.items():
        kept = [(t, mb) for t, mb in samples if t >= start]
        if len(kept) >= 3:
            t, mb = np.asarray(kept).T
            slope = float(np.polyfit(t / 60.0, mb, 1)[0])
        else:
            slope = float("nan")
        out[name] = {
            "first_mb": samples[0][1] if samples else float("nan"),
            "last_mb": samples[-1][1] if samples else float("nan"),
            "slope_mb_per_min": slope,
        }
    return out


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="dyndnn_soak_"))
    root = create_simulated_jetson(work / "jetson", load_platform(args.platform))
    group = NodeGroup(
        system(root, args.apps, args.camera_fps, args.platform, args.control_period_s),
        log_dir=work,
        work_dir=work,
    )
    rss: dict[str, list[tuple[float, float]]] = defaultdict(list)
    rclpy.init()
    observer = Observer(args.apps)
    try:
        group.start()
        processes = {n.name: psutil.Process(n.process.pid) for n in group.nodes}
        models = {f"model{i}" for i in range(args.apps)}
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline and not models <= set(observer.frames):
            time.sleep(0.5)
        next_rss = [0.0]

        def sample_rss() -> None:
            now = time.monotonic()
            if now < next_rss[0]:
                return
            next_rss[0] = now + args.rss_period_s
            for name, proc in processes.items():
                try:
                    rss[name].append((now, proc.memory_info().rss / 2**20))
                except psutil.Error:
                    pass  # dead: reported under "alive"

        phases = {}
        for phase, rate, duration in (
            ("baseline", 1.0, args.baseline_s),
            ("load", args.target_rate_hz, args.duration_s),
        ):
            with observer.lock:
                observer.frames.clear()
                first = len(observer.lateness)
            t0 = time.monotonic()
            drive(observer, rate, duration, sample_rss)
            elapsed = time.monotonic() - t0
            with observer.lock:
                late = [ms for _, ms in observer.lateness[first:]]
                fps = {m: n / elapsed for m, n in sorted(observer.frames.items())}
            phases[phase] = {
                "target_rate_hz_per_app": rate,
                "duration_s": elapsed,
                "control_lateness": lateness_figures(late, args.control_period_s, elapsed),
                "frames_per_s": fps,
                "start": t0,
            }
        settle_start = time.monotonic()
        while True:  # until each app's last target is the one in force, or SETTLE_S
            with observer.lock:
                in_force = {
                    t.app_id: (t.header.stamp.sec, t.header.stamp.nanosec)
                    for t in (observer.manager.targets if observer.manager else [])
                }
                last = {
                    app: (m.header.stamp.sec, m.header.stamp.nanosec)
                    for app, m in observer.last_sent.items()
                }
            if all(in_force.get(app) == stamp for app, stamp in last.items()):
                break
            if time.monotonic() - settle_start > SETTLE_S:
                break
            time.sleep(0.25)
        settled_after = time.monotonic() - settle_start
        with observer.lock:
            sent = sum(len(v) for v in observer.sent.values())
            answered = sum(
                1
                for app, stamps in observer.sent.items()
                for s in stamps
                if (app, *s) in observer.answered
            )
        alive = group.running()
        load_start = phases["load"]["start"] + args.duration_s / 4
        result = {
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpus": psutil.cpu_count(),
            "load_average": list(psutil.getloadavg()),
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "phases": {
                name: {k: v for k, v in p.items() if k != "start"} for name, p in phases.items()
            },
            "targets": {
                "published": sent,
                "answered": answered,
                "last_sent_stamp": last,
                "in_force_stamp": in_force,
                "last_targets_answered": sum(
                    (app, *last[app]) in observer.answered for app in last
                ),
                "lost_last_targets": sorted(app for app in last if in_force.get(app) != last[app]),
                "in_force_after_s": settled_after,
            },
            "rss": rss_figures(rss, load_start),
            "alive": sorted(alive),
            "dead": sorted(n.name for n in group.nodes if n.name not in alive),
        }
    finally:
        observer.close()
        rclpy.try_shutdown()
        group.stop()
        group.remove_work_dir()
    return result


def markdown(result: dict) -> str:
    lines = [
        f"# Soak benchmark ({result['created']}, {result['host']}, {result['cpus']} CPUs, "
        f"load average {', '.join(f'{x:.1f}' for x in result['load_average'])})",
        "",
        "| phase | targets/s per app | duration s | control lateness p50 / p99 / max ms "
        "| missed periods | mean frames/s per app |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, p in result["phases"].items():
        late = p["control_lateness"]
        fps = np.mean(list(p["frames_per_s"].values())) if p["frames_per_s"] else float("nan")
        lines.append(
            f"| {name} | {p['target_rate_hz_per_app']:g} | {p['duration_s']:.0f} | "
            f"{late['p50_ms']:.1f} / {late['p99_ms']:.1f} / {late['max_ms']:.1f} | "
            f"{late['missed_periods']} | {fps:.1f} |"
        )
    targets = result["targets"]
    lines += [
        "",
        f"Targets: {targets['published']} published, {targets['answered']} answered here "
        f"({100 * targets['answered'] / max(1, targets['published']):.1f} %; the verdict topic "
        "keeps the last 100, so a reader that falls behind misses some); last target of each app "
        f"answered: {targets['last_targets_answered']}/{len(targets['last_sent_stamp'])}, not in "
        f"force {SETTLE_S:g} s after the load for: {targets['lost_last_targets'] or 'none'} (all "
        f"in force {targets['in_force_after_s']:.1f} s after the load).",
        "",
        f"Nodes alive at the end: {len(result['alive'])}; dead: {result['dead'] or 'none'}.",
        "",
        "| process | RSS first MB | RSS last MB | slope over the load phase MB/min |",
        "|---|---:|---:|---:|",
    ]
    for name, r in sorted(result["rss"].items()):
        lines.append(
            f"| {name} | {r['first_mb']:.1f} | {r['last_mb']:.1f} | {r['slope_mb_per_min']:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration-s", type=float, default=600.0, help="load phase length")
    parser.add_argument(
        "--baseline-s", type=float, default=60.0, help="baseline phase length (1 target/s)"
    )
    parser.add_argument("--apps", type=int, default=8)
    parser.add_argument(
        "--target-rate-hz", type=float, default=100.0, help="targets per second per app"
    )
    parser.add_argument("--camera-fps", type=float, default=100.0)
    parser.add_argument("--control-period-s", type=float, default=0.5)
    parser.add_argument("--rss-period-s", type=float, default=5.0)
    parser.add_argument("--platform", default="xavier_nx")
    parser.add_argument("--out", type=Path, default=Path("build/bench/soak.json"))
    args = parser.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    args.out.with_suffix(".md").write_text(report)
    print(report)
    print(f"written: {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
