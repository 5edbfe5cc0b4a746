# SPDX-License-Identifier: Apache-2.0
"""Run one policy on one scenario, faster than real time, with the manager code called directly.

Every control period the runner does what the ROS manager node does: build an Observation from
what the board shows (measured latencies, clocks, utilisation, power), call Policy.decide, apply
the sub-networks and clocks. Baselines pair fixed sub-networks with a governor mode.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dyndnn_ros.platforms.model import PlatformModel
from dyndnn_ros.simulation.simulator import BoardSimulator, Frame, TickLog
from dyndnn_ros.policies.base import ClockSetting, Observation, create_policy
from dyndnn_ros.observed_frames import FrameLog, pinned_clocks
from dyndnn_ros.evaluation.scenario import Phase, Scenario


@dataclass(frozen=True)
class PolicySpec:
    """One line of the comparison: a policy, and the governors under it."""

    label: str
    policy: str
    governors: str = "default"
    """governor mode the board runs when the policy sends no clock command"""
    params: dict[str, Any] = field(default_factory=dict)


DEFAULT_SPECS = (
    PolicySpec("schedutil+podgov, fixed for targets", "static_targets", "default"),
    PolicySpec("schedutil+podgov, largest", "static", "default"),
    PolicySpec("performance, fixed for targets", "static_targets", "performance"),
    PolicySpec("powersave, fixed for targets", "static_targets", "powersave"),
    PolicySpec("subnet_only + governors", "subnet_only", "default"),
    PolicySpec("dvfs_only, largest", "dvfs_only"),
    PolicySpec("hierarchical", "hierarchical"),
    PolicySpec("oracle", "oracle"),
)
BASELINE_LABEL = DEFAULT_SPECS[0].label
"""the headline baseline: governors with sub-networks a designer fixes for the targets in force"""
THESIS_BASELINE_LABEL = DEFAULT_SPECS[1].label
"""the thesis' baseline: the largest sub-network under the default governors"""


@dataclass
class Period:
    time_s: float
    subnets: dict[str, str]
    given_up: dict[str, str]
    predicted_power_w: float
    threads: dict[str, int] = field(default_factory=dict)
    """model -> threads a CPU model ran in the period before this decision"""


@dataclass
class RunResult:
    scenario: Scenario
    spec: PolicySpec
    energy_j: float
    frames: list[Frame]
    log: TickLog
    periods: list[Period]
    decide_ms: list[float]
    board: str = ""
    """the simulated board's display name"""


@dataclass
class FrameWatch:
    """Hands each frame to the manager's FrameLog when it finishes, as its stats would reach the
    manager node."""

    log: FrameLog = field(default_factory=FrameLog)
    first_unfinished: int = 0
    """frames before this index were handed over"""

    def catch_up(self, sim: BoardSimulator, since_s: float) -> None:
        """Hand over the frames that finished after `since_s`, by now."""
        ends = []
        first = None
        for i in range(self.first_unfinished, len(sim.frames)):
            f = sim.frames[i]
            end = f.start_s + f.latency_ms / 1000.0
            if end > sim.time_s:
                first = i if first is None else first
            elif end > since_s:
                ends.append((end, f))
        self.first_unfinished = len(sim.frames) if first is None else first
        for end, f in sorted(ends, key=lambda pair: pair[0]):
            self.log.frame(f.app, end, f.latency_ms, f.subnet)


def _truth(scenario: Scenario, t: float) -> tuple[Phase, dict | None]:
    """The phase in force at the period starting at `t`, and the goals in force when it ends
    where they differ (None: no change in the period; the background job changes at ticks)."""
    phase = scenario.phase_at(t)
    coming = scenario.phase_at(t + scenario.control_period_s - 1e-6).goals
    return phase, coming if coming != phase.goals else None


def _observation(
    sim: BoardSimulator, scenario: Scenario, since_s: float, watch: FrameWatch, power_from: int
) -> Observation:
    names = sim.model.description.clocks.cluster_names
    watch.catch_up(sim, since_s)
    seen = {a.app: watch.log.period(a.app, sim.time_s) for a in scenario.apps}
    state = sim.last_activity
    powers = sim.log.power_w[power_from:]
    return Observation(
        time_s=sim.time_s,
        latency_ms={app: p.latency_ms for app, p in seen.items() if p.frames},
        frames={app: p.frames for app, p in seen.items() if p.frames},
        frame_rate_hz={
            app: math.nan if p.rate_hz is None else p.rate_hz for app, p in seen.items()
        },
        active_subnets={a.profile.model: a.subnet for a in sim.apps.values()},
        clocks=ClockSetting(dict(zip(names, sim.cpu_khz)), sim.gpu_hz, sim.emc_hz),
        cpu_util={n: float(min(1.0, state.cluster_busy_cores[i])) for i, n in enumerate(names)}
        if state
        else {},
        gpu_util=float(np.mean(sim.log.gpu_busy[power_from:])) if powers else 0.0,
        emc_util=float(state.emc_busy) if state else 0.0,
        power_w=float(np.mean(powers)) if powers else 0.0,
        input_fps={a.app: a.fps for a in scenario.apps},
        app_cluster={a.app: a.cluster for a in scenario.apps},
        app_device={a.app: a.device for a in scenario.apps},
        threads={a.profile.model: a.threads for a in sim.apps.values() if a.threads},
        host_overhead_ms={a.app: a.host_overhead_ms for a in scenario.apps},
    )


def run_policy(
    scenario: Scenario, spec: PolicySpec, model: PlatformModel, seed: int = 0
) -> RunResult:
    names = model.description.clocks.cluster_names
    scenario.check_board(model.description.name, names, sorted(model.devices))
    sim = BoardSimulator(model, seed=seed)
    for a in scenario.apps:  # the first decision, at 0 s, switches before any frame runs
        sim.add_app(
            a.app, a.profile, a.fps, names.index(a.cluster), device=a.device,
            host_overhead_ms=a.host_overhead_ms,
        )
    policy = create_policy(spec.policy, model, **spec.params)
    sim.use_governors(spec.governors)
    app_of_model = {a.profile.model: a.app for a in scenario.apps}
    periods: list[Period] = []
    decide_ms: list[float] = []
    steps = int(round(scenario.duration_s / scenario.control_period_s))
    watch, power_from = FrameWatch(), 0
    commanded: ClockSetting | None = None

    def read_clocks() -> None:
        read = ClockSetting(dict(zip(names, sim.cpu_khz)), sim.gpu_hz, sim.emc_hz)
        watch.log.clocks(pinned_clocks(read, commanded, policy.predicts_at_clocks), sim.time_s)

    read_clocks()  # the monitor's first reading, before the first decision
    if hasattr(policy, "plan"):
        # the oracle knows the run ahead: each period's goals, those coming in it, the background
        policy.plan(
            [
                (phase.goals, coming, phase.background_gpu)
                for phase, coming in (
                    _truth(scenario, k * scenario.control_period_s) for k in range(steps)
                )
            ],
            scenario.profiles,
            Observation(
                input_fps={a.app: a.fps for a in scenario.apps},
                app_cluster={a.app: a.cluster for a in scenario.apps},
                app_device={a.app: a.device for a in scenario.apps},
                host_overhead_ms={a.app: a.host_overhead_ms for a in scenario.apps},
            ),
        )
    for k in range(steps):
        t = k * scenario.control_period_s
        phase, coming = _truth(scenario, t)
        sim.background_gpu = phase.background_gpu
        if hasattr(policy, "set_truth"):
            policy.set_truth(phase.background_gpu, coming)
        obs = _observation(sim, scenario, t - scenario.control_period_s, watch, power_from)
        power_from = len(sim.log.power_w)
        started = time.perf_counter()
        decision = policy.decide(phase.goals, scenario.profiles, obs)
        decide_ms.append((time.perf_counter() - started) * 1000.0)
        for model_name, subnet in decision.subnets.items():
            sim.request_switch(app_of_model[model_name], subnet)
        for model_name, threads in decision.threads.items():
            sim.request_threads(app_of_model[model_name], threads)
        if decision.clocks is not None:
            commanded = decision.clocks
            if decision.clocks.use_default_governors:
                sim.use_governors("default")
            else:
                sim.pin(
                    {names.index(n): f for n, f in decision.clocks.cpu_khz.items()},
                    decision.clocks.gpu_hz,
                    decision.clocks.emc_hz,
                )
        periods.append(
            Period(
                t,
                dict(decision.subnets),
                dict(decision.given_up),
                decision.predicted_power_w,
                dict(obs.threads),
            )
        )
        # a hardware monitor reads the board once a period, half-way between two control steps
        sim.run_until(t + scenario.control_period_s / 2)
        read_clocks()
        sim.run_until(t + scenario.control_period_s)
    return RunResult(
        scenario,
        spec,
        sim.energy_j,
        sim.frames,
        sim.log,
        periods,
        decide_ms,
        model.description.display_name,
    )
