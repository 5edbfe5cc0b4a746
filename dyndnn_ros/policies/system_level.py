"""Policies that set clocks: the hierarchical manager (sub-network + DVFS) and DVFS only.

Hierarchical manager (after Xun, Hare, Merrett):
- app level: per application, the sub-network that meets its accuracy goal at the least cost, i.e.
  the fastest one with accuracy >= min_accuracy (in this platform model a faster sub-network costs
  less energy at any clocks, so this choice is also the energy-optimal one);
- system level: the CPU/GPU/EMC clocks that meet every application's p95 latency goal and the power
  cap at the least predicted board power (search.py);
- feedback: each app's latency prediction is multiplied by a Kalman-filtered slowdown factor
  (measured / predicted for what ran), and predicted power by a filtered measured/predicted ratio;
- hysteresis: improvements in sub-network must persist `hold_periods` periods, and clocks change
  only when that saves more than `min_saving` of power or the old clocks no longer meet the goals;
- priorities: when no clocks meet everything, the lowest-priority app first has its accuracy goal
  relaxed (a faster sub-network), then is given up (its goals ignored), and so on upwards; every
  relaxation is reported in Decision.given_up with the reason.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, Mapping

from dyndnn_ros.platforms.model import OperatingPoint
from dyndnn_ros.policies.base import (
    ClockSetting,
    Decision,
    Observation,
    PerformanceGoal,
    Policy,
    PolicyError,
    register_policy,
    validate_goals,
)
from dyndnn_ros.policies.feedback import SlowdownFilter, SwitchHysteresis
from dyndnn_ros.policies.search import (
    AppDemand,
    ClockChoice,
    as_platform_model,
    point_to_setting,
    predict,
    search_clocks,
    setting_to_point,
)
from dyndnn_ros.profiles import ModelProfile, SubnetProfile


def p95_ratio(subnet: SubnetProfile) -> float:
    return max(1.0, subnet.latency_p95_ms / subnet.latency_mean_ms)


class SystemLevelPolicy(Policy):
    """Shared machinery: app-to-cluster mapping, feedback filters, the relaxation ladder, hysteresis."""

    relax_accuracy_first = True

    def __init__(
        self,
        platform: Any = None,
        headroom: float = 0.03,
        hold_periods: int = 3,
        min_saving: float = 0.03,
        use_feedback: bool = True,
    ) -> None:
        if not 0 <= headroom < 0.5 or hold_periods < 1 or not 0 <= min_saving < 1:
            raise PolicyError(f"{self.name}: need 0 <= headroom < 0.5, hold_periods >= 1, 0 <= min_saving < 1")
        self.model = as_platform_model(platform)
        self.headroom = headroom
        self.hold_periods = hold_periods
        self.min_saving = min_saving
        self.use_feedback = use_feedback
        self.reset()

    def reset(self) -> None:
        self._slowdown: dict[str, SlowdownFilter] = {}
        self._power = SlowdownFilter(process_variance=0.005, measurement_variance=0.01)
        self._hysteresis: dict[str, SwitchHysteresis] = {}
        self._last_point: OperatingPoint | None = None

    @abstractmethod
    def app_level(self, goal: PerformanceGoal, profile: ModelProfile, relaxed: bool, slowdown: float) -> tuple[SubnetProfile, str]:
        """The sub-network for one app (relaxed: its accuracy goal may be broken to meet latency), and why."""

    # -- helpers ------------------------------------------------------------------------------
    def _clusters(self, goals: Mapping[str, PerformanceGoal], observation: Observation) -> dict[str, int]:
        names = [c.name for c in self.model.description.clocks.cpu_clusters]
        mapping = {}
        for index, app in enumerate(sorted(goals)):
            named = observation.app_cluster.get(app)
            mapping[app] = names.index(named) if named in names else index % len(names)
        return mapping

    def _demand(self, goal: PerformanceGoal, subnet: SubnetProfile, cluster: int, observation: Observation, constrained: bool) -> AppDemand:
        target = goal.max_latency_ms * (1.0 - self.headroom) if constrained and goal.max_latency_ms else 0.0
        return AppDemand(
            goal.app, subnet.latency_mean_ms, p95_ratio(subnet), float(observation.input_fps.get(goal.app, 0.0)),
            cluster, self._slowdown[goal.app].estimate if self.use_feedback else 1.0, target,
        )

    def _update_feedback(self, goals, profiles, observation: Observation, clusters: dict[str, int]) -> None:
        ran: list[tuple[PerformanceGoal, AppDemand]] = []
        for goal in goals.values():
            self._slowdown.setdefault(goal.app, SlowdownFilter())
            active = observation.active_subnets.get(goal.model)
            profile = profiles.get(goal.model)
            if profile is None or active not in profile.ids:
                continue
            s = profile.subnet(active)
            ran.append((goal, AppDemand(goal.app, s.latency_mean_ms, p95_ratio(s), float(observation.input_fps.get(goal.app, 0.0)), clusters[goal.app])))
        if not self.use_feedback or not ran:
            return
        point = setting_to_point(self.model, observation.clocks)
        latencies, power = predict(self.model, [d for _, d in ran], point)
        for (goal, _), predicted in zip(ran, latencies):
            if observation.frames.get(goal.app, 0) > 0:
                self._slowdown[goal.app].update(observation.latency_ms.get(goal.app, 0.0), predicted)
        if observation.power_w > 0:
            # with the slowdowns applied, the rates (and so the power) are what the board saw
            slowed = [AppDemand(d.app, d.reference_latency_ms, d.p95_ratio, d.fps, d.cluster, self._slowdown[d.app].estimate) for _, d in ran]
            self._power.update(observation.power_w, predict(self.model, slowed, point)[1])

    # -- the decision -----------------------------------------------------------------------------
    def decide(self, goals: Mapping[str, PerformanceGoal], profiles: Mapping[str, ModelProfile], observation: Observation) -> Decision:
        validate_goals(goals)
        given_up: dict[str, str] = {}
        served = {}
        for app, goal in goals.items():
            if goal.model in profiles:
                served[app] = goal
            else:
                given_up[app] = f"no profile for model {goal.model!r}"
        clusters = self._clusters(served, observation)
        self._update_feedback(served, profiles, observation, clusters)

        lowest_first = sorted(served.values(), key=lambda g: (g.priority, g.app))
        ladder = [step for g in lowest_first for step in ([(g.app, "accuracy")] if self.relax_accuracy_first else []) + [(g.app, "drop")]]
        relaxed: set[str] = set()
        dropped: set[str] = set()
        choice: ClockChoice | None = None
        chosen: dict[str, SubnetProfile] = {}
        reasons: dict[str, str] = {}
        for step in range(len(ladder) + 1):
            proposals = {}
            for goal in served.values():
                slowdown = self._slowdown[goal.app].estimate if self.use_feedback else 1.0
                proposals[goal.app] = self.app_level(goal, profiles[goal.model], goal.app in relaxed, slowdown)
            power_cap = min((g.max_power_w for g in served.values() if g.max_power_w and g.app not in dropped), default=0.0)
            # first with the held (hysteresis) sub-networks, then with the proposals themselves
            for use_held in (True, False):
                chosen = {}
                for goal in served.values():
                    proposal, _ = proposals[goal.app]
                    h = self._hysteresis.setdefault(goal.model, SwitchHysteresis(self.hold_periods))
                    profile = profiles[goal.model]
                    if use_held and h.current in profile.ids and goal.app not in relaxed:
                        current = profile.subnet(h.current)
                        current_ok = current.accuracy >= goal.min_accuracy and current.latency_mean_ms >= proposal.latency_mean_ms
                        chosen[goal.app] = profile.subnet(h.apply(proposal.id, current_ok))
                    else:
                        chosen[goal.app] = proposal
                demands = [self._demand(g, chosen[g.app], clusters[g.app], observation, g.app not in dropped) for g in served.values()]
                choice = search_clocks(self.model, demands, power_cap, power_scale=self._power.estimate if self.use_feedback else 1.0,
                                       keep=self._last_point, min_saving=self.min_saving)
                if choice is not None:
                    break
            if choice is not None or step == len(ladder):
                break
            app, kind = ladder[step]
            goal = served[app]
            if kind == "accuracy":
                relaxed.add(app)
                given_up[app] = f"priority {goal.priority}: accuracy >= {goal.min_accuracy:g} relaxed; no clocks meet every goal with it"
            else:
                dropped.add(app)
                given_up[app] = (f"priority {goal.priority}: given up (latency {goal.max_latency_ms:g} ms"
                                 f"{f', power {goal.max_power_w:g} W' if goal.max_power_w else ''}) so higher-priority goals can be met")
        if choice is None:  # nothing can be met at all: least power with no constraint
            demands = [self._demand(g, chosen[g.app], clusters[g.app], observation, False) for g in served.values()]
            choice = search_clocks(self.model, demands, power_scale=self._power.estimate)
        subnets = {}
        predicted = {}
        for i, goal in enumerate(served.values()):
            subnet = chosen[goal.app]
            self._hysteresis.setdefault(goal.model, SwitchHysteresis(self.hold_periods))
            h = self._hysteresis[goal.model]
            h.current = subnet.id
            subnets[goal.model] = subnet.id
            predicted[goal.app] = choice.p95_ms[i]
            reasons[goal.model] = f"{proposals[goal.app][1]}; predicted p95 {choice.p95_ms[i]:.1f} ms"
        self._last_point = choice.point
        setting = point_to_setting(self.model, choice.point)
        return Decision(subnets, setting, reasons, given_up, predicted, choice.power_w)


@register_policy("hierarchical")
class HierarchicalPolicy(SystemLevelPolicy):
    name = "hierarchical"

    def app_level(self, goal, profile, relaxed, slowdown):
        by_speed = sorted(profile.subnets, key=lambda s: (s.latency_mean_ms, -s.accuracy))
        if relaxed:
            # most accurate one that could meet the latency at the reference (max) clocks
            fits = [s for s in by_speed if not goal.max_latency_ms or s.latency_p95_ms * slowdown <= goal.max_latency_ms]
            if fits:
                best = max(fits, key=lambda s: s.accuracy)
                return best, f"accuracy relaxed: most accurate that can meet {goal.max_latency_ms:g} ms (slowdown x{slowdown:.2f})"
            return by_speed[0], "accuracy relaxed: fastest sub-network"
        meets = [s for s in by_speed if s.accuracy >= goal.min_accuracy]
        if meets:
            return meets[0], f"fastest with accuracy >= {goal.min_accuracy:g}"
        return max(profile.subnets, key=lambda s: s.accuracy), f"no sub-network reaches accuracy {goal.min_accuracy:g}: most accurate"


@register_policy("dvfs_only")
class DvfsOnlyPolicy(SystemLevelPolicy):
    """Clocks only: fixed sub-networks (`subnets`, else the most accurate), same system level and feedback."""

    name = "dvfs_only"
    relax_accuracy_first = False

    def __init__(self, platform: Any = None, subnets: Mapping[str, str] | None = None, **params: Any) -> None:
        self.fixed = dict(subnets or {})
        super().__init__(platform, **params)

    def app_level(self, goal, profile, relaxed, slowdown):
        if goal.model in self.fixed:
            return profile.subnet(self.fixed[goal.model]), "fixed by configuration"
        return max(profile.subnets, key=lambda s: s.accuracy), "fixed: most accurate sub-network"
