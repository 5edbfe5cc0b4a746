# SPDX-License-Identifier: Apache-2.0
"""The interface the ROS inference node calls, whatever runs the network (torch, TensorRT,
simulation).

Protocol per frame: the node may call `request_switch(id)` (and, for a model on the CPU,
`request_threads(n)`) at any time (from any thread); the request is validated at once and applied
before the next frame, never during one. `infer(batch)` runs one frame on the active sub-network
and returns its scores with the measured latency.
"""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dyndnn_ros.models.registry import UnknownSubnetError


class BackendError(RuntimeError):
    """A back end could not be created or could not run a frame."""


@dataclass(frozen=True)
class FrameResult:
    scores: np.ndarray
    """(batch, classes) float32 class scores (logits) of the frame."""
    subnet_id: str
    """The sub-network that produced them."""
    latency_ms: float
    """Measured wall-clock time of this frame's inference (input copy to output copy)."""


@dataclass
class InferenceBackend(ABC):
    """Base class: switch bookkeeping and per-frame timing; subclasses only activate and run."""

    name: str = field(init=False, default="")
    model_id: str = field(init=False, default="")
    metadata: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._frame_lock = threading.Lock()
        self._switch_lock = threading.Lock()
        self._pending: str | None = None
        self._pending_threads = 0
        self.last_latency_ms = 0.0

    # ---- what a subclass provides
    @abstractmethod
    def available_subnets(self) -> list[str]: ...

    @property
    @abstractmethod
    def active_subnet(self) -> str: ...

    @abstractmethod
    def input_shape_of(self, subnet_id: str) -> tuple[int, int, int]:
        """(channels, height, width) one frame must have for `subnet_id`."""

    @abstractmethod
    def _activate(self, subnet_id: str) -> None:
        """Make `subnet_id` active; called only between frames."""

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None:
        """Release what the back end holds (GPU memory, engines)."""

    @property
    def cpu_threads(self) -> int:
        """CPU threads the inference runs on; 0 where the thread count is not a knob (GPU)."""
        return 0

    def _set_threads(self, threads: int) -> None:
        """Run on `threads` CPU threads; called only between frames, where `threads` is a knob."""
        raise BackendError(f"the {self.name} back end has no CPU thread count to set")

    def report_host_overhead(self, overhead_ms: float) -> None:
        """The node's own time per frame outside infer(); a simulated board charges it to the
        app's cluster. Other back ends ignore it."""

    def report_input_fps(self, fps: float) -> None:
        """The rate the node's camera offers frames (0: unknown); a simulated board counts the
        GPU time the model asks for from it. Other back ends ignore it."""

    # ---- the public protocol
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape the next frame must have: that of the pending sub-network if a switch is pending.
        """
        return self.input_shape_of(self._pending or self.active_subnet)

    @property
    def pending_subnet(self) -> str | None:
        return self._pending

    @property
    def pending_threads(self) -> int:
        """threads requested for the next frame; 0 = none pending"""
        return self._pending_threads

    def request_switch(self, subnet_id: str) -> None:
        if subnet_id not in self.available_subnets():
            raise UnknownSubnetError(subnet_id, self.available_subnets())
        with self._switch_lock:
            self._pending = subnet_id
        if self._frame_lock.acquire(blocking=False):  # idle: apply at once
            try:
                self._apply_pending()
            finally:
                self._frame_lock.release()

    def request_threads(self, threads: int) -> None:
        """Run the next frames on `threads` CPU threads (a model on the CPU: torch's intra-op
        threads)."""
        if not self.cpu_threads:
            raise BackendError(f"the {self.name} back end of {self.model_id!r} does not run on "
                               "the CPU: it has no thread count")
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        with self._switch_lock:
            self._pending_threads = int(threads)
        if self._frame_lock.acquire(blocking=False):  # idle: apply at once
            try:
                self._apply_pending()
            finally:
                self._frame_lock.release()

    def infer(self, batch: np.ndarray) -> FrameResult:
        with self._frame_lock:
            self._apply_pending()
            batch = self._check_batch(batch)
            subnet = self.active_subnet
            start = time.perf_counter()
            scores = self._run(batch)
            latency_ms = (time.perf_counter() - start) * 1e3
        self.last_latency_ms = latency_ms
        return FrameResult(scores, subnet, latency_ms)

    def _apply_pending(self) -> None:
        with self._switch_lock:
            pending, self._pending = self._pending, None
            threads, self._pending_threads = self._pending_threads, 0
        if pending is not None and pending != self.active_subnet:
            self._activate(pending)
        if threads and threads != self.cpu_threads:
            self._set_threads(threads)

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        if not isinstance(batch, np.ndarray):
            raise TypeError(f"infer() takes a numpy array, got {type(batch).__name__}")
        if batch.ndim == 3:
            batch = batch[None]
        expected = self.input_shape_of(self.active_subnet)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(
                f"sub-network {self.active_subnet!r} of {self.model_id!r} takes (N, "
                f"{', '.join(map(str, expected))}) "
                f"frames; got shape {batch.shape}"
            )
        return np.ascontiguousarray(batch, dtype=np.float32)
