# SPDX-License-Identifier: Apache-2.0
"""The running system's one definition: how a node's parameters come from the file and arguments,
and that `ros2 launch` and `dyndnn up` offer the same arguments."""
from pathlib import Path

import pytest

from dyndnn_ros import system
from dyndnn_ros.paths import share_dir

FILE = {
    "/**": {"ros__parameters": {"platform": "xavier_nx", "threads": 1}},
    "resource_manager_node": {"ros__parameters": {"policy": "hierarchical",
                                                  "control_period_s": 0.5}},
    "dvfs_node": {"ros__parameters": {"sysfs_root": "/", "platform": "orin_nano"}},
}


def test_node_section_beats_wildcard_and_arguments_beat_both():
    assert system.node_parameters(FILE, "dvfs_node", {})["platform"] == "orin_nano"
    given = system.node_parameters(FILE, "dvfs_node", {"platform": "agx_orin", "sysfs_root": "/x"})
    assert given == {"platform": "agx_orin", "threads": 1, "sysfs_root": "/x"}


def test_empty_or_missing_argument_keeps_the_file_value():
    params = system.node_parameters(FILE, "resource_manager_node",
                                    {"policy": "", "platform": None})
    assert params["policy"] == "hierarchical" and params["platform"] == "xavier_nx"


def test_argument_reaches_only_the_nodes_that_own_it():
    params = system.node_parameters(FILE, "dvfs_node", {"policy": "subnet_only"})
    assert "policy" not in params


def test_namespaced_and_wildcard_node_sections_apply():
    file = {"/robot1/resource_manager_node": {"ros__parameters": {"policy": "static"}},
            "/**/dvfs_node": {"ros__parameters": {"watchdog_s": 2.0}}}
    assert system.node_parameters(file, "resource_manager_node", {}, "/robot1") == {
        "policy": "static"}
    assert system.node_parameters(file, "resource_manager_node", {}, "robot2") == {}
    assert system.node_parameters(file, "dvfs_node", {}, "robot2") == {"watchdog_s": 2.0}


def test_text_arguments_take_the_file_type():
    params = system.node_parameters(FILE, "resource_manager_node", {"control_period_s": "1"})
    assert params["control_period_s"] == 1.0 and isinstance(params["control_period_s"], float)
    with pytest.raises(system.SystemConfigError, match="control_period_s:='fast'"):
        system.node_parameters(FILE, "resource_manager_node", {"control_period_s": "fast"})


def test_unknown_argument_is_an_error():
    with pytest.raises(system.SystemConfigError, match="unknown argument"):
        system.node_parameters(FILE, "dvfs_node", {"sysfs": "/"})


def test_bad_parameter_file_is_an_error(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just a list\n")
    with pytest.raises(system.SystemConfigError, match="not a ROS 2 parameter file"):
        system.load_parameter_file(bad)
    with pytest.raises(system.SystemConfigError, match="cannot read"):
        system.load_parameter_file(tmp_path / "missing.yaml")


def test_every_argument_sets_parameters_of_known_nodes():
    shipped = system.load_parameter_file(share_dir() / "config" / "dyndnn.yaml")
    for argument in system.ARGUMENTS:
        for node, _ in argument.parameters:
            assert node in system.NODES
        assert system.default_of(shipped, argument) is not None, argument.name


def test_dyndnn_up_offers_every_argument():
    from dyndnn_ros.cli.main import build_parser

    up = build_parser().parse_args(["up"])
    for name in system.ARGUMENT_NAMES:
        assert hasattr(up, name), name


def test_launch_file_declares_every_argument():
    pytest.importorskip("launch", reason="launch is not installed")
    pytest.importorskip("launch_ros", reason="launch_ros is not installed")
    import importlib.util

    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location(
        "dyndnn_launch", share_dir() / "launch" / "dyndnn.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    declared = {entity.name for entity in module.generate_launch_description().entities
                if isinstance(entity, DeclareLaunchArgument)}
    assert declared == set(system.ARGUMENT_NAMES) | {"params_file", "namespace", "camera"}
