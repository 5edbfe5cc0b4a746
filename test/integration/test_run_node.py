# SPDX-License-Identifier: Apache-2.0
"""run_node: a configuration error is one clear line; a bug in a callback keeps its traceback;
main_entry leaves with run_node's exit code and flushed output."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    from dyndnn_ros.nodes import common

    class Broken(common.DyndnnNode):
        def __init__(self):
            super().__init__("broken_node")
            if sys.argv[1] == "config":
                raise ValueError("sysfs_root '/nowhere' has no clock files")
            self.create_timer(0.05, self.tick)

        def tick(self):
            raise RuntimeError("a bug in a callback")

        def on_shutdown(self):
            print("on_shutdown ran")  # not flushed: main_entry must flush before it leaves

    common.main_entry(Broken)  # as every node executable does
""")


def run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "RCUTILS_COLORIZED_OUTPUT": "0"})


def test_configuration_error_is_one_line_without_traceback():
    result = run("config")
    assert result.returncode == 1
    assert "ValueError: sysfs_root '/nowhere' has no clock files" in result.stderr
    assert "Traceback" not in result.stderr


def test_callback_bug_keeps_its_traceback_and_shuts_down_cleanly():
    result = run("bug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "in tick" in result.stderr
    assert "RuntimeError: a bug in a callback" in result.stderr
    assert "on_shutdown ran" in result.stdout
