# SPDX-License-Identifier: Apache-2.0
"""Write requirements.txt, the full pinned lock, from the `pip freeze` of a venv built from
requirements-top.txt.

The ROS wheels also register their import names as distributions (`rclpy` beside `ros-rclpy`);
those cannot be installed from any index, so they are left out. `+cpu` local versions are dropped
(torch==2.13.0 resolves to the CPU wheel here).
"""
from __future__ import annotations

import sys
from pathlib import Path

HEADER = [
    "# Full pinned lock of the development/CI virtual environment, made from "
    "requirements-top.txt by `make lock`.",
    "# (ROS wheels also register their import names as distributions; those are not installable "
    "and left out.)",
]


def lock_lines(freeze: list[str]) -> list[str]:
    pins = [line.strip().split("+")[0] for line in freeze if "==" in line]
    names = {pin.split("==")[0].lower().replace("_", "-") for pin in pins}
    kept = [
        pin
        for pin in pins
        if pin.lower().startswith("ros-")
        or "ros-" + pin.split("==")[0].lower().replace("_", "-") not in names
    ]
    return sorted(kept, key=str.lower)


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(
        "\n".join(HEADER + lock_lines(sys.stdin.read().splitlines())) + "\n"
    )
