# SPDX-License-Identifier: Apache-2.0
"""Everything the nodes import must run on JetPack 5's Python 3.8 (NVIDIA's torch wheels for it
are 3.8-only). No 3.8 interpreter is here, so: vermin for syntax and standard-library use, and an
AST check for what vermin does not see without evaluating every annotation: `dict[str, Any]` or
`X | Y` evaluated at run time (type aliases, casts, default factories, base classes)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dyndnn_ros"
SCRIPTS = PACKAGE.parent / "scripts"  # the node executables
GENERIC_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "type"}


def test_vermin_finds_nothing_above_python_3_8():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    if not Path(vermin).exists():
        pytest.skip("vermin is not installed in this environment")
    result = subprocess.run(
        [
            vermin,
            "-t=3.8-",
            "--no-tips",
            "--violations",
            "--no-parse-comments",
            str(PACKAGE),
            *map(str, sorted(SCRIPTS.iterdir())),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _annotation_nodes(tree: ast.AST) -> set:
    """ids of every node inside an annotation (not evaluated under the __future__ import)."""
    inside = set()
    for node in ast.walk(tree):
        roots = []
        if isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None
        ):
            roots.append(node.returns)
        for root in roots:
            inside.update(id(n) for n in ast.walk(root))
    return inside


def runtime_generics(source: str) -> list:
    """(line, text) of subscripted builtins and `|` between types evaluated at run time."""
    tree = ast.parse(source)
    postponed = any(
        isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    skip = _annotation_nodes(tree) if postponed else set()
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id in GENERIC_BUILTINS
        ):
            found.append((node.lineno, ast.get_source_segment(source, node)))
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.BitOr)
            and any(
                isinstance(side, ast.Constant)
                and side.value is None
                or isinstance(side, ast.Name)
                and side.id in GENERIC_BUILTINS | {"str", "int", "float", "bool"}
                for side in (node.left, node.right)
            )
        ):
            found.append((node.lineno, ast.get_source_segment(source, node)))
    return found


def test_the_checker_sees_runtime_generics_and_ignores_postponed_annotations():
    assert (
        runtime_generics(
            "from __future__ import annotations\nX: dict[str, int] = {}\n"
            "def f(a: int | None): pass"
        )
        == []
    )
    assert [
        t for _, t in runtime_generics("from __future__ import annotations\nA = dict[str, int]\n")
    ] == ["dict[str, int]"]
    assert [t for _, t in runtime_generics("def f(a: list[int]): pass")] == ["list[int]"]
    assert [t for _, t in runtime_generics("B = int | None")] == ["int | None"]


def test_no_generic_evaluated_at_run_time_in_the_package():
    problems = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in runtime_generics(path.read_text())
    ]
    assert problems == [], "evaluated at import on Python 3.8:\n" + "\n".join(problems)
