# SPDX-License-Identifier: Apache-2.0
"""Point the ROS wheels' exported CMake targets at this interpreter's Python and numpy headers.

The PyPI ROS 2 wheels are built on a manylinux image and their `*__rosidl_generator_pyExport.cmake`
files name that image's include directories (/opt/python/cp311-cp311/...). CMake refuses imported
targets with missing include paths, so building our interfaces against std_msgs/builtin_interfaces
fails until those paths are replaced with the ones of the Python running this script (the venv's).
Idempotent: run after every install of the wheels.
"""
from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PREFIX = re.compile(r"/opt/python/cp3\d+-cp3\d+")


def main() -> int:
    share = Path(sys.prefix) / "share"
    python_include = sysconfig.get_paths()["include"]
    replacements = {
        "include/python3": lambda _: python_include,
        "numpy": lambda _: numpy.get_include(),
    }
    fixed = 0
    for export in share.glob("*/cmake/*Export.cmake"):
        text = export.read_text()
        if not BUILD_PREFIX.search(text):
            continue

        def replace(match: re.Match[str]) -> str:
            path = match.group(0)
            for marker, new in replacements.items():
                if marker in path:
                    return new(path)
            return path

        export.write_text(re.sub(r"/opt/python/cp3\d+-cp3\d+/[^\";]*", replace, text))
        fixed += 1
    print(f"fixed build-machine include paths in {fixed} CMake export files under {share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
