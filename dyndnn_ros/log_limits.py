# SPDX-License-Identifier: Apache-2.0
"""Keep logs readable under bad or bursty input: shortened strings, rate-limited lines.

A node echoing whatever arrives would let one 10 kB app id or a burst of 1,000 messages flood its
log and /rosout; these helpers bound both. No ROS here: the nodes pass the text and the time.
"""

from __future__ import annotations

from dataclasses import dataclass

SHORT_TEXT_CHARS = 64


def shorten(text: str, limit: int = SHORT_TEXT_CHARS) -> str:
    """`text` if it is at most `limit` characters, else its start and its full length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} chars)"


@dataclass
class RateLimiter:
    """At most `burst` lines per `interval_s`; the next line let through says how many were held
    back, so a burst shows as a few lines and a count instead of vanishing or flooding."""

    burst: int = 5
    interval_s: float = 5.0
    window_start: float = float("-inf")
    in_window: int = 0
    suppressed: int = 0

    def admit(self, now: float) -> int | None:
        """None: drop this line; else how many lines were dropped since the last one admitted."""
        if now - self.window_start >= self.interval_s:
            self.window_start, self.in_window = now, 0
        if self.in_window >= self.burst:
            self.suppressed += 1
            return None
        self.in_window += 1
        held, self.suppressed = self.suppressed, 0
        return held

    def line(self, text: str, now: float) -> str | None:
        """`text` (with the count of lines held back before it), or None to drop it."""
        held = self.admit(now)
        if held is None:
            return None
        return f"{text} ({held} similar lines suppressed before this one)" if held else text
