# SPDX-License-Identifier: Apache-2.0
"""Feedback that corrects profile predictions from measured latency.

Like ALERT (USENIX ATC 2020), one scalar "slowdown factor" per application is tracked with a scalar
Kalman filter: measured latency / latency the profile predicts for the configuration that ran. It
rises when other load (a background job, another model) takes the device, and falls back when it
leaves, so the manager can raise clocks or step the sub-network down before targets are missed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class SlowdownFilter:
    process_variance: float = 0.0005
    """How far the true slowdown may drift per period (variance; larger follows load changes faster
    but passes more noise: 0.0005 settles a step in about 3 periods)."""
    measurement_variance: float = 0.002
    """Variance of one frame's measured/predicted ratio (frame jitter of a few %, plus model
    error); a period's mean over n frames has 1/n of it."""
    estimate: float = 1.0
    variance: float = 1.0
    min_factor: float = 0.2
    max_factor: float = 20.0

    def update(self, measured_ms: float, predicted_ms: float, frames: int = 1) -> float:
        """Fold in one period's mean latency (over `frames` frames) against the prediction for what
        ran."""
        if (
            not (math.isfinite(measured_ms) and math.isfinite(predicted_ms))
            or measured_ms <= 0
            or predicted_ms <= 0
        ):
            return self.estimate
        observed = measured_ms / predicted_ms
        prior_variance = self.variance + self.process_variance
        gain = prior_variance / (prior_variance + self.measurement_variance / max(1, frames))
        self.estimate = min(
            self.max_factor,
            max(self.min_factor, self.estimate + gain * (observed - self.estimate)),
        )
        self.variance = (1.0 - gain) * prior_variance
        return self.estimate

    def give_back(self, factor: float) -> float:
        """The prediction this estimate multiplies moved by 1 / `factor` for another reason
        (another filter now explains part of the slowdown): give back what the estimate holds of
        it, towards 1 and never past it. A slowdown at 1 holds nothing; it keeps learning what
        the frames show from its own measurements."""
        if not (math.isfinite(factor) and factor > 0):
            return self.estimate
        moved = self.estimate * factor
        if self.estimate > 1.0 and factor < 1.0:
            self.estimate = max(1.0, moved)
        elif self.estimate < 1.0 and factor > 1.0:
            self.estimate = min(1.0, moved)
        return self.estimate

    def reset(self) -> None:
        self.estimate, self.variance = 1.0, 1.0


@dataclass
class SharedLoadFilter:
    """The GPU share work the manager does not manage takes (a background job, unmanaged models):
    measured GPU busy minus the share the managed apps' frames account for, Kalman-filtered.

    Unlike a slowdown factor on the whole latency, it stretches only the GPU part of a prediction,
    so the clock search trades GPU against CPU clocks as the board would."""

    process_variance: float = 0.002
    """how far the share may drift per period (a job starting settles in about 3 periods)"""
    measurement_variance: float = 0.004
    level: float = 0.0
    """the filtered difference, unclipped below: its noise averages out"""
    variance: float = 1.0
    max_share: float = 0.95

    @property
    def estimate(self) -> float:
        """the unmanaged GPU share, 0..max_share"""
        return max(0.0, self.level)

    def update(self, measured_busy: float, managed_busy: float) -> float:
        """Fold in one period's measured GPU busy fraction and the managed apps' predicted part."""
        if not (math.isfinite(measured_busy) and math.isfinite(managed_busy)):
            return self.estimate
        # Not clipped at 0 (only the estimate is): the managed part comes from the frames counted
        # in one period (1-4 over ROS), and clipping its noise on one side read as unmanaged load
        # that was not there (0.16 on average, up to 0.39, in a ROS run without any).
        return self.observe(measured_busy - managed_busy, self.measurement_variance)

    def observe(self, share: float, variance: float) -> float:
        """Fold in one period's reading of the unmanaged share itself, of this variance."""
        if not (math.isfinite(share) and math.isfinite(variance)) or variance < 0:
            return self.estimate
        observed = min(self.max_share, max(-1.0, share))
        prior_variance = self.variance + self.process_variance
        gain = prior_variance / (prior_variance + variance)
        self.level = min(self.max_share, max(-1.0, self.level + gain * (observed - self.level)))
        self.variance = (1.0 - gain) * prior_variance
        return self.estimate


@dataclass
class SwitchHysteresis:
    """Holds a choice until a different one has been proposed `hold_periods` times in a row.

    A switch forced because the current choice no longer meets the goal is applied at once;
    switches that only improve (more accuracy, less energy) must persist, so noise does not make
    the choice oscillate."""

    hold_periods: int = 3
    current: object = None
    _pending: object = None
    _count: int = 0

    def apply(self, proposal: object, current_still_ok: bool) -> object:
        if self.current is None or not current_still_ok or proposal == self.current:
            self.current, self._pending, self._count = proposal, None, 0
            return self.current
        if proposal == self._pending:
            self._count += 1
        else:
            self._pending, self._count = proposal, 1
        if self._count >= self.hold_periods:
            self.current, self._pending, self._count = proposal, None, 0
        return self.current

    def reset(self) -> None:
        self.current, self._pending, self._count = None, None, 0
