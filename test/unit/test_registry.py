# SPDX-License-Identifier: Apache-2.0
"""The one registry type: duplicates, unknown names and parameters, lazy factories, and no import
cycles anywhere in the package (registration is one-way)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dyndnn_ros.backends import BackendError, available_backends, create_backend
from dyndnn_ros.models import available_families
from dyndnn_ros.policies import PolicyError, create_policy, policy_names
from dyndnn_ros.registry import Registry, accepted_parameters

PACKAGE = Path(__file__).resolve().parents[2] / "dyndnn_ros"


class Base:
    def __init__(self, a: int = 1, *, b: int = 2) -> None:
        self.a, self.b = a, b


class Child(Base):
    def __init__(self, c: int = 3, **params) -> None:
        super().__init__(**params)
        self.c = c


class Buggy:
    def __init__(self, x: int = 0) -> None:
        raise TypeError("a bug inside the constructor")


def test_register_create_and_check_parameters():
    things: Registry[object] = Registry("thing")
    things.register("child", Child)
    assert things.create("child", a=5, c=7).a == 5
    with pytest.raises(ValueError, match=r"thing 'child': unknown parameters \['z'\]; it accepts"):
        things.create("child", z=1)
    with pytest.raises(ValueError, match=r"unknown thing 'nope'; known things: \['child'\]"):
        things.create("nope")
    things.register("child", Child)  # the same factory again is fine
    with pytest.raises(ValueError, match="registered twice"):
        things.register("child", Base)


def test_a_type_error_inside_a_constructor_is_not_reported_as_bad_parameters():
    things: Registry[object] = Registry("thing")
    things.register("buggy", Buggy)
    with pytest.raises(TypeError, match="a bug inside"):
        things.create("buggy", x=1)


def test_tags_filter_names_and_lazy_factories_import_on_use():
    things: Registry[object] = Registry("thing")
    things.register("path", "pathlib:PurePosixPath", evaluation_only=True)
    assert things.names() == ["path"] and things.names("evaluation_only") == []
    assert str(things.create("path")) == "."
    assert accepted_parameters(Child) == {"a", "b", "c"}
    assert "**" in accepted_parameters(lambda **kw: kw)


def test_the_package_registries():
    assert set(available_backends()) == {"simulation", "tensorrt", "torch"}
    assert {"groupconv", "ofa_mbv3"} <= set(available_families())
    assert "oracle" in policy_names() and "oracle" not in policy_names(runtime_only=True)
    with pytest.raises(PolicyError, match="unknown policy 'oracle'"):
        create_policy("oracle", runtime_only=True)
    with pytest.raises(PolicyError, match="unknown parameters"):
        create_policy("dvfs_only", headrom=0.1)
    with pytest.raises(BackendError, match="unknown parameters"):
        create_backend("simulation", modell="x")


def _module_imports(path: Path, deferred: bool = False) -> set[str]:
    """dyndnn_ros modules imported at module level, and with `deferred` inside functions too."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree) if deferred else tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("dyndnn_ros")}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _assert_acyclic(graph: dict[str, set[str]], what: str) -> None:
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [node, nxt] if nxt in trail else [node, nxt]
                pytest.fail(f"{what} cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_no_import_cycles():
    modules = _modules()
    graph = {
        m: {i for i in _module_imports(p) if i in modules and i != m} for m, p in modules.items()
    }
    _assert_acyclic(graph, "import")


def _package(module: str) -> str:
    """dyndnn_ros.hardware.detect -> dyndnn_ros.hardware; a top-level module is its own."""
    return ".".join(module.split(".")[:2])


def test_no_package_cycles():
    """Packages are layered, deferred imports included: e.g. hardware/ (the real board) and
    simulation/ (a simulated one) build on platforms/ (the platform model), never the reverse."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph.setdefault(_package(module), set()).update(
            _package(i)
            for i in _module_imports(path, deferred=True)
            if i in modules and _package(i) != _package(module)
        )
    _assert_acyclic(graph, "package import")
    for real in ("dyndnn_ros.hardware", "dyndnn_ros.platforms"):
        assert "dyndnn_ros.simulation" not in graph[real], f"{real} imports the simulation"
