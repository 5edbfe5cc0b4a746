# SPDX-License-Identifier: Apache-2.0
"""The real dvfs_node and hardware_monitor_node on every board fixture, as root and as an
unprivileged user (`setpriv` to nobody): no crash, one line per clock that cannot be controlled,
what can be controlled pinned within the power mode's caps, the boot settings back at the end;
and a DVFS node killed with SIGKILL whose successor restores the board before saving anew.

The fixture files are root-owned with the modes of a real board (0644 cpufreq/devfreq controls,
debugfs 0700). The venv lives under /root (0700), which nobody cannot enter, so the unprivileged
nodes run from a hard-linked copy of the interpreter and the venv: same files, reachable path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from conftest import send

from dyndnn_ros.bringup import NodeGroup, NodeProcess, executable_path
from dyndnn_ros.simulation.board_fixtures import FIXTURES
from dyndnn_ros.simulation.simulated_tree import BoardKernel, create_board_tree
from dyndnn_ros.msg import DvfsCommand
from dyndnn_ros.platforms.description import load_platform

BOARDS = sorted(FIXTURES)
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[dict]:
    """python and environment for a process running as nobody. The hard-linked copy is kept in
    /var/tmp per venv (about 45,000 links: made in seconds, removed in tens of seconds)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to drop to nobody) and setpriv")
    venv, base = Path(sys.prefix), Path(sys.base_prefix)
    key = hashlib.sha1(str(venv).encode()).hexdigest()[:12]
    work = Path("/var/tmp") / f"dyndnn_unprivileged_{key}"
    if not (work / "ready").exists():
        building = Path(tempfile.mkdtemp(prefix=f"{work.name}.", dir=work.parent))
        os.chmod(building, 0o755)
        subprocess.run(["cp", "-al", str(base), str(building / "python")], check=True, timeout=300)
        subprocess.run(["cp", "-al", str(venv), str(building / "venv")], check=True, timeout=300)
        config = (venv / "pyvenv.cfg").read_text().replace(str(base), str(work / "python"))
        (building / "venv" / "pyvenv.cfg").unlink()  # a hard link: replace it, keep the original
        (building / "venv" / "pyvenv.cfg").write_text(config)
        python3 = building / "venv" / "bin" / "python3"
        python3.unlink()
        python3.symlink_to(work / "python" / "bin" / "python3")
        (building / "home").mkdir()
        shutil.chown(building / "home", "nobody", "nogroup")
        (building / "ready").write_text("")
        try:
            building.rename(work)
        except OSError:  # another run made it meanwhile
            shutil.rmtree(building, ignore_errors=True)
    home = work / "home"
    env = {k: v.replace(str(venv), str(work / "venv")) for k, v in os.environ.items()}
    env.update(HOME=str(home), ROS_HOME=str(home))
    yield {"python": str(work / "venv" / "bin" / "python"), "env": env, "home": home}


@pytest.fixture()
def board_dir() -> Iterator[Path]:
    """A directory every user can reach, as `/` is (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="dyndnn_board_"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def node(executable: str, params: dict, runner: dict | None) -> NodeProcess:
    proc = NodeProcess(executable, executable, params)
    if runner is not None:
        proc.argv = NOBODY + [runner["python"]] + proc.command(None)
    return proc


# Fast DDS shared-memory segments are 0644 files of their creator, so root and nobody cannot
# exchange samples on loopback; the unprivileged nodes are driven and read by a client that runs as
# nobody too (as an unprivileged robot stack would be).
PROBE = textwrap.dedent("""
    import json, sys, time
    import rclpy
    from dyndnn_ros.msg import CpuClock, DvfsCommand, HardwareStatus
    rclpy.init()
    node = rclpy.create_node("unprivileged_probe")
    pub = node.create_publisher(DvfsCommand, "dyndnn/dvfs/command", 10)
    seen = []
    node.create_subscription(HardwareStatus, "dyndnn/hardware_status", seen.append, 5)
    fields = json.loads(sys.argv[1])
    cpu = [CpuClock(cluster=name, frequency_khz=khz) for name, khz in fields.pop("cpu", [])]
    command = DvfsCommand(mode=DvfsCommand.MODE_SET, reason="probe", cpu_clocks=cpu, **fields)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        pub.publish(command)
        rclpy.spin_once(node, timeout_sec=0.25)
    last = seen[-1] if seen else None
    names = [c.name for c in last.cpu_clusters] if last else []
    print(json.dumps({"platform": last.platform, "clusters": names} if last else {}))
""")


def probe_as(runner: dict, command: dict, seconds: float) -> dict:
    out = subprocess.run(
        NOBODY + [runner["python"], "-c", PROBE, json.dumps(command), str(seconds)],
        env=runner["env"],
        cwd=runner["home"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def top_command(board: str) -> dict:
    clocks = load_platform(board).clocks
    return dict(
        cpu=[(c.name, clocks.cpu_available_khz[-1]) for c in clocks.cpu_clusters],
        gpu_frequency_hz=clocks.gpu_available_hz[-1],
        emc_frequency_hz=clocks.emc_available_hz[-1],
    )


@pytest.mark.parametrize("user", ["root", "nobody"])
@pytest.mark.parametrize("board", BOARDS)
def test_dvfs_node_and_monitor_on_each_board(board, user, board_dir, client, request):
    runner = request.getfixturevalue("unprivileged") if user == "nobody" else None
    fixture = FIXTURES[board]
    root = create_board_tree(board_dir / "jetson", fixture)
    state_dir = board_dir / "run"
    state_dir.mkdir()
    if runner:
        shutil.chown(state_dir, "nobody", "nogroup")
    boot = snapshot(root)
    env = runner["env"] if runner else None
    group = NodeGroup(
        [
            node(
                "dvfs_node",
                {"sysfs_root": str(root), "state_dir": str(state_dir), "watchdog_s": 0.0},
                runner,
            ),
            node(
                "hardware_monitor_node",
                {"sysfs_root": str(root), "source": "sysfs", "period_s": 0.2},
                runner,
            ),
        ],
        env=env,
        log_dir=board_dir,
    ).start()
    try:
        assert group.wait_for_line("dvfs_node", "boot settings saved", 30), group.output(
            "dvfs_node"
        )
        log = group.output("dvfs_node")
        not_controlled = [line for line in log.splitlines() if "not controlled:" in line]
        if fixture.gpu_appears_late:
            assert any("gpu: no devfreq device" in line for line in not_controlled)
        offline = [p for p in fixture.cpu_policies if not set(p) & set(fixture.mode.online_cpus)]
        assert sum("offline" in line for line in not_controlled) == len(offline)
        if runner:  # every clock named once with its reason, nothing written
            assert any("emc:" in line and "root-only" in line for line in not_controlled)
            assert sum("not writable by uid 65534" in line for line in not_controlled) >= 1
            seen = probe_as(runner, top_command(board), 6.0)
            left_out = [
                line
                for line in group.output("dvfs_node").splitlines()
                if "left out of DVFS commands" in line
            ]
            assert left_out, group.output("dvfs_node")
            assert len(left_out) == len(
                set(line.split("commands: ")[1] for line in left_out)
            )  # once each
            assert seen.get("platform") == board, seen
            assert [c.name for c in load_platform(board).clocks.cpu_clusters] == [
                n for n in seen["clusters"] if not n.startswith("policy")
            ]
            assert snapshot(root) == boot
        else:
            if fixture.gpu_appears_late:
                BoardKernel(root, fixture).power_up_gpu()
                boot = snapshot(root)
            assert send(
                client,
                lambda: any(
                    m.mode == DvfsCommand.MODE_SET and m.gpu_frequency_hz
                    for m in client.dvfs_applied
                ),
                **top_command(board),
            )
            applied = [m for m in client.dvfs_applied if m.mode == DvfsCommand.MODE_SET][-1]
            assert max(c.frequency_khz for c in applied.cpu_clocks) <= fixture.mode.cpu_max_khz
            assert applied.gpu_frequency_hz <= fixture.mode.gpu_max_hz
            assert applied.emc_frequency_hz <= (
                fixture.mode.emc_cap_hz or fixture.emc_possible_hz[-1]
            )
            assert list(state_dir.iterdir()), "no state file while clocks are pinned"
            assert client.wait_until(
                lambda: client.hardware is not None and client.hardware.platform == board, 15
            )
            names = [c.name for c in client.hardware.cpu_clusters]
            assert [c.name for c in load_platform(board).clocks.cpu_clusters] == [
                n for n in names if not n.startswith("policy")
            ]
        group.signal("dvfs_node", signal.SIGTERM)
        assert group.node("dvfs_node").process.wait(timeout=15) == 0
        assert snapshot(root) == boot
        assert not list(state_dir.glob("*.json"))
        assert "Traceback" not in group.output("dvfs_node") + group.output("hardware_monitor_node")
    finally:
        group.stop(timeout=10)


def test_a_killed_dvfs_node_is_undone_by_the_next_one(board_dir, client):
    root = create_board_tree(board_dir / "jetson", FIXTURES["xavier_nx"])
    state_dir = board_dir / "run"
    boot = snapshot(root)
    params = {"sysfs_root": str(root), "state_dir": str(state_dir), "watchdog_s": 0.0}
    first = NodeGroup([node("dvfs_node", params, None)], log_dir=board_dir).start()
    try:
        assert send(
            client,
            lambda: any(m.mode == DvfsCommand.MODE_SET for m in client.dvfs_applied),
            cpu=[("cluster1", 422400)],
            gpu_frequency_hz=306000000,
        )
        first.signal("dvfs_node", signal.SIGKILL)
        first.node("dvfs_node").process.wait(timeout=10)
    finally:
        first.stop(timeout=5)
    assert snapshot(root) != boot and list(state_dir.glob("*.json"))
    second = NodeGroup([node("dvfs_node", params, None)], log_dir=board_dir).start()
    try:
        assert second.wait_for_line("dvfs_node", "left pinned clocks", 30), second.output(
            "dvfs_node"
        )
        assert second.wait_for_line("dvfs_node", "boot settings saved", 10)
        second.signal("dvfs_node", signal.SIGTERM)
        assert second.node("dvfs_node").process.wait(timeout=15) == 0
    finally:
        second.stop(timeout=5)
    assert snapshot(root) == boot
    assert executable_path("dvfs_node").is_file()


# every board is checked as root in test/unit/test_doctor.py
@pytest.mark.parametrize("board", ["xavier_nx_2core", "agx_orin_maxn"])
def test_doctor_as_nobody_says_the_launch_starts_and_what_it_cannot_control(board, board_dir,
                                                                             unprivileged):
    root = create_board_tree(board_dir / "jetson", FIXTURES[board])
    command = [unprivileged["python"], "-m", "dyndnn_ros.cli.main", "doctor",
               "--sysfs-root", str(root), "--backend", "simulation"]  # no torch import: quicker
    out = subprocess.run(NOBODY + command, env=unprivileged["env"], cwd=unprivileged["home"],
                         capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stdout + out.stderr
    assert any(f"-> config/platforms/{board}.yaml" in line for line in lines)
    clocks = [line for line in lines if line.startswith("WARN  clocks")]
    assert any("not writable by uid 65534" in line for line in clocks)
    assert any("emc:" in line and "root-only" in line for line in clocks)
    assert lines[-1].startswith("verdict: the launch would start")
