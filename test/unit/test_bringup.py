# SPDX-License-Identifier: Apache-2.0
"""Process supervision of bringup.NodeGroup without ROS: children die with their launcher, stop in
stages, and `dyndnn up` clears the folders of launchers that died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dyndnn_ros.bringup import (
    STOP_STAGE_COMMANDS,
    STOP_STAGE_DVFS,
    STOP_STAGE_NODES,
    NodeGroup,
    NodeProcess,
)
from dyndnn_ros.cli.main import LAUNCHER_PID_FILE, remove_abandoned_run_dirs

LAUNCHER = """
import sys, time
from dyndnn_ros.bringup import NodeGroup, NodeProcess
sleepers = [NodeProcess("sleeper", f"sleeper{i}", argv=["sleep", "120"]) for i in range(3)]
group = NodeGroup(sleepers).start()
print(" ".join(str(n.process.pid) for n in group.nodes), flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_children_die_with_a_launcher_killed_outright():
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True
    )
    try:
        pids = [int(p) for p in launcher.stdout.readline().split()]
        assert len(pids) == 3 and all(alive(p) for p in pids)
        assert all(os.getsid(p) == p for p in pids), "each child leads a session of its own"
        launcher.kill()
        launcher.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if alive(p)]
    finally:
        launcher.kill()
        launcher.wait()


def test_stop_reports_each_process_and_the_dvfs_node_stops_after_the_nodes():
    lines = []
    group = NodeGroup(
        [NodeProcess("x", "board", argv=["sleep", "30"])],
        on_line=lambda name, line: lines.append((name, line)),
    ).start()
    # a SIGINT between fork and exec is taken by the child's copy of Python's handler and lost
    # (stop then escalates to SIGTERM, as it should): signal the process once it is `sleep`
    cmdline = Path(f"/proc/{group.nodes[0].process.pid}/cmdline")
    deadline = time.monotonic() + 5.0
    while not cmdline.read_bytes().startswith(b"sleep") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert group.stop(timeout=5) == {"board": -signal.SIGINT}
    assert lines == [("bringup", f"stopped board (exit {-signal.SIGINT})")]
    assert NodeProcess("resource_manager_node", "m").stop_stage == STOP_STAGE_NODES
    assert NodeProcess("dvfs_node", "renamed_dvfs").stop_stage == STOP_STAGE_DVFS
    assert NodeProcess("x", "board", argv=["true"]).stop_stage == STOP_STAGE_COMMANDS
    assert STOP_STAGE_NODES < STOP_STAGE_DVFS < STOP_STAGE_COMMANDS


def test_only_folders_of_dead_launchers_are_removed(tmp_path):
    finished = subprocess.Popen(["true"])
    finished.wait()
    folders = {}
    for name, pid in (("dead", finished.pid), ("running", os.getpid()), ("foreign", None)):
        folders[name] = tmp_path / f"dyndnn_up_{name}"
        folders[name].mkdir()
        if pid is not None:
            (folders[name] / LAUNCHER_PID_FILE).write_text(f"{pid}\n")
    assert remove_abandoned_run_dirs(tmp_path) == [folders["dead"]]
    assert (
        not folders["dead"].exists()
        and folders["running"].exists()
        and folders["foreign"].exists()
    )


def test_children_take_ctrl_c_even_when_the_launcher_ignores_it():
    """A launcher started in the background by a non-interactive shell inherits SIGINT ignored,
    and exec keeps an ignored signal: the children must still stop on the SIGINT stop sends."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        group = NodeGroup([NodeProcess("x", "board", argv=["sleep", "30"])]).start()
        cmdline = Path(f"/proc/{group.nodes[0].process.pid}/cmdline")
        deadline = time.monotonic() + 5.0
        while not cmdline.read_bytes().startswith(b"sleep") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert group.stop(timeout=5) == {"board": -signal.SIGINT}
    finally:
        signal.signal(signal.SIGINT, previous)
