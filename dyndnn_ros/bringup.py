# SPDX-License-Identifier: Apache-2.0
"""Start the package's node executables as processes, show their output, and stop them cleanly.

`dyndnn up`, the demo and the integration tests use it to run the real executables from the colcon
install without a launch system (on a robot, `ros2 launch dyndnn_ros dyndnn.launch.py` starts the
same nodes with the same parameters: dyndnn_ros/system.py defines them for both).

Supervision: each process is started in its own session (so a terminal's Ctrl-C reaches only the
launcher, which then stops the nodes in order) with PR_SET_PDEATHSIG, so the kernel sends it
SIGTERM when the launcher dies, even by SIGKILL: nothing outlives a killed launcher, and the DVFS
node, which restores the clocks on SIGTERM, puts the board back. `stop()` stops the nodes in
stages: applications, manager and monitor first, then the DVFS node (so no command arrives after it
restored the clocks), then plain commands such as the simulated board.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dyndnn_ros.paths import PACKAGE


PR_SET_PDEATHSIG = 1  # linux/prctl.h
SIG_DFL = 0  # signal.h: the default disposition, as libc's signal() takes it
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: a forked child should only call into it
# Stop order: everything else first, the DVFS node after it (it restores the clocks), plain
# commands (the simulated board the DVFS node writes into) last.
STOP_STAGE_NODES, STOP_STAGE_DVFS, STOP_STAGE_COMMANDS = 0, 1, 2


class BringupError(RuntimeError):
    """A node executable is missing or a process could not be started."""


def executable_path(name: str) -> Path:
    """lib/dyndnn_ros/<name> in the colcon install this package was installed into."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        path = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / name
    except (PackageNotFoundError, OSError) as exc:
        raise BringupError(
            f"{PACKAGE} is not installed here: run `make build` and `source install/setup.bash` "
            f"({exc})"
        ) from exc
    if not os.access(path, os.X_OK):
        raise BringupError(f"no executable {path}: rebuild with `make build`")
    return path


def die_with_launcher(launcher_pid: int) -> Callable[[], None]:
    """preexec_fn for a child: a session of its own, SIGINT and SIGTERM at their defaults, and
    SIGTERM from the kernel when the launcher's starting thread exits. If the launcher died before
    prctl took effect, the child stops at once. (A launcher started in the background by a
    non-interactive shell inherits SIGINT ignored, and exec keeps an ignored signal: its children
    would then shrug off the Ctrl-C that stops them.)"""

    def preexec() -> None:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM):
            _LIBC.signal(sig, SIG_DFL)
        if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            os.write(2, b"[bringup] prctl(PR_SET_PDEATHSIG) failed: may outlive the launcher\n")
        if os.getppid() != launcher_pid:
            os._exit(1)

    return preexec


@dataclass
class NodeProcess:
    executable: str
    name: str
    parameters: dict[str, object] = field(default_factory=dict)
    remaps: dict[str, str] = field(default_factory=dict)
    argv: list[str] | None = None
    """a plain command instead of a node executable (e.g. the simulated board)"""
    params_file: Path | None = None
    """this node's own parameter file (before the group's and the `parameters`)"""
    process: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)

    def command(self, params_file: Path | None) -> list[str]:
        if self.argv is not None:
            return list(self.argv)
        args = [str(executable_path(self.executable)), "--ros-args", "-r", f"__node:={self.name}"]
        for topic, target in self.remaps.items():
            args += ["-r", f"{topic}:={target}"]
        for path in (self.params_file, params_file):
            if path is not None:
                args += ["--params-file", str(path)]
        for key, value in self.parameters.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            # Node-qualified, so it outranks the node's own section of the parameter file (a bare
            # `-p key:=value` is a wildcard rule, which node-specific file entries override).
            args += ["-p", f"{self.name}:{key}:={text}"]
        return args

    @property
    def stop_stage(self) -> int:
        if self.argv is not None:
            return STOP_STAGE_COMMANDS
        return STOP_STAGE_DVFS if self.executable == "dvfs_node" else STOP_STAGE_NODES


class NodeGroup:
    """A set of node processes started together and stopped together, in stages (SIGINT, then
    SIGTERM, SIGKILL). The processes die with the thread that calls `start()`
    (PR_SET_PDEATHSIG)."""

    def __init__(
        self,
        nodes: list[NodeProcess],
        params_file: Path | None = None,
        env: dict[str, str] | None = None,
        on_line: Callable[[str, str], None] | None = None,
        log_dir: Path | None = None,
        work_dir: Path | None = None,
    ):
        self.nodes = nodes
        self.params_file = params_file
        self.env = {
            **os.environ,
            **(env or {}),
            "PYTHONUNBUFFERED": "1",
            "RCUTILS_COLORIZED_OUTPUT": "0",
        }
        self.on_line = on_line
        self.log_dir = log_dir
        self.work_dir = work_dir
        """a temporary folder of this run (simulated tree, logs); `remove_work_dir()` deletes it"""
        self.readers: list[threading.Thread] = []  # one per node, in the nodes' order

    def start(self) -> "NodeGroup":
        for node in self.nodes:
            node.process = subprocess.Popen(
                node.command(self.params_file),
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                preexec_fn=die_with_launcher(os.getpid()),
            )
            reader = threading.Thread(target=self._read, args=(node,), daemon=True)
            reader.start()
            self.readers.append(reader)
        return self

    def _read(self, node: NodeProcess) -> None:
        log = (self.log_dir / f"{node.name}.log").open("w") if self.log_dir else None
        try:
            for line in node.process.stdout:
                line = line.rstrip("\n")
                node.lines.append(line)
                if log:
                    log.write(line + "\n")
                    log.flush()
                if self.on_line:
                    self.on_line(node.name, line)
        finally:
            if log:
                log.close()

    def node(self, name: str) -> NodeProcess:
        return next(n for n in self.nodes if n.name == name)

    def output(self, name: str) -> str:
        """What the node printed so far; all of it once the node has exited (its reader thread
        may still be draining the pipe when `wait()` returns)."""
        node = self.node(name)
        index = self.nodes.index(node)
        if index < len(self.readers) and node.process.poll() is not None:
            self.readers[index].join(timeout=2)
        return "\n".join(node.lines)

    def wait_for_line(self, name: str, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.node(name).lines):
                return True
            if self.node(name).process.poll() is not None:
                break
            time.sleep(0.05)
        return any(text in line for line in self.node(name).lines)

    def running(self) -> list[str]:
        return [n.name for n in self.nodes if n.process and n.process.poll() is None]

    def signal(self, name: str, sig: int) -> None:
        self.node(name).process.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> dict[str, int]:
        """Stop the processes stage by stage (see the module's docstring) as Ctrl-C would, give
        each `timeout` seconds, escalate if it does not stop (a node first dumps its threads'
        stacks into its log, for the post-mortem), reap all."""
        codes: dict[str, int] = {}
        for stage in sorted({node.stop_stage for node in self.nodes}):
            stopped = self._stop_stage([n for n in self.nodes if n.stop_stage == stage], timeout)
            if self.on_line:
                for name, code in stopped.items():
                    self.on_line("bringup", f"stopped {name} (exit {code})")
            codes.update(stopped)
        for reader in self.readers:
            reader.join(timeout=2)
        return {n.name: codes[n.name] for n in self.nodes if n.name in codes}

    def remove_work_dir(self) -> None:
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    @staticmethod
    def _stop_stage(nodes: list[NodeProcess], timeout: float) -> dict[str, int]:
        for node in nodes:
            if node.process and node.process.poll() is None:
                node.process.send_signal(signal.SIGINT)
        codes = {}
        for node in nodes:
            if node.process is None:
                continue
            try:
                codes[node.name] = node.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                node.lines.append(
                    f"[bringup] {node.name} did not stop within {timeout:g} s of SIGINT; "
                    "escalating"
                )
                if node.argv is None:
                    node.process.send_signal(
                        signal.SIGUSR1
                    )  # run_node's faulthandler: stacks to the log
                    time.sleep(0.5)
                node.process.terminate()
                try:
                    codes[node.name] = node.process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    codes[node.name] = node.process.wait()
        return codes

