"""Prediction heads of the world models: reward, success and continue.

- :class:`TwoHotRewardHead` (rssm): a categorical over symlog-spaced bins, trained with two-hot
  targets, so rewards of any scale train with one learning rate (DreamerV3).
- The ensemble's reward is a Gaussian output of each member (see ``imaginarium.models.ensemble``).
- :class:`BernoulliHead` (success, continue): a logit with a temperature fitted on held-out data
  (:meth:`BernoulliHead.calibrate`), so a predicted 0.8 means 80%.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x)·log(1 + |x|): compresses large magnitudes, keeps small ones linear."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def run_mlp(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` for an :func:`mlp`, op by op: the same result without a module call per layer, whose
    hooks machinery costs more than a small batch's arithmetic (imagination steps 1–64 rows at a time)."""
    for layer in net:
        if isinstance(layer, nn.Linear):
            x = F.linear(x, layer.weight, layer.bias)
        elif isinstance(layer, nn.LayerNorm):
            x = F.layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
        elif isinstance(layer, nn.SiLU):
            x = F.silu(x)
        else:
            x = layer(x)
    return x


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

    When the training data holds one outcome only (a task without success labels, one whose episodes
    never terminate), the head predicts that outcome without running its network
    (:meth:`fit_outcomes`): it could learn nothing else, and imagination skips the work.

    :param features: size of the feature vector it reads.
    """

    def __init__(self, features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = mlp(features, hidden, layers, 1)
        self.register_buffer("log_temperature", torch.zeros(()))
        #: the one outcome of the data, or NaN when the network predicts (mirrored in ``_constant``)
        self.register_buffer("constant", torch.tensor(float("nan")))
        self._constant: float | None = None

    def fit_outcomes(self, targets: np.ndarray | torch.Tensor) -> None:
        """Predict the data's only outcome when ``targets`` (0/1, one per training step) hold one."""
        values = torch.as_tensor(np.asarray(targets)).float().reshape(-1)
        only = len(values) > 0 and bool((values == values[0]).all())
        self._constant = float(values[0]) if only else None
        self.constant.fill_(float("nan") if self._constant is None else self._constant)

    @property
    def is_constant(self) -> bool:
        return self._constant is not None

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # models saved before ``constant`` existed run their network, as they did
        state_dict.setdefault(prefix + "constant", torch.tensor(float("nan")))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        value = float(self.constant)
        self._constant = None if math.isnan(value) else value

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., F) -> (...)`` calibrated logits."""
        if self._constant is not None:
            return features.new_full(features.shape[:-1], math.inf if self._constant else -math.inf)
        raw = self.net(features) if torch.is_grad_enabled() else run_mlp(self.net, features)
        return raw.squeeze(-1) / self.log_temperature.exp()

    def prob(self, features: torch.Tensor) -> torch.Tensor:
        if self._constant is not None:
            return features.new_full(features.shape[:-1], self._constant)
        return torch.sigmoid(self.logits(features))

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy of the raw (uncalibrated) logits against 0/1 targets (zero for a
        constant head)."""
        if self._constant is not None:
            return features.new_zeros(())
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
