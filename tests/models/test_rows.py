"""The compiled step of a few rows is the ensemble's own step: given the same elites and noise it
predicts what the model's torch layers predict (continuous and discrete actions, angles on their
circle, bounded observations, both heads with a fitted temperature, with and without the elites'
spread), follows the model when its tensors change in place, and says which rows left the limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imaginarium.dataset import Dataset
from imaginarium.models import build_model
from imaginarium.models.base import spread
from imaginarium.models.rows import RowStepper, row_stepper
from imaginarium.models.starts import DataLimits


def _model(dataset: Dataset, preset: str = "xs", seed: int = 0):
    """A fresh ensemble whose every part does something: fitted normalisers, both heads running with
    temperatures other than 1, and weights large enough that the heads' probabilities vary."""
    torch.manual_seed(seed)
    model = build_model("ensemble", dataset.observation_space, dataset.action_space, preset)
    model.fit_normalizers(dataset)
    with torch.no_grad():
        for head, temperature in ((model.success_head, 0.4), (model.continue_head, -0.3)):
            head.fit_outcomes(np.array([0.0, 1.0]))
            head.log_temperature.fill_(temperature)
            for parameter in head.parameters():
                parameter.mul_(3.0)
        model.max_logvar.fill_(-1.0)
    return model.eval()


def _reference(model, observations: np.ndarray, actions: np.ndarray, members: np.ndarray, noise: np.ndarray):
    """The model's own torch layers stepped with the given elites (indices into them) and noise."""
    with torch.no_grad():
        current = torch.as_tensor(observations)
        inputs = model.input_norm(torch.cat([current, model.encode_actions(torch.as_tensor(actions))], -1))
        count = len(model.elite_indices)
        mean, logvar = model._gaussian(model._forward(inputs.expand(count, -1, -1), model.elite_indices))
        disagreement = spread(mean[..., : model.obs_dim], 0)
        rows, chosen = torch.arange(len(current)), torch.as_tensor(members)
        prediction = mean[chosen, rows] + torch.exp(0.5 * logvar[chosen, rows]) * torch.as_tensor(noise)
        delta_and_reward = model.target_norm.inverse(prediction)
        following = model.clip_observations(current + delta_and_reward[:, : model.obs_dim])
        features = model.observation_norm(following)
        return (
            following.numpy(),
            delta_and_reward[:, -1].numpy(),
            model.success_head.prob(features).numpy(),
            model.continue_head.prob(features).numpy(),
            disagreement.numpy(),
        )


def _compare(
    model, stepper: RowStepper, dataset: Dataset, rows: int, uncertainty: bool, seed: int = 0
) -> None:
    rng = np.random.default_rng(seed)
    picked = rng.choice(dataset.num_steps, rows)
    observations = dataset.observations[picked].astype(np.float32)
    actions = dataset.actions[picked]
    members = rng.integers(len(model.elite_indices), size=rows)
    noise = rng.standard_normal((rows, model.obs_dim + 1)).astype(np.float32)
    out = stepper.step(observations, actions, rng, uncertainty, members=members, noise=noise)
    following, rewards, success, continuing, disagreement = _reference(
        model, observations, actions, members, noise
    )
    np.testing.assert_allclose(out.observations, following, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.rewards, rewards, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.success_prob, success, atol=1e-5)
    np.testing.assert_allclose(out.continue_prob, continuing, atol=1e-5)
    assert rows == 1 or min(success.std(), continuing.std()) > 0.02  # the heads were tested
    if uncertainty:
        np.testing.assert_allclose(out.uncertainty, disagreement, rtol=1e-4, atol=1e-5)
    else:
        assert out.uncertainty is None
    assert out.inside.all()


@pytest.mark.parametrize("uncertainty", [False, True])
@pytest.mark.parametrize("rows", [1, 9, 40])
def test_compiled_rows_predict_what_the_models_own_layers_predict(
    pendulum_dataset: Dataset, rows: int, uncertainty: bool
) -> None:
    model = _model(pendulum_dataset)
    model.circles = ((0, 1),)  # pendulum's (cos, sin): the compiled step puts them back on the circle
    stepper = row_stepper(model)
    assert stepper is not None
    _compare(model, stepper, pendulum_dataset, rows, uncertainty)


def test_discrete_actions_and_a_deeper_network_step_alike(cartpole_dataset_path) -> None:
    from imaginarium.dataset import load_dataset

    dataset = load_dataset(cartpole_dataset_path)
    model = _model(dataset, preset="m")
    _compare(model, row_stepper(model), dataset, rows=12, uncertainty=True)
    _compare(model, row_stepper(model), dataset, rows=1, uncertainty=False, seed=1)


def test_a_model_changed_in_place_is_stepped_as_it_now_is(pendulum_dataset: Dataset) -> None:
    model = _model(pendulum_dataset)
    stepper = row_stepper(model)
    _compare(model, stepper, pendulum_dataset, rows=5, uncertainty=True)
    with torch.no_grad():  # what an optimiser step, a calibration and new elites do
        model.net[0].weight.mul_(1.5)
        model.continue_head.log_temperature.fill_(0.9)
        model.elite_indices.copy_(torch.tensor([4, 0, 2]))
        model.target_norm.std.mul_(2.0)
    _compare(model, stepper, pendulum_dataset, rows=5, uncertainty=True, seed=1)


def test_inside_is_what_the_data_limits_say(pendulum_dataset: Dataset) -> None:
    model = _model(pendulum_dataset)
    stepper = row_stepper(model)
    rng = np.random.default_rng(0)
    observations = pendulum_dataset.observations[:64].astype(np.float32)
    actions = pendulum_dataset.actions[:64]
    first = stepper.step(observations, actions, np.random.default_rng(0))
    # limits around what that step predicts: half the rows' states, a quarter's rewards fall outside
    low, high = first.observations.min(0), first.observations.max(0)
    middle = np.median(first.rewards)
    limits = DataLimits(
        low, np.where(np.arange(3) == 2, np.median(first.observations[:, 2]), high), -np.inf, middle
    )
    out = stepper.step(
        observations, actions, rng, limits=stepper.limits(limits.state_low, limits.state_high, -1e9, middle)
    )
    expected = limits.within(torch.as_tensor(out.observations), torch.as_tensor(out.rewards)).numpy()
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(out.inside, expected)
    nan = np.full_like(observations[:2], np.nan)
    assert not stepper.step(nan, actions[:2], rng).inside.any()  # not finite: never inside


def test_rows_are_dealt_to_the_elites_evenly_and_a_single_row_uniformly(pendulum_dataset: Dataset) -> None:
    stepper = row_stepper(_model(pendulum_dataset))
    rng = np.random.default_rng(0)
    for rows in (2, 3, 7, 40):
        counts = np.bincount(stepper.deal(rows, rng), minlength=3)
        assert counts.sum() == rows and counts.max() <= -(-rows // 3)
    singles = np.bincount(np.concatenate([stepper.deal(1, rng) for _ in range(3000)]), minlength=3)
    assert singles.min() > 900


def test_only_cpu_ensembles_with_hidden_layers_have_the_compiled_step(pendulum_dataset: Dataset) -> None:
    space, actions = pendulum_dataset.observation_space, pendulum_dataset.action_space
    assert row_stepper(build_model("rssm", space, actions, "xs")) is None
    assert row_stepper(build_model("ensemble", space, actions, "xs", {"layers": 0})) is None
    assert row_stepper(build_model("ensemble", space, actions, "xs")) is not None
