from __future__ import annotations

import pytest

from imaginarium.config import config_from_dict
from imaginarium.errors import ImaginariumError
from imaginarium.models.ensemble import EnsembleConfig
from imaginarium.models.train import TrainConfig


def test_yaml_style_scientific_strings_are_read_as_numbers() -> None:
    config = config_from_dict(EnsembleConfig, {"learning_rate": "1e-3", "hidden": 64, "weight_decay": 0})
    assert config.learning_rate == 0.001 and isinstance(config.weight_decay, float)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"hiden": 3}, "unknown key 'hiden'"),
        ({"hidden": True}, "'hidden' must be int"),
        ({"hidden": "wide"}, "'hidden' must be int"),
        ({"learning_rate": "fast"}, "'learning_rate' must be float"),
    ],
)
def test_bad_values_are_refused_by_key(values: dict, message: str) -> None:
    with pytest.raises(ImaginariumError, match=message):
        config_from_dict(EnsembleConfig, values)


def test_a_section_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ImaginariumError, match="must be a mapping"):
        config_from_dict(EnsembleConfig, ["hidden", 3])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "values", [{"eval_every": 0}, {"steps": -1}, {"patience": 0}, {"validation_fraction": 1.0}]
)
def test_impossible_training_settings_are_refused(values: dict) -> None:
    with pytest.raises(ImaginariumError, match="train config"):
        config_from_dict(TrainConfig, values)
