"""The package's own files agree with each other (what colcon and ctest see)."""
import re
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def test_every_launch_test_is_registered_for_colcon_test():
    cmake = (SOURCE_ROOT / "CMakeLists.txt").read_text()
    registered = set(re.findall(r"test/launch/(test_\w+\.py)", cmake))
    present = {p.name for p in (SOURCE_ROOT / "test" / "launch").glob("test_*.py")}
    assert registered == present
