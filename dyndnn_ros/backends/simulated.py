# SPDX-License-Identifier: Apache-2.0
"""The simulation inference back end: a profiled dynamic DNN whose frames take modelled time.

No network runs. Each frame's latency comes from the platform model: the active sub-network's
profile latency scaled to the clocks the board has now, stretched by the other models and the
background job sharing the GPU, with the board's frame jitter. Energy per frame is the board power
the model predicts times that latency. In real time (`realtime=True`, the ROS demo) `infer` sleeps
for the modelled time; otherwise it returns at once (tests, fast runs).

With `sysfs_root` the back end lives on a simulated board (simulation/sysfs_board.py): it reads
the current clocks from the tree's cpufreq/devfreq/EMC files and announces its own work there, so
the board's governors, power rails and GPU load see it. Without it, clocks are the reference
(max) clocks and the model runs alone.

The profile's device (`xavier_nx/gpu`, `xavier_nx/cpu`, or `cpu` for a model measured on a CPU)
picks the board's device model. On the CPU the thread count is a knob, as torch's is: frames take
the time the platform model gives that many threads (its Amdahl factor), and the threads occupy
that many cores on the board.

    backend = SimulatedBackend(model="dynamic_ofa_xavier_nx_gpu", sysfs_root="/tmp/sim")

To reach it through create_backend("simulation", ...), backends/__init__.py registers a lazy
factory for it, as it does for torch.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dyndnn_ros.backends.base import BackendError, FrameResult, InferenceBackend
from dyndnn_ros.hardware.sysfs_clocks import ClockError, ClockState, SysfsClockController
from dyndnn_ros.models.registry import UnknownSubnetError
from dyndnn_ros.paths import resolve_config
from dyndnn_ros.platforms.model import AppLoad, PlatformModel, typical_latency_ms
from dyndnn_ros.simulation.sysfs_board import (
    read_app_activity,
    read_background,
    write_app_activity,
)
from dyndnn_ros.profiles import ModelProfile, ProfileError, load_profile

RATE_SMOOTHING = 0.2
"""weight of the newest inter-frame interval in the frame-rate estimate announced to the board"""


@dataclass
class SimulatedBackend(InferenceBackend):
    model: str | Path = "dynamic_ofa_xavier_nx_gpu"
    """profile name (config/profiles/<name>.yaml) or path: the sub-networks and their latencies"""
    platform: str = "xavier_nx"
    sysfs_root: str | Path | None = None
    cluster: str = ""
    """CPU cluster the inference thread runs on (platform name); empty = the first"""
    realtime: bool = True
    instance: str = ""
    """name of this model instance on the board (the inference node's model_id); empty = the
    profile's model name. Two nodes running the same profile on one simulated board need different
    names."""
    seed: int = 0
    input_shape_chw: tuple[int, int, int] = (3, 224, 224)
    num_classes: int = 1000
    initial_subnet: str | None = None
    threads: int | None = None
    """CPU device: threads to start with; None = the device's reference threads"""
    # accepted so the inference node can pass the same parameters to every back end; unused here
    checkpoint: Any = None
    device: str = "cpu"
    mode: str = "resident"
    profile: ModelProfile = field(init=False)
    last_energy_mj: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            path = resolve_config("profiles", self.model, "profile", ProfileError)
            self.profile = load_profile(path)
        except ProfileError as exc:
            raise BackendError(f"simulation back end: {exc}") from exc
        self.board = PlatformModel.load(self.platform)
        names = list(self.board.description.clocks.cluster_names)
        if self.cluster and self.cluster not in names:
            raise BackendError(f"unknown CPU cluster {self.cluster!r}; known: {names}")
        self._cluster = names.index(self.cluster) if self.cluster else 0
        measured_on = self.profile.device.rsplit("/", 1)[-1]
        self._device = "cpu" if measured_on == "cpu" else "gpu"
        device_model = self.board.device(self._device)
        self._threads = 0
        if not device_model.on_gpu:
            self._threads = int(self.threads or device_model.reference_threads)
            self._check_threads(self._threads)
        self._host_overhead_ms = 0.0
        self._input_fps = 0.0
        self.name = "simulation"
        self.model_id = self.profile.model
        self._instance = re.sub(r"[^A-Za-z0-9_.-]", "_", self.instance or self.profile.model)
        self.metadata = {
            "profile": str(path),
            "platform": self.platform,
            "sysfs_root": str(self.sysfs_root or ""),
        }
        self._clocks: SysfsClockController | None = None
        self._last_clock_state: ClockState | None = None
        self._rng = np.random.default_rng(self.seed)
        self._sigma = math.sqrt(math.log(1.0 + self.board.latency_cv ** 2))
        start = self.initial_subnet or min(self.profile.subnets, key=typical_latency_ms).id
        self._active = self.profile.subnet(start).id
        self._fps = 0.0
        self._last_frame_wall: float | None = None
        self.last_modelled_ms = 0.0

    def available_subnets(self) -> list[str]:
        return self.profile.ids

    @property
    def active_subnet(self) -> str:
        return self._active

    def input_shape_of(self, subnet_id: str) -> tuple[int, int, int]:
        if subnet_id not in self.profile.ids:
            raise UnknownSubnetError(subnet_id, self.profile.ids)
        return self.input_shape_chw

    def _activate(self, subnet_id: str) -> None:
        self._active = subnet_id

    @property
    def cpu_threads(self) -> int:
        return self._threads

    def _check_threads(self, threads: int) -> None:
        options = self.board.thread_options(self._device, self._cluster)
        if int(threads) not in options:
            raise BackendError(f"{self.profile.model}: {threads} threads; the board allows "
                               f"{options} from cluster {self._cluster}")

    def request_threads(self, threads: int) -> None:
        if self._threads:
            self._check_threads(threads)
        super().request_threads(threads)

    def _set_threads(self, threads: int) -> None:
        self._threads = threads

    def report_host_overhead(self, overhead_ms: float) -> None:
        self._host_overhead_ms = max(0.0, float(overhead_ms))

    def report_input_fps(self, fps: float) -> None:
        self._input_fps = max(0.0, float(fps))

    def modelled_frame(self) -> tuple[float, float]:
        """(latency ms, energy mJ) of one frame of the active sub-network on the board as it is
        now."""
        reference = typical_latency_ms(self.profile.subnet(self._active))
        # the rate this back end processes frames at, measured (0 before the second frame), and
        # the rate its camera offers them (0 unknown: back to back)
        me = AppLoad(reference, self._input_fps, self._cluster, measured_rate_hz=self._fps,
                     device=self._device, threads=self._threads,
                     host_overhead_ms=self._host_overhead_ms)
        others: list[AppLoad] = []
        background = 0.0
        if self._clock_reader() is not None:
            root = Path(self.sysfs_root)
            write_app_activity(root, self._instance, me)
            others = [
                load for name, load in read_app_activity(root).items() if name != self._instance
            ]
            background = read_background(root)
            try:
                state = self._clocks.read_state()
            except (
                OSError,
                ValueError,
                IndexError,
            ):  # a clock file caught mid-write by the DVFS node
                state = self._last_clock_state
            self._last_clock_state = state
            ref = self.board.reference
            known = state.cpu_khz if state else {}
            cpu = tuple(
                known.get(c.name) or r
                for c, r in zip(self.board.description.clocks.cpu_clusters, ref.cpu_khz)
            )
            gpu, emc = (
                (state.gpu_hz or ref.gpu_hz, state.emc_hz or ref.emc_hz)
                if state
                else (ref.gpu_hz, ref.emc_hz)
            )
        else:
            ref = self.board.reference
            cpu, gpu, emc = ref.cpu_khz, ref.gpu_hz, ref.emc_hz
        result = self.board.steady_state([me, *others], cpu, gpu, emc, background)
        latency = float(result.latency_ms[0]) * math.exp(
            self._sigma * self._rng.standard_normal() - self._sigma**2 / 2
        )
        return latency, float(result.power_w) * latency

    def _clock_reader(self) -> SysfsClockController | None:
        """The tree's clock files, once the simulated board has created them (it may start after
        us)."""
        if self._clocks is None and self.sysfs_root:
            try:
                self._clocks = SysfsClockController(self.sysfs_root, self.board.description)
            except ClockError:
                return None
        return self._clocks

    def _run(self, batch: np.ndarray) -> np.ndarray:
        started = time.monotonic()
        latency, energy = self.modelled_frame()
        self.last_modelled_ms, self.last_energy_mj = latency, energy
        if self.realtime:
            # The frame ends `latency` after it started: the time spent modelling it (reading the
            # tree, the platform model; about 3.5 ms a frame here) is the simulator's, not the
            # board's, and must not lengthen every frame of the timeline.
            time.sleep(max(0.0, started + latency / 1000.0 - time.monotonic()))
        return self._rng.standard_normal((batch.shape[0], self.num_classes)).astype(np.float32)

    def infer(self, batch: np.ndarray) -> FrameResult:
        now = time.monotonic()
        # the frame rate is only meaningful in real time; faster than real time the model runs
        # back-to-back
        if self.realtime and self._last_frame_wall is not None and now > self._last_frame_wall:
            rate = 1.0 / (now - self._last_frame_wall)
            self._fps = (
                rate
                if self._fps == 0
                else (1 - RATE_SMOOTHING) * self._fps + RATE_SMOOTHING * rate
            )
        self._last_frame_wall = now
        result = super().infer(batch)
        # the modelled time is the frame's latency (a sleep is only as exact as the OS scheduler)
        return FrameResult(result.scores, result.subnet_id, self.last_modelled_ms)


