# SPDX-License-Identifier: Apache-2.0
"""`dyndnn up` under the signals a supervisor sends: every node stops, in order, the clocks come
back, the temporary folder goes; and a launcher killed outright takes its nodes with it.

The launcher runs the real nodes (simulation back end, for a quick start) on the simulated Xavier
NX tree it creates in its own temporary folder; TMPDIR points that folder into the test's tmp_path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import PLATFORM
from dyndnn_ros.msg import DvfsCommand

from dyndnn_ros.bringup import executable_path
from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson

STARTUP_S = 90.0
STOP_S = 40.0
CONTROL_FILES = {
    "scaling_min_freq",
    "scaling_max_freq",
    "scaling_governor",
    "min_freq",
    "max_freq",
    "governor",
    "mrq_rate_locked",
}


def control_files(root: Path) -> dict[str, str]:
    """The clock settings the DVFS node writes (not the readings the simulated board updates)."""
    return {
        str(p.relative_to(root)): p.read_text().strip()
        for p in sorted(root.rglob("*"))
        if p.name in CONTROL_FILES and p.is_file() and not p.is_symlink()
    }


class Launcher:
    """`dyndnn up` as a process, its output collected."""

    def __init__(self, tmp_path: Path, *extra: str):
        self.tmp_path = tmp_path
        env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
        command = [
            str(executable_path("dyndnn")),
            "up",
            "--backend",
            "simulation",
            "--model-config",
            "dynamic_ofa_xavier_nx_gpu",
            *extra,
        ]
        self.proc = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def children(self) -> list[int]:
        """pids whose parent is the launcher (the nodes and the simulated board)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.proc.pid:
                found.append(int(stat.parent.name))
        return found

    def run_dir(self) -> Path:
        [run_dir] = self.tmp_path.glob("dyndnn_up_*")
        return run_dir

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture()
def launcher(tmp_path):
    started: list[Launcher] = []

    def start(*extra: str) -> Launcher:
        started.append(Launcher(tmp_path, *extra))
        return started[-1]

    yield start
    for item in started:
        item.close()


def pin_the_clocks(up: Launcher, client, tmp_path: Path) -> Path:
    """Wait for the system, set a target, wait for the DVFS node to pin the clocks; the sysfs
    root."""
    assert client.wait_until(
        lambda: "classifier" in client.profiles and client.hardware is not None, STARTUP_S
    ), up.output()
    root = up.run_dir() / "sim_xavier_nx"  # `dyndnn up`'s default platform
    assert root.is_dir(), up.output()
    verdict = client.set_target("supervised", "classifier", max_latency_ms=60.0)
    # parked when the manager has not heard the inference node yet (discovery is pairwise): it
    # applies once the manager does
    assert verdict is not None and verdict.state in (
        verdict.STATE_ACCEPTED,
        verdict.STATE_PARKED,
    ), verdict
    assert client.wait_until(
        lambda: any(m.mode == DvfsCommand.MODE_SET for m in client.dvfs_applied), 30.0
    ), up.output()
    assert control_files(root) != boot_settings(tmp_path), "the clocks were never pinned"
    # the simulated board runs under `dyndnn up`: power is observable (it read 0 W before)
    assert client.wait_until(lambda: client.hardware.total_power_w > 0, 10.0), client.hardware
    return root


def boot_settings(tmp_path: Path) -> dict[str, str]:
    return control_files(create_simulated_jetson(tmp_path / "boot_tree", PLATFORM))


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name
)
def test_a_stop_signal_stops_every_node_in_order_restores_the_clocks_and_cleans_up(
    tmp_path, launcher, client, sig
):
    keep = (
        sig == signal.SIGTERM
    )  # one run keeps its folder, to read the clock files after the stop
    up = launcher(*(["--keep-temp"] if keep else []))
    root = pin_the_clocks(up, client, tmp_path)
    nodes = up.children()
    assert len(nodes) == 6, up.output()  # five nodes and the simulated board
    up.proc.send_signal(sig)
    assert up.proc.wait(STOP_S) == 0, up.output()
    assert not [pid for pid in nodes if alive(pid)], "a node outlived its launcher"
    order = [
        line.split("stopped ", 1)[1].split()[0]
        for line in up.lines
        if "[bringup] stopped " in line
    ]
    assert (
        order.index("resource_manager_node")
        < order.index("dvfs_node")
        < order.index("simulated_board")
    ), order
    assert len(order) == 6
    if keep:
        assert control_files(root) == boot_settings(tmp_path), (
            "the DVFS node did not restore the clocks"
        )
        assert f"kept {root.parent}" in up.output()
    else:
        assert not root.parent.exists(), "the temporary folder was left behind"


@pytest.mark.timeout(240)
def test_a_killed_launcher_takes_its_nodes_with_it_and_the_dvfs_node_restores_the_clocks(
    tmp_path, launcher, client
):
    from dyndnn_ros.cli.main import remove_abandoned_run_dirs

    up = launcher()
    root = pin_the_clocks(up, client, tmp_path)
    nodes = up.children()
    up.proc.send_signal(signal.SIGKILL)
    up.proc.wait(10)
    deadline = time.monotonic() + STOP_S
    while [pid for pid in nodes if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in nodes if alive(pid)], "nodes outlived a killed launcher"
    assert control_files(root) == boot_settings(tmp_path), (
        "the DVFS node did not restore the clocks"
    )
    assert remove_abandoned_run_dirs(tmp_path) == [root.parent] and not root.parent.exists()
