# SPDX-License-Identifier: Apache-2.0
"""The one resolver for configuration names and paths (config/<kind>/<name>.yaml)."""
from __future__ import annotations

from pathlib import Path

import pytest

from dyndnn_ros.evaluation.scenario import ScenarioError, load_scenario
from dyndnn_ros.models.registry import ModelConfigError, load_model_config
from dyndnn_ros.paths import (
    ConfigNotFoundError,
    config_dir,
    config_path,
    known_configs,
    resolve_config,
)
from dyndnn_ros.platforms.description import PlatformError, load_platform


def test_a_name_is_a_shipped_file() -> None:
    assert resolve_config("platforms", "xavier_nx", "board") == (
        config_dir() / "platforms" / "xavier_nx.yaml"
    )
    assert "xavier_nx" in known_configs("platforms")
    assert "b_two_models" in known_configs("scenarios")


def test_a_path_is_taken_as_given(tmp_path: Path) -> None:
    mine = tmp_path / "xavier_nx.yaml"
    mine.write_text("name: mine\n")
    assert resolve_config("platforms", mine, "board") == mine
    assert resolve_config("platforms", str(mine), "board") == mine


def test_a_relative_file_name_falls_back_to_the_shipped_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shipped = config_dir() / "profiles" / "dynamic_ofa_xavier_nx_gpu.yaml"
    assert config_path("profiles", "dynamic_ofa_xavier_nx_gpu.yaml") == shipped
    (tmp_path / "dynamic_ofa_xavier_nx_gpu.yaml").write_text("{}\n")
    # a file where the user stands wins over the shipped one of the same name
    assert config_path("profiles", "dynamic_ofa_xavier_nx_gpu.yaml") == Path(
        "dynamic_ofa_xavier_nx_gpu.yaml"
    )


def test_a_missing_name_says_where_it_looked_and_lists_the_known_names() -> None:
    with pytest.raises(ConfigNotFoundError) as err:
        resolve_config("scenarios", "b_two_model", "scenario")
    message = str(err.value)
    assert "no scenario 'b_two_model'" in message
    assert str(config_dir() / "scenarios" / "b_two_model.yaml") in message
    assert "'b_two_models'" in message


def test_a_missing_path_is_not_looked_up_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigNotFoundError, match="looked at .*nowhere.yaml"):
        resolve_config("platforms", tmp_path / "nowhere.yaml", "board")


@pytest.mark.parametrize(
    "load, error, kind",
    [
        (load_scenario, ScenarioError, "scenarios"),
        (load_model_config, ModelConfigError, "models"),
        (load_platform, PlatformError, "platforms"),
    ],
)
def test_every_loader_raises_its_own_error_with_the_known_names(load, error, kind) -> None:
    with pytest.raises(error) as err:
        load("no_such_thing")
    for name in known_configs(kind):
        assert repr(name) in str(err.value)
