# SPDX-License-Identifier: Apache-2.0
"""Profile every sub-network of a dynamic model and write the profile the resource manager reads.

    python -m dyndnn_ros.profiling.profile --model groupconv_digits --threads 2 --out
    build/profiles

For each sub-network (run through `DynamicModel.forward`, as the inference node does): latency
p50/p95/p99/mean after warm-up, throughput, peak memory, parameters, MACs, and the accuracy the
checkpoint or an --accuracy YAML knows. Writes <out>/<model>_<device>.yaml (dyndnn_ros.profiles
format) and a PNG of the accuracy/latency Pareto front next to it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from dyndnn_ros.models.dynamic import MODES, DynamicModel, build_dynamic_model
from dyndnn_ros.profiles import ModelProfile, SubnetProfile, save_profile
from dyndnn_ros.profiling.measure import (
    LatencyStats,
    count_macs,
    count_params,
    peak_memory_mb,
    time_calls,
)
from dyndnn_ros.profiling.pareto import pareto_front, plot_profile


def profile_model(model: DynamicModel, iterations: int = 100, warmup: int = 10, batch: int = 1,
                  accuracy: dict[str, float] | None = None, threads: int | None = None,
                  progress: bool = True, block: int = 10) -> ModelProfile:
    """Profile every sub-network; latency is sampled round-robin in blocks of `block` frames.

    Taking the sub-networks in turn, rather than one after another, means a busy spell of the
    machine lands on all of them alike instead of inflating whichever was being measured. The
    first frame after each switch is not timed (it is what the switch benchmark covers).
    """
    if iterations < 1 or warmup < 0 or batch < 1 or block < 1:
        raise ValueError("iterations, batch and block must be positive, warmup non-negative")
    accuracy = dict(accuracy or {})
    threads = threads or torch.get_num_threads()
    ids = model.available_subnets()
    generator = torch.Generator().manual_seed(0)
    inputs = {
        sid: torch.randn(batch, *model.input_shape(sid), generator=generator).to(model.device)
        for sid in ids
    }
    samples: dict[str, list[float]] = {sid: [] for sid in ids}
    active = model.active_subnet  # measuring switches through all; the caller's choice comes back
    try:
        for sid in ids:
            model.switch(sid)
            time_calls(lambda: model.forward(inputs[sid]), 0, warmup, model.device)
        rounds = -(-iterations // block)
        with tqdm(total=rounds * len(ids), desc=f"profile {model.name}", unit="block",
                  disable=not progress) as bar:
            for r in range(rounds):
                n = min(block, iterations - r * block)
                for sid in ids:
                    model.switch(sid)
                    samples[sid] += time_calls(lambda: model.forward(inputs[sid]), n, 1,
                                               model.device)
                    bar.update(1)
    finally:
        model.switch(active)
    subnets, unknown, memory_method = [], [], ""
    for sid in ids:
        stats = LatencyStats.of(samples[sid])
        standalone = model.standalone(sid)
        memory, memory_method = peak_memory_mb(standalone, inputs[sid])
        acc = accuracy.get(sid, model.family.accuracy(sid))
        if acc is None:
            unknown.append(sid)
        subnets.append(
            SubnetProfile(
                id=sid,
                accuracy=float(acc or 0.0),
                latency_p50_ms=stats.p50_ms,
                latency_p95_ms=stats.p95_ms,
                latency_p99_ms=stats.p99_ms,
                latency_mean_ms=stats.mean_ms,
                throughput_fps=batch * 1e3 / stats.mean_ms,
                peak_memory_mb=memory,
                params=count_params(standalone),
                macs=count_macs(standalone, inputs[sid][:1]),
            )
        )
    metadata: dict[str, Any] = {
        **{k: v for k, v in model.family.metadata.items() if v is not None},
        "mode": model.mode,
        "batch": batch,
        "iterations": iterations,
        "warmup": warmup,
        "sampling": f"round-robin over sub-networks in blocks of {block} frames",
        "accuracy_known": not unknown,
        "peak_memory_method": memory_method,
        "macs": "per frame (batch 1), torch FlopCounterMode / 2",
        "host": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "torch": str(torch.__version__),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if unknown:
        metadata["accuracy_unknown_for"] = unknown
    profile = ModelProfile(model=model.name, device=model.device.type, subnets=tuple(subnets),
                           family=model.family.family, threads=threads, metadata=metadata)
    metadata["pareto_front"] = [s.id for s in pareto_front(profile.subnets)] if not unknown else []
    return profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", required=True, help="config/models/<name>.yaml name or a YAML path"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("build/profiles"), help="directory, or a .yaml file path"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", choices=MODES, default="resident")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--accuracy",
        type=Path,
        default=None,
        help="YAML {subnet_id: top-1 fraction} measured elsewhere (e.g. ImageNet val)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model = build_dynamic_model(args.model, args.checkpoint, mode=args.mode, device=args.device)
    accuracy = yaml.safe_load(args.accuracy.read_text()) if args.accuracy else None
    profile = profile_model(
        model, args.iterations, args.warmup, args.batch, accuracy, args.threads
    )
    path = (
        args.out
        if args.out.suffix in (".yaml", ".yml")
        else args.out / f"{model.name}_{profile.device}.yaml"
    )
    save_profile(profile, path)
    png = plot_profile(profile, path.with_suffix(".png"))

    print(f"\n{profile.model} on {profile.device}, {profile.threads} threads, {args.mode} mode, "
          f"weights: {profile.metadata.get('weights')}")
    print(
        f"{'subnet':>20} {'acc':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'fps':>8} "
        f"{'MMACs':>8} {'params':>9} {'MB':>7}"
    )
    for s in profile.subnets:
        acc = (
            f"{s.accuracy:6.3f}"
            if s.id not in profile.metadata.get("accuracy_unknown_for", [])
            else f"{'?':>6}"
        )
        print(
            f"{s.id:>20} {acc} {s.latency_p50_ms:8.3f} {s.latency_p95_ms:8.3f} "
            f"{s.latency_p99_ms:8.3f} "
            f"{s.throughput_fps:8.1f} {s.macs / 1e6:8.2f} {s.params:9d} {s.peak_memory_mb:7.2f}"
        )
    print(
        "Pareto front (accuracy vs p50 latency): "
        f"{profile.metadata['pareto_front'] or 'undefined: accuracy unknown'}"
    )
    print(f"wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
