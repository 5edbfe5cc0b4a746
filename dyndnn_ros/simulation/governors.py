# SPDX-License-Identifier: Apache-2.0
"""The board's own frequency governors, re-implemented from their published rules.

These are the baselines the runtime manager is compared with, and what the simulated board runs
whenever a clock is handed back to the "default governors".
- Linux schedutil (kernel/sched/cpufreq_schedutil.c, get_next_freq): next = 1.25 * f_ref * util
/ max,
  resolved to the lowest available frequency >= it (CPUFREQ_RELATION_L), rate limited; util is the
  PELT average (32 ms half-life), frequency invariant, so f_ref = f_max.
- NVIDIA nvhost_podgov (drivers/devfreq/governor_pod_scaling.c, scaling_state_check): load-target
  controller with bias, smoothing and damping (constants in config/platforms/<board>.yaml).
- EMC: an activity-based rule (assumption; see the YAML), performance (max) and powersave (min).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field


def lowest_at_least(available: tuple[int, ...], target: float) -> int:
    """CPUFREQ_RELATION_L: the lowest available frequency >= target (the highest if none is)."""
    i = bisect.bisect_left(available, math.ceil(target))
    return available[min(i, len(available) - 1)]


def clamp_to_range(available: tuple[int, ...], value: int, lo: int, hi: int) -> int:
    """Clamp to [lo, hi], staying on the table."""
    allowed = [f for f in available if lo <= f <= hi] or [
        min(available, key=lambda f: abs(f - lo))
    ]
    if value <= allowed[0]:
        return allowed[0]
    if value >= allowed[-1]:
        return allowed[-1]
    return lowest_at_least(tuple(allowed), value)


def schedutil_next_freq(util: float, f_ref: float) -> float:
    """get_next_freq(): 1.25 * f_ref * util / max, with util as a fraction of max capacity."""
    return 1.25 * f_ref * util


@dataclass
class Schedutil:
    available_khz: tuple[int, ...]
    rate_limit_s: float = 0.01
    half_life_s: float = 0.032
    util: float = 0.0
    """PELT-averaged, frequency-invariant utilisation (fraction of max capacity)"""
    last_update_s: float = -math.inf

    def step(
        self, now_s: float, dt_s: float, busy: float, cur_khz: int, lo_khz: int, hi_khz: int
    ) -> int:
        """Account `dt_s` of running at `cur_khz` with `busy` fraction, return the next frequency.
        """
        invariant = min(1.0, max(0.0, busy)) * cur_khz / self.available_khz[-1]
        decay = 0.5 ** (dt_s / self.half_life_s)
        self.util = self.util * decay + invariant * (1.0 - decay)
        if now_s - self.last_update_s < self.rate_limit_s:
            return clamp_to_range(self.available_khz, cur_khz, lo_khz, hi_khz)
        self.last_update_s = now_s
        target = lowest_at_least(
            self.available_khz, schedutil_next_freq(self.util, self.available_khz[-1])
        )
        return clamp_to_range(self.available_khz, target, lo_khz, hi_khz)


def _trunc_div(a: float, b: float) -> int:
    """C integer division (truncates toward zero), as the kernel computes it."""
    return int(a / b)


@dataclass
class PodGov:
    """nvhost_podgov: per poll, smooth the normalised cycles; every block window compute boost =
    bias * f * (busyness - target) / (100 * target) (MHz), or max/3 when the raw load exceeds
    load_max; average the request (smooth), damp it, clamp to [min, max], round up onto the table.
    """

    available_hz: tuple[int, ...]
    block_window_s: float = 0.05
    load_max: int = 900
    load_target: int = 700
    bias: int = 80
    smooth: int = 10
    damp: int = 7
    cycles_avg: float = 0.0
    freq_avg_mhz: int = 0
    last_scale_s: float = -math.inf
    rt_load: int = 0

    def step(self, now_s: float, busy: float, cur_hz: int, lo_hz: int, hi_hz: int) -> int:
        busy = min(1.0, max(0.0, busy))
        norm_load = cur_hz * busy
        self.cycles_avg = (self.cycles_avg * self.smooth + norm_load) / (self.smooth + 1)
        self.rt_load = int(1000 * busy)
        if now_s - self.last_scale_s < self.block_window_s:
            return cur_hz
        freq_mhz = cur_hz // 1_000_000
        max_boost = (hi_hz // 3) // 1_000_000
        busyness = int(1000 * self.cycles_avg / cur_hz)
        damp = self.damp
        if self.rt_load > self.load_max:
            boost, damp = max_boost, 10
        else:
            boost = min(
                _trunc_div(
                    (busyness - self.load_target) * self.bias * freq_mhz, 100 * self.load_target
                ),
                max_boost,
            )
        request = freq_mhz + boost
        self.freq_avg_mhz = _trunc_div(self.freq_avg_mhz * self.smooth + request, self.smooth + 1)
        request = _trunc_div(damp * request + (10 - damp) * self.freq_avg_mhz, 10)
        request_hz = min(max(request * 1_000_000, lo_hz), hi_hz)
        new_hz = clamp_to_range(
            self.available_hz, lowest_at_least(self.available_hz, request_hz), lo_hz, hi_hz
        )
        if new_hz != cur_hz:
            self.last_scale_s = now_s
        return new_hz


@dataclass
class ActivityGovernor:
    """EMC governor model: run at the lowest rate that keeps the (PELT-like averaged) activity
    below `up_threshold` of capacity: next = f_max * activity / up_threshold, rounded up; never
    below `floor_hz`, the floor the GPU driver requests while the GPU works (see the YAML)."""

    available_hz: tuple[int, ...]
    up_threshold: float = 0.6
    half_life_s: float = 0.032
    activity: float = 0.0

    def step(
        self, dt_s: float, busy: float, cur_hz: int, lo_hz: int, hi_hz: int, floor_hz: float = 0.0
    ) -> int:
        invariant = min(1.0, max(0.0, busy)) * cur_hz / self.available_hz[-1]
        decay = 0.5 ** (dt_s / self.half_life_s)
        self.activity = self.activity * decay + invariant * (1.0 - decay)
        wanted = max(self.available_hz[-1] * self.activity / self.up_threshold, floor_hz)
        target = lowest_at_least(self.available_hz, wanted)
        return clamp_to_range(self.available_hz, target, lo_hz, hi_hz)




@dataclass
class GovernorConfig:
    """Constants of the default governors, from the `governors:` section of the board YAML."""

    schedutil_rate_limit_s: float = 0.01
    pelt_half_life_s: float = 0.032
    podgov: dict = field(default_factory=dict)
    emc_up_threshold: float = 0.6

    @classmethod
    def from_yaml(cls, doc: dict) -> "GovernorConfig":
        su = doc.get("schedutil", {})
        pg = dict(doc.get("nvhost_podgov", {}))
        block_us = pg.pop("block_window_us", 50000)
        return cls(
            schedutil_rate_limit_s=su.get("rate_limit_us", 10000) / 1e6,
            pelt_half_life_s=su.get("pelt_half_life_ms", 32) / 1e3,
            podgov={"block_window_s": block_us / 1e6, **{k: int(v) for k, v in pg.items()}},
            emc_up_threshold=float(doc.get("emc", {}).get("up_threshold", 0.6)),
        )
