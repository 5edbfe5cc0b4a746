# SPDX-License-Identifier: Apache-2.0
"""A simulated Jetson that owns a sysfs tree laid out like a real one.

The DVFS node writes clock limits and governors into the tree exactly as on a robot; this board
reads them back every tick, runs the board's governors inside those limits (BoardSimulator), and
writes what a hardware monitor reads: current frequencies, GPU `load`, INA3221 rail voltages and
currents, EMC rate, /proc/stat CPU times. The work on the board comes from the inference nodes'
simulated back ends (backends/simulated.py), which announce it in a small side directory of the
tree, `run/dyndnn_sim/` (not a Jetson path; nothing on a real board reads or writes it):

- `run/dyndnn_sim/apps/<model_id>`: "<reference latency ms> <frames per second> <cluster index>
<wall time> <host overhead ms> <device> <threads> <camera frames per second>"
  written by each back end, the frames per second it processes (its frame timeline, measured:
  they set the board's utilisation and power), its node's host work per frame and the rate its
  camera offers frames (with its latency, the GPU time it asks for, which sets the contention);
  entries older than STALE_S are ignored (node stopped);
- `run/dyndnn_sim/background_gpu`: the GPU share a background job takes (0..1), for experiments.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

from dyndnn_ros.bringup import NodeProcess
from dyndnn_ros.hardware import sysfs_paths as paths
from dyndnn_ros.simulation.simulated_tree import create_simulated_jetson
from dyndnn_ros.hardware.sysfs_clocks import discover_cpu_policies, discover_emc, discover_gpu
from dyndnn_ros.platforms.model import AppLoad, PlatformModel
from dyndnn_ros.simulation.simulator import BoardSimulator

SIM_DIR = "run/dyndnn_sim"
STALE_S = 2.0
JIFFIES_PER_S = 100
CPU_GOVERNOR_MODES = {"performance": "performance", "powersave": "powersave"}
GPU_GOVERNOR_MODES = {"performance": "performance", "powersave": "powersave"}


def write_atomic(path: Path, text: str) -> None:
    """Replace a file whole: a kernel file never reads half-written, and readers (the simulation
    back end, the hardware monitor) run concurrently with the board's ticks."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_app_activity(root: Path, model_id: str, load: AppLoad) -> None:
    """What a simulated back end announces about its work (its measured frame rate)."""
    directory = Path(root) / SIM_DIR / "apps"
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(
        directory / model_id,
        f"{load.reference_latency_ms:.4f} {load.measured_rate_hz:.4f} {load.cluster}"
        f" {time.time():.3f} {load.host_overhead_ms:.4f} {load.device} {int(load.threads)}"
        f" {load.fps:.4f}\n",
    )


def read_app_activity(root: Path, now: float | None = None) -> dict[str, AppLoad]:
    now = time.time() if now is None else now
    loads = {}
    for entry in sorted((Path(root) / SIM_DIR / "apps").glob("[!.]*")):
        try:
            latency, fps, cluster, stamp, overhead, device, threads, camera = (
                entry.read_text().split())
        except (OSError, ValueError):
            continue
        if now - float(stamp) <= STALE_S:
            loads[entry.name] = AppLoad(
                float(latency), float(camera), int(cluster), measured_rate_hz=float(fps),
                device=device, threads=int(threads), host_overhead_ms=float(overhead),
            )
    return loads


def read_background(root: Path) -> float:
    try:
        return min(0.95, max(0.0, float((Path(root) / SIM_DIR / "background_gpu").read_text())))
    except (OSError, ValueError):
        return 0.0


class SysfsBoard:
    """Step a BoardSimulator against a sysfs tree under `root` (created if `create_tree`)."""

    def __init__(
        self,
        root: str | Path,
        model: PlatformModel,
        tick_s: float = 0.05,
        create_tree: bool = True,
        seed: int = 0,
    ):
        self.root = Path(root)
        self.model = model
        if create_tree:
            create_simulated_jetson(self.root, model.description)
        (self.root / SIM_DIR / "apps").mkdir(parents=True, exist_ok=True)
        self.sim = BoardSimulator(model, seed=seed, tick_s=tick_s, record=False)
        self.policies = discover_cpu_policies(self.root, model.description)
        self.gpu = discover_gpu(self.root)
        self.emc = discover_emc(self.root, model.description)
        self._cpu_index = {c.name: i for i, c in enumerate(model.description.clocks.cpu_clusters)}
        self._jiffies: dict[int, list[float]] = {}
        self._stop = threading.Event()

    # -- what the DVFS node wrote
    # -------------------------------------------------------------------
    def read_controls(self) -> None:
        """Take the limits the DVFS node wrote. It writes in place (sysfs files cannot be renamed
        into), so a read can catch a file mid-write: then this tick keeps the previous limits."""
        try:
            self._read_controls()
        except (OSError, ValueError, IndexError):
            pass

    def _read_controls(self) -> None:
        for policy in self.policies:
            control = self.sim.cpu[self._cpu_index[policy.name]]
            control.lo = paths.read_int(policy.directory / "scaling_min_freq")
            control.hi = paths.read_int(policy.directory / "scaling_max_freq")
            control.governor = CPU_GOVERNOR_MODES.get(
                paths.read_text(policy.directory / "scaling_governor"), "schedutil"
            )
        if self.gpu:
            self.sim.gpu.lo = paths.read_int(self.gpu.directory / "min_freq")
            self.sim.gpu.hi = paths.read_int(self.gpu.directory / "max_freq")
            self.sim.gpu.governor = GPU_GOVERNOR_MODES.get(
                paths.read_text(self.gpu.directory / "governor"), "nvhost_podgov"
            )
        if self.emc:
            locked = paths.read_int(self.emc.directory / "mrq_rate_locked") == 1
            self.sim.emc_locked_hz = paths.read_int(self.emc.directory / "rate") if locked else 0

    # -- what a hardware monitor reads
    # --------------------------------------------------------------
    def write_status(self) -> None:
        sim, state = self.sim, self.sim.last_activity
        for policy in self.policies:
            khz = sim.cpu_khz[self._cpu_index[policy.name]]
            for name in ("scaling_cur_freq", "cpuinfo_cur_freq"):
                write_atomic(policy.directory / name, f"{khz}\n")
        if self.gpu:
            write_atomic(self.gpu.directory / "cur_freq", f"{sim.gpu_hz}\n")
            write_atomic(
                self.gpu.directory / "device" / "load",
                f"{int(round(1000 * float(state.gpu_busy)))}\n",
            )
        # Re-read the lock: the DVFS node may have locked and set the rate since read_controls, and
        # a locked rate is the one it wrote (it reads it back to check).
        if (
            self.emc
            and not sim.emc_locked_hz
            and paths.read_text(self.emc.directory / "mrq_rate_locked") != "1"
        ):
            write_atomic(self.emc.directory / "rate", f"{sim.emc_hz}\n")
        busy = [float(b) for b in state.cluster_busy_cores]
        rails = self.model.rail_split_w(
            sim.cpu_khz, sim.gpu_hz, sim.emc_hz, busy, float(state.gpu_busy), float(state.emc_busy)
        )
        self._write_rails(rails)
        self._write_proc_stat(busy)

    def _write_rails(self, rails: dict[str, float]) -> None:
        for device in (self.root / paths.I2C_DEVICES_DIR).glob("*"):
            if not (device / "name").is_file() or paths.read_text(device / "name") != "ina3221":
                continue
            for hwmon in (device / "hwmon").glob("hwmon*"):
                for label in hwmon.glob("in*_label"):
                    channel = label.name[2:-6]
                    watts = rails.get(paths.read_text(label))
                    if watts is None:
                        continue
                    millivolts = paths.read_int(hwmon / f"in{channel}_input") or 1000
                    write_atomic(
                        hwmon / f"curr{channel}_input", f"{int(round(watts * 1e6 / millivolts))}\n"
                    )

    def _write_proc_stat(self, cluster_busy: list[float]) -> None:
        jiffies = self.sim.tick_s * JIFFIES_PER_S
        lines = []
        totals = [0.0, 0.0]
        for cluster, c in zip(self.model.description.clocks.cpu_clusters, cluster_busy):
            for k, cpu in enumerate(cluster.cpus):  # fill the cluster's cores one after the other
                core_busy = min(1.0, max(0.0, c - k))
                acc = self._jiffies.setdefault(cpu, [0.0, 0.0])
                acc[0] += core_busy * jiffies
                acc[1] += (1.0 - core_busy) * jiffies
                totals[0] += acc[0]
                totals[1] += acc[1]
                lines.append(f"cpu{cpu} {int(acc[0])} 0 0 {int(acc[1])} 0 0 0 0 0 0")
        write_atomic(
            self.root / paths.PROC_STAT,
            "\n".join([f"cpu  {int(totals[0])} 0 0 {int(totals[1])} 0 0 0 0 0 0"] + lines) + "\n",
        )

    # -- time
    # ---------------------------------------------------------------------------------------
    def step(self, now_wall: float | None = None) -> None:
        """One tick: read controls and work, advance the model, write the status files."""
        self.read_controls()
        self.sim.external_loads = tuple(read_app_activity(self.root, now_wall).values())
        self.sim.background_gpu = read_background(self.root)
        self.sim.step()
        self.write_status()

    def run_realtime(self, duration_s: float = math.inf) -> None:
        """Tick at wall-clock pace until `stop()` or `duration_s` (bounded by either)."""
        start = time.monotonic()
        ticks = 0
        while not self._stop.is_set() and ticks * self.sim.tick_s < duration_s:
            self.step()
            ticks += 1
            delay = start + ticks * self.sim.tick_s - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()


def board_process(root: Path, platform: str) -> NodeProcess:
    """This board as a process beside the nodes, on the tree the caller made at `root` (and
    removes): without it nothing writes the rails, and power reads 0 W."""
    return NodeProcess("sysfs_board", "simulated_board", argv=[
        sys.executable, "-m", "dyndnn_ros.simulation.sysfs_board", "--root", str(root),
        "--platform", platform, "--keep-tree"])


def main(argv: list[str] | None = None) -> int:
    """Run a simulated board in real time: python -m dyndnn_ros.simulation.sysfs_board --root
    /tmp/jetson"""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "--root", required=True, type=Path, help="directory for the simulated /sys and /proc"
    )
    parser.add_argument("--platform", default="xavier_nx")
    parser.add_argument("--tick-s", type=float, default=0.05)
    parser.add_argument("--duration-s", type=float, default=math.inf)
    parser.add_argument(
        "--keep-tree",
        action="store_true",
        help="use the tree already at --root instead of creating it",
    )
    args = parser.parse_args(argv)
    board = SysfsBoard(
        args.root, PlatformModel.load(args.platform), args.tick_s, create_tree=not args.keep_tree
    )
    try:
        board.run_realtime(args.duration_s)
    except KeyboardInterrupt:
        board.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
