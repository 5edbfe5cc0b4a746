# SPDX-License-Identifier: Apache-2.0
"""Run an evaluation scenario through the real ROS system, in real time, on the simulated board.

The same scenario files the faster-than-real-time evaluation uses (config/scenarios/*.yaml) drive
the real nodes here: a simulated Xavier NX (simulation/sysfs_board.py) owns a sysfs tree, one
camera and one inference node (simulation back end) per application, the resource manager, the DVFS
node writing the tree, and the hardware monitor reading it. Targets are published on the targets
topic at each phase's time, and a background GPU job is set through the board's side file. The
figures (energy, latency, late frames, accuracy) are computed from what the nodes publish.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dyndnn_ros.bringup import NodeGroup, NodeProcess
from dyndnn_ros.cli.ros_client import DyndnnClient
from dyndnn_ros.evaluation.report import Metrics, frame_metrics
from dyndnn_ros.evaluation.scenario import Scenario
from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson
from dyndnn_ros.platforms.description import load_platform
from dyndnn_ros.simulation.simulator import Frame
from dyndnn_ros.simulation.sysfs_board import SIM_DIR, board_process
from dyndnn_ros.profiles import save_profile

STARTUP_TIMEOUT_S = 60.0
WARM_FRAMES = 10
"""frames each model runs before the scenario's timeline starts"""


@dataclass
class RosScenarioRun:
    """Start the system for `scenario`, drive its phases, and measure it."""

    scenario: Scenario
    policy: str = "hierarchical"
    platform: str = "xavier_nx"
    work_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="dyndnn_scenario_"))
    )
    echo: Callable[[str, str], None] | None = None

    def __post_init__(self) -> None:
        self.root = self.work_dir / "jetson"
        self.log_dir = self.work_dir / "logs"
        board = load_platform(self.platform)
        self.scenario.check_board(board.name, board.clocks.cluster_names)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        create_simulated_jetson(self.root, board)
        self.group: NodeGroup | None = None
        self.t0 = 0.0
        self.power_samples: list[tuple[float, float]] = []
        self.host_overhead_ms: dict[str, float] = {}
        """app -> mean host work per frame its inference node reported (set by `metrics`)"""

    def nodes(self) -> list[NodeProcess]:
        period = self.scenario.control_period_s
        nodes = [
            board_process(self.root, self.platform),
            NodeProcess(
                "resource_manager_node",
                "resource_manager_node",
                {"policy": self.policy, "platform": self.platform, "control_period_s": period},
            ),
            NodeProcess(
                "dvfs_node",
                "dvfs_node",
                {
                    "sysfs_root": str(self.root),
                    "platform": self.platform,
                    "watchdog_s": max(5.0, 10 * period),
                },
            ),
            NodeProcess(
                "hardware_monitor_node",
                "hardware_monitor_node",
                {
                    "sysfs_root": str(self.root),
                    "platform": self.platform,
                    "source": "simulation",
                    "period_s": min(0.25, period),
                },
            ),
        ]
        for app in self.scenario.apps:
            topic = f"{app.app}/image_raw"
            profile_file = save_profile(
                app.profile, self.work_dir / "profiles" / f"{app.profile.model}.yaml"
            )
            # the simulated back end only times frames: the bundled digits need no dataset
            camera = {"rate_hz": app.fps, "width": 32, "height": 32, "dataset": "digits"}
            nodes.append(NodeProcess("camera_node", f"camera_{app.app}", camera,
                                     remaps={"image_raw": topic}))
            nodes.append(
                NodeProcess(
                    "inference_node",
                    f"inference_{app.app}",
                    {
                        "backend": "simulation",
                        "model_id": app.profile.model,
                        "model_config": str(profile_file),
                        "sysfs_root": str(self.root),
                        "platform": self.platform,
                        "cpu_cluster": app.cluster,
                    },
                    remaps={"image_raw": topic},
                )
            )
        return nodes

    def start(self, client: DyndnnClient) -> None:
        self.group = NodeGroup(self.nodes(), on_line=self.echo, log_dir=self.log_dir).start()
        models = {a.profile.model for a in self.scenario.apps}
        if not client.wait_until(lambda: models <= set(client.profiles), STARTUP_TIMEOUT_S):
            raise RuntimeError(
                f"models {sorted(models - set(client.profiles))} never announced; logs in "
                f"{self.log_dir}"
            )
        for app in self.scenario.apps:  # matched now, so targets go out at their phase's time
            client.target_publisher(app.app, wait_for_manager_s=STARTUP_TIMEOUT_S)
        # The scenario's apps run from its start: the timeline begins once every model is running
        # frames (a node's first frames, while the board still idles at boot clocks, took up to
        # 0.4 s each, and the late frames of that warm-up were counted as the manager's).
        def running() -> bool:
            with client.lock:
                return all(len(client.stats.get(m, ())) >= WARM_FRAMES for m in models)

        if not client.wait_until(running, STARTUP_TIMEOUT_S):
            raise RuntimeError(f"models {sorted(models)} ran no frames; logs in {self.log_dir}")

    def drive(
        self,
        client: DyndnnClient,
        on_tick: Callable[[float], None] | None = None,
        tick_s: float = 0.25,
    ) -> None:
        """Publish each phase's targets and background load at its time, for the scenario's
        duration."""
        self.t0 = time.monotonic()
        applied_phase = None
        duration = self.scenario.duration_s
        while (elapsed := time.monotonic() - self.t0) < duration:
            phase = self.scenario.phase_at(elapsed)
            if phase is not applied_phase:
                # every app's target goes out at the phase's time, as in the scenario; waiting
                # for each verdict in turn held the next app's target back (up to 2 s under load)
                stamps = {
                    goal.app: client.publish_target(
                        goal.app,
                        goal.model,
                        goal.max_latency_ms,
                        goal.min_accuracy,
                        goal.max_power_w,
                        goal.max_energy_mj,
                        goal.priority,
                        wait_for_manager_s=2.0,
                    )
                    for goal in phase.goals.values()
                }
                deadline = time.monotonic() + 2.0
                for app, stamp in stamps.items():
                    client.wait_for_verdict(app, stamp, max(0.0, deadline - time.monotonic()))
                (self.root / SIM_DIR / "background_gpu").write_text(f"{phase.background_gpu}\n")
                applied_phase = phase
            with client.lock:
                if client.hardware is not None:
                    self.power_samples.append(
                        (time.monotonic() - self.t0, float(client.hardware.total_power_w))
                    )
            if on_tick:
                on_tick(elapsed)
            time.sleep(tick_s)

    def stop(self) -> dict[str, int]:
        return self.group.stop() if self.group else {}

    def metrics(self, client: DyndnnClient) -> Metrics:
        """Frames whose input frame arrived during the scenario, judged as the evaluation judges
        its frames; energy from the board power the hardware monitor reported. Also sets
        `host_overhead_ms`: app -> mean host work per frame its inference node reported (outside
        the inference), the assumption a fast run of the same scenario needs."""
        app_of = {a.profile.model: a.app for a in self.scenario.apps}
        wall_t0 = time.time() - (time.monotonic() - self.t0)
        with client.lock:
            history = {model: list(stats) for model, stats in client.stats.items()}
        frames = []
        overhead: dict[str, list[float]] = {}
        for model, stats in history.items():
            if model not in app_of:
                continue
            for s in stats:
                overhead.setdefault(app_of[model], []).append(float(s.host_overhead_ms))
                t = s.frame_stamp.sec + s.frame_stamp.nanosec * 1e-9 - wall_t0
                if 0 <= t <= self.scenario.duration_s:
                    frames.append(
                        Frame(
                            app_of[model],
                            t,
                            float(s.latency_ms),
                            s.active_subnet,
                            float(s.accuracy),
                        )
                    )
        times = np.array([t for t, _ in self.power_samples])
        power = np.array([w for _, w in self.power_samples])
        energy = (
            float(np.trapezoid(power, times)) * self.scenario.duration_s / (times[-1] - times[0])
            if times.size > 1
            else 0.0
        )
        self.host_overhead_ms = {app: float(np.mean(v)) for app, v in overhead.items()}
        return frame_metrics(self.scenario, frames, energy)
