# SPDX-License-Identifier: Apache-2.0
"""Jetson boards as their files look, one per board and power mode, for the simulated trees.

Each fixture is what a freshly booted board shows under /sys, /proc, /etc and /var in one nvpmodel
power mode, and `simulated_tree.create_simulated_jetson` lays it out file by file. Facts and
quirks, with the public source each comes from:

- cpufreq (Linux drivers/cpufreq/cpufreq.c; tegra194-cpufreq.c, tegra186-cpufreq.c): one policyN
  directory per cluster, named after its first CPU; `scaling_available_frequencies` lists the whole
  hardware table, and nvpmodel's cap is the value it wrote into `scaling_max_freq`
  (nvpmodel.conf `FREQ_POLICY ... MAX_FREQ`). A policy whose CPUs are all offline
  (nvpmodel `CPU_ONLINE CORE_n 0`) stays in sysfs but is inactive: cpufreq.c show() and store()
  answer -EBUSY for every attribute. Files are root-owned, 0644 where writable, 0444 otherwise.
- devfreq (Linux drivers/devfreq/devfreq.c; NVIDIA nvgpu): the GPU is found by its of_node name
  (jetson_clocks, jetson_stats jtop/core/gpu.py); `max_freq` holds nvpmodel's GPU cap. On
  JetPack 6 (nvgpu built out of tree) the devfreq device registers when the GPU first powers up,
  so it can be missing at boot.
- EMC (BPMP debugfs, NVIDIA jetson_clocks script, jetson_stats jtop/core/memory.py):
  /sys/kernel/debug/bpmp/debug/clk/emc/{rate,min_rate,max_rate,mrq_rate_locked} and
  .../bpmp/debug/emc/possible_rates; debugfs is mode 0700 root, so an unprivileged process cannot
  even stat below it. BPMP sets the nearest possible rate. nvpmodel's cap is
  /sys/kernel/nvpmodel_emc_cap/emc_iso_cap, and 0 there means "no cap" (MAXN modes; jetson_clocks
  then uses max_rate).
- Power (INA3221 hwmon, jetson_stats jtop/core/power.py): Xavier NX and Orin Nano carriers have a
  VDD_IN channel; AGX Orin has none, so the board total is the sum of its rails, as jtop sums them.
- Model and mode: /proc/device-tree/model (NUL-terminated), /etc/nvpmodel.conf
  (`< POWER_MODEL ID=n NAME=... >`) and /var/lib/nvpmodel/status (`pmode:000n`), which is what
  `nvpmodel -q` reports.
Power-mode caps are those of NVIDIA's Jetson Linux Developer Guide power-mode tables (r35 for
Xavier NX, r36 for Orin); they could not be read from a board here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

# Carmel (Xavier) and Cortex-A78AE (Orin) cpufreq tables, as tegra194/tegra186-cpufreq list them:
# the driver fills its table from the NDIV range BPMP reports in even steps (76.8 MHz here, from
# 115.2 MHz) and appends the cluster's top frequency.
XAVIER_CPU_KHZ = tuple(range(115200, 1881600 + 1, 76800)) + (1907200,)
ORIN_CPU_KHZ = tuple(range(115200, 2188800 + 1, 76800)) + (2201600,)


@dataclass(frozen=True)
class PowerMode:
    """One nvpmodel mode: its id and name, the CPUs it keeps online, and the caps it writes."""

    id: int
    name: str
    online_cpus: Tuple[int, ...]
    cpu_max_khz: int
    gpu_max_hz: int
    emc_cap_hz: int
    """emc_iso_cap; 0 = no cap (MAXN)"""


@dataclass(frozen=True)
class BoardFixture:
    platform: str
    """config/platforms/<platform>.yaml describes this board in this power mode"""
    model: str
    """/proc/device-tree/model"""
    cpu_policies: Tuple[Tuple[int, ...], ...]
    """CPUs of each cpufreq policy (every cluster the SoC has, online or not)"""
    cpu_khz: Tuple[int, ...]
    gpu_devfreq_path: str
    gpu_of_node_name: str
    gpu_hz: Tuple[int, ...]
    emc_possible_hz: Tuple[int, ...]
    rails: Dict[str, Tuple[str, ...]]
    """INA3221 i2c device -> its channel labels"""
    modes: Tuple[PowerMode, ...]
    mode_id: int
    gpu_appears_late: bool = False

    @property
    def mode(self) -> PowerMode:
        return next(m for m in self.modes if m.id == self.mode_id)

    @property
    def cpus(self) -> Tuple[int, ...]:
        return tuple(c for policy in self.cpu_policies for c in policy)


XAVIER_NX_GPU_HZ = (
    114750000,
    204000000,
    306000000,
    408000000,
    510000000,
    599250000,
    701250000,
    752250000,
    803250000,
    854250000,
    905250000,
    956250000,
    1007250000,
    1058250000,
    1109250000,
)
# L4T r35 developer guide, Xavier NX power modes (nvpmodel_t194_p3668.conf): 15 W caps EMC at
# 1600 MHz, the CPU at 1.4 GHz with 4 or 6 cores and 1.9 GHz with 2.
XAVIER_NX_MODES = (
    PowerMode(0, "MODE_15W_2CORE", (0, 1), 1907200, 1109250000, 1600000000),
    PowerMode(1, "MODE_15W_4CORE", (0, 1, 2, 3), 1420800, 1109250000, 1600000000),
    PowerMode(2, "MODE_15W_6CORE", (0, 1, 2, 3, 4, 5), 1420800, 1109250000, 1600000000),
)


def _xavier_nx(mode_id: int, platform: str) -> BoardFixture:
    return BoardFixture(
        platform=platform,
        model="NVIDIA Jetson Xavier NX Developer Kit",
        cpu_policies=((0, 1), (2, 3), (4, 5)),
        cpu_khz=XAVIER_CPU_KHZ,
        gpu_devfreq_path="sys/devices/platform/17000000.gv11b/devfreq/17000000.gv11b",
        gpu_of_node_name="gv11b",
        gpu_hz=XAVIER_NX_GPU_HZ,
        emc_possible_hz=(
            204000000,
            408000000,
            665600000,
            800000000,
            1065600000,
            1331200000,
            1600000000,
            1866000000,
        ),
        rails={"7-0040": ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")},
        modes=XAVIER_NX_MODES,
        mode_id=mode_id,
    )


# AGX Orin (JetPack 6, r36): three clusters of four A78AE cores (policy0/4/8), GPU devfreq
# 17000000.gpu under bus@0 (of_node "gpu"), EMC rates as BPMP lists them, MAXN with emc_iso_cap 0.
AGX_ORIN_MAXN = BoardFixture(
    platform="agx_orin_maxn",
    model="NVIDIA Jetson AGX Orin Developer Kit",
    cpu_policies=((0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11)),
    cpu_khz=ORIN_CPU_KHZ,
    gpu_devfreq_path="sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu",
    gpu_of_node_name="gpu",
    gpu_hz=(
        306000000,
        408000000,
        510000000,
        612000000,
        714000000,
        816000000,
        918000000,
        1020000000,
        1122000000,
        1224000000,
        1300500000,
    ),
    emc_possible_hz=(204000000, 665600000, 2133000000, 3199000000),
    # two INA3221s, no VDD_IN channel (jtop sums the rails for the total)
    rails={
        "1-0040": ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"),
        "1-0041": ("NC", "VDDQ_VDD2_1V8AO", "NC"),
    },
    modes=(PowerMode(0, "MAXN", tuple(range(12)), 2201600, 1300500000, 0),),
    mode_id=0,
    gpu_appears_late=True,
)

# Orin Nano 8 GB (JetPack 6, r36): clusters of four and two cores (policy0/4); the 7 W mode takes
# cores 4-5 offline, so policy4 is inactive.
ORIN_NANO_7W = BoardFixture(
    platform="orin_nano_7w",
    model="NVIDIA Jetson Orin Nano Developer Kit",
    cpu_policies=((0, 1, 2, 3), (4, 5)),
    cpu_khz=ORIN_CPU_KHZ[: ORIN_CPU_KHZ.index(1497600) + 1] + (1510400,),
    gpu_devfreq_path="sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu",
    gpu_of_node_name="gpu",
    gpu_hz=(306000000, 408000000, 510000000, 624750000),
    emc_possible_hz=(204000000, 665600000, 2133000000),
    rails={"1-0040": ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")},
    modes=(
        PowerMode(0, "15W", tuple(range(6)), 1510400, 624750000, 0),
        PowerMode(1, "7W", (0, 1, 2, 3), 960000, 408000000, 2133000000),
    ),
    mode_id=1,
    gpu_appears_late=True,
)

FIXTURES = {
    f.platform: f
    for f in (
        _xavier_nx(2, "xavier_nx"),
        _xavier_nx(0, "xavier_nx_2core"),
        AGX_ORIN_MAXN,
        ORIN_NANO_7W,
    )
}


def fixture_for(platform: str) -> BoardFixture:
    if platform not in FIXTURES:
        raise KeyError(f"no board fixture for platform {platform!r}; fixtures: {sorted(FIXTURES)}")
    return FIXTURES[platform]
