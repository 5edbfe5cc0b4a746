"""Discover, read, pin and restore a Jetson's CPU, GPU and EMC clocks through their sysfs files.

jetson-stats has no per-clock setter, so this writes the files itself, the way jetson_clocks does:
- CPU: per cpufreq policy, scaling_min_freq = scaling_max_freq = f (kHz);
- GPU: devfreq min_freq = max_freq = f (Hz), device found by its of_node name;
- EMC: bpmp debugfs `mrq_rate_locked` = 1, then `rate` = f (Hz).
Only frequencies the board lists are written (requests are snapped up to the next available one, or
rejected), min/max are written in the order the kernel accepts, every write is read back, and the
settings found at start can be restored. Nothing outside the configured root is ever written.
"""
from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from dyndnn_ros.hardware import sysfs_paths as paths
from dyndnn_ros.platforms.description import PlatformDescription

log = logging.getLogger(__name__)


class ClockError(RuntimeError):
    """A clock could not be found, written or read back."""


class ClockRejected(ValueError):
    """A requested frequency or clock domain is not one the board offers."""


@dataclass(frozen=True)
class ClockRequest:
    """Frequencies to pin; 0 (or a cluster left out) means leave that clock as it is."""

    cpu_khz: Mapping[str, int] = field(default_factory=dict)
    gpu_hz: int = 0
    emc_hz: int = 0


@dataclass(frozen=True)
class ClockState:
    cpu_khz: dict[str, int]
    gpu_hz: int
    emc_hz: int


@dataclass(frozen=True)
class CpuPolicy:
    name: str
    directory: Path
    available_khz: tuple[int, ...]


@dataclass(frozen=True)
class GpuDevfreq:
    directory: Path
    available_hz: tuple[int, ...]


@dataclass(frozen=True)
class Emc:
    directory: Path
    available_hz: tuple[int, ...]


def snap_up(available: tuple[int, ...], requested: int) -> int:
    """The lowest available frequency >= requested (the highest one if none is)."""
    index = bisect.bisect_left(available, requested)
    return available[min(index, len(available) - 1)]


def _cluster_names(platform: PlatformDescription | None) -> dict[int, str]:
    if platform is None:
        return {}
    return {c.policy_cpu: c.name for c in platform.clocks.cpu_clusters}


def discover_cpu_policies(root: Path, platform: PlatformDescription | None = None) -> list[CpuPolicy]:
    names = _cluster_names(platform)
    policies = []
    for directory in sorted((root / paths.CPUFREQ_DIR).glob("policy*"), key=lambda p: int(p.name[6:])):
        available_file = directory / "scaling_available_frequencies"
        if available_file.is_file():
            available = tuple(sorted(paths.read_ints(available_file)))
        elif platform is not None:
            available = platform.clocks.cpu_available_khz
        else:
            continue  # without a table we cannot know which frequencies are safe to pin
        cpu = int(directory.name[6:])
        policies.append(CpuPolicy(names.get(cpu, directory.name), directory, available))
    return policies


def discover_gpu(root: Path) -> GpuDevfreq | None:
    """Find the GPU devfreq device by its of_node name, as jetson_clocks and jtop do."""
    for directory in sorted((root / paths.DEVFREQ_CLASS_DIR).glob("*")):
        name_file = directory / "device" / "of_node" / "name"
        if name_file.is_file() and paths.read_text(name_file).rstrip("\x00") in paths.GPU_OF_NODE_NAMES:
            available = tuple(sorted(paths.read_ints(directory / "available_frequencies")))
            return GpuDevfreq(directory, available)
    return None


def discover_emc(root: Path, platform: PlatformDescription | None) -> Emc | None:
    directory = root / paths.EMC_CLK_DIR
    if not (directory / "rate").is_file() or platform is None:
        return None  # EMC rates are not listed in sysfs: only a board description says which are safe
    cap_file = root / paths.EMC_ISO_CAP
    cap = paths.read_int(cap_file) if cap_file.is_file() else platform.clocks.emc_available_hz[-1]
    return Emc(directory, tuple(f for f in platform.clocks.emc_available_hz if f <= cap))


class SysfsClockController:
    """Pins clocks under `root` and puts back what it found there."""

    def __init__(self, root: str | Path, platform: PlatformDescription | None = None, snap: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ClockError(f"sysfs root {self.root} does not exist")
        self.snap = snap
        self.cpu_policies = {p.name: p for p in discover_cpu_policies(self.root, platform)}
        self.gpu = discover_gpu(self.root)
        self.emc = discover_emc(self.root, platform)
        if not self.cpu_policies and self.gpu is None and self.emc is None:
            raise ClockError(f"no CPU, GPU or EMC clock files found under {self.root}")
        self._saved: dict[Path, str] | None = None

    # -- files -------------------------------------------------------------------------------
    def _file(self, directory: Path, name: str) -> Path:
        return paths.inside_root(self.root, directory / name)

    def _read(self, directory: Path, name: str) -> int:
        return paths.read_int(self._file(directory, name))

    def _write(self, directory: Path, name: str, value: int | str) -> None:
        path = self._file(directory, name)
        try:
            path.write_text(f"{value}\n")
        except OSError as exc:
            raise ClockError(f"writing {value} to {path} failed: {exc}") from exc

    def _pin_range(self, directory: Path, min_name: str, max_name: str, value: int) -> int:
        """Set min = max = value in the order the kernel accepts, and return what reads back."""
        if value >= self._read(directory, max_name):
            self._write(directory, max_name, value)
            self._write(directory, min_name, value)
        else:
            self._write(directory, min_name, value)
            self._write(directory, max_name, value)
        got_min, got_max = self._read(directory, min_name), self._read(directory, max_name)
        if got_min != value or got_max != value:
            raise ClockError(f"{directory}: asked for {value}, read back min {got_min} max {got_max}")
        return value

    # -- what is there ---------------------------------------------------------------------------
    def describe(self) -> dict[str, tuple[int, ...]]:
        """Every clock domain found and the frequencies it accepts."""
        found = {f"cpu/{name}": p.available_khz for name, p in self.cpu_policies.items()}
        if self.gpu:
            found["gpu"] = self.gpu.available_hz
        if self.emc:
            found["emc"] = self.emc.available_hz
        return found

    def read_state(self) -> ClockState:
        """Current frequencies (the kernel's cur values)."""
        return ClockState(
            cpu_khz={name: self._read(p.directory, "scaling_cur_freq") for name, p in self.cpu_policies.items()},
            gpu_hz=self._read(self.gpu.directory, "cur_freq") if self.gpu else 0,
            emc_hz=self._read(self.emc.directory, "rate") if self.emc else 0,
        )

    # -- validation ------------------------------------------------------------------------------
    def _choose(self, what: str, available: tuple[int, ...], requested: int) -> int:
        if requested < 0:
            raise ClockRejected(f"{what}: negative frequency {requested}")
        if requested in available:
            return requested
        if not self.snap:
            raise ClockRejected(f"{what}: {requested} is not offered by the board; available: {list(available)}")
        if requested > available[-1]:
            raise ClockRejected(f"{what}: {requested} is above the board's maximum {available[-1]}")
        return snap_up(available, requested)

    def resolve(self, request: ClockRequest) -> ClockRequest:
        """Check a whole request before touching any file: all of it is applicable, or none."""
        cpu = {}
        for name, khz in request.cpu_khz.items():
            if name not in self.cpu_policies:
                raise ClockRejected(f"unknown CPU cluster {name!r}; known: {sorted(self.cpu_policies)}")
            if khz:
                cpu[name] = self._choose(f"cpu/{name}", self.cpu_policies[name].available_khz, int(khz))
        gpu = emc = 0
        if request.gpu_hz:
            if self.gpu is None:
                raise ClockRejected("no GPU devfreq device on this board")
            gpu = self._choose("gpu", self.gpu.available_hz, int(request.gpu_hz))
        if request.emc_hz:
            if self.emc is None:
                raise ClockRejected("EMC clock not controllable here (no bpmp debugfs or no board table)")
            emc = self._choose("emc", self.emc.available_hz, int(request.emc_hz))
        return ClockRequest(cpu, gpu, emc)

    # -- changes ---------------------------------------------------------------------------------
    def save_originals(self) -> None:
        """Remember every file this controller may write, to put it back later."""
        saved: dict[Path, str] = {}
        for p in self.cpu_policies.values():
            for name in ("scaling_governor", "scaling_min_freq", "scaling_max_freq"):
                saved[self._file(p.directory, name)] = paths.read_text(p.directory / name)
        if self.gpu:
            for name in ("governor", "min_freq", "max_freq"):
                saved[self._file(self.gpu.directory, name)] = paths.read_text(self.gpu.directory / name)
        if self.emc:
            for name in ("mrq_rate_locked", "rate"):
                saved[self._file(self.emc.directory, name)] = paths.read_text(self.emc.directory / name)
        self._saved = saved

    def apply(self, request: ClockRequest) -> ClockState:
        """Pin the requested clocks; on any failure put the originals back and raise."""
        resolved = self.resolve(request)
        if self._saved is None:
            self.save_originals()
        try:
            for name, khz in resolved.cpu_khz.items():
                self._pin_range(self.cpu_policies[name].directory, "scaling_min_freq", "scaling_max_freq", khz)
            if resolved.gpu_hz:
                self._pin_range(self.gpu.directory, "min_freq", "max_freq", resolved.gpu_hz)
            if resolved.emc_hz:
                self._write(self.emc.directory, "mrq_rate_locked", 1)
                self._write(self.emc.directory, "rate", resolved.emc_hz)
                if self._read(self.emc.directory, "rate") != resolved.emc_hz:
                    raise ClockError(f"EMC rate did not read back as {resolved.emc_hz}")
        except (ClockError, OSError, ValueError) as exc:
            log.error("clock write failed (%s); restoring the saved settings", exc)
            self.restore_originals()
            raise ClockError(str(exc)) from exc
        return ClockState(dict(resolved.cpu_khz), resolved.gpu_hz, resolved.emc_hz)

    def restore_originals(self) -> list[str]:
        """Write back the saved settings; returns the files that could not be restored."""
        if self._saved is None:
            return []
        failed = []
        # min/max pairs are restored with the range opened first, so each write is accepted
        # whatever the pinned value was: lower min, raise max, then the saved min and max.
        for path, value in self._ordered_restore(self._saved):
            try:
                path.write_text(f"{value}\n")
            except OSError as exc:
                log.error("restoring %s to %s failed: %s", path, value, exc)
                failed.append(str(path))
        return failed

    def close(self) -> None:
        """Nothing held open: files are opened per write."""

    def _ordered_restore(self, saved: dict[Path, str]) -> list[tuple[Path, str]]:
        steps: list[tuple[Path, str]] = []
        ranges = [(p.directory, "scaling_min_freq", "scaling_max_freq", p.available_khz) for p in self.cpu_policies.values()]
        if self.gpu:
            ranges.append((self.gpu.directory, "min_freq", "max_freq", self.gpu.available_hz))
        for directory, lo_name, hi_name, available in ranges:
            lo, hi = directory.resolve() / lo_name, directory.resolve() / hi_name
            steps += [(lo, str(available[0])), (hi, str(available[-1])), (lo, saved[lo]), (hi, saved[hi])]
        if self.emc:
            rate, locked = self.emc.directory.resolve() / "rate", self.emc.directory.resolve() / "mrq_rate_locked"
            steps += [(rate, saved[rate]), (locked, saved[locked])]
        governors = [p.directory.resolve() / "scaling_governor" for p in self.cpu_policies.values()]
        if self.gpu:
            governors.append(self.gpu.directory.resolve() / "governor")
        steps += [(g, saved[g]) for g in governors]
        return steps
