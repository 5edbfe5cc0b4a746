# SPDX-License-Identifier: Apache-2.0
"""Train a small elastic MobileNetV3 super-network on Fashion-MNIST as Once-for-All does, search
its CPU Pareto set with latency measured on this machine, and compare with training from scratch.

    python -m dyndnn_ros.training.train_ofa --model ofa_fashion --out models/ofa_fashion

1. Progressive shrinking (Cai et al., "Once for All", ICLR 2020, sec. 3.2): train the largest
   network; then sample elastic kernel sizes; then elastic depth (first the deeper choices, then
   all); then elastic expand ratio (likewise). One AdamW one-cycle schedule spans the phases
   (the full network's curve is its from-scratch twin's). After the first phase every step
   trains the full network on the labels, then the phase's smallest sub-network and one random
   one, each on the labels and on the full network's detached softmax (in-place distillation
   and the sandwich rule: Yu & Huang 2019, BigNAS; `Shrinking`). --distill teacher distils from
   OFA's frozen copy of the first phase's network instead, --no-sandwich skips the smallest.
2. Search: every candidate is materialised, its BatchNorm statistics recalibrated on training
   images (OFA's practice), scored on a validation split held out of the training images, and its
   batch-1 latency measured here. Random candidates, then generations of mutations and crossovers
   of the current accuracy/latency Pareto front; the final front is thinned to --set-size members
   spread over latency. Only these are then scored on the test split, for the report.
3. Same-budget baseline: a few front members (most accurate, fastest, middle) are trained from
   scratch, as static networks (cross-entropy only, AdamW one-cycle peaking at SCRATCH_LR, the
   same batch size), for as many passes as the whole progressive-shrinking schedule.

Writes <out>/supernet.pt (loadable by the ofa_mbv3 family), <out>/bn_stats.pt (per-sub-network
BN statistics), <out>/accuracy.yaml, <out>/search.yaml and .png (every candidate scored),
<out>/train.log and config/subnets/<set>.yaml (the Pareto set with its test accuracies). Every
finished phase, the search and every from-scratch network are saved under <out>/stages (or
--stages): a rerun resumes.
Data: the 55,000 training images left after the fixed validation split of 5,000
(train_groupconv.load_fashion_data; --train-images N uses the first N of them), that validation
split for every choice, and the 10,000 test images for the reported accuracies only.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Tuple

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from dyndnn_ros.models.ofa_family import load_subnet_set, recalibrate_bn, save_bn_stats
from dyndnn_ros.models.ofa_mbv3 import OFAMobileNetV3
from dyndnn_ros.models.registry import load_model_config
from dyndnn_ros.training.console import log_to, progress_bar
from dyndnn_ros.training.train_groupconv import (
    THREADS_HELP,
    VALIDATION_SEED,
    Split,
    accuracy,
    default_threads,
    load_fashion_data,
    print_and_log,
    run_key,
    save_stage,
)
from dyndnn_ros.paths import config_dir
from dyndnn_ros.profiling.measure import LatencyStats, time_calls

log = logging.getLogger("train_ofa")

SCRATCH_LR = 3e-3
"""Peak learning rate of the from-scratch twins (AdamW, one-cycle): the static networks'."""

Arch = Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]
"""Per-stage kernel sizes, expand ratios and depths."""


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: float
    kernels: tuple[int, ...] | None = None  # None: the largest only
    expands: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None

    @property
    def elastic(self) -> bool:
        return (self.kernels, self.expands, self.depths) != (None, None, None)


def shrinking_schedule(net: OFAMobileNetV3, scale: float = 1.0) -> list[Phase]:
    """OFA's order: largest, elastic kernel, elastic depth (2 steps), elastic expand (2 steps)."""
    ks, es, ds = net.ks_list, net.expand_ratio_list, net.depth_list
    return [
        Phase("largest", 2 * scale),
        Phase("kernel", scale, kernels=tuple(ks)),
        Phase("depth_1", scale, kernels=tuple(ks), depths=tuple(ds[-2:])),
        Phase("depth_2", scale, kernels=tuple(ks), depths=tuple(ds)),
        Phase("expand_1", scale, kernels=tuple(ks), depths=tuple(ds), expands=tuple(es[-2:])),
        Phase("expand_2", scale, kernels=tuple(ks), depths=tuple(ds), expands=tuple(es)),
    ]


def sample_arch(phase: Phase, net: OFAMobileNetV3, rng: random.Random) -> Arch:
    n = len(net.block_group_info)

    def pick(choices: tuple[int, ...] | None, largest: int) -> tuple[int, ...]:
        return tuple(rng.choice(choices) if choices else largest for _ in range(n))

    return (
        pick(phase.kernels, max(net.ks_list)),
        pick(phase.expands, max(net.expand_ratio_list)),
        pick(phase.depths, max(net.depth_list)),
    )


def smallest_arch(phase: Phase, net: OFAMobileNetV3) -> Arch:
    """The smallest sub-network the phase can sample (the sandwich rule's lower slice)."""
    n = len(net.block_group_info)
    return tuple(  # type: ignore
        (min(choices) if choices else max(every),) * n
        for choices, every in (
            (phase.kernels, net.ks_list),
            (phase.expands, net.expand_ratio_list),
            (phase.depths, net.depth_list),
        )
    )


def set_arch(net: OFAMobileNetV3, arch: Arch, resolution: int) -> None:
    net.set_active_subnet(
        net.subnet_config(list(arch[0]), list(arch[1]), list(arch[2]), resolution)
    )


def arch_id(arch: Arch) -> str:
    return "k{}_e{}_d{}".format(*("".join(map(str, part)) for part in arch))


def batches(
    x: torch.Tensor, y: torch.Tensor, size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    order = torch.randperm(len(x), generator=generator)
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        yield x[idx], y[idx]


def steps_for(epochs: float, images: int, batch_size: int) -> int:
    """Optimiser steps of `epochs` passes (fractions allowed) over `images` images."""
    return max(1, round(epochs * -(-images // batch_size)))


def soft_target_loss(logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a teacher's probabilities (OFA's soft-target cross-entropy)."""
    return torch.mean(torch.sum(-soft_target * F.log_softmax(logits, dim=1), 1))


def fit(
    module: nn.Module,
    data: Split,
    epochs: float,
    lr: float,
    batch_size: int,
    seed: int,
    progress: tqdm | None = None,
) -> None:
    """A static network alone: cross-entropy, AdamW (weight decay 1e-4), one-cycle schedule."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    steps = steps_for(epochs, len(data.x_train), batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=steps)
    module.train().to(memory_format=torch.channels_last)
    for x, y in itertools.islice(endless_batches(data, batch_size, generator), steps):
        optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(module(x), y).backward()
        optimiser.step()
        schedule.step()
        if progress is not None:
            progress.update(1)
    module.eval().to(memory_format=torch.contiguous_format)


def endless_batches(
    data: Split, size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled training batches, pass after pass, in NHWC: the CPU (oneDNN) depthwise
    convolutions train 2-4x faster in it than in NCHW (measured on this 2-core machine)."""
    while True:
        for x, y in batches(data.x_train, data.y_train, size, generator):
            yield x.contiguous(memory_format=torch.channels_last), y


@dataclass
class Shrinking:
    """How the super-network is trained across the phases of a `shrinking_schedule`.

    One AdamW one-cycle schedule (peak `lr`) spans all phases, as a static network's would, so
    the full network is trained on the same curve as its from-scratch twin. After the first
    phase every step trains, on one batch, with gradients summed into one update:
    - the full network on the labels when `distill` is "inplace" (its detached softmax is the
      soft target: in-place distillation, Yu & Huang 2019; BigNAS), or a frozen copy of the
      first phase's full network only teaches when it is "teacher" (OFA's);
    - with `sandwich`, the smallest sub-network the phase allows (the sandwich rule of
      slimmable networks / BigNAS), then `sampled` random sub-networks of the phase;
    each on cross-entropy plus `kd_ratio` times the cross-entropy against the soft target."""

    lr: float = 3e-3
    batch_size: int = 128
    distill: str = "inplace"
    kd_ratio: float = 1.0
    sandwich: bool = True
    sampled: int = 1

    def step_archs(self, phase: Phase, net: OFAMobileNetV3, rng: random.Random) -> list[Arch]:
        """The sub-networks trained by one step of `phase` besides an in-place teacher."""
        if not phase.elastic:
            return [sample_arch(phase, net, rng)]  # the full network
        archs = [smallest_arch(phase, net)] if self.sandwich else []
        return archs + [sample_arch(phase, net, rng) for _ in range(self.sampled)]

    def train(
        self,
        net: OFAMobileNetV3,
        data: Split,
        schedule: list[Phase],
        resolution: int,
        seed: int,
        stages: Path | None = None,
        progress: tqdm | None = None,
    ) -> None:
        """Every finished phase is saved in `stages` (weights, optimiser, schedule) and loaded
        instead of trained on a rerun: the same result as an unbroken run."""
        phase_steps = [steps_for(p.epochs, len(data.x_train), self.batch_size) for p in schedule]
        optimiser = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=1e-4)
        lr_schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, self.lr, total_steps=sum(phase_steps)
        )
        largest = sample_arch(Phase("largest", 0), net, random.Random())  # no choices
        teacher: nn.Module | None = None
        net.to(memory_format=torch.channels_last)
        for i, (phase, steps) in enumerate(zip(schedule, phase_steps)):
            saved = stages / f"phase_{i}_{phase.name}.pt" if stages is not None else None
            if saved is not None and saved.is_file():
                state = torch.load(saved, map_location="cpu", weights_only=True)
                net.load_state_dict(state["net"])
                optimiser.load_state_dict(state["optimiser"])
                lr_schedule.load_state_dict(state["lr_schedule"])
                log.info("phase %s: loaded from %s", phase.name, saved)
                if progress is not None:
                    progress.update(steps)
            else:
                started = time.perf_counter()
                self._phase(net, data, phase, steps, resolution, seed + i, optimiser,
                            lr_schedule, largest, teacher, progress)
                if saved is not None:
                    state = {"net": net.state_dict(), "optimiser": optimiser.state_dict(),
                             "lr_schedule": lr_schedule.state_dict()}
                    save_stage(state, saved)
                log.info("phase %s done in %.0f s", phase.name, time.perf_counter() - started)
            if i == 0 and self.distill == "teacher":
                set_arch(net, largest, resolution)
                teacher = net.get_active_subnet().eval()
        set_arch(net, largest, resolution)
        net.eval().to(memory_format=torch.contiguous_format)

    def _phase(
        self,
        net: OFAMobileNetV3,
        data: Split,
        phase: Phase,
        steps: int,
        resolution: int,
        seed: int,
        optimiser: torch.optim.Optimizer,
        lr_schedule: Any,
        largest: Arch,
        teacher: nn.Module | None,
        progress: tqdm | None,
    ) -> None:
        rng = random.Random(seed)
        inplace = self.distill == "inplace" and phase.elastic
        net.train()
        generator = torch.Generator().manual_seed(seed)
        for x, y in itertools.islice(endless_batches(data, self.batch_size, generator), steps):
            optimiser.zero_grad(set_to_none=True)
            archs = self.step_archs(phase, net, rng)
            soft = None
            if inplace:
                set_arch(net, largest, resolution)
                full = net(x)
                F.cross_entropy(full, y).backward()
                soft = F.softmax(full.detach(), dim=1)
            elif teacher is not None:
                with torch.no_grad():
                    soft = F.softmax(teacher(x), dim=1)
            for arch in archs:
                set_arch(net, arch, resolution)
                logits = net(x)
                loss = F.cross_entropy(logits, y)
                if soft is not None:
                    loss = loss + self.kd_ratio * soft_target_loss(logits, soft)
                loss.backward()
            optimiser.step()
            lr_schedule.step()
            if progress is not None:
                progress.update(1)


def materialise(
    net: OFAMobileNetV3, arch: Arch, resolution: int, calibration: torch.Tensor
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The sub-network as a static module with BN statistics recalibrated on `calibration`."""
    set_arch(net, arch, resolution)
    sub = net.get_active_subnet().to(memory_format=torch.channels_last)
    stats = recalibrate_bn(sub, calibration.split(200))
    return sub.eval().to(memory_format=torch.contiguous_format), stats


def nhwc_accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 of `module` (left in NHWC: evaluation in it is faster here too, see fit)."""
    return accuracy(module.to(memory_format=torch.channels_last), x, y)


def measure_latency(module: nn.Module, shape: tuple[int, ...], iterations: int) -> float:
    """Batch-1 p50 on 1 thread, as the profiles (make models) measure the deployed set."""
    x = torch.randn(1, *shape)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return LatencyStats.of(
                time_calls(lambda: module(x), iterations, 5, torch.device("cpu"))
            ).p50_ms
    finally:
        torch.set_num_threads(threads)


def pareto(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Members no other point beats on both accuracy (higher) and latency (lower), by latency."""
    front = [
        p
        for p in points
        if not any(
            q["accuracy"] >= p["accuracy"]
            and q["latency_ms"] <= p["latency_ms"]
            and (q["accuracy"], q["latency_ms"]) != (p["accuracy"], p["latency_ms"])
            for q in points
        )
    ]
    return sorted(front, key=lambda p: p["latency_ms"])


def spread_over_latency(front: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """`size` members of a latency-sorted front, evenly spaced in latency (ends included)."""
    if len(front) <= size:
        return front
    lo, hi = front[0]["latency_ms"], front[-1]["latency_ms"]
    chosen: list[dict[str, Any]] = []
    for i in range(size):
        target = lo + (hi - lo) * i / (size - 1)
        best = min(
            (p for p in front if p not in chosen), key=lambda p: abs(p["latency_ms"] - target)
        )
        chosen.append(best)
    return sorted(chosen, key=lambda p: p["latency_ms"])


def mutate(arch: Arch, net: OFAMobileNetV3, rng: random.Random, rate: float = 0.3) -> Arch:
    choices = (net.ks_list, net.expand_ratio_list, net.depth_list)
    return tuple(
        tuple(rng.choice(c) if rng.random() < rate else v for v in part)  # type: ignore
        for part, c in zip(arch, choices)
    )


def crossover(a: Arch, b: Arch, rng: random.Random) -> Arch:
    pairs = (zip(pa, pb) for pa, pb in zip(a, b))
    return tuple(tuple(rng.choice(pair) for pair in part) for part in pairs)  # type: ignore


class Searcher:
    def __init__(
        self,
        net: OFAMobileNetV3,
        resolution: int,
        calibration: torch.Tensor,
        data: Split,
        latency_iterations: int,
    ) -> None:
        """Candidates are scored on `data`'s validation images."""
        self.net, self.resolution, self.calibration, self.data = net, resolution, calibration, data
        self.latency_iterations = latency_iterations
        self.scored: dict[str, dict[str, Any]] = {}

    def score(self, arch: Arch) -> dict[str, Any]:
        key = arch_id(arch)
        if key not in self.scored:
            sub, _ = materialise(self.net, arch, self.resolution, self.calibration)
            shape = (self.net.in_channels, self.resolution, self.resolution)
            latency = measure_latency(sub, shape, self.latency_iterations)  # as deployed: NCHW
            self.scored[key] = {
                "id": key,
                "kernel": list(arch[0]),
                "expand": list(arch[1]),
                "depth": list(arch[2]),
                "accuracy": nhwc_accuracy(sub, self.data.x_val, self.data.y_val),
                "latency_ms": latency,
            }
        return self.scored[key]

    def evolve(self, population: int, generations: int, seed: int, progress: tqdm) -> None:
        rng = random.Random(seed)
        anyone = Phase(
            "all",
            0,
            tuple(self.net.ks_list),
            tuple(self.net.expand_ratio_list),
            tuple(self.net.depth_list),
        )
        n = len(self.net.block_group_info)
        ends = [
            (tuple([c[0]] * n), tuple([e[0]] * n), tuple([d[0]] * n))
            for c, e, d in (
                (self.net.ks_list, self.net.expand_ratio_list, self.net.depth_list),
                (
                    self.net.ks_list[::-1],
                    self.net.expand_ratio_list[::-1],
                    self.net.depth_list[::-1],
                ),
            )
        ]
        for arch in ends + [sample_arch(anyone, self.net, rng) for _ in range(population - 2)]:
            self.score(arch)
            progress.update(1)
        for _ in range(generations):
            parents = [
                (tuple(p["kernel"]), tuple(p["expand"]), tuple(p["depth"]))
                for p in pareto(list(self.scored.values()))
            ]
            for _ in range(population):
                child = (
                    crossover(rng.choice(parents), rng.choice(parents), rng)
                    if len(parents) > 1 and rng.random() < 0.5
                    else rng.choice(parents)
                )
                self.score(mutate(child, self.net, rng))
                progress.update(1)


def plot_search(scored: list[dict[str, Any]], chosen: list[dict[str, Any]], path: Path) -> Path:
    """Every candidate of the search, its Pareto front and the members kept, on one plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto(scored)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(
        [p["latency_ms"] for p in scored],
        [100 * p["accuracy"] for p in scored],
        s=12,
        color="lightgray",
        label=f"searched ({len(scored)})",
    )
    ax.plot(
        [p["latency_ms"] for p in front],
        [100 * p["accuracy"] for p in front],
        "-o",
        ms=4,
        color="tab:red",
        label=f"Pareto front ({len(front)})",
    )
    ax.scatter(
        [p["latency_ms"] for p in chosen],
        [100 * p["accuracy"] for p in chosen],
        s=60,
        facecolors="none",
        edgecolors="tab:blue",
        label=f"kept as the CPU set ({len(chosen)})",
    )
    ax.set_xscale("log")  # a busy machine stretches some measurements by 10-100x
    ax.set_xlabel("latency p50 on this CPU, batch 1, during the search [ms]")
    ax.set_ylabel("validation top-1 [%]")
    ax.set_title("elastic super-network on Fashion-MNIST: sub-networks searched")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def scratch_picks(chosen: list[dict[str, Any]], count: int) -> list[int]:
    """Which members of the latency-sorted set are trained from scratch: the most accurate
    first (the OFA claim), then the fastest, then the middle one."""
    priority = [len(chosen) - 1, 0, len(chosen) // 2]
    return list(dict.fromkeys(priority[: max(count, 0)]))


def build_supernet(config: dict[str, Any]) -> OFAMobileNetV3:
    return OFAMobileNetV3(**dict(config.get("supernet") or {}))


def parse_arch_id(text: str) -> Arch:
    """'k357_e346_d123' -> ((3, 5, 7), (3, 4, 6), (1, 2, 3)), the inverse of arch_id."""
    try:
        k, e, d = text.split("_")
        return tuple(tuple(int(c) for c in part[1:]) for part in (k, e, d))  # type: ignore
    except ValueError as exc:
        raise ValueError(f"not a sub-network id like k357_e346_d123: {text!r}") from exc


def from_scratch(
    config: dict[str, Any],
    arch: Arch,
    train: Split,
    epochs: float,
    args: argparse.Namespace,
    saved: Path,
    progress: tqdm | None = None,
) -> nn.Module:
    """The sub-network's architecture as a fresh static network, trained alone (or loaded)."""
    torch.manual_seed(args.seed + 7)
    fresh = build_supernet(config)
    set_arch(fresh, arch, args.resolution)
    static = fresh.get_active_subnet()
    if saved.is_file():
        static.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
        if progress is not None:
            progress.update(steps_for(epochs, len(train.x_train), args.batch_size))
    else:
        fit(static, train, epochs, SCRATCH_LR, args.batch_size, args.seed + 100, progress)
        save_stage(static.state_dict(), saved)
    return static.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="ofa_fashion", help="an ofa_mbv3 model config (its supernet:)"
    )
    parser.add_argument("--out", type=Path, default=Path("models/ofa_fashion"))
    parser.add_argument(
        "--stages", type=Path, help="where finished stages are kept (default <out>/stages)"
    )
    parser.add_argument(
        "--subnet-set",
        type=Path,
        help="where the Pareto set goes (default config/subnets/<the config's set>.yaml)",
    )
    parser.add_argument("--resolution", type=int, default=28)
    parser.add_argument(
        "--train-images",
        type=int,
        help="use only the first N training images (default: all 55,000 left after the "
        "validation split)",
    )
    parser.add_argument(
        "--epoch-scale",
        type=float,
        default=0.5,
        help="multiply every phase's epochs (0.5: 3.5 passes over the 55,000 images in all)",
    )
    parser.add_argument(
        "--kd-ratio",
        type=float,
        default=1.0,
        help="weight of the distillation loss from the full network after the first phase",
    )
    parser.add_argument(
        "--distill",
        choices=("inplace", "teacher", "none"),
        default="inplace",
        help="after the first phase, distil from the full network trained alongside in every "
        "step (inplace), from its copy frozen after the first phase (teacher: OFA's), or not",
    )
    parser.add_argument(
        "--no-sandwich",
        action="store_true",
        help="after the first phase, do not also train the phase's smallest sub-network in "
        "every step (the sandwich rule)",
    )
    parser.add_argument(
        "--sampled", type=int, default=1, help="random sub-networks trained in every step"
    )
    parser.add_argument(
        "--lr", type=float, default=3e-3, help="peak of the one-cycle schedule over all phases"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--set-size", type=int, default=6)
    parser.add_argument(
        "--scratch",
        type=int,
        default=2,
        help="front members trained from scratch: the most accurate, the fastest, the middle one",
    )
    parser.add_argument(
        "--scratch-only",
        metavar="ID",
        type=parse_arch_id,
        help="only train sub-network ID (e.g. k777_e666_d333) from scratch, to run the "
        "baselines in parallel processes; a full run then finds them saved",
    )
    parser.add_argument(
        "--scratch-pick",
        type=int,
        metavar="N",
        help="only train the N-th of the --scratch members (1: the most accurate) from "
        "scratch, once the search is saved (parallel processes: make_models)",
    )
    parser.add_argument(
        "--stop-after",
        choices=("shrinking", "search"),
        help="stop once the shrinking phases or the search are saved (parts of a run for "
        "parallel processes: make_models)",
    )
    parser.add_argument("--latency-iterations", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=default_threads(), help=THREADS_HELP)
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    stages = args.stages or args.out / "stages"
    stages.mkdir(parents=True, exist_ok=True)
    log_to(args.out)
    torch.set_num_threads(args.threads)
    config = load_model_config(args.model)
    set_name = str(config.get("subnets") or config["name"])
    set_path = args.subnet_set or config_dir() / "subnets" / f"{set_name}.yaml"
    full = load_fashion_data()
    n_train = args.train_images or len(full.x_train)
    if not 0 < n_train <= len(full.x_train):
        parser.error(f"--train-images: 1 to {len(full.x_train)}")
    train = Split(
        full.x_train[:n_train], full.y_train[:n_train], full.x_val, full.y_val,
        full.x_test, full.y_test,
    )
    n_val = len(train.x_val)
    calibration = train.x_train[:2000]
    started = time.perf_counter()

    torch.manual_seed(args.seed)
    net = build_supernet(config)
    schedule = shrinking_schedule(net, args.epoch_scale)
    shrinking = Shrinking(
        args.lr, args.batch_size, args.distill, args.kd_ratio, not args.no_sandwich, args.sampled
    )
    scratch_epochs = sum(p.epochs for p in schedule)
    log.info(
        "super-network %s: %d parameters, %d train / %d validation / %d test images, "
        "%d thread(s); schedule %s; %s; from-scratch twins: %.2f passes, AdamW lr %g one-cycle, "
        "batch %d, cross-entropy only",
        config["name"],
        sum(p.numel() for p in net.parameters()),
        n_train,
        n_val,
        len(train.x_test),
        args.threads,
        schedule,
        shrinking,
        scratch_epochs,
        SCRATCH_LR,
        args.batch_size,
    )
    stages = stages / run_key(config.get("supernet"), schedule, n_train, shrinking, args.seed)
    stages.mkdir(parents=True, exist_ok=True)
    phase_steps = [steps_for(p.epochs, n_train, args.batch_size) for p in schedule]

    def train_alone(arch: Arch) -> None:
        name = arch_id(arch)
        steps = steps_for(scratch_epochs, n_train, args.batch_size)
        with progress_bar(steps, f"from scratch {name}", "step") as bar:
            from_scratch(config, arch, train, scratch_epochs, args, stages / f"scratch_{name}.pt",
                         bar)

    if args.scratch_only:
        train_alone(args.scratch_only)
        return 0
    with progress_bar(sum(phase_steps), "progressive shrinking", "step") as bar:
        shrinking.train(net, train, schedule, args.resolution, args.seed, stages, bar)
    if args.stop_after == "shrinking":
        return 0
    torch.save(net.state_dict(), args.out / "supernet.pt")

    search_file = stages / "search.yaml"
    if search_file.is_file():
        scored = yaml.safe_load(search_file.read_text())
    else:
        searcher = Searcher(net, args.resolution, calibration, train, args.latency_iterations)
        total = args.population * (args.generations + 1)
        with progress_bar(total, "evolutionary search", "subnet") as bar:
            searcher.evolve(args.population, args.generations, args.seed, bar)
        scored = sorted(searcher.scored.values(), key=lambda p: p["latency_ms"])
        search_file.write_text(yaml.safe_dump(scored, sort_keys=False))
    if args.stop_after == "search":
        return 0
    front = pareto(scored)
    chosen = spread_over_latency(front, args.set_size)
    picks = scratch_picks(chosen, args.scratch)
    if args.scratch_pick:
        if args.scratch_pick <= len(picks):
            p = chosen[picks[args.scratch_pick - 1]]
            train_alone((tuple(p["kernel"]), tuple(p["expand"]), tuple(p["depth"])))
        return 0
    log.info(
        "searched %d sub-networks; validation Pareto front %d; keeping %s",
        len(scored),
        len(front),
        [p["id"] for p in chosen],
    )
    plot_search(scored, chosen, args.out / "search.png")
    (args.out / "search.yaml").write_text(yaml.safe_dump(scored, sort_keys=False))

    bn_stats, rows = {}, []
    for p in chosen:
        arch = (tuple(p["kernel"]), tuple(p["expand"]), tuple(p["depth"]))
        sub, bn_stats[p["id"]] = materialise(net, arch, args.resolution, calibration)
        rows.append(
            {
                "id": p["id"],
                "kernel": p["kernel"],
                "expand": p["expand"],
                "depth": p["depth"],
                "resolution": args.resolution,
                "accuracy": round(nhwc_accuracy(sub, train.x_test, train.y_test), 4),
                "validation_accuracy": round(p["accuracy"], 4),
                "search_latency_p50_ms": round(p["latency_ms"], 3),
                "params": sum(t.numel() for t in sub.parameters()),
            }
        )
    save_bn_stats(
        args.out / "bn_stats.pt",
        set_name,
        bn_stats,
        f"recalibrated on {len(calibration)} Fashion-MNIST training images",
    )

    with progress_bar(
        steps_for(scratch_epochs, n_train, args.batch_size) * len(picks),
        "from scratch (same budget)",
        "step",
    ) as bar:
        for j in picks:
            row = rows[j]
            arch = (tuple(row["kernel"]), tuple(row["expand"]), tuple(row["depth"]))
            static = from_scratch(
                config, arch, train, scratch_epochs, args, stages / f"scratch_{row['id']}.pt", bar
            )
            row["scratch_accuracy"] = round(nhwc_accuracy(static, train.x_test, train.y_test), 4)
            row["gap_to_scratch"] = round(row["scratch_accuracy"] - row["accuracy"], 4)
    elapsed = time.perf_counter() - started

    report = {
        "dataset": "Fashion-MNIST (Zalando, MIT licence)",
        "train_images": n_train,
        "validation_images": n_val,
        "test_images": len(train.x_test),
        "resolution": args.resolution,
        "validation_seed": VALIDATION_SEED,
        "batch_size": args.batch_size,
        "schedule": [vars(p) for p in schedule],
        "shrinking": asdict(shrinking),
        "scratch_epochs": scratch_epochs,
        "scratch_lr": SCRATCH_LR,
        "searched": len(scored),
        "validation_front": len(front),
        "threads": args.threads,
        "seconds_this_run": round(elapsed, 1),
        "subnets": rows,
    }
    (args.out / "accuracy.yaml").write_text(yaml.safe_dump(report, sort_keys=False))
    previous = load_subnet_set(set_path) if set_path.is_file() else {}
    header = (
        "# Written by python -m dyndnn_ros.training.train_ofa (make models): the CPU Pareto set\n"
        "# of the Fashion-MNIST super-network, latency measured on the training machine's CPU\n"
        "# (batch 1, search_latency_p50_ms); accuracy = top-1 on the 10,000 test images after\n"
        "# per-sub-network BN recalibration.\n"
    )
    set_doc = {
        "name": set_name,
        "device_kind": "cpu",
        "supernet": config["name"],
        "subnets": [
            {
                k: r[k]
                for k in (
                    "id",
                    "kernel",
                    "expand",
                    "depth",
                    "resolution",
                    "accuracy",
                    "search_latency_p50_ms",
                )
            }
            for r in rows
        ],
    }
    if previous.get("subnets") != set_doc["subnets"]:
        set_path.write_text(
            header + yaml.safe_dump(set_doc, sort_keys=False, default_flow_style=None)
        )

    lines = [
        (
            f"OFA super-network {config['name']} on Fashion-MNIST ({elapsed:.0f} s this run, "
            f"{args.threads} thread(s)); searched {len(scored)} sub-networks, front {len(front)}"
        ),
        (
            f"{'subnet':>22} {'params':>7} {'lat ms':>7} {'val':>7} {'test':>7} "
            f"{'scratch':>8} {'gap pp':>7}"
        ),
    ]
    for r in rows:
        scratch = (
            f"{r['scratch_accuracy']:8.4f} {100 * r['gap_to_scratch']:7.2f}"
            if "scratch_accuracy" in r
            else ""
        )
        lines.append(
            f"{r['id']:>22} {r['params']:>7} {r['search_latency_p50_ms']:7.3f} "
            f"{r['validation_accuracy']:7.4f} {r['accuracy']:7.4f} {scratch}"
        )
    try:  # the log is committed with the models: no machine's absolute path in it
        shown = Path(set_path).resolve().relative_to(config_dir().parent.resolve())
    except ValueError:
        shown = set_path
    lines.append(f"wrote {args.out}/supernet.pt, bn_stats.pt, accuracy.yaml and {shown}")
    print_and_log(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
