# SPDX-License-Identifier: Apache-2.0
"""Export every sub-network of a dynamic model to its own ONNX file and check it with onnxruntime.

    python -m dyndnn_ros.export.onnx_export --model groupconv_digits --out
    build/onnx/groupconv_digits

Writes <out>/<subnet>.onnx and <out>/manifest.yaml (model, sub-network ids, input shapes, weights
provenance), which `dyndnn_ros.export.tensorrt_build` turns into one TensorRT engine each.
"""
from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from dyndnn_ros.models.dynamic import build_dynamic_model

INPUT_NAME, OUTPUT_NAME = "input", "scores"


@dataclass(frozen=True)
class OnnxCheck:
    subnet_id: str
    path: Path
    max_abs_diff: float
    max_abs_output: float


def export_module(module: nn.Module, input_shape: tuple[int, ...], path: Path, opset: int = 17,
                  batch: int = 1) -> Path:
    """One eval-mode module to ONNX with a fixed batch (TensorRT builds per shape anyway)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(batch, *input_shape)
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    return path


def check_with_onnxruntime(module: nn.Module, path: Path, x: torch.Tensor) -> tuple[float, float]:
    """Run the ONNX file with onnxruntime and torch on the same input: (max |diff|, max |output|).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        ref = module.eval()(x).numpy()
    return float(np.abs(ours - ref).max()), float(np.abs(ref).max())


def export_model(
    config: str | Path | dict[str, Any],
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    opset: int = 17,
    subnets: list[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Any], list[OnnxCheck]]:
    out_dir = Path(out_dir)
    model = build_dynamic_model(config, checkpoint, mode="shared")
    ids = subnets or model.available_subnets()
    generator = torch.Generator().manual_seed(seed)
    entries, checks = [], []
    for sid in tqdm(ids, desc=f"ONNX export {model.name}", unit="subnet", disable=not progress):
        module = model.standalone(sid)
        shape = model.input_shape(sid)
        path = export_module(module, shape, out_dir / f"{sid}.onnx", opset)
        diff, scale = check_with_onnxruntime(
            module, path, torch.randn(1, *shape, generator=generator)
        )
        checks.append(OnnxCheck(sid, path, diff, scale))
        entries.append({"id": sid, "onnx": path.name, "input_shape": list(shape), "batch": 1})
    manifest = {"model": model.name, "family": model.family.family, "opset": opset,
                "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
                "weights": model.family.metadata.get("weights"), "subnets": entries}
    (out_dir / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return manifest, checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", required=True, help="config/models/<name>.yaml name or a YAML path"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="max |onnxruntime - torch| relative to max |output|",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    _, checks = export_model(args.model, args.out, args.checkpoint, args.opset)
    worst = 0.0
    print(f"{'subnet':>24} {'max |ort - torch|':>18} {'max |torch|':>12}  file")
    for c in checks:
        rel = c.max_abs_diff / max(c.max_abs_output, 1e-12)
        worst = max(worst, rel)
        print(f"{c.subnet_id:>24} {c.max_abs_diff:18.3e} {c.max_abs_output:12.3e}  {c.path}")
    print(f"wrote {args.out / 'manifest.yaml'}")
    if worst > args.tolerance:
        print(
            f"FAILED: onnxruntime differs from torch by {worst:.2e} (relative) > "
            f"{args.tolerance:.0e}"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
