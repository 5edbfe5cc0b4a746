# SPDX-License-Identifier: Apache-2.0
"""The torch CUDA path of the dynamic models, checked on a machine with an NVIDIA GPU (a Jetson's
included): every sub-network runs on the GPU in resident and shared mode, switching between frames
gives the same scores as the sub-network materialised on its own, and the latency of each
sub-network and of a switch is measured (GPU work synchronised).

    python -m dyndnn_ros.benchmarks.cuda_check [--models groupconv_digits ofa_mbv3_gpu] [--out F]
    (--device cpu runs the same checks on the CPU)

Prints a table and writes a JSON file; exits 1 if outputs differ, 2 if there is no CUDA device.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dyndnn_ros.models.dynamic import build_dynamic_model

TOLERANCE = 1e-3  # relative to max |score|: TF32/cuDNN algorithm choices differ between modules


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synchronised_ms(run, device: torch.device, repetitions: int) -> list:
    samples = []
    for _ in range(repetitions):
        synchronise(device)
        start = time.perf_counter()
        run()
        synchronise(device)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def check_model(name: str, device: str, repetitions: int) -> dict:
    resident = build_dynamic_model(name, mode="resident", device=device)
    shared = build_dynamic_model(name, mode="shared", device=device)
    ids = resident.available_subnets()
    gpu = resident.device
    report = {"model": name, "subnets": {}}
    with torch.inference_mode():
        for sid in ids:
            shape = resident.family.input_shape(sid)
            x = torch.rand((1, *shape), device=gpu)
            alone = resident.family.materialise(sid).to(gpu).eval()(x)
            resident.switch(sid)
            shared.switch(sid)
            via_resident, via_shared = resident.forward(x), shared.forward(x)
            scale = float(alone.abs().max()) or 1.0
            errors = {"resident": float((via_resident - alone).abs().max()) / scale,
                      "shared": float((via_shared - alone).abs().max()) / scale}
            for _ in range(10):  # warm-up: cuDNN autotuning, lazy module loading
                resident.forward(x)
            latency = synchronised_ms(lambda: resident.forward(x), gpu, repetitions)
            report["subnets"][sid] = {"relative_error": errors,
                                      "p50_ms": float(np.percentile(latency, 50)),
                                      "p99_ms": float(np.percentile(latency, 99))}
        order = iter(range(repetitions))
        switch = synchronised_ms(lambda: resident.switch(ids[next(order) % len(ids)]), gpu,
                                 repetitions)
        report["resident_switch_p50_ms"] = float(np.percentile(switch, 50))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["groupconv_digits", "ofa_mbv3_gpu"])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("build/bench/cuda_check.json"))
    args = parser.parse_args(argv)
    on_gpu = torch.device(args.device).type == "cuda"
    if on_gpu and not torch.cuda.is_available():
        print("no CUDA device: nothing to check here", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    reports = [check_model(name, args.device, args.repetitions) for name in args.models]
    worst = 0.0
    device_name = torch.cuda.get_device_name(args.device) if on_gpu else "CPU"
    for report in reports:
        print(f"{report['model']} on {device_name}: "
              f"resident switch p50 {report['resident_switch_p50_ms']:.4f} ms")
        for sid, row in report["subnets"].items():
            error = max(row["relative_error"].values())
            worst = max(worst, error)
            print(f"  {sid:>28}: p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms, "
                  f"max relative error vs materialised {error:.1e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device_name,
                                    "torch": torch.__version__, "models": reports}, indent=1))
    print(f"written {args.out}; worst relative error {worst:.1e} (tolerance {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
