# SPDX-License-Identifier: Apache-2.0
"""Clock control through jetson-stats (jtop), for boards where the DVFS node should not write
sysfs.

jtop can switch jetson_clocks (every clock to its maximum) and the nvpmodel power mode; it has no
per-clock frequency setter. So this back end accepts "everything at maximum" (jetson_clocks on) and
"restore" (jetson_clocks and nvpmodel as found at start), and rejects any other request with the
reason, pointing to the sysfs back end.
"""
from __future__ import annotations

from dyndnn_ros.hardware.sysfs_clocks import ClockRejected, ClockRequest, ClockState
from dyndnn_ros.platforms.description import PlatformDescription


class JtopClockControl:
    def __init__(self, platform: PlatformDescription, nvpmodel: str = ""):
        from jtop import jtop  # jetson-stats; raises JtopException when its service is not running

        self.platform = platform
        self.jetson = jtop()
        self.jetson.start()
        self.saved_jetson_clocks = bool(self.jetson.jetson_clocks)
        self.saved_nvpmodel = str(self.jetson.nvpmodel) if self.jetson.nvpmodel is not None else ""
        if nvpmodel:
            self.jetson.nvpmodel = nvpmodel

    def describe(self) -> dict[str, tuple[int, ...]]:
        clocks = self.platform.clocks
        found = {f"cpu/{c.name}": clocks.cpu_available_khz[-1:] for c in clocks.cpu_clusters}
        return {**found, "gpu": clocks.gpu_available_hz[-1:], "emc": clocks.emc_available_hz[-1:]}

    def _maxima(self) -> ClockRequest:
        clocks = self.platform.clocks
        return ClockRequest({c.name: clocks.cpu_available_khz[-1] for c in clocks.cpu_clusters},
                            clocks.gpu_available_hz[-1], clocks.emc_available_hz[-1])

    def resolve(self, request: ClockRequest) -> ClockRequest:
        top = self._maxima()
        requested = [
            (name, khz, top.cpu_khz.get(name)) for name, khz in request.cpu_khz.items() if khz
        ]
        requested += [("gpu", request.gpu_hz, top.gpu_hz)] if request.gpu_hz else []
        requested += [("emc", request.emc_hz, top.emc_hz)] if request.emc_hz else []
        below = [f"{name} {value}" for name, value, maximum in requested if value != maximum]
        if below:
            raise ClockRejected(
                "jtop can only run every clock at its maximum (jetson_clocks); "
                f"{', '.join(below)} "
                "needs per-clock control: use control:=sysfs"
            )
        return top

    def apply(self, request: ClockRequest) -> ClockState:
        resolved = self.resolve(request)
        self.jetson.jetson_clocks = True
        return ClockState(dict(resolved.cpu_khz), resolved.gpu_hz, resolved.emc_hz)

    def restore_originals(self) -> list[str]:
        self.jetson.jetson_clocks = self.saved_jetson_clocks
        if self.saved_nvpmodel:
            self.jetson.nvpmodel = self.saved_nvpmodel
        return []

    def save_originals(self) -> None:
        """The state is saved when jtop connects; nothing more to read."""

    def close(self) -> None:
        self.jetson.close()
