from __future__ import annotations

import pytest

from imaginarium.config import check_number, config_from_dict
from imaginarium.errors import ImaginariumError
from imaginarium.models.ensemble import PRESETS as ENSEMBLE_PRESETS
from imaginarium.models.ensemble import EnsembleConfig, ensemble_config
from imaginarium.models.rssm import PRESETS as RSSM_PRESETS
from imaginarium.models.rssm import rssm_config
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


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grad_clip": float("nan")}, "'grad_clip' must be a number > 0, got nan"),
        ({"grad_clip": 0.0}, "'grad_clip' must be a number > 0, got 0.0"),
        ({"validation_fraction": "nan"}, r"'validation_fraction' must be a finite number in \(0, 1\)"),
        ({"seed": -1}, "'seed' must be an integer ≥ 0, got -1"),
        ({"eval_batches": 0}, "'eval_batches' must be a positive integer, got 0"),
    ],
)
def test_non_finite_or_out_of_range_training_settings_are_refused_by_name(values: dict, message: str) -> None:
    with pytest.raises(ImaginariumError, match=f"train config: {message}"):
        config_from_dict(TrainConfig, values)


def test_a_fractional_step_count_is_refused_when_built_directly() -> None:
    with pytest.raises(ImaginariumError, match="'steps' must be a positive integer, got 2.5"):
        TrainConfig(steps=2.5)  # type: ignore[arg-type]


def test_nan_written_as_a_string_is_refused_by_name() -> None:
    with pytest.raises(ImaginariumError, match="'learning_rate' must be a finite number > 0, got nan"):
        config_from_dict(EnsembleConfig, {"learning_rate": "nan"})


def test_every_default_and_preset_passes_its_own_checks() -> None:
    TrainConfig()
    for preset in ENSEMBLE_PRESETS:
        ensemble_config(preset)
    for preset in RSSM_PRESETS:
        rssm_config(preset)
    rssm_config("xs", image_size=64)


@pytest.mark.parametrize(
    ("value", "bounds", "expected"),
    [
        (float("nan"), {"at_least": 0}, "x must be a finite number ≥ 0, got nan"),
        (float("inf"), {"above": 0}, "x must be a finite number > 0, got inf"),
        (True, {"at_least": 1, "integer": True}, "x must be a positive integer, got True"),
        (1.0, {"at_least": 0, "below": 1}, r"x must be a finite number in \[0, 1\), got 1.0"),
        ("fast", {}, "x must be a finite number, got 'fast'"),
    ],
)
def test_check_number_names_the_option_the_value_and_the_range(
    value: object, bounds: dict, expected: str
) -> None:
    with pytest.raises(ImaginariumError, match=expected):
        check_number(value, "x", **bounds)
    check_number(float("inf"), "x", above=0, allow_inf=True)
