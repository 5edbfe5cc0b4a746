# SPDX-License-Identifier: Apache-2.0
"""The resource manager's state, without ROS: targets (TargetBook), the profiles the inference
nodes announced, the measurements of the running control period, the board's latest status, and
what was last commanded, so that each control step says what to publish.

The node turns messages into these calls and the results back into messages:

- `submit` / `withdraw` / `model_announced` give the verdicts to answer (TargetBook's rules:
  parking, expiry, one answer for a target delivered by both subscriptions);
- `record_stats` / `record_board` collect the period's latencies and energies (a window emptied
  by each control step) and the board's clocks, utilisation and power;
- `control_step` asks the policy for a decision and returns a `Step`: the SubnetSwitch commands
  (only where the model does not run the chosen sub-network, or a CPU model the chosen thread
  count, or it was not commanded yet), the DvfsCommand (repeated every period as the DVFS node's
  heartbeat, except a hand-back to the governors, sent once), the status report and what to log;
- `diagnostics` says what is wrong: targets waiting for a model no node announced (no profile),
  goals not met or given up, a stale board status, a control loop running late.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from dyndnn_ros.diagnostics import Diagnostic, Level, stale_warning, summary
from dyndnn_ros.log_limits import shorten
from dyndnn_ros.observed_frames import FrameLog, pinned_clocks
from dyndnn_ros.policies import ClockSetting, Decision, Observation, PerformanceGoal, Policy
from dyndnn_ros.profiles import ModelProfile
from dyndnn_ros.target_book import (
    Stamp,
    TargetBook,
    TargetState,
    Verdict,
    check_parked_timeout,
    unmet_goals,
)

NO_TARGETS = "no targets in force"

POLICY_KNOBS = {
    "headroom": ((0.0, 0.5), "Fraction of each latency target that new clocks leave free"),
    "hold_periods": ((1, 1000), "Control periods a better choice must persist before the "
                                "policy switches to it (hysteresis)"),
    "min_saving": ((0.0, 1.0), "Smallest predicted power saving, fraction, worth a change of "
                               "clocks"),
    "use_feedback": (None, "Correct the profiled latencies by the measured ones (filtered "
                           "slowdown)"),
}
"""knob -> ((lowest, highest) or None, description): the policy constructor arguments the manager
offers as parameters, where the chosen policy takes them; the policy checks the values itself"""


def policy_knobs(policy: Policy) -> Dict[str, object]:
    """knob -> default, for each of POLICY_KNOBS the policy's constructor takes (through **kwargs
    to a base class too)."""
    found: Dict[str, object] = {}
    for cls in type(policy).__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        for p in parameters:
            if p.name in POLICY_KNOBS and p.default is not p.empty:
                found.setdefault(p.name, p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return found


@dataclass(frozen=True)
class BoardReading:
    """What the manager uses of one HardwareStatus."""

    clocks: ClockSetting = field(default_factory=ClockSetting)
    cpu_util: Mapping[str, float] = field(default_factory=dict)
    gpu_util: float = 0.0
    emc_util: float = 0.0
    power_w: float = 0.0


@dataclass(frozen=True)
class SwitchCommand:
    model: str
    subnet: str
    reason: str
    log: str
    """an INFO line where the commanded sub-network or threads change; '' for a repeat"""
    threads: int = 0
    """a CPU model: threads to run (0: leave as is)"""


def device_of(profile_device: str) -> Optional[str]:
    """The platform model's device ('cpu' or 'gpu') of a profile's device ('xavier_nx/gpu', 'cpu',
    torch's 'cuda'); None where it names neither."""
    name = profile_device.rsplit("/", 1)[-1]
    if name == "cpu":
        return "cpu"
    return "gpu" if name == "gpu" or name.startswith("cuda") else None


@dataclass(frozen=True)
class ClockCommand:
    clocks: ClockSetting
    reason: str
    log: str
    """an INFO line where the clocks differ from those commanded before; '' for a repeat"""


@dataclass(frozen=True)
class TargetEntry:
    goal: PerformanceGoal
    stamp: Stamp
    """the header stamp of the target message that set it"""


@dataclass(frozen=True)
class Step:
    """What one control step publishes and logs, in this order."""

    expired: List[Verdict]
    switches: List[SwitchCommand]
    clocks: Optional[ClockCommand]
    targets: List[TargetEntry]
    """in force, by app name"""
    parked: List[TargetEntry]
    decision: Decision
    unmet: Dict[str, str]
    newly_given_up: Dict[str, str]
    """apps given up now that were not at the last step, with why"""
    given_up_revised: Dict[str, str]
    """apps still given up whose reason changed (its predicted shares move every period: log
    these rate-limited)"""
    newly_unmet: Dict[str, str]
    """apps not met now that were met at the last step"""


class ControlClock:
    """How late each control step runs after its due time. A step later than a whole period
    means ticks were skipped (as rcl timers do), and the next due time moves past now."""

    def __init__(self, period_s: float, now: float):
        self.period_s = check_period(period_s)
        self.due = now + period_s
        self.lateness_s = 0.0

    def tick(self, now: float) -> float:
        self.lateness_s = max(0.0, now - self.due)
        self.due += self.period_s * (1 + int(self.lateness_s // self.period_s))
        return self.lateness_s

    def restart(self, period_s: float, now: float) -> None:
        """A new period from now on (the timer is created anew)."""
        self.period_s = check_period(period_s)
        self.due = now + period_s
        self.lateness_s = 0.0


class EarlyStepGate:
    """Control steps that changed targets ask for between ticks, at most one per `min_gap_s`: a
    burst of target changes (eight apps at 100 Hz in the soak) costs one decision, not one each,
    and a change waits at most `min_gap_s` for its step."""

    def __init__(self, min_gap_s: float) -> None:
        self.min_gap_s = min_gap_s
        self.last_step = -math.inf
        self.pending = False

    def stepped(self, now: float) -> None:
        self.last_step = now
        self.pending = False

    def request(self, now: float) -> Optional[float]:
        """0: step now; a delay: step after it (call `stepped` when it runs); None: a step is
        already due."""
        if self.pending:
            return None
        wait = self.last_step + self.min_gap_s - now
        if wait <= 0:
            return 0.0
        self.pending = True
        return wait


def check_period(period_s: float) -> float:
    if not (period_s > 0 and math.isfinite(period_s)):
        raise ValueError(f"control_period_s must be a finite number > 0, got {period_s}")
    return period_s


class ManagerState:
    def __init__(self, policy: Policy, parked_timeout_s: float = 300.0,
                 board_stale_s: float = 2.0):
        self.policy = policy
        self.book = TargetBook(parked_timeout_s)
        self.board_stale_s = board_stale_s
        self.stamps: Dict[str, Stamp] = {}
        """app -> stamp of the target in force or parked"""
        self.profiles: Dict[str, ModelProfile] = {}
        self.active: Dict[str, str] = {}
        """model -> sub-network it reports running"""
        self.clusters: Dict[str, str] = {}
        self.refused: Dict[str, str] = {}
        """model -> why it is not managed (announced on a device the board has no model of)"""
        self.input_fps: Dict[str, float] = {}
        self.devices: Dict[str, str] = {}
        """model -> device ('cpu' or 'gpu') its profile was measured on"""
        self.threads: Dict[str, int] = {}
        """model -> CPU threads it reports running (CPU models)"""
        self.host_overhead_ms: Dict[str, float] = {}
        """model -> its node's reported host work per frame"""
        self.commanded_threads: Dict[str, int] = {}
        self.frames = FrameLog()
        """the period's frames, in the control steps' `time_s` clock"""
        self.energy_window: Dict[str, List[float]] = defaultdict(list)
        self.board: Optional[BoardReading] = None
        self.board_time: Optional[float] = None
        self.commanded: Dict[str, str] = {}
        self.last_clocks: Optional[ClockSetting] = None
        self.last_given_up: Dict[str, str] = {}
        self.last_unmet: Dict[str, str] = {}

    @property
    def goals(self) -> Dict[str, PerformanceGoal]:
        return self.book.goals

    # -- targets ---------------------------------------------------------------------------------
    def submit(self, goal: PerformanceGoal, now: float, stamp: Stamp) -> Optional[Verdict]:
        """The verdict on one target, None for its second delivery."""
        verdict = self.book.submit(goal, self.profiles.keys(), now, stamp, self.refused)
        if verdict is not None and verdict.state in (TargetState.ACCEPTED, TargetState.PARKED):
            self.stamps[goal.app] = stamp
        return self._forget_removed(verdict)

    def withdraw(self, app: str, now: float, stamp: Stamp) -> Optional[Verdict]:
        return self._forget_removed(self.book.withdraw(app, now, stamp))

    @staticmethod
    def acts_now(verdict: Verdict) -> bool:
        """Whether the targets in force changed: decide now, not at the next tick. A rejection
        changes them only where a refused model's targets were dropped (clocks may be held for
        one; where only a parked one was, the step is one more than needed)."""
        return verdict.changed and verdict.state in (
            TargetState.ACCEPTED, TargetState.WITHDRAWN, TargetState.REJECTED)

    def _forget_removed(self, verdict: Optional[Verdict]) -> Optional[Verdict]:
        if verdict is not None and verdict.state in (TargetState.WITHDRAWN, TargetState.EXPIRED):
            self.stamps.pop(verdict.app, None)
        return verdict

    def set_parked_timeout(self, seconds: float) -> None:
        self.book.parked_timeout_s = check_parked_timeout(seconds)

    # -- inputs ----------------------------------------------------------------------------------
    def model_announced(self, model: str, profile: ModelProfile, active_subnet: str,
                        cpu_cluster: str) -> Tuple[bool, List[Verdict]]:
        """(whether the model is new, the targets it brings into force or, where the board's
        model has no model of its device, the targets for it rejected: see `refused`)"""
        device = device_of(profile.device)
        board = getattr(self.policy, "model", None)  # the policy's platform model, if it has one
        if board is not None and device and device not in board.devices:
            # the policy cannot predict it (the reference threads above, every control step):
            # refused, not a node taken down
            new = model not in self.refused
            self.refused[model] = (
                f"model {shorten(model)!r} runs on the {device}, and the board description"
                f" {board.description.name} models no {device} (devices:"
                f" {', '.join(sorted(board.devices))}): not managed"
            )
            for known in (self.profiles, self.active, self.clusters, self.devices):
                known.pop(model, None)
            verdicts = self.book.model_refused(model, self.refused[model])
            for verdict in verdicts:
                self.stamps.pop(verdict.app, None)
            return new, verdicts
        if self.refused.pop(model, None) is not None:
            self.book.model_managed(model)
        new = model not in self.profiles
        if device == "cpu" and board is not None:
            profile = board.at_reference_threads(profile, device)
        self.profiles[model] = profile
        self.active[model] = active_subnet
        if cpu_cluster and self.unknown_cluster(cpu_cluster) is None:
            self.clusters[model] = cpu_cluster
        else:
            self.clusters.pop(model, None)
        if device:
            self.devices[model] = device
        return new, self.book.model_announced(model)

    def unknown_cluster(self, cpu_cluster: str) -> Optional[str]:
        """Why an announced `cpu_cluster` names no CPU cluster of the board the policy models
        (None where it does, or where the policy models none). Such a model is placed as if it
        had named none."""
        board = getattr(self.policy, "model", None)
        if not cpu_cluster or board is None:
            return None
        names = board.description.clocks.cluster_names
        if cpu_cluster in names:
            return None
        return (f"cpu_cluster {shorten(cpu_cluster)!r} is not a CPU cluster of"
                f" {board.description.name} ({', '.join(names)}); placed as if none was named")

    def record_stats(self, model: str, latency_ms: float, energy_mj: float, active_subnet: str,
                     input_fps: float, host_overhead_ms: float = 0.0, threads: int = 0, *,
                     finished_s: float) -> None:
        """`finished_s`: when the frame finished (its stats' stamp), on control_step's `time_s`
        clock."""
        self.frames.frame(model, finished_s, latency_ms, active_subnet)
        self.energy_window[model].append(energy_mj)
        self.active[model] = active_subnet
        self.input_fps[model] = input_fps
        self.host_overhead_ms[model] = host_overhead_ms
        if threads:
            self.threads[model] = threads

    def record_board(self, reading: BoardReading, now: float, *, read_s: float) -> None:
        """`now`: monotonic time (staleness); `read_s`: when the board was read, on
        control_step's `time_s` clock."""
        self.board = reading
        self.board_time = now
        self.frames.clocks(pinned_clocks(reading.clocks, self.last_clocks,
                                         self.policy.predicts_at_clocks), read_s)

    # -- decisions -------------------------------------------------------------------------------
    def control_step(self, now: float, time_s: float) -> Step:
        """`now`: monotonic time (parking); `time_s`: time since the manager started."""
        expired = [self._forget_removed(v) for v in self.book.expire(now)]
        if not self.goals:
            self._clear_windows()
            return Step(expired, [], self._release_clocks(), [], self._entries(self.book.parked),
                        Decision({}, None), {}, {}, {}, {})
        observation = self.observe(time_s)
        decision = self.policy.decide(dict(self.goals), dict(self.profiles), observation)
        decision = self._leave_idle_clusters(decision, observation)
        switches = self._command_subnets(decision)
        clocks = self._command_clocks(decision)
        unmet = unmet_goals(self.goals, decision.subnets, self.profiles, observation.latency_ms,
                            observation.power_w, self._energy_per_frame())
        newly_given_up = {app: why for app, why in decision.given_up.items()
                          if app not in self.last_given_up}
        given_up_revised = {app: why for app, why in decision.given_up.items()
                            if app in self.last_given_up and self.last_given_up[app] != why}
        self.last_given_up = dict(decision.given_up)
        newly_unmet = {app: why for app, why in unmet.items() if app not in self.last_unmet}
        self.last_unmet = unmet
        return Step(expired, switches, clocks, self._entries(self.goals),
                    self._entries(self.book.parked), decision, unmet, newly_given_up,
                    given_up_revised, newly_unmet)

    def _entries(self, apps) -> List[TargetEntry]:
        table = self.book.all_goals()
        return [TargetEntry(table[app], self.stamps[app]) for app in sorted(apps)
                if app in self.stamps]

    def observe(self, time_s: float) -> Observation:
        """The period's means per app (windows emptied) and the board's latest status."""
        latency, frames, rates = {}, {}, {}
        for app, goal in self.goals.items():
            seen = self.frames.period(goal.model, time_s)
            if seen.frames:
                latency[app], frames[app] = seen.latency_ms, seen.frames
            rates[app] = math.nan if seen.rate_hz is None else seen.rate_hz
        self.frames.forget_unread()
        board = self.board or BoardReading()
        goals = self.goals
        return Observation(
            time_s=time_s,
            latency_ms=latency,
            frames=frames,
            frame_rate_hz=rates,
            active_subnets=dict(self.active),
            clocks=board.clocks,
            cpu_util=dict(board.cpu_util),
            gpu_util=board.gpu_util,
            emc_util=board.emc_util,
            power_w=board.power_w,
            input_fps={app: self.input_fps[g.model] for app, g in goals.items()
                       if g.model in self.input_fps},
            app_cluster={app: self.clusters[g.model] for app, g in goals.items()
                         if g.model in self.clusters},
            app_device={app: self.devices[g.model] for app, g in goals.items()
                        if g.model in self.devices},
            threads={g.model: self.threads[g.model] for g in goals.values()
                     if g.model in self.threads},
            host_overhead_ms={app: self.host_overhead_ms[g.model] for app, g in goals.items()
                              if g.model in self.host_overhead_ms},
        )

    def _clear_windows(self) -> None:
        """With no target, nothing reads the period's figures; keep them from piling up."""
        self.frames.forget_unread()
        self.energy_window.clear()

    def _energy_per_frame(self) -> Dict[str, float]:
        """model -> mean energy per frame since the last period (the inference nodes' reports)"""
        means = {model: sum(v) / len(v) for model, v in self.energy_window.items() if v}
        self.energy_window.clear()
        return means

    def _leave_idle_clusters(self, decision: Decision, observation: Observation) -> Decision:
        """Pin only the CPU clusters that run a model; the rest stay with their governor."""
        in_use = getattr(self.policy, "clusters_in_use", None)
        clocks = decision.clocks
        if in_use is None or clocks is None or clocks.use_default_governors:
            return decision
        # the apps decide() maps to clusters: those whose model is announced
        served = {app: g for app, g in self.goals.items() if g.model in self.profiles}
        used = in_use(served, observation, decision.threads)
        pinned = {n: f for n, f in clocks.cpu_khz.items() if n in used}
        kept = dataclasses.replace(clocks, cpu_khz=pinned)
        return dataclasses.replace(decision, clocks=kept)

    def _command_subnets(self, decision: Decision) -> List[SwitchCommand]:
        commands = []
        for model, subnet in decision.subnets.items():
            threads = int(decision.threads.get(model, 0))
            threads_done = not threads or (self.commanded_threads.get(model) == threads
                                           and self.threads.get(model) == threads)
            if (self.commanded.get(model) == subnet and self.active.get(model) == subnet
                    and threads_done):
                continue
            reason = decision.reasons.get(model, "")
            on = f" on {threads} threads" if threads else ""
            new = self.commanded.get(model) != subnet or (
                bool(threads) and self.commanded_threads.get(model) != threads)
            log = f"{model}: switch to {subnet!r}{on} ({reason})" if new else ""
            commands.append(SwitchCommand(model, subnet, reason, log, threads))
            self.commanded[model] = subnet
            if threads:
                self.commanded_threads[model] = threads
        return commands

    def _command_clocks(self, decision: Decision) -> Optional[ClockCommand]:
        clocks = decision.clocks
        if clocks is None or clocks.pins_nothing:
            return None
        if clocks.use_default_governors and self._governors_in_charge():
            return None  # nothing to repeat
        reason = "; ".join(f"{m}: {r}" for m, r in decision.reasons.items())
        log = f"clocks -> {clocks}" if clocks != self.last_clocks else ""
        command = ClockCommand(clocks, reason, log)
        self.last_clocks = clocks
        return command

    def _release_clocks(self) -> Optional[ClockCommand]:
        """With no target left, hand the clocks back to the governors once, rather than leaving
        them pinned until the DVFS node's watchdog notices the silence."""
        if self.last_clocks is None or self.last_clocks.use_default_governors:
            return None
        self.last_clocks = ClockSetting.default_governors()
        self.commanded.clear()
        self.commanded_threads.clear()
        return ClockCommand(self.last_clocks, NO_TARGETS,
                            f"{NO_TARGETS}: clocks back to the board's governors")

    def _governors_in_charge(self) -> bool:
        return self.last_clocks is not None and self.last_clocks.use_default_governors

    # -- health ----------------------------------------------------------------------------------
    def diagnostics(self, now: float, period_s: float, lateness_s: float) -> List[Diagnostic]:
        targets: Dict[str, Level] = {}
        for app, (goal, _) in sorted(self.book.parked.items()):
            targets[f"{shorten(app)}: no profile of model {shorten(goal.model)!r} "
                    "(not announced)"] = Level.WARN
        for app, why in sorted(self.last_given_up.items()):
            if app in self.goals:
                targets[f"{shorten(app)}: given up: {why}"] = Level.WARN
        for app, why in sorted(self.last_unmet.items()):
            if app in self.goals and app not in self.last_given_up:
                targets[f"{shorten(app)}: not met: {why}"] = Level.WARN
        level, message = summary(targets, f"{len(self.goals)} targets in force")
        counts = {"in_force": str(len(self.goals)), "parked": str(len(self.book.parked)),
                  "models_announced": str(len(self.profiles))}
        reports = [Diagnostic("dyndnn/manager/targets", level, message, counts)]

        age = None if self.board_time is None else now - self.board_time
        stale = stale_warning("board status", age, self.board_stale_s)
        reports.append(Diagnostic(
            "dyndnn/manager/board_status", Level.WARN if stale else Level.OK, stale or "fresh",
            {"age_s": "-" if age is None else f"{age:.2f}"}))

        late = lateness_s > period_s
        reports.append(Diagnostic(
            "dyndnn/manager/control_loop", Level.WARN if late else Level.OK,
            f"control step {lateness_s * 1e3:.0f} ms late: periods skipped" if late else "on time",
            {"lateness_ms": f"{lateness_s * 1e3:.1f}", "period_s": f"{period_s:g}"}))
        return reports
