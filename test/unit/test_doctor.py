# SPDX-License-Identifier: Apache-2.0
"""`dyndnn doctor` on every board fixture: the verdict is the launch's fate, each line accurate."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from dyndnn_ros.cli.doctor import add_parser
from dyndnn_ros.hardware import sysfs_paths
from dyndnn_ros.simulation.board_fixtures import FIXTURES
from dyndnn_ros.simulation.simulated_tree import create_board_tree, create_simulated_jetson
from dyndnn_ros.platforms.description import load_platform


def doctor(*argv: str) -> tuple:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor", *argv])
    lines: list = []
    code = args.func(args, lines.append)
    return code, lines


def line(lines: list, level: str, check: str) -> list:
    return [text for text in lines if text.startswith(f"{level:<4}  {check}")]


@pytest.mark.parametrize("board", sorted(FIXTURES))
def test_each_board_would_start_and_is_named_with_its_power_mode(tmp_path, monkeypatch, board):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    root = create_simulated_jetson(tmp_path / "jetson", load_platform(board))
    code, lines = doctor("--sysfs-root", str(root))
    assert code == 0, lines
    assert line(lines, "OK", "board") == [
        f"OK    board            {FIXTURES[board].model}, power mode "
        f"{FIXTURES[board].mode.name} -> config/platforms/{board}.yaml"
    ]
    offline = [
        p
        for p in FIXTURES[board].cpu_policies
        if not set(p) & set(FIXTURES[board].mode.online_cpus)
    ]
    assert len([t for t in line(lines, "WARN", "clocks") if "offline" in t]) == len(offline)
    assert lines[-1].startswith("verdict: the launch would start")


def test_a_board_without_its_gpu_devfreq_yet_says_so(tmp_path):
    root = create_board_tree(tmp_path / "orin", FIXTURES["orin_nano_7w"])
    code, lines = doctor("--sysfs-root", str(root))
    assert code == 0
    assert any("first powers up" in t for t in line(lines, "WARN", "clocks"))


def test_an_unknown_board_fails_with_the_reason(tmp_path):
    root = create_simulated_jetson(tmp_path / "jetson", load_platform("xavier_nx"))
    (root / sysfs_paths.DEVICE_TREE_MODEL).write_bytes(b"Some Other Board\x00")
    code, lines = doctor("--sysfs-root", str(root))
    assert code == 1 and "Some Other Board" in line(lines, "FAIL", "board")[0]
    assert lines[-1].startswith("verdict: the launch would NOT start")
    code, _ = doctor(
        "--sysfs-root", str(root), "--platform", "xavier_nx"
    )  # named: starts, with a warning
    assert code == 0


def test_no_clock_files_at_all_fails(tmp_path):
    root = tmp_path / "bare"
    (root / "proc").mkdir(parents=True)
    code, lines = doctor("--sysfs-root", str(root), "--platform", "xavier_nx")
    assert code == 1 and "DVFS node would exit" in line(lines, "FAIL", "clocks")[0]


def test_tensorrt_needs_tensorrt_cuda_engines_and_a_profile(tmp_path):
    root = create_simulated_jetson(tmp_path / "jetson", load_platform("xavier_nx"))
    engines = tmp_path / "engines"
    engines.mkdir()
    (engines / "manifest.yaml").write_text(
        yaml.safe_dump(
            {
                "model": "ofa_gpu_a",
                "subnets": [{"id": "a0", "engine": "a0.engine", "input_shape": [3, 224, 224]}],
            }
        )
    )
    code, lines = doctor(
        "--sysfs-root",
        str(root),
        "--backend",
        "tensorrt",
        "--model-config",
        "nothing_here",
        "--engine-dir",
        str(engines),
    )
    assert code == 1
    assert line(lines, "FAIL", "TensorRT") and line(lines, "FAIL", "CUDA")
    assert "missing ['a0.engine']" in line(lines, "FAIL", "engines")[0]
    assert "needs one" in line(lines, "FAIL", "profile")[0]


def test_torch_with_a_missing_checkpoint_fails(tmp_path):
    root = create_simulated_jetson(tmp_path / "jetson", load_platform("xavier_nx"))
    code, lines = doctor("--sysfs-root", str(root), "--checkpoint", str(tmp_path / "none.pt"))
    assert code == 1 and line(lines, "FAIL", "checkpoint")


def test_jtop_socket_is_looked_for_under_the_root(tmp_path):
    root = create_simulated_jetson(tmp_path / "jetson", load_platform("xavier_nx"))
    (root / "run").mkdir(exist_ok=True)
    (root / "run" / "jtop.sock").write_text("")
    _, lines = doctor("--sysfs-root", str(root))
    assert line(lines, "OK", "jtop")
    assert Path(root / "run" / "jtop.sock").exists()
