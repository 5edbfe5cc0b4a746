# SPDX-License-Identifier: Apache-2.0
"""The README's commands, typed as a user types them, through the real `ros2` command.

`ros2 launch` starts the system on a simulated board; `ros2 topic pub --once` sets targets
(volatile, the default, and transient-local), `ros2 topic echo --once` reads what the DVFS node
applied, `ros2 param describe` and `ros2 node list` inspect the nodes, `ros2 run dyndnn_ros dyndnn
status --once` shows the live view, and a Ctrl-C (SIGINT to the launch's process group, as a
terminal sends it) stops everything and leaves the board's files as they were.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson
from dyndnn_ros.platforms.description import load_platform

pytestmark = pytest.mark.skipif(
    shutil.which("ros2") is None,
    reason="the ros2 command is not installed (it comes with a ROS 2 install; `make test` builds "
           "it from ../shared/ros2-tooling)")

TARGET = ("{app_id: tracker, model_id: classifier, max_latency_ms: 5.0, min_accuracy: 0.0, "
          "priority: 1}")


def board_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


class Launched:
    """`ros2 launch ...` in its own process group, its output in a file."""

    def __init__(self, log: Path, *arguments: str, env: dict | None = None):
        self.log = log
        self.process = subprocess.Popen(
            ["ros2", "launch", "dyndnn_ros", "dyndnn.launch.py", *arguments],
            stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **(env or {})})

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            if text in self.output():
                return True
            time.sleep(0.2)
        return text in self.output()

    def ctrl_c(self, timeout_s: float = 20) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise


def ros2(*arguments: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
    # a wide terminal, so `dyndnn status` tables do not shorten the names the test looks for
    return subprocess.run(["ros2", *arguments], capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"})


def ros2_until(accept, *arguments: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
    """Repeat a command until its result is accepted: discovery over DDS takes a few seconds, and
    longer on a loaded machine, so a first `ros2 node list` may not see every node yet."""
    deadline = time.monotonic() + timeout_s
    result = ros2(*arguments)
    while not accept(result) and time.monotonic() < deadline:
        time.sleep(1.0)
        result = ros2(*arguments)
    return result


@pytest.fixture()
def board(tmp_path: Path) -> Path:
    return create_simulated_jetson(tmp_path / "jetson", load_platform("xavier_nx"))


@pytest.fixture()
def stop_daemon() -> Iterator[None]:
    yield
    ros2("daemon", "stop")


@pytest.fixture()
def launched_system(board: Path, tmp_path: Path, stop_daemon) -> Iterator[Launched]:
    system = Launched(tmp_path / "launch.log", f"sysfs_root:={board}",
                      "hardware_source:=simulation")
    try:
        assert system.wait_for("announced with sub-networks", 90), system.output()
        yield system
    finally:
        if system.process.poll() is None:
            system.ctrl_c()


def test_subnet_only_launch_starts_five_nodes_and_ctrl_c_restores_the_board(
        board: Path, tmp_path: Path, stop_daemon):
    boot = board_files(board)
    system = Launched(tmp_path / "launch.log", f"sysfs_root:={board}", "policy:=subnet_only",
                      "hardware_source:=simulation")
    try:
        assert system.wait_for("policy 'subnet_only'", 60), system.output()
        assert system.wait_for("announced with sub-networks", 60), system.output()
        expected = {"/camera_node", "/inference_node", "/resource_manager_node", "/dvfs_node",
                    "/hardware_monitor_node"}
        listed = ros2_until(lambda r: expected <= set(r.stdout.split()), "node", "list")
        assert expected <= set(listed.stdout.split()), listed.stdout + listed.stderr
    finally:
        code = system.ctrl_c()
    assert code == 0, system.output()
    assert system.output().count("process has finished cleanly") == 5, system.output()
    assert board_files(board) == boot


def test_targets_from_ros2_topic_pub(launched_system: Launched):
    volatile = ros2("topic", "pub", "--once", "--keep-alive", "2", "/dyndnn/targets",
                    "dyndnn_ros/msg/PerformanceTarget", TARGET)
    assert volatile.returncode == 0, volatile.stderr
    assert launched_system.wait_for("target of app 'tracker'", 10), launched_system.output()
    latched = ros2("topic", "pub", "--once", "--keep-alive", "2",
                   "--qos-durability", "transient_local",
                   "--qos-reliability", "reliable", "/dyndnn/targets",
                   "dyndnn_ros/msg/PerformanceTarget", TARGET.replace("tracker", "inspector")
                   .replace("model_id: classifier", "model_id: rear_classifier"))
    assert latched.returncode == 0, latched.stderr
    assert launched_system.wait_for("app 'inspector'", 10), launched_system.output()
    # The volatile publisher is read by the volatile subscription: no false alarm about QoS.
    assert "incompatible QoS" not in launched_system.output()


def test_dvfs_applied_param_describe_and_status(launched_system: Launched):
    assert ros2("topic", "pub", "--once", "--keep-alive", "2", "/dyndnn/targets",
                "dyndnn_ros/msg/PerformanceTarget",
                TARGET).returncode == 0
    assert launched_system.wait_for("applied cluster0", 15), launched_system.output()
    applied = ros2_until(lambda r: r.returncode == 0, "topic", "echo", "--once", "--timeout", "10",
                         "/dyndnn/dvfs/applied")
    assert applied.returncode == 0, applied.stderr
    assert "mode: 0" in applied.stdout and "gpu_frequency_hz" in applied.stdout, applied.stdout

    described = ros2_until(lambda r: r.returncode == 0, "param", "describe",
                           "/resource_manager_node", "policy")
    assert described.returncode == 0, described.stderr
    assert "Parameter name: policy" in described.stdout
    assert "Decision policy" in described.stdout, described.stdout

    status = ros2("run", "dyndnn_ros", "dyndnn", "status", "--once", "--duration", "10")
    assert status.returncode == 0, status.stderr
    assert "classifier" in status.stdout and "tracker" in status.stdout, status.stdout


def test_tensorrt_launch_reaches_the_engines(board: Path, tmp_path: Path, stop_daemon):
    """`backend:=tensorrt` as a robot user types it, with only the `tensorrt` bindings faked
    (test/fakes/tensorrt; no GPU here): the node finds its profile by model_config, opens every
    engine of engine_dir, and stops with one clear line where CUDA memory would be allocated."""
    from test_inference_tensorrt_start import FAKES, PROFILE, fake_engines

    engines = fake_engines(tmp_path / "engines", ["a0", "a1", "a2", "a3", "a4", "a5"])
    system = Launched(tmp_path / "launch.log", f"sysfs_root:={board}", "backend:=tensorrt",
                      f"model_config:={PROFILE}", f"engine_dir:={engines}", "camera:=false",
                      "hardware_source:=simulation",
                      env={"PYTHONPATH": f"{FAKES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    try:
        assert system.wait_for("6 engines opened, but no CUDA device", 90), system.output()
        assert system.wait_for("[inference_node-4]: process has died", 30), system.output()
    finally:
        system.ctrl_c()
    assert "Traceback" not in system.output()
