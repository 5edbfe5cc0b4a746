# SPDX-License-Identifier: Apache-2.0
"""The package's own files agree with each other (what colcon and ctest see)."""
import re
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def test_every_launch_test_is_registered_for_colcon_test():
    cmake = (SOURCE_ROOT / "CMakeLists.txt").read_text()
    registered = set(re.findall(r"test/launch/(test_\w+\.py)", cmake))
    present = {p.name for p in (SOURCE_ROOT / "test" / "launch").glob("test_*.py")}
    assert registered == present


def test_every_python_file_carries_the_licence_identifier():
    """package.xml and LICENSE say Apache-2.0; each source file says so too (SPDX)."""
    sources = [p for folder in ("dyndnn_ros", "test", "launch", "tools") for p in
               (SOURCE_ROOT / folder).rglob("*.py")] + sorted((SOURCE_ROOT / "scripts").iterdir())
    missing = [str(p.relative_to(SOURCE_ROOT)) for p in sources if p.is_file()
               and "SPDX-License-Identifier: Apache-2.0" not in p.read_text()[:300]]
    assert not missing, missing
    assert "Apache License" in (SOURCE_ROOT / "LICENSE").read_text()
    assert "<license>Apache-2.0</license>" in (SOURCE_ROOT / "package.xml").read_text()
