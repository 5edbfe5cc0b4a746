"""Incremental training of the group-convolution dynamic network on scikit-learn's digits (offline).

    python -m dyndnn_ros.models.train_groupconv --out build/models/groupconv_digits

Stage k trains group k (and head k) with groups 1..k-1 frozen. With the same per-sub-network
budget (epochs, batch size, optimiser), two static networks per sub-network are trained from
scratch as baselines: the same grouped architecture, and a dense one of the same layer widths;
the table reports the test accuracies and the gaps to the dynamic sub-network.
Writes <out>/checkpoint.pt and <out>/accuracy.yaml.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from dyndnn_ros.models.groupconv import GroupConvNet, GroupConvSpec, GroupConvSubnet, GroupStage, subnet_ids


@dataclass(frozen=True)
class DigitsData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_data(seed: int = 0, test_fraction: float = 0.2) -> DigitsData:
    """The 1797 bundled 8x8 digit images, scaled to [0, 1], stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # N x 1 x 8 x 8
    x_tr, x_te, y_tr, y_te = train_test_split(x, digits.target, test_size=test_fraction, random_state=seed,
                                              stratify=digits.target)
    return DigitsData(torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
                      torch.from_numpy(x_te), torch.from_numpy(y_te).long())


@dataclass(frozen=True)
class TrainBudget:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4


def _fit(module: nn.Module, data: DigitsData, budget: TrainBudget, generator: torch.Generator,
         progress: tqdm | None) -> None:
    params = [p for p in module.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=budget.lr, weight_decay=budget.weight_decay)
    steps_per_epoch = -(-len(data.x_train) // budget.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, budget.lr, total_steps=budget.epochs * steps_per_epoch)
    module.train()
    for _ in range(budget.epochs):
        order = torch.randperm(len(data.x_train), generator=generator)
        for start in range(0, len(order), budget.batch_size):
            idx = order[start:start + budget.batch_size]
            loss = F.cross_entropy(module(data.x_train[idx]), data.y_train[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
        if progress is not None:
            progress.update(1)
    module.eval()


@torch.no_grad()
def accuracy(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    return float((forward(x).argmax(1) == y).float().mean())


def train_incremental(net: GroupConvNet, data: DigitsData, budget: TrainBudget, seed: int = 0,
                      progress: tqdm | None = None,
                      after_stage: Callable[[int], None] | None = None) -> None:
    """Train groups 1..G in order; after stage k, groups 1..k are final and never change again."""
    generator = torch.Generator().manual_seed(seed)
    for k in range(1, net.spec.groups + 1):
        stage = GroupStage(net, k)
        _fit(stage, data, budget, generator, progress)
        stage.commit()
        if after_stage is not None:
            after_stage(k)
    net.eval()


def train_static_baseline(spec: GroupConvSpec, k: int, data: DigitsData, budget: TrainBudget, seed: int = 0,
                          progress: tqdm | None = None, dense: bool = False) -> GroupConvSubnet:
    torch.manual_seed(seed + 1000 * k)
    model = GroupConvSubnet(spec, k, dense)
    _fit(model, data, budget, torch.Generator().manual_seed(seed), progress)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/models/groupconv_digits"))
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=TrainBudget.epochs, help="epochs per sub-network")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; the network is tiny, and on a busy machine a 2-thread region "
                             "waits for the other core to come free")
    parser.add_argument("--no-baseline", action="store_true", help="skip the static from-scratch baselines")
    args = parser.parse_args(argv)
    if args.groups < 1 or args.epochs < 1:
        parser.error("--groups and --epochs must be positive")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    spec = GroupConvSpec(groups=args.groups)
    budget = TrainBudget(epochs=args.epochs)
    data = load_digits_data(args.seed)
    net = GroupConvNet(spec)
    started = time.perf_counter()
    total_epochs = budget.epochs * spec.groups * (1 if args.no_baseline else 3)
    with tqdm(total=total_epochs, desc="train groupconv (epochs)", unit="ep") as progress:
        train_incremental(net, data, budget, args.seed, progress)
        table = []
        for k, sid in enumerate(subnet_ids(spec.groups), start=1):
            row = {"subnet": sid, "groups": k,
                   "params": sum(p.numel() for p in net.standalone(k).parameters()),
                   "dynamic_accuracy": accuracy(lambda x, k=k: net.forward_groups(x, k), data.x_test, data.y_test)}
            if not args.no_baseline:
                static = train_static_baseline(spec, k, data, budget, args.seed, progress)
                row["static_accuracy"] = accuracy(static, data.x_test, data.y_test)
                row["gap"] = row["static_accuracy"] - row["dynamic_accuracy"]
                dense = train_static_baseline(spec, k, data, budget, args.seed, progress, dense=True)
                row["dense_params"] = sum(p.numel() for p in dense.parameters())
                row["dense_accuracy"] = accuracy(dense, data.x_test, data.y_test)
                row["dense_gap"] = row["dense_accuracy"] - row["dynamic_accuracy"]
            table.append(row)
    elapsed = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"family": "groupconv", "spec": asdict(spec), "state_dict": net.state_dict(),
                "accuracy": {r["subnet"]: r["dynamic_accuracy"] for r in table}}, args.out / "checkpoint.pt")
    report = {"dataset": "sklearn load_digits", "train_samples": len(data.x_train), "test_samples": len(data.x_test),
              "budget_per_subnet": asdict(budget), "seed": args.seed, "train_seconds": round(elapsed, 1),
              "subnets": table}
    (args.out / "accuracy.yaml").write_text(yaml.safe_dump(report, sort_keys=False))

    print(f"\ntest accuracy on {len(data.x_test)} held-out digits ({elapsed:.0f} s, {args.threads} threads):")
    print("static = same grouped architecture trained from scratch; dense = same widths, ungrouped convs")
    print(f"{'subnet':>6} {'params':>7} {'dynamic':>8} {'static':>8} {'gap (pp)':>9} {'dense':>8} {'params':>7} {'gap (pp)':>9}")
    for r in table:
        cells = [f"{r['subnet']:>6} {r['params']:>7} {r['dynamic_accuracy']:8.4f}"]
        if "static_accuracy" in r:
            cells.append(f"{r['static_accuracy']:8.4f} {100 * r['gap']:9.2f} {r['dense_accuracy']:8.4f} "
                         f"{r['dense_params']:>7} {100 * r['dense_gap']:9.2f}")
        print(" ".join(cells))
    print(f"wrote {args.out / 'checkpoint.pt'} and {args.out / 'accuracy.yaml'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
