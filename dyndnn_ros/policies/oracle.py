# SPDX-License-Identifier: Apache-2.0
"""The oracle: exhaustive search over sub-networks x clocks with perfect knowledge of the platform.

It knows what the policies must estimate (the background GPU load, given by the evaluation through
`set_truth`; no slowdown to learn) and searches every combination of the apps' sub-networks with
every clock combination, each CPU cluster's clock on its own. Where some point meets every goal
(p99 latency, accuracy, power cap) it takes the least energy per frame among those points. Only
where none does (the goals conflict) do priorities count: over every sub-network and clock point it
serves the highest priority as many frames on goal as the board allows, up to GOAL_QUANTILE (the
99 % a p99 goal asks), then the next; then holds each app's latency goal on as many frames as it
can (up to GOAL_QUANTILE too), whatever their accuracy (a given-up
app keeps a best-effort latency, as the manager's does); and takes the least energy per frame on
goal among those points (`goal_share_best`, search.most_on_goal). A frame is on goal as the
report counts it, its latency under the board's lognormal frame jitter. Where under 1 % of
every priority's frames can be on goal (search.most_on_goal finds no point), it ranks as the report
does when no frame is on goal: frames within their latency goal whatever their accuracy, then the
least lateness, then energy. It knows the scenario's future too: in a period a change of goals
falls in, it decides for the stricter of the two goals of each app (`set_truth`) where one point
meets both, as the frames before the change are judged against the old goals and those after
against the new; else for the goals in force. Ranking shares of frames, it counts shares within
the report's 1-point margin (search.TIE_MARGIN) as ties, as the report does.

And it knows the whole run before it starts (`plan`, from the evaluation's runner): where goals
conflict, a period's own choice may keep a few frames of a higher priority on goal at the cost
of many of its frames in time, or of a lower priority's; over the run those few can be under
the report's margin. So for each distinct period it also forecasts the choices at wider margins
(PLAN_MARGINS) and takes the combination that serves the run best as the report judges it
(`plan_keys`). Evaluation only: a robot cannot know the truth.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import ndtr  # the standard normal CDF, vectorised

from dyndnn_ros.policies.base import (
    Decision,
    Observation,
    PerformanceGoal,
    Policy,
    register_policy,
    validate_goals,
)
from dyndnn_ros.policies.search import (
    GOAL_QUANTILE,
    AppDemand,
    TIE_MARGIN,
    ClockChoice,
    as_platform_model,
    most_on_goal_by_margin,
    point_to_setting,
    search_clocks,
    tie_lex_best,
    tail_ratio,
    typical_latency_ms,
)
from dyndnn_ros.profiles import ModelProfile, SubnetProfile

Goals = Mapping[str, PerformanceGoal]
MAX_COMBINATIONS = 10_000
"""Bound on sub-network combinations searched (7 x 7 for two published models)."""


def _demand(
    model,
    goal: PerformanceGoal,
    subnet: SubnetProfile,
    cluster: int,
    fps: float,
    devices: Mapping[str, str],
    overheads: Mapping[str, float],
    constrained: bool = True,
) -> AppDemand:
    """One app as the search sees it, with the truth: no slowdown to learn. An app whose goals
    were given up (not `constrained`) keeps its latency target as best effort."""
    device = devices.get(goal.app, "gpu")
    return AppDemand(
        goal.app,
        typical_latency_ms(subnet),
        tail_ratio(subnet),
        fps,
        cluster,
        1.0,
        goal.max_latency_ms,
        best_effort=not constrained,
        max_energy_mj=goal.max_energy_mj if constrained else 0.0,
        device=device,
        thread_options=model.thread_options(device, cluster),
        host_overhead_ms=float(overheads.get(goal.app, 0.0)),
    )


def exhaustive_best(
    model,
    apps: list[tuple[PerformanceGoal, list[SubnetProfile], int, float, bool]],
    power_cap_w: float,
    background_gpu: float,
    best_effort: bool = False,
    devices: Mapping[str, str] | None = None,
    overheads: Mapping[str, float] | None = None,
) -> tuple[ClockChoice, tuple[SubnetProfile, ...]] | None:
    """Least energy-per-frame (sub-networks, clocks and a CPU app's every thread count) meeting
    every constrained app's p99 latency and the power cap.

    apps: (goal, allowed sub-networks, cluster, fps, latency constrained?) per application;
    devices: app -> device (missing: gpu); overheads: app -> host work per frame in ms (0)."""
    devices, overheads = devices or {}, overheads or {}
    best: tuple[ClockChoice, tuple[SubnetProfile, ...]] | None = None
    best_key: tuple = ()
    combos = itertools.product(*[allowed for _, allowed, _, _, _ in apps])
    for combo in itertools.islice(combos, MAX_COMBINATIONS):
        demands = [
            _demand(model, goal, s, cluster, fps, devices, overheads, constrained)
            for (goal, _, cluster, fps, constrained), s in zip(apps, combo)
        ]
        choice = search_clocks(
            model, demands, power_cap_w, background_gpu, best_effort=best_effort, per_cluster=True
        )
        if choice is None:
            continue
        key = _rank(choice, demands)
        if best is None or key < best_key:
            best, best_key = (choice, combo), key
    return best


def goal_share_best(
    model,
    apps: list[tuple[PerformanceGoal, list[SubnetProfile], int, float]],
    power_cap_w: float,
    background_gpu: float,
    devices: Mapping[str, str] | None = None,
    overheads: Mapping[str, float] | None = None,
    margins: Sequence[float] = (TIE_MARGIN,),
) -> list[tuple[ClockChoice, tuple[SubnetProfile, ...], tuple[float, ...]] | None]:
    """For goals that conflict: `most_on_goal_by_margin` over every sub-network combination (at
    most MAX_COMBINATIONS), one choice per margin. apps: (goal, sub-networks, cluster, fps) per
    application."""
    devices, overheads = devices or {}, overheads or {}
    goals = [goal for goal, _, _, _ in apps]
    combos = list(
        itertools.islice(
            itertools.product(*[subnets for _, subnets, _, _ in apps]), MAX_COMBINATIONS
        )
    )
    candidates = [
        (
            [
                _demand(model, goal, s, cluster, fps, devices, overheads)
                for (goal, _, cluster, fps), s in zip(apps, combo)
            ],
            [s.accuracy for s in combo],
        )
        for combo in combos
    ]
    return [
        None if best is None else (best[1], combos[best[0]], best[2])
        for best in most_on_goal_by_margin(
            model, goals, candidates, margins, power_cap_w, background_gpu
        )
    ]


def _lateness(choice: ClockChoice, demands: list[AppDemand], soft: bool) -> float:
    """Worst p99 / target (1 when every target of that kind is met)."""
    return max(
        [
            t / d.max_tail_ms
            for t, d in zip(choice.tail_ms, demands)
            if d.max_tail_ms > 0 and d.best_effort == soft
        ]
        + [1.0]
    )


def _rank(choice: ClockChoice, demands: list[AppDemand]) -> tuple:
    """Every hard target met first, then the least lateness of the best-effort apps, then energy
    per frame."""
    return (
        not choice.met,
        _lateness(choice, demands, False) if not choice.met else 1.0,
        _lateness(choice, demands, True),
        choice.energy_per_frame_j,
    )


def stricter_goals(
    goals: Mapping[str, PerformanceGoal], coming: Mapping[str, PerformanceGoal]
) -> dict[str, PerformanceGoal]:
    """Each app's goal that a frame meets only if it meets both `goals` and `coming`: the least
    latency, power and energy limit set (0: none) and the highest accuracy; its priority stays
    (an order, not a limit). An app with no goal in `coming` keeps its goal; one with a goal only
    in `coming` has none yet."""
    merged = dict(goals)
    for app in goals.keys() & coming.keys():
        a, b = goals[app], coming[app]

        def least(x: float, y: float) -> float:
            return min(v for v in (x, y) if v) if x or y else 0.0

        merged[app] = replace(
            a,
            max_latency_ms=least(a.max_latency_ms, b.max_latency_ms),
            min_accuracy=max(a.min_accuracy, b.min_accuracy),
            max_power_w=least(a.max_power_w, b.max_power_w),
            max_energy_mj=least(a.max_energy_mj, b.max_energy_mj),
        )
    return merged


PLAN_MARGINS = (TIE_MARGIN, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""margins of a period's choices (search.most_on_goal_by_margin) that a plan over a whole run
combines: a lead of a higher priority wider than the report's 1 point in one period can be
under it over the run"""
MAX_PLANS = 4096
"""bound on the combinations of periods' choices a plan compares (more: each period's own)"""


@dataclass(frozen=True)
class Forecast:
    """What the model predicts for one period's decision, per served app: its priority, frames
    per second, the shares of its frames on goal and within its latency goal (None: no latency
    goal), and its mean lateness (latency / the goal - 1, 0 for a frame in time); and the
    board's power."""

    priorities: tuple[int, ...]
    rates_hz: tuple[float, ...]
    on_goal: tuple[float, ...]
    in_time: tuple[float | None, ...]
    lateness: tuple[float, ...]
    power_w: float


@dataclass(frozen=True)
class _Option:
    decision: Decision
    forecast: Forecast


def plan_keys(periods: Sequence[tuple[int, Forecast]]) -> tuple[np.ndarray, float]:
    """The report's measures over a run of (periods, forecast) parts, as ranking keys (higher
    better; each priority's share of frames on goal, highest priority first, then of frames in
    time, then its lateness negated), and the energy per frame on goal (power / frames on goal
    per second, both weighted by periods)."""
    levels = sorted({p for _, f in periods for p in f.priorities}, reverse=True)
    frames = dict.fromkeys(levels, 0.0)
    on_goal, timed, in_time, late = (dict.fromkeys(levels, 0.0) for _ in range(4))
    energy = 0.0
    for n, f in periods:
        energy += n * f.power_w
        for p, rate, good, timely, lateness in zip(
            f.priorities, f.rates_hz, f.on_goal, f.in_time, f.lateness
        ):
            frames[p] += n * rate
            on_goal[p] += n * rate * good
            if timely is not None:
                timed[p] += n * rate
                in_time[p] += n * rate * timely
                late[p] += n * rate * lateness
    # a priority's in-time keys where it has a latency goal (the same in every combination)
    with_goal = [p for p in levels
                 if any(t is not None for _, f in periods
                        for q, t in zip(f.priorities, f.in_time) if q == p)]
    keys = [on_goal[p] / frames[p] if frames[p] else 0.0 for p in levels]
    keys += [in_time[p] / timed[p] if timed[p] else 0.0 for p in with_goal]
    keys += [-late[p] / timed[p] if timed[p] else 0.0 for p in with_goal]
    total = sum(on_goal.values())
    return np.array(keys), energy / total if total else float("inf")


@register_policy("oracle", evaluation_only=True)
class OraclePolicy(Policy):
    name = "oracle"

    def __init__(self, platform: Any = None) -> None:
        self.model = as_platform_model(platform)
        self.background_gpu = 0.0
        self.coming: dict[str, PerformanceGoal] = {}
        self._cache: dict[tuple, list[_Option]] = {}
        self._plan: dict[tuple, Decision] = {}

    def set_truth(
        self, background_gpu: float, coming: Mapping[str, PerformanceGoal] | None = None
    ) -> None:
        """What only the simulator knows: the GPU share a background job takes, and `coming`,
        the goals that take over before the next decision (None: no change in this period)."""
        self.background_gpu = float(background_gpu)
        self.coming = dict(coming) if coming else {}

    def reset(self) -> None:
        self._cache.clear()
        self._plan.clear()
        self.coming = {}

    def plan(
        self,
        periods: Sequence[tuple[Goals, Goals | None, float]],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> None:
        """The whole run known in advance, (goals in force, goals coming in the period or None,
        background GPU share) per period: for each distinct period, the choice among its
        options (one, or one per PLAN_MARGINS where goals conflict and do not change in the
        period) that serves the run best as the report judges it (plan_keys): each measure
        within TIE_MARGIN of the best of the combinations left, then in steps of SHARE_STEP,
        then the least energy per frame on goal. A higher priority's few frames on goal in part
        of a run then no longer outrank many of its frames in time or a lower priority's on goal
        over the run. decide() returns the planned decision in those periods."""
        self._plan.clear()
        parts: dict[tuple, list] = {}
        for goals, coming, background in periods:
            self.set_truth(background, coming)
            key = self._plan_key(goals, observation)
            if key in parts:
                parts[key][0] += 1
            else:
                options = self._period_options(goals, profiles, observation)
                # a period the goals change in keeps its own choice: its forecast judges every
                # frame against one set of goals, the report those before the change against the
                # old and those after against the new (Xavier NX generated seed 192)
                parts[key] = [1, options[:1] if coming else options]
        self.set_truth(0.0)
        counts = [n for n, _ in parts.values()]
        choices = [options for _, options in parts.values()]
        if math.prod(len(o) for o in choices) > MAX_PLANS:
            return
        combos = list(itertools.product(*choices))
        scored = [plan_keys([(n, o.forecast) for n, o in zip(counts, combo)]) for combo in combos]
        keys = np.array([k for k, _ in scored])
        best, _ = tie_lex_best(keys, np.array([e for _, e in scored]), TIE_MARGIN)
        self._plan = {key: o.decision for key, o in zip(parts, combos[best])}

    def decide(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> Decision:
        validate_goals(goals)
        planned = self._plan.get(self._plan_key(goals, observation))
        if planned is not None:
            return planned
        return self._period_options(goals, profiles, observation)[0].decision

    def _plan_key(self, goals: Mapping[str, PerformanceGoal], observation: Observation) -> tuple:
        return (
            tuple(sorted(goals.items())),
            tuple(sorted(self.coming.items())),
            self.background_gpu,
            tuple(sorted(observation.input_fps.items())),
            tuple(sorted(observation.app_cluster.items())),
            tuple(sorted(observation.app_device.items())),
            tuple(sorted(observation.host_overhead_ms.items())),
        )

    def _period_options(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> list[_Option]:
        """This period's decision, or where goals conflict one per PLAN_MARGINS (the first at
        TIE_MARGIN, a period's own choice)."""
        if self.coming:
            # a point that holds both goals puts every frame on goal either side of the change;
            # where none does, the goals in force decide, as they do without a change
            both = self._options(stricter_goals(goals, self.coming), profiles, observation)
            if not both[0].decision.given_up:
                return both[:1]
        return self._options(goals, profiles, observation)

    def _options(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> list[_Option]:
        served = [g for g in sorted(goals.values(), key=lambda g: g.app) if g.model in profiles]
        tables = self.model.description.clocks
        clusters = {
            g.app: tables.cluster_index(observation.app_cluster.get(g.app), i)
            for i, g in enumerate(served)
        }
        fps = {g.app: float(observation.input_fps.get(g.app, 0.0)) for g in served}
        devices = {g.app: observation.app_device.get(g.app, "gpu") for g in served}
        overheads = {g.app: float(observation.host_overhead_ms.get(g.app, 0.0)) for g in served}
        key = (
            tuple(served),
            tuple(sorted(fps.items())),
            tuple(sorted(clusters.items())),
            self.background_gpu,
            tuple(sorted(devices.items())),
            tuple(sorted(overheads.items())),
        )
        if key in self._cache:
            return self._cache[key]
        given_up = {
            g.app: f"no profile for model {g.model!r}"
            for g in goals.values()
            if g.model not in profiles
        }
        cap = min((g.max_power_w for g in served if g.max_power_w), default=0.0)
        strict = []
        for g in served:
            subnets = list(profiles[g.model].subnets)
            accurate = [s for s in subnets if s.accuracy >= g.min_accuracy]
            strict.append(
                (g, accurate or [max(subnets, key=lambda s: s.accuracy)], clusters[g.app],
                 fps[g.app], True)
            )
        found = exhaustive_best(
            self.model, strict, cap, self.background_gpu, devices=devices, overheads=overheads
        )
        reason = "exhaustive optimum"
        everything = [
            (g, list(profiles[g.model].subnets), clusters[g.app], fps[g.app]) for g in served
        ]
        found = [] if found is None else [(found[0], found[1], reason, given_up)]
        if not found or not all(any(s.accuracy >= g.min_accuracy for s in allowed)
                                for g, allowed, _, _, _ in strict):
            # the goals conflict: every sub-network and clock point, judged by frames on goal
            conflicts = goal_share_best(
                self.model, everything, cap, self.background_gpu, devices, overheads,
                PLAN_MARGINS,
            )
            found = []
            for conflict in conflicts:
                if conflict is None:  # not one frame on goal (an accuracy no sub-network has)
                    break
                choice, combo, shares = conflict
                if any(f[0] == choice and f[1] == combo for f in found):
                    continue
                found.append((
                    choice, combo,
                    "goals conflict: frames on goal by priority, then energy per frame",
                    {
                        **given_up,
                        **{
                            g.app: f"{'goals' if len(served) > 1 else 'its own goals'} conflict:"
                            f" {100 * share:.0f} % of frames predicted on goal"
                            for g, share in zip(served, shares)
                            if share < GOAL_QUANTILE
                        },
                    },
                ))
        if not found:  # no frame can be on goal: frames in time, whatever their accuracy
            timely = goal_share_best(
                self.model,
                [(replace(g, min_accuracy=0.0, max_energy_mj=0.0), subnets, cluster, rate)
                 for g, subnets, cluster, rate in everything],
                cap, self.background_gpu, devices, overheads,
            )[0]
            if timely is not None:
                found = [(*timely[:2],
                          "no frame can be on goal: frames in time, whatever their accuracy",
                          {**given_up,
                           **{g.app: "no frame can be on goal: best effort, frames in time"
                              for g in served}})]
        if not found:  # no frame of any app can be in time: least worst lateness
            choice, combo = exhaustive_best(
                self.model,
                [(*app, True) for app in everything],
                cap, self.background_gpu, best_effort=True, devices=devices, overheads=overheads,
            )
            found = [(choice, combo, "best effort: no frame can be on goal or in time",
                      {**given_up,
                       **{g.app: "best effort: target cannot be met" for g in served}})]
        options = [
            _Option(
                Decision(
                    subnets={g.model: s.id for g, s in zip(served, combo)},
                    clocks=point_to_setting(self.model, choice.point),
                    reasons={g.model: reason for g in served},
                    given_up=why,
                    predicted_latency_ms={g.app: p for g, p in zip(served, choice.tail_ms)},
                    predicted_power_w=choice.power_w,
                    threads={g.model: t for g, t in zip(served, choice.threads) if t},
                ),
                self._forecast(served, combo, choice, clusters, fps, devices, overheads),
            )
            for choice, combo, reason, why in found
        ]
        self._cache[key] = options
        return options

    def _forecast(self, served, combo, choice, clusters, fps, devices, overheads) -> Forecast:
        """The model's figures for this choice (as the report counts frames), with the truth."""
        demands = [
            _demand(self.model, g, s, clusters[g.app], fps[g.app], devices, overheads)
            for g, s in zip(served, combo)
        ]
        loads = [
            replace(d.load(), threads=t) if t else d.load()
            for d, t in zip(demands, choice.threads or [0] * len(demands))
        ]
        point = choice.point
        state = self.model.steady_state(
            loads, point.cpu_khz, point.gpu_hz, point.emc_hz, self.background_gpu
        )
        sigma = np.sqrt(np.log(1.0 + self.model.latency_cv**2))
        power = float(state.power_w)
        on_goal, in_time, lateness = [], [], []
        for i, (g, s) in enumerate(zip(served, combo)):
            mean = float(np.ravel(state.latency_ms)[i])
            if g.max_latency_ms:
                # a lognormal latency of this mean: P(L <= goal) and E[max(0, L / goal - 1)]
                upper = (np.log(mean / g.max_latency_ms) + sigma**2 / 2) / sigma
                timely = float(ndtr(-upper + sigma))
                lateness.append(float(mean / g.max_latency_ms * ndtr(upper) - ndtr(upper - sigma)))
            else:
                timely = 1.0
                lateness.append(0.0)
            in_time.append(timely if g.max_latency_ms else None)
            good = timely if s.accuracy >= g.min_accuracy else 0.0
            if g.max_energy_mj and power * mean > g.max_energy_mj:
                good = 0.0
            on_goal.append(good)
        return Forecast(
            tuple(g.priority for g in served),
            tuple(float(r) for r in np.ravel(state.rate_hz)),
            tuple(on_goal),
            tuple(in_time),
            tuple(lateness),
            power,
        )
