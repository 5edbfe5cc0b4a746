# SPDX-License-Identifier: Apache-2.0
"""Build one TensorRT engine per sub-network from the ONNX files of `onnx_export`.

    python -m dyndnn_ros.export.tensorrt_build --onnx-dir build/onnx/ofa_mbv3_gpu --out
    build/engines/ofa_mbv3_gpu --fp16

Run it on the target (engines are specific to the GPU and TensorRT version). Writes
<out>/<subnet>.engine and <out>/manifest.yaml for `backends.tensorrt_backend.TensorRTBackend`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from dyndnn_ros.backends.tensorrt_backend import read_manifest, trt


class EngineBuildError(RuntimeError):
    pass


def build_engine(
    onnx_path: Path, engine_path: Path, fp16: bool = False, workspace_mb: int = 1024
) -> Path:
    if trt is None:
        raise EngineBuildError(
            "building engines needs the `tensorrt` Python package (JetPack / NVIDIA TensorRT)"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(
        trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"
    ):  # required in 8.x, implied in 10.x
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:  # TensorRT < 8.4
        config.max_workspace_size = workspace_mb << 20
    if fp16:
        if not builder.platform_has_fast_fp16:
            raise EngineBuildError("--fp16 asked for, but this GPU has no fast FP16")
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    return engine_path


def build_all(onnx_dir: Path, out_dir: Path, fp16: bool = False, workspace_mb: int = 1024) -> dict:
    manifest = read_manifest(onnx_dir)
    entries = []
    for entry in manifest["subnets"]:
        engine = build_engine(
            onnx_dir / entry["onnx"], out_dir / f"{entry['id']}.engine", fp16, workspace_mb
        )
        entries.append({**entry, "engine": engine.name})
        print(f"built {engine}")
    out = {
        **manifest,
        "precision": "fp16" if fp16 else "fp32",
        "tensorrt": trt.__version__,
        "subnets": entries,
    }
    (out_dir / "manifest.yaml").write_text(yaml.safe_dump(out, sort_keys=False))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--onnx-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--workspace-mb", type=int, default=1024)
    args = parser.parse_args(argv)
    build_all(args.onnx_dir, args.out, args.fp16, args.workspace_mb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
