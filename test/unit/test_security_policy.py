# SPDX-License-Identifier: Apache-2.0
"""The shipped SROS2 policy: well-formed against the SROS2 policy schema's structure, naming every
topic each node publishes or subscribes (read from the node sources and nodes/common.py), and
giving the clock command and the applied-clocks report to one enclave each.

The Fast DDS build in the PyPI wheels has no security plug-ins, so enforcement itself cannot be
tried here; lxml/xmlschema are not in the environment, so the schema's rules (sros2
policy/schemas/policy.xsd, version 0.2.0) are checked element by element below.
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "config" / "security" / "dyndnn.policy.xml"
NODES = ROOT / "dyndnn_ros" / "nodes"
RULES = {"ALLOW", "DENY"}
LISTS = {
    "topics": ("topic", {"publish", "subscribe"}),
    "services": ("service", {"reply", "request"}),
    "actions": ("action", {"call", "execute"}),
}


def topic_constants() -> dict[str, str]:
    """NAME -> topic of every *_TOPIC constant in nodes/common.py."""
    tree = ast.parse((NODES / "common.py").read_text())
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id.endswith("_TOPIC")
        and isinstance(node.value, ast.Constant)
    }


def node_endpoints() -> dict[str, set[tuple[str, str]]]:
    """node executable -> {(publish|subscribe, topic)}, from its create_publisher/subscription"""
    constants = topic_constants()
    found: dict[str, set[tuple[str, str]]] = {}
    for source in sorted(NODES.glob("*_node.py")):
        uses = set()
        for call in ast.walk(ast.parse(source.read_text())):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            kind = {"create_publisher": "publish", "create_subscription": "subscribe"}.get(
                call.func.attr
            )
            if kind is None:
                continue
            topic = call.args[1]
            assert isinstance(topic, ast.Attribute) and topic.attr in constants, (
                f"{source.name}: topic {ast.dump(topic)} is not a constant of nodes/common.py"
            )
            uses.add((kind, constants[topic.attr]))
        found[source.stem] = uses
    return found


def check_against_schema(policy: ET.Element) -> None:
    assert policy.tag == "policy" and policy.get("version") == "0.2.0"
    assert [child.tag for child in policy] == ["enclaves"]
    enclaves = list(policy[0])
    assert enclaves and all(e.tag == "enclave" and e.get("path") for e in enclaves)
    for enclave in enclaves:
        assert list(enclave) and all(p.tag == "profiles" for p in enclave)
        for profiles in enclave:
            tags = [p.tag for p in profiles]
            assert tags and tags[0] == "profile" and set(tags) <= {"profile", "metadata"}
            assert tags.count("metadata") <= 1 and tags[-1] in ("profile", "metadata")
            for profile in profiles.findall("profile"):
                assert profile.get("ns") is not None and profile.get("node"), profile.attrib
                for rules in profile:
                    item, qualifiers = LISTS[rules.tag]
                    assert set(rules.attrib) <= qualifiers and rules.attrib, rules.attrib
                    assert set(rules.attrib.values()) <= RULES
                    assert list(rules) and all(
                        e.tag == item and (e.text or "").strip() for e in rules
                    )


def allowed(policy: ET.Element) -> dict[str, set[tuple[str, str]]]:
    """enclave path -> {(publish|subscribe, topic)} it allows."""
    table: dict[str, set[tuple[str, str]]] = {}
    for enclave in policy.iter("enclave"):
        rules = table.setdefault(enclave.get("path"), set())
        for topics in enclave.iter("topics"):
            for kind, rule in topics.attrib.items():
                if rule == "ALLOW":
                    rules |= {(kind, t.text.strip()) for t in topics}
    return table


@pytest.fixture(scope="module")
def policy() -> ET.Element:
    return ET.parse(POLICY).getroot()


def test_the_policy_has_the_structure_of_an_sros2_policy(policy):
    check_against_schema(policy)


def test_each_node_enclave_allows_exactly_what_the_node_uses(policy):
    table = allowed(policy)
    endpoints = node_endpoints()
    assert set(endpoints) == {
        "camera_node",
        "inference_node",
        "resource_manager_node",
        "dvfs_node",
        "hardware_monitor_node",
    }
    ros_basics = {
        ("publish", "rosout"),
        ("publish", "parameter_events"),
        ("subscribe", "parameter_events"),
    }
    for node, uses in endpoints.items():
        assert table[f"/dyndnn/{node}"] - ros_basics == uses, node


def test_every_topic_of_the_nodes_is_named_in_the_policy(policy):
    named = {t.text.strip() for t in policy.iter("topic")}
    assert set(topic_constants().values()) <= named


@pytest.mark.parametrize(
    "topic, only",
    [
        ("dyndnn/dvfs/command", "/dyndnn/resource_manager_node"),
        ("dyndnn/dvfs/applied", "/dyndnn/dvfs_node"),
    ],
)
def test_clock_commands_and_reports_have_one_publisher_enclave(policy, topic, only):
    publishers = [path for path, rules in allowed(policy).items() if ("publish", topic) in rules]
    assert publishers == [only]


def test_the_schema_check_catches_a_broken_policy(policy):
    broken = ET.fromstring(ET.tostring(policy))
    broken.find(".//topics").set("publish", "MAYBE")
    with pytest.raises(AssertionError):
        check_against_schema(broken)
