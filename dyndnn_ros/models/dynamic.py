# SPDX-License-Identifier: Apache-2.0
"""One switching API for every dynamic-network family.

    model = build_dynamic_model("groupconv_digits", mode="resident")
    model.available_subnets()      # ['g1', 'g2', 'g3', 'g4']
    model.switch("g2")             # applied between frames, never mid-frame
    scores = model.forward(x)

Modes:
  * ``shared``: one copy of the weights; the active sub-network is sliced out at run time.
  * ``resident``: every sub-network is materialised once at start-up as a standalone module, so
    a switch is a pointer swap (costs memory, no run-time slicing).

Thread safety: a frame runs under an inference lock. `switch()` records the request; if no frame is
running it is applied at once, otherwise the running frame finishes on the old sub-network and
the next `forward()` applies it before it starts.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn

from dyndnn_ros.models.registry import DynamicFamily, UnknownSubnetError, build_family

Mode = Literal["shared", "resident"]
MODES: tuple[str, ...] = ("shared", "resident")


class DynamicModel:
    def __init__(self, family: DynamicFamily, mode: Mode = "resident", device: str = "cpu",
                 initial_subnet: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {list(MODES)}")
        self.family = family.to(device)
        self.mode: Mode = mode
        self.device = torch.device(device)
        self._ids = list(family.subnet_ids())
        if not self._ids:
            raise ValueError(f"model {family.name!r} offers no sub-networks")
        self._resident: dict[str, nn.Module] = {}
        if mode == "resident":
            self._resident = {
                sid: family.materialise(sid).to(self.device).eval() for sid in self._ids
            }
        self._infer_lock = threading.Lock()
        self._switch_lock = threading.Lock()
        self._pending: str | None = None
        self._active = ""
        self._runner: Callable[[torch.Tensor], torch.Tensor] = _unset_runner
        self._apply(self._check(initial_subnet or self._ids[-1]))

    @property
    def name(self) -> str:
        return self.family.name

    def available_subnets(self) -> list[str]:
        return list(self._ids)

    @property
    def active_subnet(self) -> str:
        """The sub-network the current (or, when idle, the next) frame runs."""
        return self._active

    @property
    def pending_subnet(self) -> str | None:
        """A requested switch not applied yet because a frame was running."""
        return self._pending

    def input_shape(self, subnet_id: str | None = None) -> tuple[int, int, int]:
        return self.family.input_shape(self._check(subnet_id or self._active))

    def resident_module(self, subnet_id: str) -> nn.Module:
        """The materialised standalone module of a sub-network (resident mode only)."""
        if self.mode != "resident":
            raise RuntimeError("resident_module() needs mode='resident'")
        return self._resident[self._check(subnet_id)]

    def standalone(self, subnet_id: str) -> nn.Module:
        """A fresh standalone copy of a sub-network (for export, profiling); taken between frames.
        """
        self._check(subnet_id)
        with self._infer_lock:
            return self.family.materialise(subnet_id).to(self.device)

    def switch(self, subnet_id: str) -> None:
        """Request `subnet_id`; unknown ids raise UnknownSubnetError and change nothing."""
        self._check(subnet_id)
        with self._switch_lock:
            self._pending = subnet_id
        if self._infer_lock.acquire(
            blocking=False
        ):  # idle: apply now so active_subnet reflects it
            try:
                self._apply_pending()
            finally:
                self._infer_lock.release()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            not torch.is_inference_mode_enabled()
        ):  # entering costs ~3 us per frame: only when needed
            with torch.inference_mode():
                return self.forward(x)
        with self._infer_lock:
            if (
                self._pending is not None
            ):  # an attribute read is atomic; the lock is taken only to apply
                self._apply_pending()
            return self._runner(x)

    __call__ = forward

    def _check(self, subnet_id: Any) -> str:
        if subnet_id not in self._ids:
            raise UnknownSubnetError(subnet_id, self._ids)
        return subnet_id

    def _apply_pending(self) -> None:
        with self._switch_lock:
            pending, self._pending = self._pending, None
        if pending is not None and pending != self._active:
            self._apply(pending)

    def _apply(self, subnet_id: str) -> None:
        # only called while no frame runs (inference lock held, or from __init__)
        if self.mode == "resident":
            self._runner = self._resident[subnet_id]
        else:
            self._runner = self.family.activate_shared(subnet_id)
        self._active = subnet_id


def _unset_runner(x: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("no sub-network activated")


def build_dynamic_model(config: str | Path | dict[str, Any], checkpoint: str | Path | None = None,
                        mode: Mode = "resident", device: str = "cpu",
                        initial_subnet: str | None = None) -> DynamicModel:
    """Build a dynamic model from config/models/<name>.yaml, a YAML path, or a config dict.

    `checkpoint` overrides the config's checkpoint path; without any, weights are random (logged,
    and recorded in `model.family.metadata['weights']`).
    """
    return DynamicModel(
        build_family(config, checkpoint), mode=mode, device=device, initial_subnet=initial_subnet
    )
