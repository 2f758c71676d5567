"""The ensemble's imagined step: which members run for which sample, and the uncertainty it reports."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imaginarium.dataset import Dataset
from imaginarium.errors import ImaginariumError
from imaginarium.models import build_model
from imaginarium.models.base import spread
from imaginarium.models.ensemble import EnsembleModel


@pytest.fixture
def near_deterministic(pendulum_dataset: Dataset) -> EnsembleModel:
    """Five untrained elites that disagree, with noise so small each sample shows whose mean it took."""
    torch.manual_seed(0)
    model = build_model("ensemble", pendulum_dataset.observation_space, pendulum_dataset.action_space, "xs")
    model.fit_normalizers(pendulum_dataset)
    with torch.no_grad():
        model.max_logvar.fill_(-30.0)
        model.min_logvar.fill_(-40.0)
    model.elite_indices.copy_(torch.tensor([4, 0, 2, 1, 3])[: len(model.elite_indices)])
    return model.eval()


def _member_of_each_sample(model: EnsembleModel, observations: torch.Tensor, actions: torch.Tensor, out):
    """Index into ``elite_indices`` of the member whose mean each sample's next state equals."""
    count = len(model.elite_indices)
    mean, _ = model._predict(
        observations.expand(count, -1, -1),
        model.encode_actions(actions).expand(count, -1, -1),
        model.elite_indices,
    )
    candidates = model.clip_observations(observations + model.target_norm.inverse(mean)[..., : model.obs_dim])
    distance = (candidates - out.state["observation"]).abs().amax(-1)  # (E, B)
    assert torch.all(distance.amin(0) < 1e-4), "a sample matches no member's prediction"
    return distance.argmin(0)


@pytest.mark.parametrize("uncertainty", [True, False])
def test_each_sample_takes_one_members_prediction_spread_over_all_members(
    near_deterministic: EnsembleModel, pendulum_dataset: Dataset, uncertainty: bool
) -> None:
    model, count = near_deterministic, len(near_deterministic.elite_indices)
    observations = torch.as_tensor(pendulum_dataset.observations[:300])
    actions = torch.as_tensor(pendulum_dataset.actions[:300])
    with torch.no_grad():
        out = model.step(model.initial_state(observations), actions, uncertainty=uncertainty)
    counts = torch.bincount(_member_of_each_sample(model, observations, actions, out), minlength=count)
    assert counts.min() >= 30, f"members are not all used: {counts.tolist()}"
    if uncertainty:
        assert out.uncertainty.shape == (300,) and torch.all(out.uncertainty > 0)
    else:
        assert out.uncertainty is None
        assert counts.max() - counts.min() <= 1, "the fast path deals the batch out evenly"


def test_a_single_sample_is_dealt_to_every_member_over_steps(
    near_deterministic: EnsembleModel, pendulum_dataset: Dataset
) -> None:
    model = near_deterministic
    observations = torch.as_tensor(pendulum_dataset.observations[:1])
    actions = torch.as_tensor(pendulum_dataset.actions[:1])
    seen = set()
    with torch.no_grad():
        for _ in range(60):
            out = model.step(model.initial_state(observations), actions, uncertainty=False)
            seen.add(int(_member_of_each_sample(model, observations, actions, out)))
    assert seen == set(range(len(model.elite_indices)))


@pytest.mark.parametrize("grad", [False, True])
def test_a_single_pinned_sample_runs_its_own_member(
    near_deterministic: EnsembleModel, pendulum_dataset: Dataset, grad: bool
) -> None:
    """A batch of one runs only its drawn member (cached weights, or gathered while training)."""
    model = near_deterministic
    observations = torch.as_tensor(pendulum_dataset.observations[:1])
    actions = torch.as_tensor(pendulum_dataset.actions[:1])
    for member in range(model.rollout_members):
        state = model.pin_members(model.initial_state(observations), torch.tensor([member]))
        with torch.set_grad_enabled(grad):
            out = model.step(state, actions, uncertainty=False)
        assert int(_member_of_each_sample(model, observations, actions, out)) == member


def test_the_same_generator_seed_gives_the_same_step(pendulum_dataset: Dataset) -> None:
    model = build_model("ensemble", pendulum_dataset.observation_space, pendulum_dataset.action_space, "xs")
    model.fit_normalizers(pendulum_dataset)
    state = model.initial_state(torch.as_tensor(pendulum_dataset.observations[:64]))
    actions = torch.as_tensor(pendulum_dataset.actions[:64])
    outputs = []
    with torch.no_grad():
        for seed in (7, 7, 8):
            generator = torch.Generator().manual_seed(seed)
            outputs.append(model.step(state, actions, uncertainty=False, generator=generator).reward)
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


def test_imagined_states_stay_inside_the_observation_space(pendulum_dataset: Dataset) -> None:
    model = build_model("ensemble", pendulum_dataset.observation_space, pendulum_dataset.action_space, "xs")
    model.fit_normalizers(pendulum_dataset)
    with torch.no_grad():
        model.net[-1].bias.fill_(50.0)  # members that push every state far out of the space
        out = model.step(model.initial_state(torch.zeros(16, 3)), torch.zeros(16, 1))
    decoded = model.decode(out.state)
    assert torch.all(decoded <= torch.tensor([1.0, 1.0, 8.0])) and torch.all(
        decoded >= -torch.tensor([1.0, 1.0, 8.0])
    )
    assert torch.any(decoded == 8.0)


def test_imagined_angles_stay_on_the_unit_circle_and_the_rest_is_left_alone(
    pendulum_dataset: Dataset, pendulum_model: Path
) -> None:
    """An ensemble's predicted (cos θ, sin θ) drift off the circle (seen shrunk to a norm of 0.88 on an
    upright pendulum, which the task's rule then judged fallen): they are put back on it, angle kept."""
    from imaginarium.models import load_world_model

    model = build_model("ensemble", pendulum_dataset.observation_space, pendulum_dataset.action_space, "xs")
    model.fit_normalizers(pendulum_dataset)
    raw = torch.tensor([[0.8, 0.3, 2.0], [-0.1, -0.2, -5.0], [1.0, 1.0, 8.0]])
    assert torch.equal(model.clip_observations(raw), raw)  # no circles: only the bounds
    model.circles = ((0, 1),)
    kept = model.clip_observations(raw)
    torch.testing.assert_close(kept[:, 0] ** 2 + kept[:, 1] ** 2, torch.ones(3))
    torch.testing.assert_close(torch.atan2(kept[:, 1], kept[:, 0]), torch.atan2(raw[:, 1], raw[:, 0]))
    assert torch.equal(kept[:, 2], raw[:, 2])
    assert load_world_model(pendulum_model).circles == ((0, 1),)  # from the task on its card


def test_pinned_samples_keep_their_member_step_after_step(
    near_deterministic: EnsembleModel, pendulum_dataset: Dataset
) -> None:
    model = near_deterministic
    count = model.rollout_members
    observations = torch.as_tensor(pendulum_dataset.observations[:1]).expand(2 * count, -1)
    actions = torch.as_tensor(pendulum_dataset.actions[:1]).expand(2 * count, -1)
    pinned = torch.arange(2 * count) % count
    state = model.pin_members(model.initial_state(observations), pinned)
    with torch.no_grad():
        for _ in range(3):
            out = model.step(state, actions, uncertainty=False)
            assert torch.equal(_member_of_each_sample(model, state["observation"], actions, out), pinned)
            state = out.state
    with pytest.raises(Exception, match="indices in 0.."):
        model.pin_members(state, torch.full((2 * count,), count))


def test_the_fast_path_follows_weight_and_elite_changes(near_deterministic: EnsembleModel) -> None:
    """Imagination reuses the elites' gathered weights; an optimizer step or a new elite set must be
    seen by the next step, exactly as a fresh gather would see it."""
    model = near_deterministic
    state = model.initial_state(torch.randn(40, model.obs_dim))
    actions = torch.rand(40, model.action_dim) * 4 - 2

    def imagine(fresh: bool) -> torch.Tensor:
        if fresh:
            model.__dict__.pop("_elite_cache", None)
        with torch.inference_mode():
            generator = torch.Generator().manual_seed(0)
            return model.step(state, actions, uncertainty=False, generator=generator).state["observation"]

    before = imagine(fresh=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    (model.net[0].weight ** 2).sum().backward()
    optimizer.step()
    after = imagine(fresh=False)
    assert not torch.equal(before, after) and torch.equal(after, imagine(fresh=True))
    elites = torch.tensor([0, 1, 2, 3, 4])[: len(model.elite_indices)]
    model.load_state_dict({**model.state_dict(), "elite_indices": elites})
    assert torch.equal(imagine(fresh=False), imagine(fresh=True))


def test_spread_is_the_norm_of_the_members_population_std() -> None:
    values = torch.randn(3, 5, 7, 4, dtype=torch.float64)
    for dim in (0, 1, 2):
        expected = values.std(dim, unbiased=False).norm(dim=-1)
        assert torch.allclose(spread(values, dim), expected)
    assert torch.equal(spread(values[:1], 0), torch.zeros(5, 7, dtype=torch.float64))


@pytest.mark.parametrize("uncertainty", [True, False])
def test_bfloat16_steps_stay_close_to_float32_and_training_keeps_float32(
    near_deterministic: EnsembleModel, uncertainty: bool
) -> None:
    """``precision="bfloat16"`` changes the layers' number format, not what they compute: the same
    draws land within bfloat16's rounding of the float32 step, and a loss (with gradients) is exact."""
    model = near_deterministic
    state = model.initial_state(torch.randn(300, model.obs_dim))
    actions = torch.rand(300, model.action_dim) * 4 - 2

    def imagine() -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            out = model.step(state, actions, uncertainty=uncertainty, generator=generator)
        return out.state["observation"], out.uncertainty

    exact, exact_spread = imagine()
    model.set_precision("bfloat16")
    low, low_spread = imagine()
    assert low.dtype == torch.float32 and not torch.equal(low, exact)
    scale = (exact - state["observation"]).abs().mean()
    assert (low - exact).abs().mean() < 0.02 * scale
    if uncertainty:
        assert torch.allclose(low_spread, exact_spread, rtol=0.1, atol=0.02 * float(scale))
    inputs = torch.randn(model.config.members, 5, model.net[0].weight.shape[1])
    with torch.no_grad():
        assert model._forward(inputs, None).dtype == torch.float32
    with torch.enable_grad():
        graded = model._forward(inputs, None)
    model.set_precision("float32")
    assert torch.equal(imagine()[0], exact)
    with torch.enable_grad():
        assert torch.equal(graded, model._forward(inputs, None))


def test_an_unknown_precision_is_refused_and_other_families_keep_float32(
    near_deterministic: EnsembleModel, pendulum_dataset: Dataset
) -> None:
    with pytest.raises(ImaginariumError, match="precision must be one of float32, bfloat16"):
        near_deterministic.set_precision("float16")
    rssm = build_model("rssm", pendulum_dataset.observation_space, pendulum_dataset.action_space, "xs")
    with pytest.raises(ImaginariumError, match="rssm family steps in float32 only"):
        rssm.set_precision("bfloat16")
