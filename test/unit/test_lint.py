# SPDX-License-Identifier: Apache-2.0
"""The lint `make test` enforces (ruff.toml): pyflakes and pycodestyle, lines <= 99 characters.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    pytest.importorskip("ruff", reason="ruff is not installed (it is in requirements.txt)")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "dyndnn_ros",
                             "test", "launch", "tools"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
