"""Scenarios as data (config/scenarios/*.yaml): apps, and phases that change goals and background load."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dyndnn_ros.paths import config_dir
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

    @property
    def profiles(self) -> dict[str, ModelProfile]:
        return {a.profile.model: a.profile for a in self.apps}


def parse_scenario(doc: dict[str, Any]) -> Scenario:
    try:
        apps = []
        for a in doc["apps"]:
            path = Path(a["profile"])
            profile = load_profile(path if path.is_absolute() else config_dir() / "profiles" / path)
            apps.append(ScenarioApp(str(a["app"]), profile, float(a.get("fps", 0)), str(a["cluster"])))
        models = {a.app: a.profile.model for a in apps}
        phases: list[Phase] = []
        goals: dict[str, PerformanceGoal] = {}
        background = 0.0
        for p in sorted(doc["phases"], key=lambda p: float(p["at_s"])):
            if "goals" in p:  # a phase that names goals replaces them all; otherwise they carry on
                goals = {app: PerformanceGoal(app, models[app], **g) for app, g in p["goals"].items()}
                validate_goals(goals)
            background = float(p.get("background_gpu", background))
            if not 0 <= background < 1:
                raise ScenarioError(f"background_gpu must be in [0, 1), got {background}")
            phases.append(Phase(float(p["at_s"]), dict(goals), background))
        scenario = Scenario(
            str(doc["name"]), str(doc.get("description", "")), float(doc["duration_s"]),
            float(doc.get("control_period_s", 0.25)), float(doc.get("settle_s", 1.0)), tuple(apps), tuple(phases),
        )
    except (KeyError, TypeError) as exc:
        raise ScenarioError(f"malformed scenario: {exc}") from exc
    if not scenario.phases or scenario.phases[0].at_s > 0 or scenario.duration_s <= 0 or scenario.control_period_s <= 0:
        raise ScenarioError(f"scenario {scenario.name!r}: needs a phase at 0 s and positive duration / control period")
    return scenario


def load_scenario(name_or_path: str | Path) -> Scenario:
    path = Path(name_or_path)
    if not path.suffix:
        path = config_dir() / "scenarios" / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / "scenarios").glob("*.yaml"))
        raise ScenarioError(f"no scenario {str(name_or_path)!r}; known: {known}")
    return parse_scenario(yaml.safe_load(path.read_text()))


def all_scenarios() -> list[Scenario]:
    return [load_scenario(p) for p in sorted((config_dir() / "scenarios").glob("*.yaml"))]
