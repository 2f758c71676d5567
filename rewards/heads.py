"""Prediction heads of the world models: reward, success and continue.

- :class:`TwoHotRewardHead` (rssm): a categorical over symlog-spaced bins, trained with two-hot
  targets, so rewards of any scale train with one learning rate (DreamerV3).
- The ensemble's reward is a Gaussian output of each member (see ``imaginarium.models.ensemble``).
- :class:`BernoulliHead` (success, continue): a logit with a temperature fitted on held-out data
  (:meth:`BernoulliHead.calibrate`), so a predicted 0.8 means 80%.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x)·log(1 + |x|): compresses large magnitudes, keeps small ones linear."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def mlp(inputs: int, hidden: int, layers: int, outputs: int) -> nn.Sequential:
    """``layers`` hidden layers of ``hidden`` units with LayerNorm and SiLU, then a linear output."""
    modules: list[nn.Module] = []
    width = inputs
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.SiLU()]
        width = hidden
    modules.append(nn.Linear(width, outputs))
    return nn.Sequential(*modules)


class BernoulliHead(nn.Module):
    """Probability of a binary event (success, continue) given model features, with calibration.

    :param features: size of the feature vector it reads.
    """

    def __init__(self, features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = mlp(features, hidden, layers, 1)
        self.register_buffer("log_temperature", torch.zeros(()))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., F) -> (...)`` calibrated logits."""
        return self.net(features).squeeze(-1) / self.log_temperature.exp()

    def prob(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(features))

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy of the raw (uncalibrated) logits against 0/1 targets."""
        return F.binary_cross_entropy_with_logits(self.net(features).squeeze(-1), targets.float())

    @torch.no_grad()
    def calibrate(self, features: torch.Tensor, targets: torch.Tensor, iterations: int = 200) -> float:
        """Fit the temperature on held-out ``(features, targets)`` (temperature scaling); returns it.

        With one class only in ``targets`` there is nothing to calibrate and the temperature stays 1.
        """
        targets = targets.float().reshape(-1)
        if targets.numel() == 0 or targets.min() == targets.max():
            self.log_temperature.zero_()
            return 1.0
        raw = self.net(features).reshape(-1)
        log_temperature = torch.zeros((), requires_grad=True)
        optimizer = torch.optim.LBFGS([log_temperature], max_iter=iterations, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            with torch.enable_grad():
                loss = F.binary_cross_entropy_with_logits(raw.cpu() / log_temperature.exp(), targets.cpu())
                loss.backward()
            return loss

        optimizer.step(closure)
        self.log_temperature.copy_(log_temperature.detach().clamp(-3.0, 3.0))
        return float(self.log_temperature.exp())


class TwoHotRewardHead(nn.Module):
    """Reward as a categorical over bins evenly spaced in symlog space (DreamerV3's two-hot head).

    :param bins: number of bins spanning symlog values in ``[-limit, limit]``.
    """

    def __init__(self, features: int, hidden: int, layers: int, bins: int = 255, limit: float = 20.0) -> None:
        super().__init__()
        self.net = mlp(features, hidden, layers, bins)
        nn.init.zeros_(self.net[-1].weight)  # start by predicting zero reward, as DreamerV3 does
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("bin_values", torch.linspace(-limit, limit, bins))

    def mean(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., F) -> (...)`` expected reward in real units."""
        probs = torch.softmax(self.net(features), dim=-1)
        return symexp((probs * self.bin_values).sum(-1))

    def nll(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(...)`` cross-entropy of each prediction against the two-hot encoding of ``symlog(targets)``."""
        log_probs = torch.log_softmax(self.net(features), dim=-1)
        return -(two_hot(symlog(targets), self.bin_values) * log_probs).sum(-1)

    def loss(self, features: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy against the two-hot encoding of ``symlog(rewards)``."""
        return self.nll(features, rewards).mean()


def two_hot(values: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """``(...) -> (..., K)``: weights on the two bins around each value, summing to one."""
    values = values.clamp(bins[0], bins[-1])
    above = torch.searchsorted(bins, values.contiguous(), right=True).clamp(1, len(bins) - 1)
    below = above - 1
    width = bins[above] - bins[below]
    weight_above = (values - bins[below]) / width
    encoded = torch.zeros(*values.shape, len(bins), device=values.device, dtype=values.dtype)
    encoded.scatter_(-1, below.unsqueeze(-1), (1.0 - weight_above).unsqueeze(-1))
    encoded.scatter_add_(-1, above.unsqueeze(-1), weight_above.unsqueeze(-1))
    return encoded
