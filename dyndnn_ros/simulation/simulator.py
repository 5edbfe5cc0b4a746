# SPDX-License-Identifier: Apache-2.0
"""A simulated board: clocks driven by governors or pinned, sub-networks running frame by frame.

Time advances in ticks (10 ms by default). Each tick the platform model gives every app's latency
for the clocks in force; frames that start in the tick get that latency times a lognormal jitter,
each app's k-th frame the k-th draw of its own stream (InferenceDraws), so runs under different
policies share their draws.
Frames follow the inference node's timeline: it keeps only the newest camera frame, so a frame
starts when the previous one ends (its inference, then the node's per-frame host work) if a camera
frame arrived meanwhile, else at the next arrival.
Utilisation and board power of a tick come from the time each app's frames actually ran in it;
the governors (schedutil per CPU cluster, nvhost_podgov on the GPU, the EMC activity rule)
then pick the next clocks from that, within each domain's [min, max] range, as the kernel does;
pinning a clock is min = max. The same core runs faster than real time in the evaluation and
in real time behind a Jetson-like sysfs tree (sysfs_board.py).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from dyndnn_ros.platforms.description import PlatformError
from dyndnn_ros.simulation.governors import ActivityGovernor, GovernorConfig, PodGov, Schedutil
from dyndnn_ros.platforms.model import AppLoad, LoadState, PlatformModel, typical_latency_ms
from dyndnn_ros.profiles import ModelProfile

SWITCH_COST_MS = 0.13
"""Added to the first frame after a sub-network switch: set_active_subnet of the Once-for-All
reference code (github.com/mit-han-lab/once-for-all) only re-selects weight slices, about 0.13 ms
measured on a 2-core CPU; weights stay shared, so no reload (`make bench` measures this package's
own switches)."""


class InferenceDraws:
    """One app's standard normal draws for its frames' latency jitter, the k-th frame's keyed by
    (board seed, app name, k), not taken in turn from one stream of the board: runs of a scenario
    under different policies give an app the same draws in the same order (common random
    numbers), so what tells their late frames apart is their decisions, and one app's frames no
    longer shift another's draws. Keyed by the frame's count rather than its camera frame: an app
    that runs back-to-back starts frames off the camera's ticks, where two runs would share no
    camera frame. Drawn in blocks: a board that runs for days keeps one."""

    BLOCK = 1024

    def __init__(self, seed: int, app: str) -> None:
        self._key = (seed, zlib.crc32(app.encode()))
        self.drawn = 0
        """frames drawn for so far: the index of the next draw"""
        self._block = -1
        self._normals = np.empty(0)

    def next_normal(self) -> float:
        block, offset = divmod(self.drawn, self.BLOCK)
        if block != self._block:
            rng = np.random.default_rng([*self._key, block])
            self._block, self._normals = block, rng.standard_normal(self.BLOCK)
        self.drawn += 1
        return float(self._normals[offset])


@dataclass
class SimulatedApp:
    app: str
    profile: ModelProfile
    fps: float
    """camera rate; 0 = back-to-back"""
    cluster: int
    subnet: str
    draws: InferenceDraws
    """its frames' latency draws, the board's for this app's name"""
    device: str = "gpu"
    threads: int = 0
    """CPU device: threads its inference runs (0 on the GPU)"""
    pending_subnet: str | None = None
    pending_threads: int = 0
    next_start_s: float = 0.0
    switched: bool = False
    running_until_s: float = 0.0
    """end of the inference of the frame started last (it may run into later ticks)"""
    host_overhead_ms: float = 0.0
    """the inference node's host work after each inference (AppLoad.host_overhead_ms)"""
    host_until_s: float = 0.0
    """end of the host work of the frame started last"""


@dataclass(frozen=True)
class Frame:
    app: str
    start_s: float
    latency_ms: float
    subnet: str
    accuracy: float


@dataclass
class DomainControl:
    """What the kernel files say for one clock domain: the allowed range and the governor."""

    lo: int
    hi: int
    governor: str


@dataclass
class TickLog:
    time_s: list[float] = field(default_factory=list)
    cpu_khz: list[tuple[int, ...]] = field(default_factory=list)
    gpu_hz: list[int] = field(default_factory=list)
    emc_hz: list[int] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    gpu_busy: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class TickActivity:
    """What the board did in one tick: utilisations and power from the frames that ran in it."""

    cluster_busy_cores: np.ndarray
    gpu_busy: float
    emc_busy: float
    power_w: float


class BoardSimulator:
    GPU_IDLE = 0.01
    """GPU busy fraction under which the GPU driver requests no EMC floor"""
    STATE_CACHE_SIZE = 4096
    """model results kept for (workload, clocks) seen before: clocks dwell, so ticks repeat them"""

    def __init__(
        self, model: PlatformModel, seed: int = 0, tick_s: float = 0.01, record: bool = True
    ) -> None:
        """`record`: keep every frame and tick in `frames` and `log` (an evaluation run reads
        them); a board that runs for days keeps neither."""
        self.model = model
        self.record = record
        self.tick_s = tick_s
        self.seed = seed
        clocks = model.description.clocks
        self.cpu_table, self.gpu_table, self.emc_table = (
            clocks.cpu_available_khz,
            clocks.gpu_available_hz,
            clocks.emc_available_hz,
        )
        self.cpu = [
            DomainControl(self.cpu_table[0], self.cpu_table[-1], "schedutil")
            for _ in range(model.clusters)
        ]
        self.gpu = DomainControl(self.gpu_table[0], self.gpu_table[-1], "nvhost_podgov")
        self.emc_locked_hz = 0
        self.emc_governor = "default"
        self.cpu_khz = [self.cpu_table[-1]] * model.clusters
        self.gpu_hz = self.gpu_table[-1]
        self.emc_hz = self.emc_table[-1]
        config = GovernorConfig.from_yaml(model.governors)
        self._schedutil = [
            Schedutil(self.cpu_table, config.schedutil_rate_limit_s, config.pelt_half_life_s)
            for _ in range(model.clusters)
        ]
        self._podgov = PodGov(self.gpu_table, **config.podgov)
        self._emc_gov = ActivityGovernor(
            self.emc_table, config.emc_up_threshold, config.pelt_half_life_s
        )
        self.apps: dict[str, SimulatedApp] = {}
        self._draws: dict[str, InferenceDraws] = {}
        self.background_gpu = 0.0
        self._gpu_queue = 0.0
        """GPU work asked for in earlier ticks and not yet run, in ticks of work"""
        self.external_loads: tuple[AppLoad, ...] = ()
        """work run elsewhere (inference nodes with the simulated back end) that shares this board
        """
        self.time_s = 0.0
        self._ticks = 0
        self.energy_j = 0.0
        self.frames: list[Frame] = []
        self.log = TickLog()
        self.last_state: LoadState | None = None
        self.last_activity: TickActivity | None = None
        self._states: dict[tuple, LoadState] = {}

    # -- workload ---------------------------------------------------------------------------------
    def add_app(
        self,
        app: str,
        profile: ModelProfile,
        fps: float,
        cluster: int,
        subnet: str | None = None,
        device: str = "gpu",
        host_overhead_ms: float = 0.0,
    ) -> None:
        """Run `profile` for `app`; on a CPU device with the threads its latencies were measured
        with (the device's reference threads) until request_threads says otherwise.
        `host_overhead_ms`: the node's own work per frame after the inference."""
        if not (math.isfinite(host_overhead_ms) and host_overhead_ms >= 0):
            raise PlatformError(f"app {app!r}: host_overhead_ms must be >= 0, got "
                                f"{host_overhead_ms}")
        start = subnet or max(profile.subnets, key=lambda s: s.accuracy).id
        profile.subnet(start)  # raises on an unknown id
        dev = self.model.device(device)
        threads = 0 if dev.on_gpu else dev.reference_threads
        if threads and profile.threads and profile.threads != threads:
            raise PlatformError(
                f"profile {profile.model!r} was measured with {profile.threads} threads, the"
                f" board's {device} model with {threads}"
            )
        # an app added again under its name goes on with its draws, not from the first again
        draws = self._draws.setdefault(app, InferenceDraws(self.seed, app))
        sim = SimulatedApp(app, profile, fps, cluster, start, draws, device, threads,
                           host_overhead_ms=float(host_overhead_ms))
        sim.next_start_s = self.time_s
        self.model.occupied_cores(self._load(sim))  # raises if its threads do not fit
        self.apps[app] = sim

    def request_switch(self, app: str, subnet: str) -> None:
        """Run `subnet` from the app's next frame."""
        sim = self.apps[app]
        sim.profile.subnet(subnet)
        if subnet != sim.subnet:
            sim.pending_subnet = subnet

    def request_threads(self, app: str, threads: int) -> None:
        """Run a CPU app's next frames on `threads` threads (torch.set_num_threads between
        frames)."""
        sim = self.apps[app]
        if not sim.threads:
            raise PlatformError(f"app {app!r} runs on the {sim.device}: it has no thread count")
        if int(threads) not in self.model.thread_options(sim.device, sim.cluster):
            raise PlatformError(
                f"app {app!r}: {threads} threads; the board allows"
                f" {self.model.thread_options(sim.device, sim.cluster)} from its cluster"
            )
        if int(threads) != sim.threads:
            sim.pending_threads = int(threads)

    # -- clocks (what a DVFS component would write)
    # -------------------------------------------------
    def pin(self, cpu_khz: dict[int, int] | None = None, gpu_hz: int = 0, emc_hz: int = 0) -> None:
        """Pin clocks (min = max); 0 / missing leaves a domain as it is."""
        for cluster, khz in (cpu_khz or {}).items():
            if khz:
                self.cpu[cluster].lo = self.cpu[cluster].hi = int(khz)
        if gpu_hz:
            self.gpu.lo = self.gpu.hi = int(gpu_hz)
        if emc_hz:
            self.emc_locked_hz = int(emc_hz)

    def use_governors(self, mode: str = "default") -> None:
        """Hand every clock back to a governor over the full range: 'default' (schedutil,
        nvhost_podgov, EMC activity), 'performance' (all max, like jetson_clocks) or 'powersave'.
        """
        if mode not in ("default", "performance", "powersave"):
            raise ValueError(f"unknown governor mode {mode!r}")
        for c in self.cpu:
            c.lo, c.hi, c.governor = (
                self.cpu_table[0],
                self.cpu_table[-1],
                "schedutil" if mode == "default" else mode,
            )
        self.gpu.lo, self.gpu.hi, self.gpu.governor = (
            self.gpu_table[0],
            self.gpu_table[-1],
            "nvhost_podgov" if mode == "default" else mode,
        )
        self.emc_locked_hz = 0
        self.emc_governor = mode

    # -- time
    # ---------------------------------------------------------------------------------------
    @staticmethod
    def _load(sim: SimulatedApp) -> AppLoad:
        latency = typical_latency_ms(sim.profile.subnet(sim.subnet))
        return AppLoad(latency, sim.fps, sim.cluster, device=sim.device, threads=sim.threads,
                       host_overhead_ms=sim.host_overhead_ms)

    def _state(self) -> LoadState:
        apps = tuple(self._load(a) for a in self.apps.values())
        apps += self.external_loads
        if self.external_loads:  # measured rates change every tick: a cache would never hit
            return self.model.steady_state(
                apps, self.cpu_khz, self.gpu_hz, self.emc_hz, self.background_gpu
            )
        key = (apps, tuple(self.cpu_khz), self.gpu_hz, self.emc_hz, self.background_gpu)
        state = self._states.get(key)
        if state is None:
            if len(self._states) >= self.STATE_CACHE_SIZE:
                self._states.clear()
            state = self._states[key] = self.model.steady_state(
                apps, self.cpu_khz, self.gpu_hz, self.emc_hz, self.background_gpu
            )
        return state

    def step(self) -> LoadState:
        dt = self.tick_s
        start = self._ticks * dt
        end = (self._ticks + 1) * dt  # from a tick count: no drift from adding up floats
        for sim in self.apps.values():
            if sim.pending_subnet is not None and sim.next_start_s < end:
                sim.subnet, sim.pending_subnet, sim.switched = sim.pending_subnet, None, True
            if sim.pending_threads and sim.next_start_s < end:
                sim.threads, sim.pending_threads = sim.pending_threads, 0
        state = self._state()
        sigma = math.sqrt(math.log(1.0 + self.model.latency_cv**2))
        running = np.zeros(len(self.apps))
        host = np.zeros(len(self.apps))

        def overlap(a: float, b: float) -> float:
            return max(0.0, min(b, end) - max(a, start))

        for i, sim in enumerate(self.apps.values()):
            mean_ms = float(state.latency_ms[i])
            subnet = sim.profile.subnet(sim.subnet)
            # the frame started in an earlier tick that still runs
            running[i] = max(0.0, min(sim.running_until_s, end) - start)
            host[i] = overlap(sim.running_until_s, sim.host_until_s)
            bound = (
                int(dt * 1000.0 / max(mean_ms * 0.5, 1e-3)) + 2
            )  # at most this many frames start in a tick
            for _ in range(bound):
                if sim.next_start_s >= end:
                    break
                latency = mean_ms * math.exp(
                    sigma * sim.draws.next_normal() - sigma * sigma / 2
                )
                if sim.switched:
                    latency += SWITCH_COST_MS
                    sim.switched = False
                if self.record:
                    self.frames.append(
                        Frame(sim.app, sim.next_start_s, latency, sim.subnet, subnet.accuracy)
                    )
                done = sim.next_start_s + latency / 1000.0
                freed = done + sim.host_overhead_ms / 1000.0
                running[i] += min(done, end) - sim.next_start_s
                host[i] += overlap(done, freed)
                sim.running_until_s, sim.host_until_s = done, freed
                sim.next_start_s = self._next_start(sim.next_start_s, freed, sim.fps)
        activity = self._activity(state, running / dt, host / dt)
        self.energy_j += activity.power_w * dt
        self._ticks += 1
        self.time_s = end
        self._log(activity.power_w, activity.gpu_busy)
        self._govern(activity)
        self.last_state = state
        self.last_activity = activity
        return state

    @staticmethod
    def _next_start(started_s: float, done_s: float, fps: float) -> float:
        """The inference node keeps the newest camera frame: if one arrived while this frame ran
        (until `done_s`, its host work included), the next starts when it ends; otherwise at the
        next arrival (frames at k / fps)."""
        if fps <= 0:
            return done_s
        next_arrival = (math.floor(started_s * fps + 1e-9) + 1) / fps
        return max(done_s, next_arrival)

    def _activity(self, state: LoadState, busy: np.ndarray, host: np.ndarray) -> TickActivity:
        """Utilisations and power from the fraction of the tick each app had a frame running and
        did its host work (work run elsewhere, external_loads, counts at its steady-state rate)."""
        n = len(self.apps)
        shares = (state.host_share, state.gpu_share, state.emc_share)
        loads = [self._load(a) for a in self.apps.values()] + list(self.external_loads)
        external = np.minimum(1.0, state.rate_hz[n:] * state.latency_ms[n:] / 1000.0)
        busy_all = np.concatenate([np.minimum(1.0, busy), external])
        host_all = np.concatenate([np.minimum(1.0, host), state.host_busy[n:]])
        _, emc, clusters = self.model.utilisation(
            loads, busy_all, *shares, self.background_gpu, host_all
        )
        # The GPU does all the work it is given: frames that overlap in a tick ask for more than
        # the tick holds, and the rest runs in the next ticks (at most each app's frame in flight)
        # instead of being lost from the busy reading and the power it draws.
        asked = self.background_gpu + float(np.sum(busy_all * state.gpu_share)) + self._gpu_queue
        gpu = min(1.0, asked)
        in_flight = float(np.sum(state.gpu_share * state.latency_ms)) / 1000.0 / self.tick_s
        self._gpu_queue = min(asked - gpu, in_flight)
        power = self.model.power_w(self.cpu_khz, self.gpu_hz, self.emc_hz, clusters, gpu, emc)
        return TickActivity(clusters, float(gpu), float(emc), float(power))

    def run_until(self, t_end_s: float) -> None:
        for _ in range(int(math.ceil((t_end_s - self.time_s) / self.tick_s - 1e-9))):
            self.step()

    def _log(self, power: float, gpu_busy: float) -> None:
        if not self.record:
            return
        log = self.log
        log.time_s.append(self.time_s)
        log.cpu_khz.append(tuple(self.cpu_khz))
        log.gpu_hz.append(self.gpu_hz)
        log.emc_hz.append(self.emc_hz)
        log.power_w.append(power)
        log.gpu_busy.append(gpu_busy)

    def _govern(self, state: TickActivity) -> None:
        """Pick the clocks for the next tick within each domain's range, from what ran in this
        one."""
        now, dt = self.time_s, self.tick_s
        for c, control in enumerate(self.cpu):
            busy = float(
                state.cluster_busy_cores[c]
            )  # the busiest CPU of the policy drives schedutil
            if control.lo == control.hi:
                self.cpu_khz[c] = control.lo
            elif control.governor == "performance":
                self.cpu_khz[c] = control.hi
            elif control.governor == "powersave":
                self.cpu_khz[c] = control.lo
            else:
                self.cpu_khz[c] = self._schedutil[c].step(
                    now, dt, min(1.0, busy), self.cpu_khz[c], control.lo, control.hi
                )
        if self.gpu.lo == self.gpu.hi:
            self.gpu_hz = self.gpu.lo
        elif self.gpu.governor == "performance":
            self.gpu_hz = self.gpu.hi
        elif self.gpu.governor == "powersave":
            self.gpu_hz = self.gpu.lo
        else:
            self.gpu_hz = self._podgov.step(
                now, float(state.gpu_busy), self.gpu_hz, self.gpu.lo, self.gpu.hi
            )
        if self.emc_locked_hz:
            self.emc_hz = self.emc_locked_hz
        elif self.emc_governor == "performance":
            self.emc_hz = self.emc_table[-1]
        elif self.emc_governor == "powersave":
            self.emc_hz = self.emc_table[0]
        else:
            # while the GPU works its driver asks for EMC bandwidth in proportion to its clock
            floor = (
                self.emc_table[-1] * self.gpu_hz / self.gpu_table[-1]
                if float(state.gpu_busy) > self.GPU_IDLE
                else 0.0
            )
            self.emc_hz = self._emc_gov.step(
                dt,
                float(state.emc_busy),
                self.emc_hz,
                self.emc_table[0],
                self.emc_table[-1],
                floor,
            )
