from __future__ import annotations

import os
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from imaginarium.dataset import Dataset, load_dataset
from imaginarium.errors import DatasetError, ImaginariumError, ModelError, TrainingError
from imaginarium.models import EnsembleModel, build_model, load_world_model
from imaginarium.models.checkpoint import WEIGHTS_FILE, read_card
from imaginarium.models.train import train_world_model

FAMILIES = ["ensemble", "rssm"]
TINY = {"ensemble": {"hidden": 32}, "rssm": {"sequence_length": 8, "deter": 32, "hidden": 32}}


def _train(dataset: Dataset, out: Path, family: str, steps: int = 40, **kwargs) -> object:
    return train_world_model(
        dataset,
        out,
        family=family,
        preset="xs",
        model_overrides=TINY[family],
        config={"steps": steps, "eval_every": 10, "patience": 100, **kwargs.pop("config", {})},
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module", params=FAMILIES)
def trained(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pendulum_dataset: Dataset
):
    """A tiny model of each family trained for a few seconds on real Pendulum data."""
    return _train(pendulum_dataset, tmp_path_factory.mktemp(request.param) / "model", request.param, steps=60)


def test_validation_loss_falls(trained) -> None:
    curve = np.array(trained.card["training"]["curve"])
    assert curve[-1, 2] < curve[0, 2] and curve[:, 1].min() < curve[0, 1]


def test_predictions_have_the_shapes_and_ranges_of_the_task(trained, pendulum_dataset: Dataset) -> None:
    model = trained.model
    observations = torch.as_tensor(pendulum_dataset.observations[:5])
    actions = torch.as_tensor(pendulum_dataset.actions[:5])
    out = model.step(model.initial_state(observations), actions)
    for value in (out.reward, out.success_prob, out.continue_prob, out.uncertainty):
        assert value.shape == (5,) and torch.isfinite(value).all()
    assert ((out.success_prob >= 0) & (out.success_prob <= 1)).all()
    assert ((out.continue_prob >= 0) & (out.continue_prob <= 1)).all()
    assert model.decode(out.state).shape == (5, 3) and model.features(out.state).shape[0] == 5
    history = model.observe(
        torch.as_tensor(pendulum_dataset.observations[None, :6]),
        torch.as_tensor(pendulum_dataset.actions[None, :5]),
    )
    assert model.decode(history).shape == (1, 3)


def test_saved_model_reloads_to_identical_outputs(trained, pendulum_dataset: Dataset) -> None:
    reloaded = load_world_model(trained.directory, task="pendulum")
    observations = torch.as_tensor(pendulum_dataset.observations[:16])
    actions = torch.as_tensor(pendulum_dataset.actions[:16])
    with torch.no_grad():
        first = trained.model.step(trained.model.initial_state(observations), actions, sample=False)
        second = reloaded.step(reloaded.initial_state(observations), actions, sample=False)
    assert torch.equal(first.reward, second.reward) and torch.equal(first.continue_prob, second.continue_prob)
    assert torch.equal(trained.model.decode(first.state), reloaded.decode(second.state))


def test_model_card_describes_the_model(trained, pendulum_dataset: Dataset) -> None:
    card = read_card(trained.directory)
    assert card["task"] == "pendulum" and card["env_id"] == "Pendulum-v1" and card["status"] == "trained"
    assert card["dataset"]["fingerprint"] == pendulum_dataset.fingerprint()
    assert card["family"] in FAMILIES and card["preset"] == "xs"
    assert set(card["calibration"]) == {"success_temperature", "continue_temperature"}
    assert (trained.directory / "tb").is_dir()


@pytest.mark.parametrize("family", FAMILIES)
def test_discrete_actions_train_and_step(family: str, tmp_path: Path, cartpole_dataset_path: Path) -> None:
    dataset = load_dataset(cartpole_dataset_path)
    model = _train(dataset, tmp_path / "m", family, steps=10, config={"validation_fraction": 0.25}).model
    out = model.step(model.initial_state(torch.as_tensor(dataset.observations[:3])), torch.tensor([0, 1, 1]))
    assert model.decode(out.state).shape == (3, 4)


def test_resuming_gives_the_same_model_as_one_uninterrupted_run(
    tmp_path: Path, pendulum_dataset: Dataset
) -> None:
    straight = _train(pendulum_dataset, tmp_path / "straight", "ensemble", steps=40)
    _train(pendulum_dataset, tmp_path / "resumed", "ensemble", steps=20)
    resumed = _train(pendulum_dataset, tmp_path / "resumed", "ensemble", steps=40, resume=True)
    assert resumed.card["training"]["steps_done"] == 40
    assert len(resumed.card["training"]["curve"]) == 4
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_training_into_an_existing_model_needs_resume_or_overwrite(
    tmp_path: Path, pendulum_dataset: Dataset
) -> None:
    _train(pendulum_dataset, tmp_path / "m", "ensemble", steps=10)
    with pytest.raises(ImaginariumError, match="already holds a model"):
        _train(pendulum_dataset, tmp_path / "m", "ensemble", steps=10)
    _train(pendulum_dataset, tmp_path / "m", "ensemble", steps=10, overwrite=True)


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, pendulum_dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_loss = EnsembleModel.loss
    calls = {"n": 0}  # 10 steps + 1 validation batch per check: call 26 is step 24

    def failing_loss(self, batch):
        calls["n"] += 1
        loss, parts = real_loss(self, batch)
        return (loss * float("nan") if calls["n"] > 25 else loss), parts

    monkeypatch.setattr(EnsembleModel, "loss", failing_loss)
    with pytest.raises(TrainingError, match="non-finite at step 24.*last good checkpoint \\(step 20\\)"):
        _train(
            pendulum_dataset,
            tmp_path / "m",
            "ensemble",
            steps=40,
            config={"eval_every": 10, "eval_batches": 1},
        )
    monkeypatch.undo()
    kept = load_world_model(tmp_path / "m")
    assert read_card(tmp_path / "m")["training"]["best_step"] == 20
    assert all(torch.isfinite(p).all() for p in kept.parameters())


def test_a_model_of_another_task_is_refused(trained) -> None:
    with pytest.raises(ModelError, match="trained on 'pendulum'.*not on 'cartpole'"):
        load_world_model(trained.directory, task="cartpole")


def _copy_model(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("tb"))
    return destination


def test_a_corrupted_checkpoint_is_refused(trained, tmp_path: Path) -> None:
    copy = _copy_model(trained.directory, tmp_path / "copy")
    weights = copy / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(ModelError, match="corrupted or truncated"):
        load_world_model(copy)


class _RunsCode:
    """An object whose unpickling would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(trained, tmp_path: Path) -> None:
    copy = _copy_model(trained.directory, tmp_path / "copy")
    marker = tmp_path / "pwned"
    torch.save({"state_dict": _RunsCode(marker)}, copy / WEIGHTS_FILE)
    with pytest.raises(ModelError, match="objects other than tensors"):
        load_world_model(copy)
    assert not marker.exists()


def test_a_dataset_too_small_for_batch_and_sequence_is_refused(
    tmp_path: Path, pendulum_dataset: Dataset
) -> None:
    with pytest.raises(DatasetError, match="no window of length 80"):
        train_world_model(
            pendulum_dataset,
            tmp_path / "m",
            family="rssm",
            preset="xs",
            model_overrides={"sequence_length": 80},
            progress=False,
        )
    with pytest.raises(DatasetError, match="fewer than batch_size"):
        train_world_model(
            pendulum_dataset.subset([0, 1, 2]),
            tmp_path / "m2",
            family="ensemble",
            preset="xs",
            progress=False,
        )


def test_unknown_config_keys_are_refused_by_name() -> None:
    space = gym.spaces.Box(-1, 1, (3,))
    with pytest.raises(ImaginariumError, match="unknown key 'hiden'"):
        build_model("ensemble", space, gym.spaces.Box(-1, 1, (1,)), overrides={"hiden": 3})
    with pytest.raises(ImaginariumError, match="unknown model family 'gan'"):
        build_model("gan", space, gym.spaces.Box(-1, 1, (1,)))
    with pytest.raises(ImaginariumError, match="unknown rssm preset 'xl'"):
        build_model("rssm", space, gym.spaces.Box(-1, 1, (1,)), preset="xl")


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("family", "option", "value"),
    [
        ("ensemble", "learning_rate", -1e-3),
        ("ensemble", "learning_rate", 0.0),
        ("ensemble", "learning_rate", NAN),
        ("ensemble", "learning_rate", INF),
        ("ensemble", "weight_decay", -1e-5),
        ("ensemble", "weight_decay", NAN),
        ("ensemble", "min_logvar", 1.0),
        ("ensemble", "max_logvar", NAN),
        ("ensemble", "elites", 9),
        ("ensemble", "batch_size", 0),
        ("ensemble", "members", 0),
        ("rssm", "learning_rate", -3e-4),
        ("rssm", "weight_decay", INF),
        ("rssm", "unimix", 1.0),
        ("rssm", "free_nats", NAN),
        ("rssm", "reward_bins", 1),
        ("rssm", "sequence_length", 0),
    ],
)
def test_meaningless_model_settings_are_refused_by_name(family: str, option: str, value: float) -> None:
    space = gym.spaces.Box(-1, 1, (3,))
    with pytest.raises(ImaginariumError, match=f"{family} config: '{option}' must be"):
        build_model(family, space, gym.spaces.Box(-1, 1, (1,)), overrides={option: value})


def test_a_meaningless_setting_is_refused_before_the_model_it_would_overwrite_is_touched(
    pendulum_model: Path, pendulum_dataset: Dataset, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(pendulum_model, copy)
    with pytest.raises(ImaginariumError, match="'learning_rate' must be a finite number > 0, got -0.001"):
        train_world_model(
            pendulum_dataset, copy, model_overrides={"learning_rate": -1e-3}, overwrite=True, progress=False
        )
    with pytest.raises(ImaginariumError, match="train config: 'grad_clip' must be"):
        train_world_model(pendulum_dataset, copy, config={"grad_clip": NAN}, overwrite=True, progress=False)
    assert (copy / WEIGHTS_FILE).is_file()
    load_world_model(copy)


@pytest.fixture(scope="module")
def suite_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four short random episodes of every suite task."""
    from imaginarium.collect import collect
    from imaginarium.envs.suite import SUITE, get_task

    folder = tmp_path_factory.mktemp("suite")
    return {
        name: collect(get_task(name, max_episode_steps=20), folder / name, episodes=4, progress=False).path
        for name in SUITE
    }


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "task", ["cartpole", "pendulum", "mountaincar", "reacher", "pusher", "hopper", "halfcheetah"]
)
def test_every_family_trains_and_steps_on_every_suite_task(
    family: str, task: str, suite_datasets: dict[str, Path], tmp_path: Path
) -> None:
    overrides = {**TINY[family], "batch_size": 8, **({"sequence_length": 8} if family == "rssm" else {})}
    result = train_world_model(
        suite_datasets[task],
        tmp_path / "m",
        family=family,
        preset="xs",
        model_overrides=overrides,
        config={"steps": 4, "eval_every": 2, "validation_fraction": 0.25},
        progress=False,
    )
    model = load_world_model(result.directory, task=task)
    dataset = load_dataset(suite_datasets[task])
    out = model.step(
        model.initial_state(torch.as_tensor(dataset.observations[:2])), torch.as_tensor(dataset.actions[:2])
    )
    assert model.decode(out.state).shape == (2, *dataset.observation_space.shape)
    assert torch.isfinite(model.decode(out.state)).all()


def test_resume_refuses_a_missing_state_and_another_split(tmp_path: Path, pendulum_dataset: Dataset) -> None:
    with pytest.raises(ImaginariumError, match="nothing to resume"):
        _train(pendulum_dataset, tmp_path / "empty", "ensemble", steps=10, resume=True)
    _train(pendulum_dataset, tmp_path / "m", "ensemble", steps=10)
    with pytest.raises(ModelError, match="its split differs"):
        _train(pendulum_dataset, tmp_path / "m", "ensemble", steps=20, resume=True, config={"seed": 1})


@pytest.mark.parametrize("uncertainty", [False, True])
def test_tiled_batches_draw_for_each_block_what_one_block_draws_alone(
    trained, pendulum_dataset: Dataset, uncertainty: bool
) -> None:
    model = load_world_model(trained.directory)
    observations = torch.as_tensor(pendulum_dataset.observations[:13])
    actions = torch.rand(13, 1) * 4 - 2
    with torch.inference_mode():
        states = [model.initial_state(observations)]
        if model.rollout_members > 1:  # pinned samples (each member's rollouts) as well as drawn ones
            states.append(model.pin_members(states[0], torch.arange(13) % model.rollout_members))
        for state in states:
            alone = model.step(
                state, actions, uncertainty=uncertainty, generator=torch.Generator().manual_seed(3)
            )
            tiled_state = {key: value.repeat(3, *[1] * (value.dim() - 1)) for key, value in state.items()}
            tiled = model.step(
                tiled_state,
                actions.repeat(3, 1),
                uncertainty=uncertainty,
                generator=torch.Generator().manual_seed(3),
                tiles=3,
            )
            for block in range(3):
                rows = slice(13 * block, 13 * (block + 1))
                assert torch.allclose(
                    model.features(tiled.state)[rows], model.features(alone.state), atol=1e-6
                )
                assert torch.allclose(tiled.reward[rows], alone.reward, atol=1e-6)
        with pytest.raises(ImaginariumError, match="cannot be split into 2 equal tiles"):
            model.step(states[0], actions, uncertainty=False, tiles=2)


def test_open_loop_selection_picks_the_weights_and_stops_training_by_the_compounded_error(
    pendulum_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imaginarium.models import train

    scores = iter([5.0, 1.0, 2.0, 3.0, 4.0, 0.5])  # the validation loss falls throughout
    monkeypatch.setattr(train, "_open_loop_error", lambda model, validation, config: next(scores))
    config = {"selection": "open_loop", "patience": 3}
    result = _train(pendulum_dataset, tmp_path / "model", "ensemble", steps=60, config=config)
    training = result.card["training"]
    assert (training["best_step"], training["best_validation_loss"]) == (20, 1.0)
    assert (
        result.stopped_early
        and result.steps == 50
        and result.card["train_config"]["selection"] == "open_loop"
    )
    with pytest.raises(ImaginariumError, match="'selection' must be one of loss, open_loop"):
        train.TrainConfig(selection="closed_loop")


def test_the_open_loop_error_is_the_mean_normalised_error_over_the_horizon(trained, pendulum_dataset) -> None:
    from imaginarium.models.evaluate import open_loop_errors
    from imaginarium.models.train import SELECTION_CONTEXT, SELECTION_STARTS, TrainConfig, _open_loop_error

    config = TrainConfig(selection="open_loop", selection_horizon=4, seed=1)
    nmse = open_loop_errors(trained.model, pendulum_dataset, 4, SELECTION_STARTS, SELECTION_CONTEXT, 3)[
        "nmse"
    ]
    assert _open_loop_error(trained.model, pendulum_dataset, config) == pytest.approx(np.mean(nmse))
    assert nmse[0] < nmse[-1]  # errors compound with the horizon
