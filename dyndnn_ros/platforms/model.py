# SPDX-License-Identifier: Apache-2.0
"""A small platform model: latency and power of sub-networks as functions of clocks and co-running
load.

Data comes from the `performance:` and `power:` sections of config/platforms/<board>.yaml; this
module is the engine. The same engine serves three users:
- the simulator (truth: adds jitter and a background GPU job the policies cannot see),
- the policies (prediction: profile latency scaled to candidate clocks, times a measured slowdown),
- the oracle (perfect knowledge: the simulator's model including the background job).

Latency of one frame at clocks (f_cpu, f_gpu, f_emc), with L the profile latency at the reference
clocks and (c, g, m) the time shares of the device the app runs on:
    t = L * (c * f_cpu_ref / f_cpu + g * f_gpu_ref / f_gpu / (1 - others' GPU share) + m *
    f_emc_ref / f_emc)
A GPU app's CPU part is its host thread on its cluster. A CPU app (g = 0) runs n threads, one per
core, filling its cluster and then the next ones; its CPU part scales with n by Amdahl's law,
A(n) = (1 - p) + p / n, relative to the thread count the profile was measured with, and runs at
the slowest clock among the clusters it occupies (each layer waits for every thread).
Functions accept numpy arrays for the clocks so a search can evaluate a whole clock grid at once.

Frame rate follows the inference node's frame timeline: it keeps only the newest camera frame, so
when a frame finishes the next starts at once if one arrived meanwhile, else at the next arrival. A
frame's cycle is its inference latency L plus the node's own per-frame host work h (taking the
image, converting it to the model's input, publishing the result: `AppLoad.host_overhead_ms`, a
fixed time measured by the node at the clocks in force; it keeps one core of the app's cluster
busy). With frames every T = 1000 / fps ms and lognormal L, a frame occupies max(L + h, T) on
average and the rate is 1000 / E[max(L + h, T)] (closed form below), the rate the simulator's
frames show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
from scipy.special import ndtr  # the standard normal CDF, vectorised

from dyndnn_ros.platforms.description import PlatformDescription, PlatformError, load_platform
from dyndnn_ros.profiles import ModelProfile, SubnetProfile


def typical_latency_ms(subnet: SubnetProfile) -> float:
    """A profiled sub-network's mean latency, or its median where a profile left the mean at 0."""
    return subnet.latency_mean_ms if subnet.latency_mean_ms > 0 else subnet.latency_p50_ms


def frame_period_ms(
    latency_ms: Any, fps: Any, latency_cv: float, host_overhead_ms: Any = 0.0
) -> Any:
    """Mean time one frame occupies the inference thread: E[max(L + h, T)] for a lognormal L of
    this mean and coefficient of variation, h the node's per-frame host work, T the camera period
    (fps 0: back-to-back, L + h)."""
    latency = np.asarray(latency_ms, dtype=float)
    fps = np.asarray(fps, dtype=float)
    host = np.asarray(host_overhead_ms, dtype=float)
    # E[max(L + h, T)] = h + E[max(L, T - h)]; a camera period within h is no wait at all
    period = np.where(fps > 0, np.maximum(1000.0 / np.maximum(fps, 1e-9) - host, 0.0), 0.0)
    sigma = math.sqrt(math.log(1.0 + latency_cv**2))
    if sigma < 1e-9:
        return host + np.maximum(latency, period)
    # E[(L - T)+] = m Phi(d1) - T Phi(d2) (the lognormal's partial expectation)
    with np.errstate(divide="ignore"):
        d1 = (np.log(latency / np.maximum(period, 1e-12)) + sigma * sigma / 2) / sigma
    excess = latency * ndtr(d1) - period * ndtr(d1 - sigma)
    return host + np.where(period > 0, period + excess, latency)


def _fair_shares(demand: np.ndarray, capacity: Any) -> np.ndarray:
    """Max-min fair shares (water-filling) of `capacity` over the apps' demands (first axis):
    an app asking less than an equal share of what is left gets what it asks."""
    n = demand.shape[0]
    if n == 0:
        return demand
    ordered = np.sort(demand, axis=0)
    level = np.full(demand.shape[1:], np.inf)
    found = ordered.sum(axis=0) <= capacity
    below = np.zeros(demand.shape[1:])
    for k in range(n):
        candidate = (capacity - below) / (n - k)
        take = ~found & (candidate <= ordered[k])
        level = np.where(take, candidate, level)
        found = found | take
        below = below + ordered[k]
    return np.minimum(demand, level)


@dataclass(frozen=True)
class OperatingPoint:
    """Clock frequencies of the board: one per CPU cluster (kHz), the GPU and the EMC (Hz)."""

    cpu_khz: tuple[int, ...]
    gpu_hz: int
    emc_hz: int


def _clip(x: Any, lo: float, hi: float) -> Any:
    """np.clip for arrays; plain min/max for the scalars a simulator tick passes (numpy's per-call
    overhead on scalars was most of a simulated run's time)."""
    return np.clip(x, lo, hi) if isinstance(x, np.ndarray) else min(hi, max(lo, x))


@dataclass(frozen=True)
class VoltageCurve:
    min_v: float
    max_v: float
    knee: float
    """fraction of f_max below which the voltage stays at min_v"""

    def ratio(self, f: Any, f_max: float) -> Any:
        """V(f) / V(f_max)."""
        x = _clip((f / f_max - self.knee) / (1.0 - self.knee), 0.0, 1.0)
        return (self.min_v + (self.max_v - self.min_v) * x) / self.max_v


@dataclass(frozen=True)
class DomainPower:
    leakage_w: float
    dynamic_w: float
    """dynamic power of one busy unit (a core, the GPU, the EMC) at f_max"""
    idle_activity: float
    voltage: VoltageCurve
    f_max: float
    units: int = 1

    def power_w(self, f: Any, busy_units: Any) -> Any:
        v = self.voltage.ratio(f, self.f_max)
        activity = self.idle_activity * self.units + (1.0 - self.idle_activity) * _clip(
            busy_units, 0.0, self.units
        )
        return self.leakage_w * v + self.dynamic_w * (f / self.f_max) * v * v * activity


@dataclass(frozen=True)
class TimeShares:
    cpu: float
    gpu: float
    emc: float


@dataclass(frozen=True)
class DeviceModel:
    """How one inference on a device splits its time and, on a CPU, how it scales with threads."""

    shares: TimeShares
    parallel_fraction: float = 1.0
    """Amdahl's p: the share of the CPU part that runs on every thread (CPU devices)"""
    reference_threads: int = 1
    """threads the profiles' latencies were measured with (CPU devices)"""
    threads: tuple[int, ...] = ()
    """thread counts a manager may choose (CPU devices; empty: not a knob)"""

    @property
    def on_gpu(self) -> bool:
        return self.shares.gpu > 0

    def amdahl(self, threads: Any) -> Any:
        """Time of the CPU part on `threads` threads over its time on one."""
        return (1.0 - self.parallel_fraction) + self.parallel_fraction / threads

    def compute_factor(self, threads: Any) -> Any:
        """Time of the CPU part on `threads` threads over its time on the reference threads."""
        return self.amdahl(threads) / self.amdahl(self.reference_threads)


@dataclass(frozen=True)
class AppLoad:
    """One application as the engine sees it: its sub-network's reference latency and its frame
    rate."""

    reference_latency_ms: float
    fps: float
    """camera frame rate; 0 = back-to-back (the next frame starts when the previous ends)"""
    cluster: int
    """index of the CPU cluster its host thread runs on"""
    slowdown: float = 1.0
    """extra factor on the whole latency (the policies' measured slowdown); 1 for the truth"""
    measured_rate_hz: float = 0.0
    """frames per second the app was seen to process (a real-time board's view of work run
    elsewhere); > 0 replaces the rate derived from fps and latency in utilisation and power (the
    frames actually run), not in the GPU time it asks for (its demand: fps and latency)"""
    device: str = "gpu"
    """the device model it runs on (performance.devices of the board description)"""
    threads: Any = 0
    """CPU device: threads (one per core); 0 = the device's reference threads. A search passes a
    numpy axis to evaluate every thread count at once."""
    host_overhead_ms: float = 0.0
    """the inference node's own work per frame outside the inference (image in, results out), on
    one core of `cluster`: it lengthens each frame's cycle, not its latency"""


@dataclass(frozen=True)
class LoadState:
    latency_ms: np.ndarray
    """per app (first axis), broadcast over the clock grid"""
    rate_hz: np.ndarray
    host_share: np.ndarray
    """per app: busy CPU cores per unit of its frame time (a GPU app's host thread: at most 1)"""
    gpu_share: np.ndarray
    """per app: fraction of its frame time that is GPU work (its own, not waiting for others)"""
    emc_share: np.ndarray
    """per app: fraction of its frame time that is memory-bound work"""
    cluster_busy_cores: np.ndarray
    """per cluster (first axis)"""
    gpu_busy: Any
    emc_busy: Any
    power_w: Any
    host_busy: np.ndarray
    """per app: fraction of time its thread does per-frame host work (AppLoad.host_overhead_ms)"""


class PlatformModel:
    """Latency and power engine for one board, built from its description."""

    def __init__(self, description: PlatformDescription) -> None:
        self.description = description
        raw = description.raw
        try:
            perf, power = raw["performance"], raw["power"]
            ref = perf["reference_clocks"]
            self.reference = OperatingPoint(
                (int(ref["cpu_khz"]),) * len(description.clocks.cpu_clusters),
                int(ref["gpu_hz"]),
                int(ref["emc_hz"]),
            )
            self.devices = {str(k): self._device(str(k), v) for k, v in perf["devices"].items()}
            self.host_wait_busy = float(perf["host_wait_busy"])
            self.latency_cv = float(perf["latency_cv"])
            self.max_gpu_contention = float(perf["max_gpu_contention"])
            self.emc_base_activity = float(perf["emc_base_activity"])
            self.base_w = float(power["base_w"])
            clocks = description.clocks
            self.cores_per_cluster = len(clocks.cpu_clusters[0].cpus)
            self.cpu_power = self._domain(
                power["cpu"],
                clocks.cpu_available_khz[-1],
                self.cores_per_cluster,
                "dynamic_w_per_core",
            )
            self.gpu_power = self._domain(power["gpu"], clocks.gpu_available_hz[-1])
            self.emc_power = self._domain(power["emc"], clocks.emc_available_hz[-1])
            self.power_modes = tuple(raw.get("power_modes", ()))
            self.governors = dict(raw.get("governors", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlatformError(
                f"{description.name}: performance/power model section incomplete: {exc}"
            ) from exc

    def _device(self, name: str, doc: dict) -> DeviceModel:
        raw = doc["time_shares"]
        shares = TimeShares(float(raw["cpu"]), float(raw["gpu"]), float(raw["emc"]))
        total = shares.cpu + shares.gpu + shares.emc
        if abs(total - 1.0) > 1e-6 or min(shares.cpu, shares.gpu, shares.emc) < 0:
            raise PlatformError(
                f"{self.description.name}: devices.{name}.time_shares must be >= 0 and sum to 1,"
                f" got {shares}"
            )
        if shares.gpu > 0:
            return DeviceModel(shares)
        device = DeviceModel(
            shares,
            float(doc["parallel_fraction"]),
            int(doc["reference_threads"]),
            tuple(sorted({int(t) for t in doc.get("threads", [doc["reference_threads"]])})),
        )
        if not 0 <= device.parallel_fraction <= 1 or min(
            device.threads + (device.reference_threads,)
        ) < 1:
            raise PlatformError(
                f"{self.description.name}: devices.{name} needs parallel_fraction in [0, 1] and"
                f" thread counts >= 1, got {device}"
            )
        return device

    def device(self, name: str) -> DeviceModel:
        try:
            return self.devices[name]
        except KeyError:
            raise PlatformError(
                f"{self.description.name}: no model of device {name!r}"
                f" (performance.devices has {sorted(self.devices)})"
            ) from None

    def threads_of(self, app: AppLoad) -> Any:
        """The threads a CPU app runs (its reference threads when it names none)."""
        if np.ndim(app.threads) == 0 and not app.threads:
            return self.device(app.device).reference_threads
        return app.threads

    def occupied_cores(self, app: AppLoad) -> list[tuple[int, Any]]:
        """(cluster, cores) the app occupies: a GPU app's host thread on its cluster; a CPU app's
        threads, one per core, fill its cluster and then the next ones in order."""
        if self.device(app.device).on_gpu:
            return [(app.cluster, 1)]
        threads = self.threads_of(app)
        spans: list[tuple[int, Any]] = []
        before, cluster = 0, app.cluster
        while not spans or np.max(threads) > before:
            if cluster >= self.clusters:
                raise PlatformError(
                    f"{self.description.name}: {int(np.max(threads))} threads from cluster"
                    f" {app.cluster} need more cores than the clusters from there have"
                )
            size = len(self.description.clocks.cpu_clusters[cluster].cpus)
            spans.append((cluster, np.clip(threads - before, 0, size)))
            before += size
            cluster += 1
        return spans

    def at_reference_threads(self, profile: ModelProfile, device: str) -> ModelProfile:
        """A CPU profile measured on other than the device's reference threads, its latencies
        moved to the reference threads by the device's Amdahl factor (the model's latencies are
        relative to them); other profiles as they are."""
        dev = self.device(device)
        if dev.on_gpu or not profile.threads or profile.threads == dev.reference_threads:
            return profile
        factor = float(dev.compute_factor(dev.reference_threads) / dev.compute_factor(
            profile.threads))

        def scaled(s: SubnetProfile) -> SubnetProfile:
            return replace(s, **{name: getattr(s, name) * factor for name in (
                "latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")})
        return replace(profile, subnets=tuple(scaled(s) for s in profile.subnets),
                       threads=dev.reference_threads)

    def thread_options(self, device: str, cluster: int) -> tuple[int, ...]:
        """Thread counts a manager may give a CPU app on this cluster (those its cores fit)."""
        dev = self.device(device)
        room = sum(len(c.cpus) for c in self.description.clocks.cpu_clusters[cluster:])
        return tuple(t for t in dev.threads if t <= room)

    @staticmethod
    def _domain(
        doc: dict, f_max: float, units: int = 1, dynamic_key: str = "dynamic_w"
    ) -> DomainPower:
        v = doc["voltage"]
        return DomainPower(
            float(doc["leakage_w"]),
            float(doc[dynamic_key]),
            float(doc["idle_activity"]),
            VoltageCurve(float(v["min_v"]), float(v["max_v"]), float(v["knee"])),
            float(f_max),
            units,
        )

    @classmethod
    def load(cls, name_or_path: str = "xavier_nx") -> "PlatformModel":
        return cls(load_platform(name_or_path))

    @property
    def clusters(self) -> int:
        return len(self.description.clocks.cpu_clusters)

    def max_point(self) -> OperatingPoint:
        c = self.description.clocks
        return OperatingPoint(
            (c.cpu_available_khz[-1],) * self.clusters,
            c.gpu_available_hz[-1],
            c.emc_available_hz[-1],
        )

    def min_point(self) -> OperatingPoint:
        c = self.description.clocks
        return OperatingPoint(
            (c.cpu_available_khz[0],) * self.clusters, c.gpu_available_hz[0], c.emc_available_hz[0]
        )

    def steady_state(
        self,
        apps: Sequence[AppLoad],
        cpu_khz: Sequence[Any],
        gpu_hz: Any,
        emc_hz: Any,
        background_gpu: float = 0.0,
    ) -> LoadState:
        """Per-app latency and rate, utilisations and board power when these apps run together.

        Apps share the GPU by time slicing: each one's GPU part is stretched by the GPU time the
        others (and the background job) take, their fair shares where the GPU is oversubscribed."""
        ref = self.reference
        gpu_hz = np.asarray(gpu_hz, dtype=float)
        emc_hz = np.asarray(emc_hz, dtype=float)
        cpu = [np.asarray(f, dtype=float) for f in cpu_khz]
        n = len(apps)
        shape = np.broadcast(gpu_hz, emc_hz, *cpu).shape
        for a in apps:  # a search may give a CPU app an axis of thread counts
            shape = np.broadcast(np.broadcast_to(0.0, shape), a.threads).shape
        def per_app(part) -> np.ndarray:
            """apps x grid: one app's time in one part of the board at every grid point."""
            if not n:
                return np.zeros((0,) + shape)
            return np.array([np.broadcast_to(part(a), shape) for a in apps])

        def base(a: AppLoad) -> float:
            return a.slowdown * a.reference_latency_ms

        def cpu_time(a: AppLoad) -> Any:
            dev = self.device(a.device)
            if dev.on_gpu:
                return base(a) * dev.shares.cpu * ref.cpu_khz[0] / cpu[a.cluster]
            slowest = cpu[a.cluster]
            for c, cores in self.occupied_cores(a)[1:]:
                slowest = np.minimum(slowest, np.where(cores > 0, cpu[c], np.inf))
            factor = dev.compute_factor(self.threads_of(a))
            return base(a) * dev.shares.cpu * factor * ref.cpu_khz[0] / slowest

        def compute_cores(a: AppLoad) -> Any:
            """busy cores while its CPU part runs: all threads in the parallel part, one in the
            serial part (the CPU work is the same on any thread count)"""
            dev = self.device(a.device)
            return 1.0 if dev.on_gpu else 1.0 / dev.amdahl(self.threads_of(a))

        t_cpu = per_app(cpu_time)
        def shares(a: AppLoad) -> TimeShares:
            return self.device(a.device).shares

        t_gpu = per_app(lambda a: base(a) * shares(a).gpu * ref.gpu_hz / gpu_hz)
        t_mem = per_app(lambda a: base(a) * shares(a).emc * ref.emc_hz / emc_hz)
        on_gpu = np.array([float(self.device(a.device).on_gpu) for a in apps]).reshape(
            (n,) + (1,) * len(shape)
        )
        fps = np.array([a.fps for a in apps], dtype=float).reshape((n,) + (1,) * len(shape))
        measured = np.array([a.measured_rate_hz for a in apps], dtype=float).reshape(fps.shape)
        overhead = np.array([a.host_overhead_ms for a in apps], dtype=float).reshape(fps.shape)

        def demand_rate(latency: np.ndarray) -> np.ndarray:
            return 1000.0 / frame_period_ms(latency, fps, self.latency_cv, overhead)

        def rate_of(latency: np.ndarray) -> np.ndarray:
            return np.where(measured > 0, measured, demand_rate(latency))

        # The GPU is time-sliced between contexts: each app gets the GPU time it asks for, up to an
        # equal share of what is left when the GPU is oversubscribed (water-filling), and its GPU
        # part is stretched by the time the others (and the background job) hold the GPU.
        # Computed directly from the unstretched demand: iterating stretch -> rate -> stretch has
        # no stable fixed point under overload (one app's slowdown frees GPU time for the others,
        # which slows it further) and did not converge on much of the clock grid.
        # (a CPU app's memory-bound part is its own cores' work, not the GPU's)
        # The demand, not a measured rate: a rate measured under contention is what is left of
        # the demand, and time slicing shares the GPU by what each context asks for.
        work = demand_rate(t_cpu + t_gpu + t_mem) * ((t_gpu + t_mem) * on_gpu) / 1000.0
        served = _fair_shares(work, 1.0 - background_gpu)
        others = background_gpu + served.sum(axis=0) - served
        gpu_stretch = 1.0 / (1.0 - np.minimum(others, self.max_gpu_contention))
        latency = t_cpu + t_gpu * gpu_stretch + t_mem
        rate = rate_of(latency)
        # a CPU app's threads stay busy through its memory-bound part (stalled, not idle)
        threads = per_app(self.threads_of)
        cpu_app_cores = (t_cpu * per_app(compute_cores) + t_mem * threads) / latency
        host_share = np.where(
            on_gpu > 0,
            (t_cpu + self.host_wait_busy * (latency - t_cpu)) / latency,
            cpu_app_cores,
        )
        gpu_share = ((t_gpu + t_mem) * on_gpu) / latency
        emc_share = t_mem / latency
        busy = np.minimum(
            1.0, rate * latency / 1000.0
        )  # fraction of time each app has a frame running
        host_busy = np.minimum(1.0 - busy, rate * overhead / 1000.0)
        gpu_busy, emc_busy, cluster_busy = self.utilisation(
            apps, busy, host_share, gpu_share, emc_share, background_gpu, host_busy
        )
        power = self.power_w(cpu, gpu_hz, emc_hz, cluster_busy, gpu_busy, emc_busy)
        return LoadState(
            latency,
            rate,
            host_share,
            gpu_share,
            emc_share,
            cluster_busy,
            gpu_busy,
            emc_busy,
            power,
            host_busy,
        )

    def utilisation(
        self,
        apps: Sequence[AppLoad],
        busy: Any,
        host_share: Any,
        gpu_share: Any,
        emc_share: Any,
        background_gpu: float = 0.0,
        host_busy: Any = None,
    ) -> tuple[Any, Any, np.ndarray]:
        """GPU and EMC busy fractions and busy cores per cluster when app i has a frame running a
        fraction busy[i] of the time and does its per-frame host work a fraction host_busy[i] (on
        one core of its cluster) (the steady state's expectation, or a simulator tick's
        timeline)."""
        busy = np.asarray(busy, dtype=float)
        gpu_busy = np.minimum(1.0, background_gpu + (busy * gpu_share).sum(axis=0))
        emc_busy = np.minimum(1.0, self.emc_base_activity + (busy * emc_share).sum(axis=0))
        host = busy * host_share
        cluster_busy = np.zeros((self.clusters,) + np.shape(host)[1:])
        for i, a in enumerate(apps):
            if host_busy is not None:
                cluster_busy[a.cluster] += host_busy[i]
            if self.device(a.device).on_gpu:
                cluster_busy[a.cluster] += host[i]
                continue
            threads = self.threads_of(a)
            for c, cores in self.occupied_cores(a):
                cluster_busy[c] += host[i] * cores / threads
        return gpu_busy, emc_busy, cluster_busy

    def power_w(
        self,
        cpu_khz: Sequence[Any],
        gpu_hz: Any,
        emc_hz: Any,
        cluster_busy: Any,
        gpu_busy: Any,
        emc_busy: Any,
    ) -> Any:
        """Board input power for these clocks and utilisations (busy cores per cluster, GPU and EMC
        fractions)."""
        total = (
            self.base_w
            + self.gpu_power.power_w(gpu_hz, gpu_busy)
            + self.emc_power.power_w(emc_hz, emc_busy)
        )
        for c, f in enumerate(cpu_khz):
            total = total + self.cpu_power.power_w(f, cluster_busy[c])
        return total

    def rail_split_w(
        self,
        cpu_khz: Sequence[float],
        gpu_hz: float,
        emc_hz: float,
        cluster_busy: Sequence[float],
        gpu_busy: float,
        emc_busy: float,
    ) -> dict[str, float]:
        """Power per INA3221 rail label, for either layout (a board's tree has one of them):
        the Xavier NX and Orin Nano's VDD_IN (the total), VDD_CPU_GPU_CV and VDD_SOC; the AGX
        Orin's VDD_GPU_SOC, VDD_CPU_CV, VDDQ_VDD2_1V8AO (the DRAM) and VIN_SYS_5V0 (the rest of
        the module), which have no total rail and sum to it (NVIDIA Jetson Linux Developer Guide,
        Jetson AGX Orin power monitoring; jetson-stats' jtop/core/power.py). The split between
        rails is the model's terms, not measured (VDD_GPU_SOC carries the GPU term only, the
        memory term goes to the DRAM rail); the totals are what the manager and the runs use."""
        gpu = float(self.gpu_power.power_w(gpu_hz, gpu_busy))
        cpu = float(sum(self.cpu_power.power_w(f, cluster_busy[c]) for c, f in enumerate(cpu_khz)))
        soc = float(self.emc_power.power_w(emc_hz, emc_busy))
        return {
            "VDD_IN": self.base_w + gpu + cpu + soc,
            "VDD_CPU_GPU_CV": gpu + cpu,
            "VDD_SOC": soc,
            "VDD_GPU_SOC": gpu,
            "VDD_CPU_CV": cpu,
            "VDDQ_VDD2_1V8AO": soc,
            "VIN_SYS_5V0": self.base_w,
        }
