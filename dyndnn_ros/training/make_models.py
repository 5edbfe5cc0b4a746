# SPDX-License-Identifier: Apache-2.0
"""`make models`: both Fashion-MNIST families, trained as jobs of two worker processes.

    python -m dyndnn_ros.training.make_models [--workers 2] [--families groupconv ofa]

These networks are so small that a second torch thread in one process gains little (most of a
step is small convolutions, depthwise ones above all, that split poorly over threads) and costs
CPU, while two processes of one thread each keep both cores busy. So the work is cut into
independent jobs, each a part of a trainer's own run (`--stop-after`, `--static-only`,
`--scratch-only`) that saves its result in the trainer's stages; free workers take the first
job whose inputs are ready, in an order that keeps the longest chains going. A last job per
family is the trainer's whole run: it finds every stage saved, and makes its choices, tables and
files exactly as a single process would.

The group-conv stages and baselines start before the choice they depend on is made: they are
trained with the recipe's head pooling while the probes that choose it on the validation images
run (they chose it by 3 points). Likewise the from-scratch twins of the searched set's most
accurate and fastest members: they are two jobs that start once the search is saved, but the
twins of the last run's (models/ofa_fashion/accuracy.yaml) start beside the shrinking, and
these jobs find them saved when the search picks the same members. Should a guess be wrong, the
jobs after it train what they need; results never depend on a guess, only the time does. One
thread per job also makes the weights independent of the machine's core count.

Every job's wall and CPU time and the load average are appended to its model's train.log;
a rerun resumes from the saved stages. Each worker has a progress bar.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from queue import Empty
from typing import Any

import yaml
from tqdm import tqdm

from dyndnn_ros.training import console

GROUPCONV_OUT = Path("models/groupconv_fashion")
OFA_OUT = Path("models/ofa_fashion")
STAGES = Path("build/stages")


@dataclass(frozen=True)
class Job:
    name: str
    family: str  # "groupconv" or "ofa"
    argv: tuple[str, ...]
    after: tuple[str, ...] = ()

    @property
    def out(self) -> Path:
        """The model folder the job's trainer writes (its train.log gets the job's times)."""
        return Path(self.argv[self.argv.index("--out") + 1])


def groupconv_jobs() -> list[Job]:
    common = ("--dataset", "fashion-mnist", "--no-dense", "--out", str(GROUPCONV_OUT),
              "--stages", str(STAGES / "groupconv_fashion"), "--threads", "1")
    candidates = ("1", "3")  # head pooling: global average, or a 3x3 grid (the recipe's)
    probes = [Job(f"groupconv probe head_pool {p}", "groupconv",
                  common + ("--head-pool-candidates", p, "--stop-after", "probes"))
              for p in reversed(candidates)]
    statics = [Job(f"groupconv static g{k}", "groupconv", common + ("--static-only", str(k)))
               for k in (4, 3, 2, 1)]
    incremental = Job("groupconv incremental", "groupconv",
                      common + ("--stop-after", "incremental"))
    final = Job("groupconv final", "groupconv", common + ("--head-pool-candidates",) + candidates,
                tuple(j.name for j in probes + statics + [incremental]))
    return [final, incremental, statics[0], statics[1], *probes, *statics[2:]]


def last_twins() -> list[str]:
    """The sub-networks the last run trained from scratch, the most accurate first: valid ids
    of the super-network's search space from models/ofa_fashion/accuracy.yaml, if any."""
    from dyndnn_ros.models.registry import load_model_config
    from dyndnn_ros.training.train_ofa import build_supernet, parse_arch_id

    try:
        rows = yaml.safe_load((OFA_OUT / "accuracy.yaml").read_text())["subnets"]
        ids = [str(r["id"]) for r in rows if "scratch_accuracy" in r][::-1]
        archs = [parse_arch_id(i) for i in ids]
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return []
    net = build_supernet(load_model_config("ofa_fashion"))
    n = len(net.block_group_info)
    choices = (net.ks_list, net.expand_ratio_list, net.depth_list)
    return [i for i, arch in zip(ids, archs)
            if all(len(part) == n and set(part) <= set(c) for part, c in zip(arch, choices))]


def ofa_jobs() -> list[Job]:
    common = ("--out", str(OFA_OUT), "--stages", str(STAGES / "ofa_fashion"), "--threads", "1")
    shrinking = Job("ofa shrinking", "ofa", common + ("--stop-after", "shrinking"))
    search = Job("ofa search", "ofa", common + ("--stop-after", "search"), (shrinking.name,))
    guesses = [Job(f"ofa from scratch {i} (a twin of the last run)", "ofa",
                   common + ("--scratch-only", i))
               for i in last_twins()]
    # after the guesses: a pick never trains a twin that a guess is still training
    twins = [Job(f"ofa from scratch, {what}", "ofa", common + ("--scratch-pick", str(n)),
                 (search.name,) + tuple(g.name for g in guesses))
             for n, what in ((1, "most accurate"), (2, "fastest"))]
    final = Job("ofa final", "ofa", common, tuple(t.name for t in twins))
    return [final, *twins, search, shrinking, *guesses]


def plan(families: list[str]) -> list[Job]:
    """Every job, in the order free workers take them once their inputs are ready."""
    gc = groupconv_jobs() if "groupconv" in families else []
    ofa = ofa_jobs() if "ofa" in families else []
    if not (gc and ofa):
        return gc + ofa
    # the super-network's chain first (shrinking, search, twins: the longest), then the longest
    # group-conv jobs beside it
    return ofa + gc


def run_job(job: Job) -> float:
    """In a worker: the trainer's run with the job's arguments; returns its CPU seconds."""
    from dyndnn_ros.training import train_groupconv, train_ofa

    trainer = train_groupconv if job.family == "groupconv" else train_ofa
    cpu = time.process_time()
    code = trainer.main(list(job.argv))
    if code != 0:
        raise RuntimeError(f"{job.name}: exit status {code}")
    return time.process_time() - cpu


def _start_worker(queue: Any) -> None:
    console.report_to(queue)


class Bars:
    """The parent's terminal: one bar per worker, fed by the workers' messages."""

    def __init__(self, workers: int) -> None:
        self.free = list(range(1, workers + 1))
        self.slots: dict[int, int] = {}  # worker pid -> bar position
        self.bars: dict[int, tqdm] = {}

    def handle(self, message: tuple) -> None:
        kind, pid = message[0], message[1]
        if kind == "line":
            tqdm.write(message[2])
        elif kind == "open":
            if pid not in self.slots:
                self.slots[pid] = self.free.pop(0) if self.free else 0
            self.close(pid)
            desc, total, unit = message[2:]
            self.bars[pid] = tqdm(total=total, desc=desc, unit=unit,
                                  position=self.slots[pid], leave=False)
        elif kind == "update" and pid in self.bars:
            self.bars[pid].update(message[2])
        elif kind == "close":
            self.close(pid)

    def close(self, pid: int) -> None:
        bar = self.bars.pop(pid, None)
        if bar is not None:
            bar.close()


def append_log(out: Path, line: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.log", "a") as f:
        f.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} make_models {line}\n")


def run(jobs: list[Job], workers: int) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    queue = context.Queue()
    done: set[str] = set()
    waiting = list(jobs)
    running: dict[Future, tuple[Job, float]] = {}
    bars = Bars(workers)
    started = time.perf_counter()
    overall = tqdm(total=len(jobs), desc="make models (jobs)", unit="job", position=0)
    with ProcessPoolExecutor(workers, context, _start_worker, (queue,)) as pool:
        while waiting or running:
            for job in [j for j in waiting if set(j.after) <= done][: workers - len(running)]:
                waiting.remove(job)
                running[pool.submit(run_job, job)] = (job, time.perf_counter())
                append_log(job.out, f"job {job.name!r} started")
            if not running:
                raise RuntimeError(f"jobs waiting on jobs that never run: {waiting}")
            finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            try:
                while True:
                    bars.handle(queue.get_nowait())
            except Empty:
                pass
            for future in finished:
                job, began = running.pop(future)
                cpu = future.result()  # a failed job stops the run here
                wall = time.perf_counter() - began
                line = (f"job {job.name!r} done: {wall:.0f} s wall, {cpu:.0f} s CPU, "
                        f"load average {os.getloadavg()[0]:.1f}")
                append_log(job.out, line)
                tqdm.write(line)
                done.add(job.name)
                overall.update(1)
    overall.close()
    total = time.perf_counter() - started
    for out in sorted({j.out for j in jobs}):
        append_log(out, f"all {len(jobs)} jobs done in {total:.0f} s wall")
    print(f"make models: {len(jobs)} jobs in {total / 60:.1f} min on {workers} worker(s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1,
        help="worker processes of one torch thread each (default: one per core)",
    )
    parser.add_argument(
        "--families", nargs="+", choices=("groupconv", "ofa"), default=["groupconv", "ofa"]
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be positive")
    try:
        run(plan(args.families), args.workers)
    except KeyboardInterrupt:
        print(f"make models: interrupted; the finished stages are kept in {STAGES}/ and a rerun "
              "resumes from them", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
