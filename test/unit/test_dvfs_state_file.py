# SPDX-License-Identifier: Apache-2.0
"""Saved clocks survive a killed DVFS writer: SIGKILL at random points of a write sequence, then a
new instance restores from the state file before it saves anew, and the board is at its boot
settings."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson
from dyndnn_ros.hardware.sysfs_clocks import (
    ClockError,
    ClockRequest,
    SysfsClockController,
    default_state_file,
    restore_leftover,
)
from dyndnn_ros.platforms.description import load_platform

PLATFORM = load_platform("xavier_nx")

WRITER = textwrap.dedent("""
    import random, sys
    from dyndnn_ros.hardware.sysfs_clocks import ClockRequest, SysfsClockController
    from dyndnn_ros.platforms.description import load_platform
    root, state, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = load_platform("xavier_nx")
    c = SysfsClockController(root, p, state_file=state)
    c.save_originals()
    print("saved", flush=True)
    rng = random.Random(seed)
    clocks = p.clocks
    while True:
        cpu = {k.name: rng.choice(clocks.cpu_available_khz) for k in clocks.cpu_clusters}
        gpu, emc = rng.choice(clocks.gpu_available_hz), rng.choice(clocks.emc_available_hz)
        c.apply(ClockRequest(cpu, gpu, emc))
""")


def files(root: Path) -> dict:
    return {p: p.read_text() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def start_like_the_node(root: Path, state: Path) -> SysfsClockController:
    """What the DVFS node does at start: restore what a dead instance left, then save anew."""
    restore_leftover(state, root)
    controller = SysfsClockController(root, PLATFORM, state_file=state)
    controller.save_originals()
    return controller


def test_sigkill_at_random_points_leaves_a_board_the_next_start_restores(tmp_path):
    rng = random.Random(20261127)
    pinned_at_kill = 0
    for trial in range(12):
        root = create_simulated_jetson(tmp_path / f"board{trial}", PLATFORM)
        state = tmp_path / "run" / f"state{trial}.json"
        boot = files(root)
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(state), str(trial)],
            stdout=subprocess.PIPE,
            text=True,
        )
        if trial % 3:  # most kills land in the write loop, the others during start-up and saving
            assert writer.stdout.readline().strip() == "saved"
            time.sleep(rng.uniform(0.0, 0.05))
        else:
            time.sleep(rng.uniform(0.0, 0.6))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        writer.stdout.close()
        pinned_at_kill += files(root) != boot
        controller = start_like_the_node(root, state)
        assert controller.restore_originals() == []
        assert files(root) == boot, f"trial {trial}: board not at its boot settings"
        assert not state.exists()
    assert pinned_at_kill >= 4, (
        "too few kills caught the board pinned for this test to mean anything"
    )


def test_state_file_is_replaced_whole_and_removed_after_a_clean_restore(tmp_path):
    root = create_simulated_jetson(tmp_path / "board", PLATFORM)
    state = tmp_path / "run" / "state.json"
    controller = SysfsClockController(root, PLATFORM, state_file=state)
    controller.apply(ClockRequest({"cluster0": 729600}, gpu_hz=510000000))
    doc = json.loads(state.read_text())
    assert doc["pid"] == os.getpid() and Path(doc["root"]) == root.resolve()
    assert [
        str(root.resolve() / "sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq"),
        "1420800",
    ] in doc["steps"]
    assert not [p for p in state.parent.iterdir() if p.name != state.name]  # no temp file left
    controller.restore_originals()
    assert not state.exists()


def test_a_state_file_for_another_tree_is_refused(tmp_path):
    a = create_simulated_jetson(tmp_path / "a", PLATFORM)
    b = create_simulated_jetson(tmp_path / "b", PLATFORM)
    state = tmp_path / "state.json"
    SysfsClockController(a, PLATFORM, state_file=state).save_originals()
    with pytest.raises(ClockError, match="belongs to the tree"):
        restore_leftover(state, b)
    assert restore_leftover(tmp_path / "none.json", a) is None


def test_default_state_file_is_per_tree_in_a_run_directory(tmp_path):
    one, two = (
        default_state_file(tmp_path / "a", str(tmp_path)),
        default_state_file(tmp_path / "b", str(tmp_path)),
    )
    assert one.parent == two.parent == tmp_path and one != two


def test_a_live_owner_of_the_state_file_is_another_dvfs_node_and_is_refused(tmp_path):
    root = create_simulated_jetson(tmp_path / "board", PLATFORM)
    state = tmp_path / "state.json"
    SysfsClockController(root, PLATFORM, state_file=state).save_originals()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        doc = json.loads(state.read_text())
        state.write_text(json.dumps({**doc, "pid": alive.pid}))
        (tmp_path / f".{state.name}.half").write_text("{")  # a write killed half-way
        with pytest.raises(ClockError, match=f"process {alive.pid} holds the clocks"):
            restore_leftover(state, root)
        assert not (tmp_path / f".{state.name}.half").exists()
        alive.kill()
        time.sleep(0.5)  # killed, not reaped yet: a zombie holds nothing
        assert restore_leftover(state, root) == [] and not state.exists()
    finally:
        alive.kill()
        alive.wait()
