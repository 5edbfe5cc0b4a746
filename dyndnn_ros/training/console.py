# SPDX-License-Identifier: Apache-2.0
"""Where a trainer's progress bars, log records and summary lines go.

Run on its own, a trainer owns the terminal: tqdm bars, log records on stderr and in the model's
train.log, its summary printed. Run as a job of `make_models`, in one of its worker processes,
the bars and summary lines travel to the parent process, which draws one bar per worker, and
log records go to train.log only, so that two workers never draw over each other."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

_parent: Any = None
"""The make_models parent's message queue, in one of its worker processes; else None."""


def report_to(queue: Any) -> None:
    """Make this process a make_models worker that reports to the parent through `queue`."""
    global _parent
    _parent = queue


def in_worker() -> bool:
    return _parent is not None


class _ForwardedBar:
    """A progress bar drawn by the parent process: the same calls as tqdm's that trainers use."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.n = 0
        _parent.put(("open", os.getpid(), desc, total, unit))

    def update(self, n: int = 1) -> None:
        self.n += n
        _parent.put(("update", os.getpid(), n))

    def close(self) -> None:
        _parent.put(("close", os.getpid()))

    def __enter__(self) -> _ForwardedBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(total: int, desc: str, unit: str) -> Any:
    """A tqdm bar, or in a make_models worker the parent's bar of this worker."""
    if _parent is None:
        return tqdm(total=total, desc=desc, unit=unit)
    return _ForwardedBar(total, desc, unit)


def echo(line: str) -> None:
    """A summary line on the terminal (above the parent's bars in a make_models worker)."""
    if _parent is None:
        print(line)
    else:
        _parent.put(("line", os.getpid(), line))


def log_to(out: Path) -> None:
    """Log records of this run to out/train.log, and to stderr unless in a make_models worker
    (where a previous job's handlers are replaced: one worker runs jobs of both families)."""
    handlers: list[logging.Handler] = [logging.FileHandler(out / "train.log")]
    if _parent is None:
        handlers.append(logging.StreamHandler())
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        handlers=handlers,
        force=_parent is not None,
    )
