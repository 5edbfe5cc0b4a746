# SPDX-License-Identifier: Apache-2.0
"""The package's own files agree with each other (what colcon and ctest see)."""
import re
from pathlib import Path

import pytest

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


def test_shipped_files_cite_public_sources_not_this_development_environment():
    """Sources, configs, docs and committed logs cite papers and vendors' docs, never the notes or
    the checkout paths of the machine the package was developed on."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=SOURCE_ROOT, capture_output=True,
                             text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout: the shipped files cannot be listed")
    banned = re.compile(r"shared/reference|reference/(jetson|dynamic-dnn)\.md|\(jetson\.md\)|"
                        r"/work/(main|wt|shared)")
    found = []
    for name in tracked:
        path = SOURCE_ROOT / name
        if name == "test/unit/test_package_files.py" or path.suffix in (".pt", ".png", ".pdf"):
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        found += [f"{name}: {m.group(0)}" for m in banned.finditer(text)]
    assert not found, found


# import name -> rosdep key; the optional back ends' packages have no key (pip, or JetPack)
ROSDEP_KEYS = {
    "numpy": "python3-numpy", "yaml": "python3-yaml", "psutil": "python3-psutil",
    "matplotlib": "python3-matplotlib", "tqdm": "python3-tqdm", "rich": "python3-rich",
    "sklearn": "python3-sklearn", "scipy": "python3-scipy", "torch": "python3-torch",
}
OPTIONAL = {"onnx", "onnxruntime", "onnxscript", "tensorrt", "jtop", "pycuda"}


def test_package_xml_declares_every_package_the_nodes_import():
    """rosdep install must leave a complete install: every third-party import of dyndnn_ros is an
    exec_depend of package.xml (ROS packages by name, Python ones by their rosdep key)."""
    import ast
    import sys

    declared = set(re.findall(r"<(?:exec_)?depend>([\w-]+)</", (SOURCE_ROOT / "package.xml")
                              .read_text()))
    imported = set()
    for path in (SOURCE_ROOT / "dyndnn_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"dyndnn_ros"} - OPTIONAL
    missing = sorted(m for m in third_party if ROSDEP_KEYS.get(m, m) not in declared)
    assert not missing, missing
