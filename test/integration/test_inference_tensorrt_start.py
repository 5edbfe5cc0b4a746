# SPDX-License-Identifier: Apache-2.0
"""The inference node's tensorrt path, started as an executable with the `tensorrt` bindings
replaced by test/fakes/tensorrt (no GPU here; everything above the bindings is real): device
default, profile found by its model_config name, engine folder taken as given, every engine opened.
It stops where CUDA memory would be allocated, with one clear line and exit status 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from dyndnn_ros.bringup import NodeGroup, NodeProcess
from dyndnn_ros.paths import config_dir

FAKES = Path(__file__).resolve().parents[1] / "fakes"
PROFILE = (
    "dynamic_ofa_xavier_nx_gpu"  # config/profiles/<model_config>.yaml, published Xavier NX figures
)


def fake_engines(folder: Path, ids) -> Path:
    folder.mkdir(parents=True)
    doc = {
        "inputs": {"input": [-1, 3, 224, 224]},
        "outputs": {"logits": [-1, 1000]},
        "device_memory_size": 1 << 24,
    }
    for sid in ids:
        (folder / f"{sid}.engine").write_text(json.dumps(doc))
    subnets = [{"id": sid, "engine": f"{sid}.engine", "input_shape": [3, 224, 224]} for sid in ids]
    (folder / "manifest.yaml").write_text(
        yaml.safe_dump({"model": "ofa_gpu_a", "subnets": subnets})
    )
    return folder


def start_inference(tmp_path: Path, params: dict) -> NodeGroup:
    env = {
        "PYTHONPATH": f"{FAKES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "FAKE_TENSORRT_LOG": str(tmp_path / "calls.jsonl"),
    }
    node = NodeProcess(
        "inference_node", "inference_node", {"backend": "tensorrt", "model_id": "ofa", **params}
    )
    return NodeGroup([node], env=env, log_dir=tmp_path).start()


def test_tensorrt_start_reaches_the_engines(tmp_path):
    ids = [
        s["id"]
        for s in yaml.safe_load((config_dir() / "profiles" / f"{PROFILE}.yaml").read_text())[
            "subnets"
        ]
    ]
    engines = fake_engines(tmp_path / "engines", ids)
    group = start_inference(tmp_path, {"model_config": PROFILE, "engine_dir": str(engines)})
    try:
        assert group.node("inference_node").process.wait(timeout=120) == 1
    finally:
        group.stop(timeout=5)
    out = group.output("inference_node")
    assert f"profile: {config_dir() / 'profiles' / PROFILE}.yaml" in out
    assert f"{len(ids)} engines opened, but no CUDA device" in out
    assert "Traceback" not in out
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert sum(c["call"] == "deserialize_cuda_engine" and c["ok"] for c in calls) == len(ids)


def test_tensorrt_without_a_profile_says_where_it_looked(tmp_path):
    engines = fake_engines(tmp_path / "engines", ["s0"])
    group = start_inference(
        tmp_path, {"model_config": "no_such_model", "engine_dir": str(engines)}
    )
    try:
        assert group.node("inference_node").process.wait(timeout=120) == 1
    finally:
        group.stop(timeout=5)
    out = group.output("inference_node")
    assert "the tensorrt back end needs a profile" in out and "no_such_model.yaml" in out
    assert not (tmp_path / "calls.jsonl").exists()  # refused before any engine was opened
