from __future__ import annotations

import torch

from imaginarium.rewards.heads import BernoulliHead, TwoHotRewardHead, symexp, symlog, two_hot


def test_symlog_inverts() -> None:
    values = torch.tensor([-1000.0, -1.5, 0.0, 0.3, 42.0])
    assert torch.allclose(symexp(symlog(values)), values, rtol=1e-5)


def test_two_hot_puts_the_value_between_its_two_bins() -> None:
    bins = torch.linspace(-5, 5, 11)
    values = torch.tensor([-5.0, 0.25, 3.9, 7.0])
    encoded = two_hot(values, bins)
    assert torch.allclose(encoded.sum(-1), torch.ones(4))
    assert torch.allclose((encoded * bins).sum(-1), values.clamp(-5, 5))
    assert (encoded > 0).sum(-1).max() <= 2


def test_reward_head_learns_a_reward_function() -> None:
    torch.manual_seed(0)
    head = TwoHotRewardHead(features=2, hidden=32, layers=1, bins=41, limit=5.0)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    features = torch.rand(512, 2) * 2 - 1
    rewards = -10.0 * features[:, 0] ** 2 + features[:, 1]
    for _ in range(300):
        optimizer.zero_grad()
        head.loss(features, rewards).backward()
        optimizer.step()
    assert torch.mean((head.mean(features) - rewards) ** 2) < 0.1 * rewards.var()


def test_calibration_cools_an_overconfident_head() -> None:
    torch.manual_seed(0)
    head = BernoulliHead(features=1, hidden=4, layers=1)
    head.net = torch.nn.Linear(1, 1)  # raw logit 5·x where the truth is x: confident beyond the evidence
    with torch.no_grad():
        head.net.weight.fill_(5.0)
        head.net.bias.zero_()
    features = torch.randn(4000, 1)
    targets = torch.bernoulli(torch.sigmoid(features[:, 0]))
    before = torch.mean((head.prob(features) - targets) ** 2)
    temperature = head.calibrate(features, targets)
    after = torch.mean((head.prob(features) - targets) ** 2)
    assert 4.0 < temperature < 6.5 and after < before


def test_a_head_whose_data_has_one_outcome_predicts_it_without_its_network_and_keeps_it_saved() -> None:
    import numpy as np

    head = BernoulliHead(3, 8, 1)
    head.fit_outcomes(np.ones(50, dtype=bool))  # e.g. continue, when no episode ever terminates

    def never(features: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the network ran")

    head.net.forward = never
    features = torch.randn(4, 3)
    assert torch.equal(head.prob(features), torch.ones(4))
    assert float(head.loss(features, torch.ones(4))) == 0.0

    saved = head.state_dict()
    loaded = BernoulliHead(3, 8, 1)
    loaded.load_state_dict(saved)
    assert loaded.is_constant and torch.equal(loaded.prob(features), torch.ones(4))

    old = {key: value for key, value in saved.items() if key != "constant"}  # saved before it existed
    legacy = BernoulliHead(3, 8, 1)
    legacy.load_state_dict(old)
    assert not legacy.is_constant and 0 < float(legacy.prob(features)[0]) < 1

    mixed = BernoulliHead(3, 8, 1)
    mixed.fit_outcomes(np.array([0, 1, 1]))
    assert not mixed.is_constant and 0 < float(mixed.prob(features)[0]) < 1


def test_trained_models_learn_only_the_events_their_data_holds(pendulum_model, cartpole_model) -> None:
    from imaginarium.models import load_world_model

    pendulum, cartpole = load_world_model(pendulum_model), load_world_model(cartpole_model)
    assert pendulum.continue_head.is_constant  # pendulum episodes never terminate
    assert not cartpole.continue_head.is_constant  # the pole falls
    with torch.inference_mode():
        state = pendulum.initial_state(torch.tensor([[1.0, 0.0, 0.0]]))
        out = pendulum.step(state, torch.zeros(1, 1))
    assert float(out.continue_prob) == 1.0
