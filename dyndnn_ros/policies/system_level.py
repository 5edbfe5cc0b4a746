# SPDX-License-Identifier: Apache-2.0
"""Policies that set clocks: the hierarchical manager (sub-network + DVFS) and DVFS only.

Hierarchical manager (after Xun, Hare, Merrett):
- app level: per application, the sub-network that meets its accuracy goal at the least cost, i.e.
  the fastest one with accuracy >= min_accuracy (in this platform model a faster sub-network costs
  less energy at any clocks, so this choice is also the energy-optimal one);
- system level: the CPU/GPU/EMC clocks that meet every application's latency goal (held on the
  predicted p99, with `headroom`), its energy ceiling per frame and the power cap at the least
  predicted energy per frame (search.py);
- feedback: each app's latency prediction is multiplied by a Kalman-filtered slowdown factor
  (measured / predicted for what ran), and predicted power by a filtered measured/predicted ratio;
- hysteresis: a faster sub-network must be proposed `hold_periods` periods in a row unless
  switching at once saves more than `min_saving` of power; clocks in force stay while their
  predicted p99 meets the target itself (new clocks must also leave the headroom; `keep_slack`)
  and new clocks save less than `min_saving`;
  a relaxed accuracy goal comes back only after `hold_periods` periods that allow it;
- priorities: when no clocks meet everything, the lowest-priority app first steps below its
  accuracy goal (most accurate sub-network first), then is given up (fastest sub-network, goals
  ignored), and so on upwards; the highest-priority app is never given up but gets best effort
  (the most frames within the latency goal whatever their accuracy, else the least worst
  lateness, within the power cap). Every relaxation is reported in Decision.given_up.
- conflicting goals: where that ladder relaxed a goal, the hierarchical manager decides as the
  oracle does (search.most_on_goal), over each app's ladder choice, its accurate app-level
  choice and its fastest sub-network: the most of each priority's frames within both goals
  (highest priority first; up to GOAL_QUANTILE, the 99 % its p99 goal asks), then the most
  within the latency goal (best effort for frames that cannot be on goal), then the least energy
  per frame on goal; a frame a little late beats one below its accuracy goal.
"""
from __future__ import annotations

import itertools
import math
from abc import abstractmethod
from dataclasses import replace
from typing import Any, Mapping

import numpy as np

from dyndnn_ros.platforms.model import AppLoad, OperatingPoint
from dyndnn_ros.policies.base import (
    Decision,
    Observation,
    PerformanceGoal,
    Policy,
    PolicyError,
    register_policy,
    validate_goals,
)
from dyndnn_ros.policies.feedback import SharedLoadFilter, SlowdownFilter, SwitchHysteresis
from dyndnn_ros.policies.search import (
    GOAL_QUANTILE,
    AppDemand,
    ClockChoice,
    as_platform_model,
    most_on_goal,
    point_to_setting,
    predict,
    search_clocks,
    setting_to_point,
    tail_ratio,
    typical_latency_ms,
)
from dyndnn_ros.profiles import ModelProfile, SubnetProfile


COARSE_FACTOR = 8
"""the relaxation ladder searches CPU clocks on a grid this many times smaller than the final one
"""
GPU_SATURATED = 0.98
"""a GPU busy reading this high never idled: the reading is capped, so busy time no longer tells
how much of the GPU other work took; how far it stretched the apps' frames does"""
UNMANAGED_BISECTIONS = 10
"""steps of the search for that share: 0.95 / 2**10, under 0.1 % of the GPU"""
SLOPE_STEP = 0.01
"""half the span of GPU share over which the latencies' slope is taken, for that share's
variance"""
MAX_CONFLICT_COMBINATIONS = 64
"""where goals conflict, the ladder's, the app level's and the fastest sub-networks are tried in
every combination up to this many (three apps; six without the fastest); beyond, the ladder's
choice stands"""


class SystemLevelPolicy(Policy):
    """Shared machinery: app-to-cluster mapping, feedback filters, the relaxation ladder,
    hysteresis."""

    relax_accuracy_first = True
    predicts_at_clocks = True

    def __init__(
        self,
        platform: Any = None,
        headroom: float = 0.03,
        hold_periods: int = 3,
        min_saving: float = 0.03,
        use_feedback: bool = True,
        keep_slack: float | None = None,
        cpu_budget: int = 650,
    ) -> None:
        if not 0 <= headroom < 0.5 or hold_periods < 1 or not 0 <= min_saving < 1:
            raise PolicyError(
                f"{self.name}: need 0 <= headroom < 0.5, hold_periods >= 1, 0 <= min_saving < 1"
            )
        self.model = as_platform_model(platform)
        self.headroom = headroom
        self.hold_periods = hold_periods
        self.min_saving = min_saving
        self.use_feedback = use_feedback
        # each used cluster gets its own CPU clock; CPU combinations x apps searched (ClockGrid):
        # the whole table for two apps on two clusters, 4 clocks per cluster for 8 apps on 3
        self.cpu_budget = cpu_budget
        # new clocks must leave the headroom; clocks in force may use it: kept while they meet the
        # target itself
        self.keep_slack = headroom / (1.0 - headroom) if keep_slack is None else keep_slack
        self.reset()

    def reset(self) -> None:
        self._slowdown: dict[str, SlowdownFilter] = {}
        self._power = SlowdownFilter(process_variance=0.005, measurement_variance=0.01)
        self._shared = SharedLoadFilter()
        self._last_time: float | None = None
        self._last_configuration: tuple | None = None
        self._hysteresis: dict[str, SwitchHysteresis] = {}
        self._last_point: OperatingPoint | None = None
        self._relaxed_last: dict[str, SubnetProfile] = {}
        self._recovering: dict[str, int] = {}
        self._goals: dict[str, PerformanceGoal] = {}

    def dropped_subnet(self, profile: ModelProfile) -> SubnetProfile:
        """A given-up app runs its fastest sub-network: the least GPU time taken from the others.
        """
        return min(profile.subnets, key=typical_latency_ms)

    @abstractmethod
    def app_level(
        self, goal: PerformanceGoal, profile: ModelProfile, slowdown: float
    ) -> tuple[SubnetProfile, str]:
        """The sub-network for one app while its goals are held, and why."""

    # -- helpers ------------------------------------------------------------------------------
    def _clusters(
        self, goals: Mapping[str, PerformanceGoal], observation: Observation
    ) -> dict[str, int]:
        tables = self.model.description.clocks
        return {
            app: tables.cluster_index(observation.app_cluster.get(app), index)
            for index, app in enumerate(sorted(goals))
        }

    def clusters_in_use(
        self,
        goals: Mapping[str, PerformanceGoal],
        observation: Observation,
        threads: Mapping[str, int] | None = None,
    ):
        """Names of the CPU clusters some app's inference runs on: a GPU app's thread, a CPU
        app's threads (`threads`: model -> the count decided, else the count it runs now), which
        fill its cluster and then the next ones. The others are best left to their governor
        (DDS, executors, camera and pre-processing threads run there)."""
        names = self.model.description.clocks.cluster_names
        used = set()
        for app, cluster in self._clusters(goals, observation).items():
            model = goals[app].model
            count = (threads or {}).get(model) or observation.threads.get(model, 0)
            load = AppLoad(0.0, 0.0, cluster, device=observation.app_device.get(app, "gpu"),
                           threads=int(count))
            used |= {names[c] for c, cores in self.model.occupied_cores(load) if cores > 0}
        return used

    def _demand(
        self,
        goal: PerformanceGoal,
        subnet: SubnetProfile,
        cluster: int,
        observation: Observation,
        constrained: bool,
        headroom: float,
    ) -> AppDemand:
        """A given-up app (not `constrained`) keeps its latency target as best effort."""
        target = goal.max_latency_ms * (1.0 - headroom if constrained else 1.0)
        device = observation.app_device.get(goal.app, "gpu")
        return AppDemand(
            goal.app,
            typical_latency_ms(subnet),
            tail_ratio(subnet),
            float(observation.input_fps.get(goal.app, 0.0)),
            cluster,
            self._slowdown[goal.app].estimate if self.use_feedback else 1.0,
            target,
            best_effort=not constrained,
            device=device,
            threads=int(observation.threads.get(goal.model, 0)),
            thread_options=self.model.thread_options(device, cluster),
            max_energy_mj=goal.max_energy_mj if constrained else 0.0,
            host_overhead_ms=float(observation.host_overhead_ms.get(goal.app, 0.0)),
        )

    def _update_feedback(
        self, goals, profiles, observation: Observation, clusters: dict[str, int]
    ) -> None:
        ran: list[tuple[PerformanceGoal, AppDemand]] = []
        for goal in goals.values():
            self._slowdown.setdefault(goal.app, SlowdownFilter())
            active = observation.active_subnets.get(goal.model)
            profile = profiles.get(goal.model)
            if profile is None or active not in profile.ids:
                continue
            s = profile.subnet(active)
            ran.append(
                (
                    goal,
                    AppDemand(
                        goal.app,
                        typical_latency_ms(s),
                        tail_ratio(s),
                        float(observation.input_fps.get(goal.app, 0.0)),
                        clusters[goal.app],
                        device=observation.app_device.get(goal.app, "gpu"),
                        threads=int(observation.threads.get(goal.model, 0)),
                        host_overhead_ms=float(observation.host_overhead_ms.get(goal.app, 0.0)),
                    ),
                )
            )
        # the clusters the apps run on: the manager node leaves the others to their governor
        in_use = self.clusters_in_use(goals, observation)
        clocks = observation.clocks
        configuration = (
            sorted((n, khz) for n, khz in clocks.cpu_khz.items() if n in in_use),
            clocks.gpu_hz, clocks.emc_hz, clocks.use_default_governors,
            sorted(observation.active_subnets.items()), sorted(observation.threads.items()),
        )
        new_configuration = configuration != self._last_configuration
        self._last_configuration = configuration
        if not self.use_feedback or not ran:
            return
        point = setting_to_point(self.model, observation.clocks)
        window = observation.time_s - self._last_time if self._last_time is not None else 0.0
        self._last_time = observation.time_s
        counted = {app: n / window for app, n in observation.frames.items()} if window else {}
        rates = {g.app: observation.frame_rate_hz.get(g.app, counted.get(g.app, math.nan))
                 for g, _ in ran}
        demands = [d for _, d in ran]
        # a rate not yet measured since the configuration changed: the busy reading cannot be
        # split into the apps' part and the rest; how far the frames stretched still tells
        measured = not any(map(math.isnan, rates.values()))
        shared_before = self._shared.estimate
        if observation.gpu_util >= GPU_SATURATED or (observation.gpu_util > 0 and not measured):
            # in a period the configuration changed in, the frames counted started after the
            # change and finished before the period's end: the fast ones (the slow one still
            # runs). Their stretch read the share 2 sd low on average (Xavier NX seed 39); in a
            # period it stood through, 0.15 sd
            stretched = None if new_configuration else self._unmanaged_from_latency(
                ran, demands, point, observation)
            if stretched is not None:
                self._shared.observe(*stretched)
        elif observation.gpu_util > 0:
            self._shared.update(observation.gpu_util, self._managed_gpu_busy(ran, point, rates))
        latencies, _ = predict(self.model, demands, point, self._shared.estimate)
        if self._shared.estimate != shared_before:
            # what the shared load now explains of a slowdown, the slowdown gives back (a job
            # first read as a slowdown must not count twice)
            before, _ = predict(self.model, demands, point, shared_before)
            for (goal, _), old, new in zip(ran, before, latencies):
                if old > 0 and new > 0:
                    self._slowdown[goal.app].give_back(old / new)
        for (goal, _), predicted in zip(ran, latencies):
            if observation.frames.get(goal.app, 0) > 0:
                self._slowdown[goal.app].update(
                    observation.latency_ms.get(goal.app, 0.0),
                    predicted,
                    observation.frames[goal.app],
                )
        if observation.power_w > 0 and not any(map(math.isnan, rates.values())):
            # the power of the frames the board ran: the slowed latencies at the measured rates
            ran_loads = [
                replace(d.load(), slowdown=self._slowdown[d.app].estimate,
                        measured_rate_hz=rates[d.app])
                for _, d in ran
            ]
            state = self.model.steady_state(ran_loads, point.cpu_khz, point.gpu_hz, point.emc_hz,
                                            self._shared.estimate)
            self._power.update(observation.power_w, float(state.power_w))

    def _unmanaged_from_latency(self, ran, demands, point: OperatingPoint,
                                observation: Observation) -> tuple[float, float] | None:
        """The unmanaged GPU share that stretches the GPU apps' predicted latencies (slowdown 1)
        to the ones measured this period (their log ratios, weighted by frames, cancel out), and
        its variance from the frames' jitter (the model's latency_cv); None without a measured
        GPU app. For a saturated GPU, whose busy reading is capped."""
        measured = [
            (i, observation.latency_ms[goal.app], observation.frames[goal.app])
            for i, (goal, demand) in enumerate(ran)
            if observation.frames.get(goal.app, 0) > 0
            and observation.latency_ms.get(goal.app, 0.0) > 0
            and self.model.device(demand.device).on_gpu
        ]
        if not measured:
            return None
        frames = sum(n for _, _, n in measured)

        def excess(share: float) -> float:
            """mean log(measured / predicted) over the frames: falls as the share grows"""
            latencies, _ = predict(self.model, demands, point, share)
            return sum(n * math.log(ms / latencies[i]) for i, ms, n in measured) / frames

        low, high = 0.0, self._shared.max_share
        if excess(low) <= 0.0:
            share = low
        elif excess(high) >= 0.0:
            share = high
        else:
            for _ in range(UNMANAGED_BISECTIONS):
                middle = 0.5 * (low + high)
                low, high = (middle, high) if excess(middle) > 0.0 else (low, middle)
            share = 0.5 * (low + high)
        below = max(0.0, share - SLOPE_STEP)
        above = min(self._shared.max_share, share + SLOPE_STEP)
        slope = (excess(below) - excess(above)) / (above - below)
        if slope <= 0.0:  # the apps' latencies do not depend on it here: nothing learnt
            return None
        return share, self.model.latency_cv**2 / frames / slope**2

    def _managed_gpu_busy(self, ran, point: OperatingPoint, rates: dict[str, float]) -> float:
        """The GPU busy fraction the managed apps' frames account for at the clocks in force: the
        frames each app was seen to run times the GPU time one frame takes there. Measured rates,
        not predicted ones: contention the model does not know of lowers the rates."""
        state = self.model.steady_state(
            [replace(d.load(), slowdown=1.0, measured_rate_hz=rates[d.app]) for _, d in ran],
            point.cpu_khz,
            point.gpu_hz,
            point.emc_hz,
            self._shared.estimate,
        )
        # a frame's GPU time (latency x gpu_share: its GPU and memory parts) is not stretched by
        # the shared load; min(1, rate x latency) x gpu_share shrank where an overestimated
        # share stretched the predicted latency past the frame period, and so read the
        # overestimate back as unmanaged busy
        gpu_time_s = state.latency_ms * state.gpu_share / 1000.0
        return float(np.sum(np.minimum(1.0, state.rate_hz * gpu_time_s)))

    # -- the decision -----------------------------------------------------------------------------
    def decide(
        self,
        goals: Mapping[str, PerformanceGoal],
        profiles: Mapping[str, ModelProfile],
        observation: Observation,
    ) -> Decision:
        validate_goals(goals)
        given_up: dict[str, str] = {}
        served = {}
        for app, goal in goals.items():
            if goal.model in profiles:
                served[app] = goal
            else:
                given_up[app] = f"no profile for model {goal.model!r}"
        clusters = self._clusters(served, observation)
        for (
            app,
            goal,
        ) in served.items():  # a relaxation held for an old target must not delay the new one
            if self._goals.get(app) not in (None, goal):
                self._relaxed_last.pop(app, None)
                self._recovering.pop(app, None)
        self._goals = dict(served)
        self._update_feedback(served, profiles, observation, clusters)
        power_scale = self._power.estimate if self.use_feedback else 1.0
        shared_gpu = self._shared.estimate if self.use_feedback else 0.0

        proposals = {}
        for goal in served.values():
            slowdown = self._slowdown[goal.app].estimate if self.use_feedback else 1.0
            proposals[goal.app] = self.app_level(goal, profiles[goal.model], slowdown)
        ladder = self._ladder(served, profiles, proposals)
        held: dict[str, SubnetProfile] = {}
        for goal in served.values():
            proposal = proposals[goal.app][0]
            h = self._hysteresis.setdefault(goal.model, SwitchHysteresis(self.hold_periods))
            profile = profiles[goal.model]
            if h.current in profile.ids:
                current = profile.subnet(h.current)
                # moving to a faster sub-network (an improvement) waits; one the goal needs does
                # not
                current_ok = current.accuracy >= goal.min_accuracy and typical_latency_ms(
                    current
                ) >= typical_latency_ms(proposal)
                held[goal.app] = profile.subnet(h.apply(proposal.id, current_ok))
            else:
                held[goal.app] = proposal

        def search(demands, headroom: float, cpu_budget: int, refine: bool) -> ClockChoice | None:
            # the dead band of clocks in force lies inside the headroom, never past the target
            return search_clocks(
                self.model,
                demands,
                power_cap,
                power_scale=power_scale,
                background_gpu=shared_gpu,
                keep=self._last_point,
                min_saving=self.min_saving,
                keep_slack=self.keep_slack if headroom else 0.0,
                per_cluster=True,
                cpu_budget=cpu_budget,
                refine=refine,
            )

        def least_late(demands) -> ClockChoice:
            # best effort: the least worst lateness within the power cap, the cheapest among ties
            return search_clocks(
                self.model,
                demands,
                power_cap,
                power_scale=power_scale,
                background_gpu=shared_gpu,
                best_effort=True,
                per_cluster=True,
                cpu_budget=self.cpu_budget,
            )

        forced: dict[str, SubnetProfile] = {}  # app -> sub-network below its accuracy goal
        dropped: set[str] = set()
        choice: ClockChoice | None = None
        chosen: dict[str, SubnetProfile] = {}
        for step in range(len(ladder) + 1):
            power_cap = min(
                (g.max_power_w for g in served.values() if g.max_power_w and g.app not in dropped),
                default=0.0,
            )
            # the held (hysteresis) sub-networks, unless the proposals meet the goals and save more
            # than min_saving: hysteresis is for marginal changes, not for paying to keep a choice
            options = []
            for candidates in (held, {app: p[0] for app, p in proposals.items()}):
                trial = {g.app: forced.get(g.app) or candidates[g.app] for g in served.values()}
                if options and trial == options[0][0]:
                    continue
                # the headroom guards against prediction error; a goal it alone makes look
                # infeasible is held without it rather than relaxed or given up
                for headroom in (self.headroom, 0.0):
                    demands = [
                        self._demand(
                            g,
                            trial[g.app],
                            clusters[g.app],
                            observation,
                            g.app not in dropped,
                            headroom,
                        )
                        for g in served.values()
                    ]
                    # the ladder walks on a coarse CPU grid (it may search dozens of times);
                    # the step it settles on is searched again on the full grid below
                    found = search(demands, headroom, self.cpu_budget // COARSE_FACTOR, False)
                    if found is not None or not self.headroom:
                        break
                options.append((trial, demands, found, headroom))
            feasible = [o for o in options if o[2] is not None]
            if feasible:
                keep_held = options[0][2] is not None and options[0][2].power_w <= feasible[-1][
                    2
                ].power_w * (1.0 + self.min_saving)
                chosen, demands, choice, headroom = options[0] if keep_held else feasible[-1]
                choice = search(demands, headroom, self.cpu_budget, True) or choice
            else:
                chosen, demands = options[-1][0], options[-1][1]
            if choice is not None or step == len(ladder):
                break
            app, subnet = ladder[step]
            goal = served[app]
            if subnet is not None:
                forced[app] = subnet
                given_up[app] = (
                    f"priority {goal.priority}: accuracy >= {goal.min_accuracy:g}"
                    f" relaxed to {subnet.accuracy:.4f} ({subnet.id}): no clocks meet every"
                    " latency and energy goal with more accurate sub-networks"
                )
            else:
                dropped.add(app)
                forced[app] = self.dropped_subnet(profiles[goal.model])
                given_up[app] = (
                    f"priority {goal.priority}: given up (latency {goal.max_latency_ms:g} ms"
                    f"{f', power {goal.max_power_w:g} W' if goal.max_power_w else ''}"
                    f"{f', energy {goal.max_energy_mj:g} mJ' if goal.max_energy_mj else ''});"
                    f" runs {forced[app].id} so higher-priority goals can be met, its latency"
                    " as best effort"
                )
        if choice is None:  # even the highest priority cannot be met
            # the most frames within their latency goal whatever their accuracy (the oracle's
            # and the report's order when no frame can be on goal), else the least worst lateness
            timely = self._most_on_goal(
                [replace(g, min_accuracy=0.0, max_energy_mj=0.0,
                         max_power_w=0.0 if g.app in dropped else g.max_power_w)
                 for g in served.values()],  # the ladder's power cap: none for a dropped app
                [tuple(chosen[g.app] for g in served.values())],
                clusters, observation, power_scale, shared_gpu,
            )
            choice = timely[1] if timely is not None else least_late(demands)
            for i, goal in enumerate(served.values()):
                if goal.app not in dropped:
                    given_up[goal.app] = (
                        f"priority {goal.priority}: latency {goal.max_latency_ms:g} ms"
                        " cannot be met"
                        f"{f' within {power_cap:g} W' if power_cap else ''}"
                        f"{' and its energy ceiling' if goal.max_energy_mj else ''}; best effort,"
                        f" predicted p99 {choice.tail_ms[i]:.1f} ms"
                    )
        conflict = None
        if (forced or not choice.met) and self.relax_accuracy_first:
            conflict = self._serve_frames_on_goal(
                served, profiles, proposals, chosen, clusters, observation, power_scale, shared_gpu
            )
            if conflict is not None:
                chosen, choice, shares = conflict
                forced = {
                    g.app: chosen[g.app]
                    for g in served.values()
                    if chosen[g.app].accuracy < g.min_accuracy
                }
                dropped = set()
                self._conflict_reasons(list(zip(served.values(), shares)), chosen, given_up,
                                       lone=len(served) == 1)
        held_apps = self._hold_relaxations(served, chosen, forced, dropped, given_up)
        if held_apps:
            # clocks for the sub-networks held, by the rule that decided the conflict
            held_back = conflict and self._most_on_goal(
                list(served.values()), [tuple(chosen[g.app] for g in served.values())],
                clusters, observation, power_scale, shared_gpu
            )
            if held_back:
                choice = held_back[1]
                # the shares quoted are those at these clocks, not at the ones searched first
                self._conflict_reasons(
                    [(g, share) for g, share in zip(served.values(), held_back[2])
                     if g.app not in held_apps],
                    chosen, given_up, lone=len(served) == 1)
            else:
                choice = least_late([
                    self._demand(g, chosen[g.app], clusters[g.app], observation,
                                 g.app not in dropped, self.headroom)
                    for g in served.values()
                ])
                if conflict:  # no point puts a frame on goal at the sub-networks held
                    for i, g in enumerate(served.values()):
                        if g.app not in held_apps:
                            given_up[g.app] = (
                                f"priority {g.priority}: goals conflict; runs {chosen[g.app].id},"
                                f" best effort, predicted p99 {choice.tail_ms[i]:.1f} ms"
                            )
        self._relaxed_last = {app: chosen[app] for app in forced if app not in dropped}
        subnets, predicted, reasons, threads = {}, {}, {}, {}
        for i, goal in enumerate(served.values()):
            subnet = chosen[goal.app]
            self._hysteresis[goal.model].current = subnet.id
            subnets[goal.model] = subnet.id
            if choice.threads and choice.threads[i]:
                threads[goal.model] = choice.threads[i]
            predicted[goal.app] = choice.tail_ms[i]
            why = proposals[goal.app][1] if goal.app not in forced else given_up.get(goal.app, "")
            reasons[goal.model] = f"{why}; predicted p99 {choice.tail_ms[i]:.1f} ms" + (
                f", {choice.energy_mj[i]:.1f} mJ/frame" if goal.max_energy_mj else ""
            )
        self._last_point = choice.point
        return Decision(
            subnets,
            point_to_setting(self.model, choice.point),
            reasons,
            given_up,
            predicted,
            choice.power_w,
            threads,
        )

    def _conflict_reasons(self, goal_shares, chosen, given_up, lone: bool) -> None:
        """Where the conflict rule decided: for each (goal, predicted share of frames on goal),
        why the app is not served in full, or no reason (any earlier one cleared) where it is.
        A `lone` app's conflict is between its own goals (latency against accuracy or energy).
        """
        conflict = "its own goals conflict" if lone else "goals conflict"
        for g, share in goal_shares:
            given_up.pop(g.app, None)
            if share < GOAL_QUANTILE:
                given_up[g.app] = (
                    f"priority {g.priority}: {conflict}; runs {chosen[g.app].id},"
                    f" {100 * share:.0f} % of frames predicted within"
                    f" {g.max_latency_ms:g} ms, accuracy {g.min_accuracy:g}"
                    f"{f', energy {g.max_energy_mj:g} mJ' if g.max_energy_mj else ''}"
                )

    def _serve_frames_on_goal(
        self, served, profiles, proposals, chosen, clusters, observation, power_scale, shared_gpu
    ) -> tuple[dict[str, SubnetProfile], ClockChoice, tuple[float, ...]] | None:
        """Where the ladder had to relax goals: each app's ladder choice, its app-level proposal
        or its fastest sub-network (dropped_subnet: its frames in time where none can be on
        goal), whichever combination and clocks put more of each priority's frames on goal, then
        within their latency goal (search.most_on_goal with the filtered predictions: the
        oracle's rule for conflicting goals), the clocks in force kept while they do as well;
        None when under SHARE_STEP of every priority's frames can be on goal, where the
        ladder's best effort stands. A latency goal missed on a few frames then beats an
        accuracy goal missed on every frame. The fastest sub-networks are left out where the
        combinations would pass MAX_CONFLICT_COMBINATIONS."""
        goals = list(served.values())
        for fastest in (True, False):
            options = [
                list({
                    s.id: s
                    for s in (chosen[g.app], proposals[g.app][0],
                              *([self.dropped_subnet(profiles[g.model])] if fastest else []))
                }.values())
                for g in goals
            ]
            if int(np.prod([len(o) for o in options])) <= MAX_CONFLICT_COMBINATIONS:
                break
        else:
            return None
        return self._most_on_goal(
            goals, list(itertools.product(*options)), clusters, observation, power_scale,
            shared_gpu
        )

    def _most_on_goal(
        self, goals, combos, clusters, observation, power_scale, shared_gpu
    ) -> tuple[dict[str, SubnetProfile], ClockChoice, tuple[float, ...]] | None:
        """search.most_on_goal over these sub-network combinations (one per goal, in order)."""
        power_cap = min((g.max_power_w for g in goals if g.max_power_w), default=0.0)

        def candidate(combo):
            return (
                [
                    self._demand(g, s, clusters[g.app], observation, True, 0.0)
                    for g, s in zip(goals, combo)
                ],
                [s.accuracy for s in combo],
            )

        best = most_on_goal(
            self.model,
            goals,
            [candidate(c) for c in combos],
            power_cap,
            shared_gpu,
            power_scale,
            self.cpu_budget,
            keep=self._last_point,
            min_saving=self.min_saving,
            headroom=self.headroom,
        )
        if best is None:
            return None
        k, choice, shares, _ = best
        return {g.app: s for g, s in zip(goals, combos[k])}, choice, shares

    def _hold_relaxations(self, served, chosen, forced, dropped, given_up) -> set[str]:
        """An app whose accuracy was relaxed goes back up only after `hold_periods` periods in a
        row that allow it, so a target near the edge does not make its sub-network flip every
        period. Returns the apps whose sub-network was held back (the clocks must be searched
        again)."""
        held: set[str] = set()
        for goal in served.values():
            previous = self._relaxed_last.get(goal.app)
            now = chosen[goal.app]
            if previous is None or goal.app in dropped or now.accuracy <= previous.accuracy:
                self._recovering.pop(goal.app, None)
                continue
            count = self._recovering.get(goal.app, 0) + 1
            if count >= self.hold_periods:
                self._recovering.pop(goal.app)
                continue
            self._recovering[goal.app] = count
            chosen[goal.app] = forced[goal.app] = previous
            given_up[goal.app] = (
                f"priority {goal.priority}: accuracy >= {goal.min_accuracy:g}"
                f" still relaxed to {previous.accuracy:.4f}"
                f" ({previous.id}) until {now.id} fits for {self.hold_periods} periods"
            )
            held.add(goal.app)
        return held

    def _ladder(self, served, profiles, proposals) -> list[tuple[str, SubnetProfile | None]]:
        """Relaxations in order, lowest priority first: each faster sub-network below the app's
        accuracy goal, most accurate first (hierarchical only), then give the app up (None). The
        highest-priority app is never given up: if even it cannot be served, it gets best effort.
        """
        lowest_first = sorted(served.values(), key=lambda g: (g.priority, g.app))
        ladder: list[tuple[str, SubnetProfile | None]] = []
        for goal in lowest_first:
            if self.relax_accuracy_first:
                proposal = proposals[goal.app][0]
                faster = [
                    s
                    for s in profiles[goal.model].subnets
                    if typical_latency_ms(s) < typical_latency_ms(proposal)
                ]
                ladder += [(goal.app, s) for s in sorted(faster, key=lambda s: -s.accuracy)]
            if goal is not lowest_first[-1]:
                ladder.append((goal.app, None))
        return ladder


@register_policy("hierarchical")
class HierarchicalPolicy(SystemLevelPolicy):
    name = "hierarchical"

    def app_level(self, goal, profile, slowdown):
        meets = [s for s in profile.subnets if s.accuracy >= goal.min_accuracy]
        if meets:
            return min(
                meets, key=lambda s: (typical_latency_ms(s), -s.accuracy)
            ), f"fastest with accuracy >= {goal.min_accuracy:g}"
        return max(
            profile.subnets, key=lambda s: s.accuracy
        ), f"no sub-network reaches accuracy {goal.min_accuracy:g}: most accurate"


@register_policy("dvfs_only")
class DvfsOnlyPolicy(SystemLevelPolicy):
    """Clocks only: fixed sub-networks (`subnets`, else the most accurate), same system level and
    feedback."""

    name = "dvfs_only"
    relax_accuracy_first = False

    def __init__(
        self, platform: Any = None, subnets: Mapping[str, str] | None = None, **params: Any
    ) -> None:
        self.fixed = dict(subnets or {})
        super().__init__(platform, **params)

    def dropped_subnet(self, profile):
        return self.app_level(PerformanceGoal("-", profile.model), profile, 1.0)[0]

    def app_level(self, goal, profile, slowdown):
        if goal.model in self.fixed:
            return profile.subnet(self.fixed[goal.model]), "fixed by configuration"
        return max(profile.subnets, key=lambda s: s.accuracy), "fixed: most accurate sub-network"
