# SPDX-License-Identifier: Apache-2.0
"""Discover, read, pin and restore a Jetson's CPU, GPU and EMC clocks through their sysfs files.

jetson-stats has no per-clock setter, so this writes the files itself, the way jetson_clocks does:
- CPU: per cpufreq policy, scaling_min_freq = scaling_max_freq = f (kHz);
- GPU: devfreq min_freq = max_freq = f (Hz), device found by its of_node name;
- EMC: bpmp debugfs `mrq_rate_locked` = 1, then `rate` = f (Hz), f from `emc/possible_rates`.
What it may write is decided at start: never above the max the power mode left in the max files
(nor above `emc_iso_cap`, where 0 means no cap), never to a policy whose CPUs are offline, never
to a file this user cannot write; each clock it cannot control gets a one-line reason. Requests
are snapped up to the next allowed frequency (or rejected), min/max are written in the order the
kernel accepts, and every write is read back: the kernel may hold a lower effective limit (a
thermal cap) and BPMP sets the nearest rate it offers, both reported, not failed.
The settings found at start are kept in a small state file (written atomically), so that a new
instance can put back what a killed one pinned before it saves anew (`restore_leftover`).
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from dyndnn_ros.hardware import sysfs_paths as paths
from dyndnn_ros.platforms.description import PlatformDescription

log = logging.getLogger(__name__)

Steps = List[Tuple[Path, str]]


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
    notes: Mapping[str, str] = field(default_factory=dict)
    """domain -> what was left out or changed while resolving (uncontrollable, capped)"""


@dataclass(frozen=True)
class ClockState:
    cpu_khz: Dict[str, int]
    gpu_hz: int
    emc_hz: int


@dataclass(frozen=True)
class CpuPolicy:
    name: str
    directory: Path
    available_khz: Tuple[int, ...]
    """what may be pinned: the hardware table up to the max found at start"""
    cpus: Tuple[int, ...] = ()
    cap_khz: int = 0
    table_max_khz: int = 0
    inactive: str = ""
    """why this policy cannot be used ('' when it can)"""


@dataclass(frozen=True)
class GpuDevfreq:
    directory: Path
    available_hz: Tuple[int, ...]
    cap_hz: int = 0
    table_max_hz: int = 0


@dataclass(frozen=True)
class Emc:
    directory: Path
    available_hz: Tuple[int, ...]
    cap_hz: int = 0
    table_max_hz: int = 0


def snap_up(available: Tuple[int, ...], requested: int) -> int:
    """The lowest available frequency >= requested (the highest one if none is)."""
    index = bisect.bisect_left(available, requested)
    return available[min(index, len(available) - 1)]


def _below_cap(table: List[int], cap: int) -> Tuple[int, ...]:
    allowed = tuple(f for f in sorted(table) if f <= cap)
    return allowed or tuple(sorted(table)[:1])


def _cluster_names(platform: PlatformDescription | None) -> Dict[int, str]:
    if platform is None:
        return {}
    return {c.policy_cpu: c.name for c in platform.clocks.cpu_clusters}


def _policy_cpus(root: Path, policy: Path) -> Tuple[int, ...]:
    """CPUs whose cpuN/cpufreq link points at `policy`: readable even if the policy is inactive."""
    cpus = []
    for link in (root / paths.CPU_DIR).glob("cpu[0-9]*/cpufreq"):
        if link.resolve() == policy.resolve():
            cpus.append(int(link.parent.name[3:]))
    return tuple(sorted(cpus)) or (int(policy.name[6:]),)


def discover_cpu_clusters(
    root: Path, platform: PlatformDescription | None = None
) -> List[CpuPolicy]:
    """Every cpufreq policy, usable or not (an inactive one says why in `inactive`)."""
    names = _cluster_names(platform)
    found = []
    policy_dirs = (root / paths.CPUFREQ_DIR).glob("policy[0-9]*")
    for directory in sorted(policy_dirs, key=lambda p: int(p.name[6:])):
        first = int(directory.name[6:])
        name = names.get(first, directory.name)
        cpus = _policy_cpus(root, directory)
        try:
            available = paths.read_ints(directory / "scaling_available_frequencies")
            cap = paths.read_int(directory / "scaling_max_freq")
        except OSError as exc:  # -EBUSY: every CPU of the policy is offline
            offline = [c for c in cpus if _cpu_online(root, c) is False]
            why = (
                f"CPUs {offline} offline (power mode)"
                if offline
                else f"unreadable ({exc.strerror})"
            )
            found.append(
                CpuPolicy(
                    name, directory, (), cpus, inactive=f"cpu/{name}: policy inactive, {why}"
                )
            )
            continue
        if not available and platform is not None:
            available = list(platform.clocks.cpu_available_khz)
        found.append(
            CpuPolicy(name, directory, _below_cap(available, cap), cpus, cap, max(available))
        )
    return found


def discover_cpu_policies(
    root: Path, platform: PlatformDescription | None = None
) -> List[CpuPolicy]:
    """The cpufreq policies that can be read now (inactive ones left out)."""
    return [p for p in discover_cpu_clusters(root, platform) if not p.inactive]


def _cpu_online(root: Path, cpu: int) -> Optional[bool]:
    try:
        return paths.read_int(root / paths.CPU_DIR / f"cpu{cpu}" / "online") == 1
    except (OSError, ValueError, IndexError):
        return None


def discover_gpu(root: Path) -> GpuDevfreq | None:
    """Find the GPU devfreq device by its of_node name, as jetson_clocks and jtop do."""
    for directory in sorted((root / paths.DEVFREQ_CLASS_DIR).glob("*")):
        name_file = directory / "device" / "of_node" / "name"
        if paths.find_file(name_file):
            continue
        if paths.read_text(name_file).rstrip("\x00") in paths.GPU_OF_NODE_NAMES:
            cap = paths.read_int(directory / "max_freq")
            table = paths.read_ints(directory / "available_frequencies")
            return GpuDevfreq(directory, _below_cap(table, cap), cap, max(table))
    return None


def emc_problem(root: Path) -> str:
    """'' if the EMC clock files can be read, else why not (debugfs is root-only)."""
    return paths.find_file(root / paths.EMC_CLK_DIR / "rate")


def discover_emc(root: Path, platform: PlatformDescription | None) -> Emc | None:
    """The EMC rates BPMP offers (possible_rates, else the board description) up to the cap."""
    if emc_problem(root):
        return None
    directory = root / paths.EMC_CLK_DIR
    rates_file = root / paths.EMC_POSSIBLE_RATES
    if not paths.find_file(rates_file):
        table = paths.read_ints(rates_file)
    elif platform is not None:
        table = list(platform.clocks.emc_available_hz)
    else:
        return None  # without a rate list we cannot know which rates are safe
    cap_file = root / paths.EMC_ISO_CAP
    cap = paths.read_int(cap_file) if not paths.find_file(cap_file) else 0
    if cap == 0:  # 0 = no cap (MAXN), as jetson_clocks and jtop read it: use max_rate
        cap = (
            paths.read_int(directory / "max_rate")
            if not paths.find_file(directory / "max_rate")
            else max(table)
        )
    return Emc(directory, _below_cap(table, cap), cap, max(table))


def _write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: temp file, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(Path(tmp))
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _run_steps(steps: Steps) -> List[str]:
    failed = []
    for path, value in steps:
        try:
            path.write_text(f"{value}\n")
        except OSError as exc:
            log.error("restoring %s to %s failed: %s", path, value, exc)
            failed.append(str(path))
    return failed


def restore_leftover(state_file: Path, root: Path) -> Optional[List[str]]:
    """Put back the settings a dead instance saved in `state_file`; None if there was none, else
    the files that could not be restored (the file is kept then, for the next try). A live writer
    of the file is another DVFS node on the same clocks: refused, not undone."""
    for stale in state_file.parent.glob(f".{state_file.name}.*"):  # a write killed half-way
        _unlink(stale)
    try:
        doc = json.loads(state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClockError(
            f"state file {state_file} cannot be read ({exc}); check the clocks by hand"
        ) from exc
    if Path(doc.get("root", "")) != Path(root).resolve():
        raise ClockError(
            f"state file {state_file} belongs to the tree {doc.get('root')!r}, not {root}"
        )
    owner = int(doc.get("pid", 0))
    if owner and owner != os.getpid() and _alive(owner):
        raise ClockError(
            f"process {owner} holds the clocks under {root} ({state_file}): another DVFS node? "
            "Stop it first (or delete the file if that process is no DVFS node)"
        )
    steps = [(paths.inside_root(Path(root), Path(p)), v) for p, v in doc["steps"]]
    failed = _run_steps(steps)
    if not failed:
        _unlink(state_file)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:  # a killed process its parent has not reaped yet is a zombie: dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class SysfsClockController:
    """Pins clocks under `root` and puts back what it found there."""

    def __init__(
        self,
        root: str | Path,
        platform: PlatformDescription | None = None,
        snap: bool = True,
        state_file: str | Path | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ClockError(f"sysfs root {self.root} does not exist")
        self.snap = snap
        self.platform = platform
        self.state_file = Path(state_file) if state_file else None
        self.unavailable: Dict[str, str] = {}
        """clock domain -> why it cannot be controlled"""
        clusters = discover_cpu_clusters(self.root, platform)
        self.cpu_policies: Dict[str, CpuPolicy] = {}
        for policy in clusters:
            unwritable = self._unwritable(policy.directory, "scaling_min_freq", "scaling_max_freq")
            why = policy.inactive or (f"cpu/{policy.name}: {unwritable}" if unwritable else "")
            if why:
                self.unavailable[f"cpu/{policy.name}"] = why
            else:
                self.cpu_policies[policy.name] = policy
        self.gpu: GpuDevfreq | None = None
        self._find_gpu()
        self.emc = discover_emc(self.root, platform)
        if self.emc is None:
            self.unavailable["emc"] = (
                f"emc: {emc_problem(self.root) or 'no list of EMC rates'}; left to its governor"
            )
        elif self._unwritable(self.emc.directory, "rate", "mrq_rate_locked"):
            self.unavailable["emc"] = (
                f"emc: {self._unwritable(self.emc.directory, 'rate', 'mrq_rate_locked')}"
            )
            self.emc = None
        if not clusters and self.gpu is None and self.emc is None:
            raise ClockError(f"no CPU, GPU or EMC clock files found under {self.root}")
        self._saved: Steps | None = None

    def _unwritable(self, directory: Path, *names: str) -> str:
        return next((why for why in (paths.writable(directory / n) for n in names) if why), "")

    def _find_gpu(self) -> bool:
        """(Re)discover the GPU: on JetPack 6 its devfreq node appears at the first power-up."""
        gpu = discover_gpu(self.root)
        unwritable = self._unwritable(gpu.directory, "min_freq", "max_freq") if gpu else ""
        why = (
            f"gpu: {unwritable}"
            if unwritable
            else ""
            if gpu
            else (
                "gpu: no devfreq device (yet: JetPack 6 registers it when the GPU first powers up)"
            )
        )
        if why:
            self.unavailable["gpu"] = why
            return False
        self.unavailable.pop("gpu", None)
        self.gpu = gpu
        return True

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
        """Set min = max = value in the order the kernel accepts; return the effective value."""
        if value >= self._read(directory, max_name):
            self._write(directory, max_name, value)
            self._write(directory, min_name, value)
        else:
            self._write(directory, min_name, value)
            self._write(directory, max_name, value)
        got_min, got_max = self._read(directory, min_name), self._read(directory, max_name)
        if got_max > value or got_min != got_max:
            raise ClockError(
                f"{directory}: asked for {value}, read back min {got_min} max {got_max}"
            )
        if got_max < value:  # a cooling device or QoS request holds a lower effective limit
            log.warning("%s: asked for %d, the kernel limits it to %d", directory, value, got_max)
        return got_max

    # -- what is there ---------------------------------------------------------------------------
    def describe(self) -> Dict[str, Tuple[int, ...]]:
        """Every clock domain that can be controlled and the frequencies it accepts."""
        found = {f"cpu/{name}": p.available_khz for name, p in self.cpu_policies.items()}
        if self.gpu:
            found["gpu"] = self.gpu.available_hz
        if self.emc:
            found["emc"] = self.emc.available_hz
        return found

    def read_state(self) -> ClockState:
        """Current frequencies (the kernel's cur values)."""
        return ClockState(
            cpu_khz={
                name: self._read(p.directory, "scaling_cur_freq")
                for name, p in self.cpu_policies.items()
            },
            gpu_hz=self._read(self.gpu.directory, "cur_freq") if self.gpu else 0,
            emc_hz=self._read(self.emc.directory, "rate") if self.emc else 0,
        )

    # -- validation ------------------------------------------------------------------------------
    def _choose(
        self,
        what: str,
        available: Tuple[int, ...],
        requested: int,
        notes: Dict[str, str],
        table_max: int,
    ) -> int:
        if requested < 0:
            raise ClockRejected(f"{what}: negative frequency {requested}")
        if requested in available:
            return requested
        if requested > table_max:
            raise ClockRejected(f"{what}: {requested} is above the board's maximum {table_max}")
        if not self.snap:
            raise ClockRejected(
                f"{what}: {requested} is not offered by the board in this power mode; "
                f"available: {list(available)}"
            )
        if (
            requested > available[-1]
        ):  # offered by the chip, not in this power mode: never above its cap
            notes[what] = (
                f"{what}: {requested} is above the power mode's maximum; {available[-1]} instead"
            )
            return available[-1]
        return snap_up(available, requested)

    def _skip(self, domain: str, notes: Dict[str, str]) -> None:
        notes[domain] = self.unavailable[domain]

    def resolve(self, request: ClockRequest) -> ClockRequest:
        """Check a whole request before touching any file: all of it is applicable, or none.
        Clocks this node cannot control are left out, each with its reason in `notes`."""
        cpu: Dict[str, int] = {}
        notes: Dict[str, str] = {}
        for name, khz in request.cpu_khz.items():
            if name not in self.cpu_policies and f"cpu/{name}" not in self.unavailable:
                known = sorted(
                    set(self.cpu_policies)
                    | {d[4:] for d in self.unavailable if d.startswith("cpu/")}
                )
                raise ClockRejected(f"unknown CPU cluster {name!r}; known: {known}")
            if khz and name not in self.cpu_policies:
                self._skip(f"cpu/{name}", notes)
            elif khz:
                policy = self.cpu_policies[name]
                cpu[name] = self._choose(
                    f"cpu/{name}", policy.available_khz, int(khz), notes, policy.table_max_khz
                )
        gpu = emc = 0
        if request.gpu_hz:
            if self.gpu is None and not self._find_gpu():
                self._skip("gpu", notes)
            else:
                gpu = self._choose(
                    "gpu", self.gpu.available_hz, int(request.gpu_hz), notes, self.gpu.table_max_hz
                )
        if request.emc_hz:
            if self.emc is None:
                self._skip("emc", notes)
            else:
                emc = self._choose(
                    "emc", self.emc.available_hz, int(request.emc_hz), notes, self.emc.table_max_hz
                )
        return ClockRequest(cpu, gpu, emc, notes)

    # -- changes ---------------------------------------------------------------------------------
    def save_originals(self) -> None:
        """Remember every file this controller may write, as the ordered writes that put it back,
        and keep them in the state file before any clock is touched."""
        steps: Steps = []
        # min/max pairs are restored with the range opened first, so each write is accepted
        # whatever the pinned value was: min to the lowest, max to the saved max, min to the saved
        # min. The saved max is where the power mode left it: the range never opens above it.
        ranges = [
            (p.directory, "scaling_min_freq", "scaling_max_freq", p.available_khz[0])
            for p in self.cpu_policies.values()
        ]
        if self.gpu:
            ranges.append((self.gpu.directory, "min_freq", "max_freq", self.gpu.available_hz[0]))
        for directory, lo_name, hi_name, lowest in ranges:
            lo, hi = self._file(directory, lo_name), self._file(directory, hi_name)
            steps += [(lo, str(lowest)), (hi, paths.read_text(hi)), (lo, paths.read_text(lo))]
        if self.emc:
            rate, locked = (
                self._file(self.emc.directory, "rate"),
                self._file(self.emc.directory, "mrq_rate_locked"),
            )
            steps += [(rate, paths.read_text(rate)), (locked, paths.read_text(locked))]
        governors = [
            self._file(p.directory, "scaling_governor") for p in self.cpu_policies.values()
        ]
        if self.gpu:
            governors.append(self._file(self.gpu.directory, "governor"))
        steps += [(g, paths.read_text(g)) for g in governors]
        self._saved = steps
        self._persist()

    def _persist(self) -> None:
        if self.state_file is None or self._saved is None:
            return
        doc = {
            "root": str(self.root.resolve()),
            "pid": os.getpid(),
            "steps": [[str(p), v] for p, v in self._saved],
        }
        _write_atomic(self.state_file, json.dumps(doc, indent=1))

    def _save_gpu_late(self) -> None:
        """A GPU found after start: add its settings to what is saved, before writing it."""
        if self._saved is None or self.gpu is None:
            return
        if any(p.parent == self.gpu.directory.resolve() for p, _ in self._saved):
            return
        d = self.gpu.directory
        lo, hi, gov = (
            self._file(d, "min_freq"),
            self._file(d, "max_freq"),
            self._file(d, "governor"),
        )
        self._saved += [
            (lo, str(self.gpu.available_hz[0])),
            (hi, paths.read_text(hi)),
            (lo, paths.read_text(lo)),
            (gov, paths.read_text(gov)),
        ]
        self._persist()

    def apply(self, request: ClockRequest) -> ClockState:
        """Pin the requested clocks; on any failure put the originals back and raise. Returns the
        effective frequencies (the kernel's limits as read back)."""
        resolved = self.resolve(request)
        if self._saved is None:
            self.save_originals()
        if resolved.gpu_hz:
            self._save_gpu_late()
        try:
            cpu = {}
            for name, khz in resolved.cpu_khz.items():
                directory = self.cpu_policies[name].directory
                cpu[name] = self._pin_range(directory, "scaling_min_freq", "scaling_max_freq", khz)
            gpu = (
                self._pin_range(self.gpu.directory, "min_freq", "max_freq", resolved.gpu_hz)
                if resolved.gpu_hz
                else 0
            )
            emc = self._pin_emc(resolved.emc_hz) if resolved.emc_hz else 0
        except (ClockError, OSError, ValueError) as exc:
            log.error("clock write failed (%s); restoring the saved settings", exc)
            self.restore_originals()
            raise ClockError(str(exc)) from exc
        return ClockState(cpu, gpu, emc)

    def _pin_emc(self, rate: int) -> int:
        self._write(self.emc.directory, "mrq_rate_locked", 1)
        self._write(self.emc.directory, "rate", rate)
        got = self._read(self.emc.directory, "rate")
        nearest = min(self.emc.available_hz, key=lambda r: abs(r - got))
        if (
            nearest != rate
        ):  # BPMP sets the nearest rate it offers: anything else is a failed write
            raise ClockError(f"EMC rate read back as {got}, asked for {rate}")
        return got

    def restore_originals(self) -> List[str]:
        """Write back the saved settings; returns the files that could not be restored. The state
        file goes once everything is back, and stays for the next start otherwise."""
        if self._saved is None:
            return []
        failed = _run_steps(self._saved)
        if not failed and self.state_file is not None:
            _unlink(self.state_file)
        return failed

    def close(self) -> None:
        """Nothing held open: files are opened per write."""


def default_state_file(root: str | Path, state_dir: str = "") -> Path:
    """Where the saved settings of the clocks under `root` are kept: a run directory (tmpfs on a
    robot, so a reboot, which restores the boot clocks anyway, also forgets them)."""
    import hashlib

    if not state_dir:
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        candidates = [
            "/run/dyndnn",
            f"{runtime}/dyndnn" if runtime else "",
            f"/tmp/dyndnn-{os.geteuid()}",
        ]
        state_dir = next(c for c in candidates if c and _usable_dir(Path(c)))
    key = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return Path(state_dir) / f"dvfs_saved_clocks_{key}.json"


def _usable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)
