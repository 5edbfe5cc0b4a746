# SPDX-License-Identifier: Apache-2.0
"""Incremental training of the group-convolution dynamic network, on scikit-learn's digits
(bundled, instant) or Fashion-MNIST (dyndnn_ros.datasets.fashion_mnist).

    python -m dyndnn_ros.training.train_groupconv --out build/models/groupconv_digits
    python -m dyndnn_ros.training.train_groupconv --dataset fashion-mnist \
        --out models/groupconv_fashion

Stage k trains group k (and head k) with groups 1..k-1 frozen. With the same per-sub-network
budget (epochs, batch size, optimiser), static networks per sub-network are trained from scratch
as baselines: the same grouped architecture, and (unless --no-dense) a dense one of the same layer
widths; the table reports the test accuracies and the gaps to the dynamic sub-network.
Writes <out>/checkpoint.pt, <out>/accuracy.yaml and <out>/train.log. Every finished stage and
baseline is saved under <out>/stages (or --stages), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from dyndnn_ros.models.groupconv import (
    GroupConvNet,
    GroupConvSpec,
    GroupConvSubnet,
    GroupStage,
    subnet_ids,
)
from dyndnn_ros.training.console import echo, log_to, progress_bar

log = logging.getLogger("train_groupconv")


VALIDATION_SEED = 20260
"""Seed of the validation split carved from the training images: fixed, whatever --seed says."""


@dataclass(frozen=True)
class Split:
    """Float images N x C x H x W in [0, 1] and int64 labels: the training images, a validation
    split held out of them (every choice is made on it) and the test images (reported only)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def carve_validation(
    x: torch.Tensor, y: torch.Tensor, n_val: int, x_test: torch.Tensor, y_test: torch.Tensor
) -> Split:
    """Hold `n_val` images out of the training images, drawn with VALIDATION_SEED."""
    if not 0 < n_val < len(x):
        raise ValueError(f"a validation split of {n_val} out of {len(x)} training images")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    val, train = order[:n_val], order[n_val:].sort().values
    return Split(x[train], y[train], x[val], y[val], x_test, y_test)


def load_digits_data(seed: int = 0, test_fraction: float = 0.2, val_images: int = 144) -> Split:
    """The 1797 bundled 8x8 digit images, scaled to [0, 1], stratified train/test split, and a
    validation split held out of the training part."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # N x 1 x 8 x 8
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return carve_validation(
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr).long(),
        val_images,
        torch.from_numpy(x_te),
        torch.from_numpy(y_te).long(),
    )


FASHION_VALIDATION_IMAGES = 5000


@functools.lru_cache(maxsize=1)  # once per process: a make_models worker runs several jobs
def load_fashion_data(seed: int = 0) -> Split:
    """Fashion-MNIST, 1 x 28 x 28 in [0, 1]: 55,000 training and 5,000 validation images from
    its 60,000 training images, and its 10,000 test images."""
    from dyndnn_ros.datasets import fashion_mnist

    data = fashion_mnist.load()

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0)[:, None]

    return carve_validation(
        images(data.train_images),
        torch.from_numpy(data.train_labels),
        FASHION_VALIDATION_IMAGES,
        images(data.test_images),
        torch.from_numpy(data.test_labels),
    )


@dataclass(frozen=True)
class TrainBudget:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class DatasetRecipe:
    load: Callable[[int], Split]
    spec: GroupConvSpec
    budget: TrainBudget
    description: str


DATASETS = {
    "digits": DatasetRecipe(
        load_digits_data, GroupConvSpec(), TrainBudget(), "sklearn load_digits"
    ),
    # 28x28: pool after the first two layers (28 -> 14 -> 7), a 3x3 grid of features per channel
    # into the head. Groups of 1, 2, 4 and 8 units of (2, 4, 8) channels, each reading every
    # earlier group: a narrow, fast g1 and a full network about as wide as a plain CNN, so the
    # sub-networks span a wide accuracy/latency range (an architecture choice, not a training one)
    "fashion-mnist": DatasetRecipe(
        load_fashion_data,
        GroupConvSpec(
            in_channels=1,
            image_size=28,
            group_channels=(2, 4, 8),
            pool_after=(0, 1),
            head_pool=3,
            group_scale=(1, 2, 4, 8),
            lateral=True,
        ),
        TrainBudget(epochs=3, batch_size=128),
        "Fashion-MNIST (Zalando, MIT licence)",
    ),
}


def steps_of(budget: TrainBudget, data: Split) -> int:
    """Optimiser steps of one network's training: `budget.epochs` passes over the images."""
    return budget.epochs * -(-len(data.x_train) // budget.batch_size)


def _fit(
    module: nn.Module,
    data: Split,
    budget: TrainBudget,
    generator: torch.Generator,
    progress: tqdm | None,
) -> None:
    params = [p for p in module.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=budget.lr, weight_decay=budget.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, budget.lr, total_steps=steps_of(budget, data)
    )
    # NHWC: the CPU (oneDNN) convolutions train these small nets 1.5-2x faster than in NCHW
    module.train().to(memory_format=torch.channels_last)
    for _ in range(budget.epochs):
        order = torch.randperm(len(data.x_train), generator=generator)
        for start in range(0, len(order), budget.batch_size):
            idx = order[start : start + budget.batch_size]
            x = data.x_train[idx].contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(module(x), data.y_train[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            if progress is not None:
                progress.update(1)
    module.eval().to(memory_format=torch.contiguous_format)


@torch.no_grad()
def accuracy(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
) -> float:
    correct = sum(
        int((forward(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


def train_incremental(
    net: GroupConvNet,
    data: Split,
    budget: TrainBudget,
    seed: int = 0,
    progress: tqdm | None = None,
    after_stage: Callable[[int], None] | None = None,
    stage_dir: Path | None = None,
) -> None:
    """Train groups 1..G in order; after stage k, groups 1..k are final and never change again.

    With `stage_dir`, the network and the generator are saved after every stage, and stages
    already saved there are loaded instead of trained again (same result as an unbroken run)."""
    generator = torch.Generator().manual_seed(seed)
    for k in range(1, net.spec.groups + 1):
        saved = stage_dir / f"stage_g{k}.pt" if stage_dir is not None else None
        if saved is not None and saved.is_file():
            state = torch.load(saved, map_location="cpu", weights_only=True)
            net.load_state_dict(state["net"])
            generator.set_state(state["generator"])
            log.info("stage g%d: loaded from %s", k, saved)
            if progress is not None:
                progress.update(steps_of(budget, data))
        else:
            stage = GroupStage(net, k)
            _fit(stage, data, budget, generator, progress)
            stage.commit()
            if saved is not None:
                save_stage({"net": net.state_dict(), "generator": generator.get_state()}, saved)
        if after_stage is not None:
            after_stage(k)
    net.eval()


def train_static_baseline(
    spec: GroupConvSpec,
    k: int,
    data: Split,
    budget: TrainBudget,
    seed: int = 0,
    progress: tqdm | None = None,
    dense: bool = False,
    stage_dir: Path | None = None,
) -> GroupConvSubnet:
    model = GroupConvSubnet(spec, k, dense)
    saved = (
        stage_dir / f"{'dense' if dense else 'static'}_g{k}.pt" if stage_dir is not None else None
    )
    if saved is not None and saved.is_file():
        model.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
        if progress is not None:
            progress.update(steps_of(budget, data))
        return model.eval()
    torch.manual_seed(seed + 1000 * k)
    model = GroupConvSubnet(spec, k, dense)
    _fit(model, data, budget, torch.Generator().manual_seed(seed), progress)
    if saved is not None:
        save_stage(model.state_dict(), saved)
    return model


THREADS_HELP = (
    "torch threads (default: one per core where OMP_WAIT_POLICY=PASSIVE, as make models sets "
    "it, else 1: OpenMP threads that spin while they wait trained 13x slower than 1 thread on "
    "a busy 2-core machine, and 1.5x faster when they sleep)"
)


def default_threads() -> int:
    """One per core where OpenMP's waiting threads sleep (OMP_WAIT_POLICY=PASSIVE), else 1."""
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    return torch.get_num_threads() if passive else 1


def save_stage(state: object, path: Path) -> None:
    """A finished stage, written whole and then renamed: a parallel or interrupted run never
    reads half a file (both trainers resume from these)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def run_key(*what: object) -> str:
    """A short name for a run's settings: stages saved under it are only reused by the same run."""
    return hashlib.sha1(repr(what).encode()).hexdigest()[:10]


def choose_head_pool(
    spec: GroupConvSpec,
    candidates: list[int],
    data: Split,
    budget: TrainBudget,
    seed: int,
    stage_dir: Path,
) -> tuple[int, dict[int, float]]:
    """The head pooling (spec.head_pool) whose full network, trained from scratch for `budget`
    (a short probe, the same seed for every candidate), scores best on the validation images."""
    scores = {}
    for pool in candidates:
        probe = replace(spec, head_pool=pool)
        saved = stage_dir / f"probe_head_pool{pool}_{budget.epochs}ep.pt"
        torch.manual_seed(seed)
        model = GroupConvSubnet(probe, probe.groups)
        if saved.is_file():
            model.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
        else:
            with progress_bar(steps_of(budget, data), f"head_pool {pool} probe", "step") as bar:
                _fit(model, data, budget, torch.Generator().manual_seed(seed), bar)
            save_stage(model.state_dict(), saved)
        scores[pool] = accuracy(model.eval(), data.x_val, data.y_val)
        log.info("head_pool %d probe (%d epochs): validation top-1 %.4f", pool, budget.epochs,
                 scores[pool])
    return max(candidates, key=lambda p: (scores[p], -p)), scores


def print_and_log(lines: list[str], out: Path) -> None:
    """A run's summary on the terminal and appended to out/train.log (committed with the model)."""
    for line in lines:
        echo(line)
    with open(out / "train.log", "a") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    parser.add_argument("--out", type=Path, default=Path("build/models/groupconv_digits"))
    parser.add_argument(
        "--stages", type=Path, help="where finished stages are kept (default <out>/stages)"
    )
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument(
        "--epochs", type=int, help="epochs per sub-network (default: the dataset's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=default_threads(), help=THREADS_HELP
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the static from-scratch baselines"
    )
    parser.add_argument(
        "--head-pool-candidates",
        type=int,
        nargs="+",
        metavar="P",
        help="choose the head pooling among these by a short probe scored on the validation "
        "images (default: the dataset's own)",
    )
    parser.add_argument(
        "--probe-epochs", type=int, default=1, help="epochs of each head-pooling probe"
    )
    parser.add_argument(
        "--no-dense", action="store_true", help="skip the dense (ungrouped) baseline"
    )
    parser.add_argument(
        "--static-only",
        type=int,
        metavar="K",
        help="only train the static baseline of g<K> into the stages (to run baselines "
        "in parallel processes; a run without it then finds them saved)",
    )
    parser.add_argument(
        "--stop-after",
        choices=("probes", "incremental"),
        help="stop once the head-pooling probes or the incremental stages are saved (parts "
        "of a run for parallel processes: make_models)",
    )
    args = parser.parse_args(argv)
    recipe = DATASETS[args.dataset]
    budget = replace(recipe.budget, epochs=args.epochs or recipe.budget.epochs)
    if args.groups < 1 or budget.epochs < 1:
        parser.error("--groups and --epochs must be positive")

    args.out.mkdir(parents=True, exist_ok=True)
    stage_dir = args.stages or args.out / "stages"
    log_to(args.out)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    scale = recipe.spec.group_scale
    if scale and args.groups > len(scale):
        parser.error(f"--groups: the {args.dataset} recipe has widths for {len(scale)} groups")
    spec = replace(recipe.spec, groups=args.groups, group_scale=scale[: args.groups])
    data = recipe.load(args.seed)
    log.info(
        "dataset %s: %d train / %d validation / %d test images; spec %s; budget per "
        "sub-network %s",
        args.dataset,
        len(data.x_train),
        len(data.x_val),
        len(data.x_test),
        spec,
        budget,
    )
    started = time.perf_counter()
    probe_scores: dict[int, float] = {}
    if args.head_pool_candidates:
        pool, probe_scores = choose_head_pool(
            spec,
            args.head_pool_candidates,
            data,
            replace(budget, epochs=args.probe_epochs),
            args.seed,
            stage_dir,
        )
        if args.stop_after == "probes":
            return 0
        spec = replace(spec, head_pool=pool)
        log.info("head_pool %d chosen on the validation images", pool)
    stage_dir = stage_dir / run_key(spec, budget, args.seed, len(data.x_train))
    if args.static_only:
        steps = steps_of(budget, data)
        with progress_bar(steps, f"static g{args.static_only}", "step") as progress:
            train_static_baseline(spec, args.static_only, data, budget, args.seed, progress,
                                  stage_dir=stage_dir)
        return 0
    torch.manual_seed(args.seed)  # the same initial network whether or not probes ran first
    net = GroupConvNet(spec)
    if args.stop_after == "incremental":
        steps = steps_of(budget, data) * spec.groups
        with progress_bar(steps, f"incremental g1..g{spec.groups}", "step") as progress:
            train_incremental(net, data, budget, args.seed, progress, stage_dir=stage_dir)
        return 0
    runs = 1 if args.no_baseline else (2 if args.no_dense else 3)
    with progress_bar(
        steps_of(budget, data) * spec.groups * runs, "train groupconv", "step"
    ) as progress:
        train_incremental(net, data, budget, args.seed, progress, stage_dir=stage_dir)
        table = []
        for k, sid in enumerate(subnet_ids(spec.groups), start=1):
            dynamic = net.standalone(k)
            row = {
                "subnet": sid,
                "groups": k,
                "params": sum(p.numel() for p in dynamic.parameters()),
                "dynamic_val_accuracy": accuracy(dynamic, data.x_val, data.y_val),
                "dynamic_accuracy": accuracy(dynamic, data.x_test, data.y_test),
            }
            if not args.no_baseline:
                static = train_static_baseline(
                    spec, k, data, budget, args.seed, progress, stage_dir=stage_dir
                )
                row["static_val_accuracy"] = accuracy(static, data.x_val, data.y_val)
                row["static_accuracy"] = accuracy(static, data.x_test, data.y_test)
                row["gap"] = row["static_accuracy"] - row["dynamic_accuracy"]
            if not (args.no_baseline or args.no_dense):
                dense = train_static_baseline(
                    spec, k, data, budget, args.seed, progress, dense=True, stage_dir=stage_dir
                )
                row["dense_params"] = sum(p.numel() for p in dense.parameters())
                row["dense_val_accuracy"] = accuracy(dense, data.x_val, data.y_val)
                row["dense_accuracy"] = accuracy(dense, data.x_test, data.y_test)
                row["dense_gap"] = row["dense_accuracy"] - row["dynamic_accuracy"]
            log.info("%s", row)
            table.append(row)
    elapsed = time.perf_counter() - started

    torch.save(
        {
            "family": "groupconv",
            "spec": asdict(spec),
            "state_dict": net.state_dict(),
            "accuracy": {r["subnet"]: r["dynamic_accuracy"] for r in table},
        },
        args.out / "checkpoint.pt",
    )
    report = {
        "dataset": recipe.description,
        "spec": asdict(spec),
        "train_samples": len(data.x_train),
        "validation_samples": len(data.x_val),
        "validation_seed": VALIDATION_SEED,
        "test_samples": len(data.x_test),
        "budget_per_subnet": asdict(budget),
        "seed": args.seed,
        "head_pool_probe_validation_accuracy": probe_scores,
        "train_seconds": round(elapsed, 1),
        "subnets": table,
    }
    (args.out / "accuracy.yaml").write_text(yaml.safe_dump(report, sort_keys=False))

    lines = [
        (
            f"top-1 on {len(data.x_val)} validation and {len(data.x_test)} test {args.dataset} "
            f"images ({elapsed:.0f} s, {args.threads} threads; stages loaded from {stage_dir} "
            "are not timed):"
        ),
        (
            "static = same grouped architecture trained from scratch; "
            "dense = same widths, ungrouped convs; gaps on the test images"
        ),
        (
            f"{'subnet':>6} {'params':>7} {'dyn val':>8} {'dyn test':>8} {'st. val':>8} "
            f"{'st. test':>8} {'gap (pp)':>9} {'dense':>8} {'params':>7} {'gap (pp)':>9}"
        ),
    ]
    for r in table:
        cells = [
            f"{r['subnet']:>6} {r['params']:>7} {r['dynamic_val_accuracy']:8.4f} "
            f"{r['dynamic_accuracy']:8.4f}"
        ]
        if "static_accuracy" in r:
            cells.append(
                f"{r['static_val_accuracy']:8.4f} {r['static_accuracy']:8.4f} "
                f"{100 * r['gap']:9.2f}"
            )
        if "dense_accuracy" in r:
            cells.append(
                f"{r['dense_accuracy']:8.4f} {r['dense_params']:>7} {100 * r['dense_gap']:9.2f}"
            )
        lines.append(" ".join(cells))
    lines.append(f"wrote {args.out / 'checkpoint.pt'} and {args.out / 'accuracy.yaml'}")
    print_and_log(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
