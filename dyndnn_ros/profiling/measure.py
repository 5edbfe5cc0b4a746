# SPDX-License-Identifier: Apache-2.0
"""Measurements of one module: latency distribution, MACs, parameters, peak memory."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class LatencyStats:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    samples: int

    @classmethod
    def of(cls, seconds: list[float] | np.ndarray) -> "LatencyStats":
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        if ms.size == 0:
            raise ValueError("no latency samples")
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(ms.mean()), int(ms.size))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_calls(
    run: Callable[[], object], iterations: int, warmup: int, device: torch.device
) -> list[float]:
    """Wall time of each of `iterations` calls after `warmup` untimed ones (GPU work synchronised).
    """
    for _ in range(warmup):
        run()
    _sync(device)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return samples


@torch.inference_mode()
def count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward (torch's FLOP counter counts 2 FLOPs per MAC)."""
    counter = FlopCounterMode(display=False)
    with counter:
        module(x)
    return counter.get_total_flops() // 2


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.inference_mode()
def peak_memory_mb(module: nn.Module, x: torch.Tensor) -> tuple[float, str]:
    """Peak memory of one forward and how it was obtained.

    CUDA: the allocator's measured peak. CPU: torch has no allocator statistics there, so it is
    estimated as weights + buffers + the largest (inputs + output) of any single layer, i.e. the
    working set a layer-by-layer executor needs at least.
    """
    if x.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(x.device)
        module(x)
        torch.cuda.synchronize(x.device)
        return torch.cuda.max_memory_allocated(x.device) / 2**20, "cuda max_memory_allocated"
    weights = sum(
        t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers())
    )
    largest = 0

    def track(m: nn.Module, args: tuple, out: object) -> None:
        nonlocal largest
        tensors = [a for a in args if isinstance(a, torch.Tensor)] + (
            [out] if isinstance(out, torch.Tensor) else []
        )
        largest = max(largest, sum(t.numel() * t.element_size() for t in tensors))

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(track) for m in leaves]
    try:
        module(x)
    finally:
        for h in handles:
            h.remove()
    return (weights + largest) / 2**20, "cpu estimate: weights + largest layer input+output"
