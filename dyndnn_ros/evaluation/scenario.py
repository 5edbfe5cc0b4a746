# SPDX-License-Identifier: Apache-2.0
"""Scenarios as data (config/scenarios/*.yaml): apps, and phases that change goals and background
load."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from dyndnn_ros.paths import config_path, known_configs, resolve_config
from dyndnn_ros.policies.base import PerformanceGoal, validate_goals
from dyndnn_ros.profiles import ModelProfile, load_profile


class ScenarioError(ValueError):
    """A scenario file is missing or malformed."""


@dataclass(frozen=True)
class ScenarioApp:
    app: str
    profile: ModelProfile
    fps: float
    cluster: str
    device: str = "gpu"
    """'gpu' or 'cpu': the device of the board's platform model the app's model runs on"""
    host_overhead_ms: float = 0.0
    """an assumption: the inference node's own work per frame outside the inference (taking the
    image, converting it, publishing the result), which lengthens every frame's cycle and keeps a
    core of the app's cluster busy (AppLoad.host_overhead_ms). 0 leaves it out. The ROS node
    measures it (InferenceStats.host_overhead_ms): 2-3 ms a frame on a 2-core x86 host for a
    32x32 image into a 224x224 input, more when the host is loaded (the ROS scenario run reports
    it per app)."""


DEVICES = ("gpu", "cpu")


@dataclass(frozen=True)
class Phase:
    at_s: float
    goals: dict[str, PerformanceGoal]
    background_gpu: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    control_period_s: float
    settle_s: float
    apps: tuple[ScenarioApp, ...]
    phases: tuple[Phase, ...]

    def phase_at(self, t_s: float) -> Phase:
        current = self.phases[0]
        for phase in self.phases:
            if phase.at_s <= t_s + 1e-9:
                current = phase
        return current

    def on_goal(self, app: str, start_s: float, latency_ms: float, accuracy: float) -> bool:
        """Whether a frame of `app` that started at `start_s` met the latency and accuracy goals
        in force then (False where the app has no goal)."""
        goal = self.phase_at(start_s).goals.get(app)
        if goal is None:
            return False
        below = bool(goal.min_accuracy and accuracy < goal.min_accuracy)
        over = bool(goal.max_latency_ms and latency_ms > goal.max_latency_ms)
        return not below and not over

    def check_board(
        self, board: str, clusters: Sequence[str], devices: Sequence[str] | None = None
    ) -> None:
        """Raise ScenarioError where an app's host thread is placed on a CPU cluster `board`
        does not have (an Orin Nano has one cluster, a Xavier NX three), or, given the devices
        its platform model has, where an app runs on another (the Orins model the GPU only)."""
        missing = [f"{a.app} on {a.cluster}" for a in self.apps if a.cluster not in clusters]
        if missing:
            raise ScenarioError(
                f"scenario {self.name}: board {board} has no cluster for {', '.join(missing)}"
                f" (its clusters: {', '.join(clusters)})"
            )
        unmodelled = [f"{a.app} on the {a.device}" for a in self.apps
                      if devices is not None and a.device not in devices]
        if unmodelled:
            raise ScenarioError(
                f"scenario {self.name}: board {board} has no model of the device for"
                f" {', '.join(unmodelled)} (it models: {', '.join(devices or ())})"
            )

    @property
    def profiles(self) -> dict[str, ModelProfile]:
        return {a.profile.model: a.profile for a in self.apps}


def parse_scenario(doc: dict[str, Any]) -> Scenario:
    try:
        apps = []
        for a in doc["apps"]:
            path = resolve_config("profiles", a["profile"], "profile", ScenarioError)
            profile = load_profile(path)
            device = str(a.get("device", "gpu"))
            measured_on = profile.device.rsplit("/", 1)[-1]
            if device not in DEVICES or (measured_on in DEVICES and measured_on != device):
                raise ScenarioError(
                    f"app {a['app']!r}: device must be one of {DEVICES} and match its profile's"
                    f" ({profile.device!r}), got {device!r}"
                )
            overhead = float(a.get("host_overhead_ms", 0.0))
            if not (overhead >= 0 and np.isfinite(overhead)):
                raise ScenarioError(
                    f"app {a['app']!r}: host_overhead_ms must be a time >= 0, got {overhead}"
                )
            apps.append(
                ScenarioApp(
                    str(a["app"]), profile, float(a.get("fps", 0)), str(a["cluster"]), device,
                    overhead,
                )
            )
        models = {a.app: a.profile.model for a in apps}
        phases: list[Phase] = []
        goals: dict[str, PerformanceGoal] = {}
        background = 0.0
        for p in sorted(doc["phases"], key=lambda p: float(p["at_s"])):
            if "goals" in p:  # a phase that names goals replaces them all; otherwise they carry on
                goals = {
                    app: PerformanceGoal(app, models[app], **g) for app, g in p["goals"].items()
                }
                validate_goals(goals)
            background = float(p.get("background_gpu", background))
            if not 0 <= background < 1:
                raise ScenarioError(f"background_gpu must be in [0, 1), got {background}")
            phases.append(Phase(float(p["at_s"]), dict(goals), background))
        scenario = Scenario(
            str(doc["name"]),
            str(doc.get("description", "")),
            float(doc["duration_s"]),
            float(doc.get("control_period_s", 0.25)),
            float(doc.get("settle_s", 1.0)),
            tuple(apps),
            tuple(phases),
        )
    except (KeyError, TypeError) as exc:
        raise ScenarioError(f"malformed scenario: {exc}") from exc
    if (
        not scenario.phases
        or scenario.phases[0].at_s > 0
        or scenario.duration_s <= 0
        or scenario.control_period_s <= 0
    ):
        raise ScenarioError(
            f"scenario {scenario.name!r}: needs a phase at 0 s"
            " and positive duration / control period"
        )
    return scenario


def with_host_overhead(scenario: Scenario, overhead_ms: Mapping[str, float]) -> Scenario:
    """The scenario with the named apps' `host_overhead_ms` replaced (what a ROS run measured)."""
    apps = tuple(
        replace(a, host_overhead_ms=float(overhead_ms.get(a.app, a.host_overhead_ms)))
        for a in scenario.apps
    )
    return replace(scenario, apps=apps)


def on_clusters(scenario: Scenario, clusters: Sequence[str]) -> tuple[Scenario, list[str]]:
    """The scenario with each app whose cluster is not in `clusters` moved to one that is (the
    i-th app to the i-th cluster, wrapping, as generate_scenario places them), and what moved.
    For showing a scenario on a board with fewer clusters; the evaluation refuses a mismatch."""
    if not clusters:
        raise ScenarioError(f"scenario {scenario.name}: no CPU cluster to place its apps on")
    apps, moved = [], []
    for i, a in enumerate(scenario.apps):
        if a.cluster not in clusters:
            moved.append(f"{a.app} from {a.cluster} to {clusters[i % len(clusters)]}")
            a = replace(a, cluster=clusters[i % len(clusters)])
        apps.append(a)
    return replace(scenario, apps=tuple(apps)), moved


def load_scenario(name_or_path: str | Path) -> Scenario:
    path = resolve_config("scenarios", name_or_path, "scenario", ScenarioError)
    return parse_scenario(yaml.safe_load(path.read_text()))


def all_scenarios() -> list[Scenario]:
    return [load_scenario(name) for name in known_configs("scenarios")]


GENERATED_PROFILES = ("dynamic_ofa_xavier_nx_gpu.yaml", "dynamic_ofa_xavier_nx_gpu_b.yaml")
GENERATED_RATES = (8.0, 10.0, 15.0, 20.0, 30.0)


def generate_scenario(
    seed: int,
    duration_s: float = 20.0,
    phase_s: tuple[float, float] = (4.0, 8.0),
    clusters: tuple[str, ...] = ("cluster0", "cluster1", "cluster2"),
) -> Scenario:
    """A random scenario, the same for the same seed: one or two apps (their own profile, camera
    rate and cluster, distinct priorities), targets that random-walk from phase to phase (latency
    x0.7-1.4 within 40-250 ms, accuracy within the lower 60 % of the profile's range) and a
    background GPU job that comes and goes. For checking the manager on scenarios nobody tuned
    it on."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3))
    apps = [
        {
            "app": f"app{i}",
            "profile": GENERATED_PROFILES[i % len(GENERATED_PROFILES)],
            "fps": float(rng.choice(GENERATED_RATES)),
            "cluster": clusters[i % len(clusters)],
        }
        for i in range(n)
    ]
    accuracy = {}
    for a in apps:
        levels = [
            s.accuracy for s in load_profile(config_path("profiles", a["profile"])).subnets
        ]
        accuracy[a["app"]] = (min(levels), max(levels))
    latency = {a["app"]: float(rng.uniform(80.0, 200.0)) for a in apps}
    priorities = rng.permutation(n) + 1
    phases, t = [], 0.0
    while t < duration_s:
        goals = {}
        for i, a in enumerate(apps):
            name = a["app"]
            latency[name] = float(np.clip(latency[name] * rng.uniform(0.7, 1.4), 40.0, 250.0))
            low, high = accuracy[name]
            wanted = float(rng.uniform(low, low + 0.6 * (high - low)))
            goals[name] = {
                "max_latency_ms": round(latency[name], 1),
                "min_accuracy": round(wanted, 4),
                "priority": int(priorities[i]),
            }
        phases.append(
            {
                "at_s": round(t, 2),
                "goals": goals,
                "background_gpu": float(rng.choice([0.0, 0.0, 0.2, 0.4])),
            }
        )
        t += float(rng.uniform(*phase_s))
    return parse_scenario(
        {
            "name": f"generated_{seed}",
            "description": f"seeded random scenario {seed}",
            "duration_s": duration_s,
            "control_period_s": 0.25,
            "settle_s": 1.0,
            "apps": apps,
            "phases": phases,
        }
    )
