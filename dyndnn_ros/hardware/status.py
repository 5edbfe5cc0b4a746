# SPDX-License-Identifier: Apache-2.0
"""Hardware status sources: where a HardwareStatus sample comes from.

- `SysfsStatusSource`: cpufreq, devfreq, EMC, INA3221 rails, thermal zones and /proc/stat under a
  root directory; on any Linux board with root `/`, and on a simulated tree (source "simulation").
- `JtopStatusSource`: jetson-stats' service on a Jetson, polled at the node's period, CPUs grouped
  into the board's clusters; a missing service falls back to sysfs.
The board total is VDD_IN (or POM_5V_IN) where the board has that rail, else the sum of the rails,
as jtop computes it (AGX Orin has no input rail).
Both return a plain `HardwareSample`; the ROS node turns it into messages.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Protocol

from dyndnn_ros.hardware import sysfs_paths as paths
from dyndnn_ros.hardware.sysfs_clocks import discover_cpu_clusters, discover_gpu
from dyndnn_ros.platforms.description import PlatformDescription

log = logging.getLogger(__name__)


@dataclass
class ClusterSample:
    name: str
    online_cores: int
    total_cores: int
    frequency_khz: int
    utilization: float


@dataclass
class HardwareSample:
    source: str
    platform: str
    cpu_clusters: list[ClusterSample] = field(default_factory=list)
    gpu_frequency_hz: int = 0
    gpu_utilization: float = 0.0
    emc_frequency_hz: int = 0
    emc_utilization: float = 0.0
    total_power_w: float = 0.0
    rails_w: dict[str, float] = field(default_factory=dict)
    temperatures_c: dict[str, float] = field(default_factory=dict)


class StatusSource(Protocol):
    name: str

    def sample(self) -> HardwareSample: ...

    def close(self) -> None: ...


TOTAL_POWER_RAILS = ("VDD_IN", "POM_5V_IN")
UNCONNECTED_RAIL = "NC"


def total_power_w(rails_w: Dict[str, float]) -> float:
    total = next((rails_w[r] for r in TOTAL_POWER_RAILS if r in rails_w), None)
    return sum(rails_w.values()) if total is None else total


def _read_optional_int(path: Path) -> int | None:
    try:
        return paths.read_int(path)
    except (OSError, ValueError, IndexError):
        return None


class CpuTimes:
    """Utilisation per CPU from successive /proc/stat readings."""

    def __init__(self, stat_file: Path):
        self.stat_file = stat_file
        self.previous: dict[int, tuple[int, int]] = {}

    def utilisation(self) -> dict[int, float]:
        result = {}
        try:
            lines = self.stat_file.read_text().splitlines()
        except OSError:
            return result
        for line in lines:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            values = [int(v) for v in fields]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            total = sum(values[:8])
            cpu = int(name[3:])
            if cpu in self.previous:
                d_total = total - self.previous[cpu][0]
                d_idle = idle - self.previous[cpu][1]
                result[cpu] = 0.0 if d_total <= 0 else max(0.0, min(1.0, 1 - d_idle / d_total))
            self.previous[cpu] = (total, idle)
        return result


class SysfsStatusSource:
    """Reads the board's state from files under `root` (the real `/`, or a simulated tree)."""

    def __init__(
        self, root: str | Path, platform: PlatformDescription | None, name: str = "sysfs"
    ):
        self.name = name
        self.root = Path(root)
        self.platform_name = platform.name if platform else ""
        self.policies = discover_cpu_clusters(self.root, platform)
        self.gpu = discover_gpu(self.root)
        self.cpu_times = CpuTimes(self.root / paths.PROC_STAT)
        self.rail_dirs = self._find_ina3221()

    def _find_ina3221(self) -> list[Path]:
        found = []
        for device in sorted((self.root / paths.I2C_DEVICES_DIR).glob("*")):
            name_file = device / "name"
            if name_file.is_file() and paths.read_text(name_file) == "ina3221":
                found += sorted((device / "hwmon").glob("hwmon*"))
        return found

    def _rails(self) -> dict[str, float]:
        rails = {}
        for hwmon in self.rail_dirs:
            for label_file in sorted(hwmon.glob("in*_label")):
                channel = label_file.name[2:-6]
                millivolts = _read_optional_int(hwmon / f"in{channel}_input")
                milliamps = _read_optional_int(hwmon / f"curr{channel}_input")
                label = paths.read_text(label_file)
                if millivolts is not None and milliamps is not None and label != UNCONNECTED_RAIL:
                    rails[label] = millivolts * milliamps / 1e6
        return rails

    def _temperatures(self) -> dict[str, float]:
        temps = {}
        for zone in sorted((self.root / paths.THERMAL_DIR).glob("thermal_zone*")):
            milli = _read_optional_int(zone / "temp")
            if milli is not None and (zone / "type").is_file():
                temps[paths.read_text(zone / "type")] = milli / 1000.0
        return temps

    def sample(self) -> HardwareSample:
        util = self.cpu_times.utilisation()
        sample = HardwareSample(source=self.name, platform=self.platform_name)
        for policy in self.policies:
            cpus = list(policy.cpus)
            online = sum(
                1
                for c in cpus
                if _read_optional_int(self.root / paths.CPU_DIR / f"cpu{c}" / "online")
                in (None, 1)
            )
            busy = [util[c] for c in cpus if c in util]
            sample.cpu_clusters.append(
                ClusterSample(
                    policy.name,
                    online,
                    len(cpus),
                    _read_optional_int(policy.directory / "scaling_cur_freq") or 0,
                    sum(busy) / len(busy) if busy else 0.0,
                )
            )
        if self.gpu is None:  # JetPack 6: the devfreq node appears when the GPU first powers up
            self.gpu = discover_gpu(self.root)
        if self.gpu:
            sample.gpu_frequency_hz = _read_optional_int(self.gpu.directory / "cur_freq") or 0
            load = _read_optional_int(self.gpu.directory / "device" / "load")
            sample.gpu_utilization = (load or 0) / 1000.0
        sample.emc_frequency_hz = _read_optional_int(self.root / paths.EMC_CLK_DIR / "rate") or 0
        sample.rails_w = self._rails()
        sample.total_power_w = total_power_w(sample.rails_w)
        sample.temperatures_c = self._temperatures()
        return sample

    def close(self) -> None:
        pass


class JtopStatusSource:
    """jetson-stats' view of a Jetson (needs the jtop.service running)."""

    name = "jtop"

    def __init__(self, platform: PlatformDescription | None, interval_s: float = 0.5):
        from jtop import jtop  # jetson-stats; imported here so other sources work without it

        self.platform_name = platform.name if platform else ""
        clusters = platform.clocks.cpu_clusters if platform else ()
        self.clusters = [(c.name, c.cpus) for c in clusters]
        self.jetson = jtop(interval=interval_s)  # jtop's own default is 1 s
        self.jetson.start()  # raises JtopException when the service is missing or refuses us

    def sample(self) -> HardwareSample:
        sample = HardwareSample(source=self.name, platform=self.platform_name)
        cpus = self.jetson.cpu.get("cpu", [])
        for name, members in self.clusters or [("all", tuple(range(len(cpus))))]:
            cores = [cpus[i] for i in members if i < len(cpus)]
            online = [c for c in cores if c.get("online")]
            freqs = [c.get("freq", {}).get("cur", 0) for c in online]
            busy = [1 - c.get("idle", 100.0) / 100.0 for c in online]
            load = sum(busy) / len(busy) if busy else 0.0
            frequency = int(max(freqs, default=0))
            cluster = ClusterSample(name, len(online), len(cores), frequency, load)
            sample.cpu_clusters.append(cluster)
        gpu = next(iter(self.jetson.gpu.values()), {})
        sample.gpu_frequency_hz = int(gpu.get("freq", {}).get("cur", 0)) * 1000
        sample.gpu_utilization = float(gpu.get("status", {}).get("load", 0.0)) / 100.0
        emc = self.jetson.memory.get("EMC", {})
        sample.emc_frequency_hz = int(emc.get("cur", 0)) * 1000
        sample.emc_utilization = float(emc.get("val", 0.0)) / 100.0
        power = self.jetson.power
        sample.rails_w = {
            name: rail.get("power", 0) / 1000.0 for name, rail in power.get("rail", {}).items()
        }
        total_mw = power.get("tot", {}).get("power")
        no_total = total_mw is None
        sample.total_power_w = total_power_w(sample.rails_w) if no_total else total_mw / 1000.0
        sample.temperatures_c = {
            name: float(zone["temp"])
            for name, zone in self.jetson.temperature.items()
            if zone.get("online", True)
        }
        return sample

    def close(self) -> None:
        self.jetson.close()


def open_status_source(kind: str, root: str | Path, platform: PlatformDescription | None,
                       period_s: float = 0.5) -> tuple[StatusSource, str]:
    """Open the requested source; returns it and a warning ('' if none) when it had to fall back.
    """
    if kind == "simulation":
        return SysfsStatusSource(root, platform, name="simulation"), ""
    if kind == "sysfs":
        return SysfsStatusSource(root, platform), ""
    if kind in ("jtop", "auto"):
        try:
            return JtopStatusSource(platform, period_s), ""
        # ImportError, JtopException (service missing, access denied, version)
        except Exception as exc:
            warning = (
                f"jtop unavailable ({type(exc).__name__}: {exc}); "
                f"reading sysfs/procfs under {root} instead"
            )
            return SysfsStatusSource(root, platform), warning
    raise ValueError(
        f"unknown hardware status source {kind!r}; choose jtop, sysfs, simulation or auto"
    )
