"""Imagined steps of a few rows in one compiled call: the fast path of single and small vector envs
(issue #26).

A single env steps one row at a time, a small vector env a handful. There torch's cost per operation
(microseconds each, some 300 Python calls a step through modules, normalisers and heads) is many
times the arithmetic of a 200-wide MLP, and numpy's is still about one microsecond a call: one
``WAMImagined-v0`` ran at a quarter of the real simulator's speed. :class:`RowStepper` runs the same
ensemble step (PETS's trajectory sampling: one elite drawn per row and step, a Gaussian sample of its
prediction, the heads on the clipped next observation) as one numba-compiled call
(:mod:`imaginarium.models.row_kernel`) over a *folded* copy of the model's weights: the input
normaliser and action scaling folded into the first layer, the target normaliser into the last, the
feature normaliser and LayerNorm's centring into the heads' first layers, each head's temperature
into its output.

The copy is folded again whenever a parameter or buffer of the model changes in place (an optimiser
step, ``load_state_dict``, new elites): their version counters are compared every step. A model
whose tensors are *replaced* needs a new stepper.

Only ensembles on the CPU with at least one hidden layer in the network and the heads have this path
(:func:`row_stepper`); it matches :meth:`EnsembleModel.step` to float32 precision given the same
draws (``tests/test_rows.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

#: batches up to this many rows step in one compiled call where the model allows (the imagined envs,
#: the planner); above it torch's batched matmuls win (both timed on one thread, 1 to 280 Hopper envs,
#: issue #26); with the uncertainty tracked every elite runs on every row, and the crossover is nearer
COMPILED_ROWS = 128
COMPILED_ROWS_TRACKED = 48


@dataclass
class RowPredictions:
    """What a step predicts for ``N`` rows: next observations ``(N, D)`` float32 (clipped to the
    observation space, angles back on the unit circle), rewards ``(N,)`` float64, the heads'
    probabilities ``(N,)`` float32, the elites' disagreement ``(N,)`` float32 (``None`` when not
    asked for), and whether each next state and reward is finite and inside the limits given."""

    observations: np.ndarray
    rewards: np.ndarray
    success_prob: np.ndarray
    continue_prob: np.ndarray
    uncertainty: np.ndarray | None
    inside: np.ndarray


class RowStepper:
    """Steps rows of an ensemble model in one compiled call (see the module docstring).

    :param model: an :class:`~imaginarium.models.ensemble.EnsembleModel` on the CPU.
    """

    def __init__(self, model: Any) -> None:
        self.kernel = None  # compiled (or loaded from numba's cache) at the first step
        self.model = model
        self.tensors = [*model.parameters(), *model.buffers()]
        self.obs_dim = model.obs_dim
        self.action_dim = model.action_dim
        self.discrete = model.discrete
        self.targets = model.obs_dim + 1
        self.count = len(model.elite_indices)
        self.no_limits = self.limits(
            np.full(self.obs_dim, -np.inf), np.full(self.obs_dim, np.inf), None, None
        )
        #: views of the observation bounds (buffers of the model, so in-place changes show)
        self.low, self.high = model.observation_low.numpy(), model.observation_high.numpy()
        self._key: tuple[int, ...] | None = None

    @torch.no_grad()
    def _fold(self) -> None:
        from imaginarium.models.ensemble import EnsembleLinear

        model = self.model
        elites = model.elite_indices.cpu()
        linear = [layer for layer in model.net if isinstance(layer, EnsembleLinear)]
        weights = [layer.weight[elites].double() for layer in linear]
        biases = [layer.bias[elites, 0].double() for layer in linear]
        # the first layer reads the raw (observation, action): it read z = gain * u + offset
        mean, std = model.input_norm.mean.double(), model.input_norm.std.double()
        gain, offset = 1.0 / std, -mean / std
        if not self.discrete:
            low, high = model.action_low.double(), model.action_high.double()
            scale = 2.0 / (high - low)
            actions = slice(self.obs_dim, None)
            offset[actions] = (-1.0 - low * scale - mean[actions]) / std[actions]
            gain[actions] = scale / std[actions]
        biases[0] = biases[0] + offset @ weights[0]
        weights[0] = gain[:, None] * weights[0]
        # the last layer's mean half predicts in real units
        target_mean, target_std = model.target_norm.mean.double(), model.target_norm.std.double()
        weights[-1][..., : self.targets] *= target_std
        biases[-1][..., : self.targets] = biases[-1][..., : self.targets] * target_std + target_mean
        parts: list[torch.Tensor] = []
        for member in range(len(elites)):
            for weight, bias in zip(weights, biases, strict=True):
                parts += [weight[member].reshape(-1), bias[member]]
        parts += [model.max_logvar, model.min_logvar, torch.log(target_std), target_std]
        parts += [model.observation_low, model.observation_high]
        feature_mean = model.observation_norm.mean.double()
        feature_std = model.observation_norm.std.double()
        eps = 1e-5
        constants = []
        for head in (model.success_head, model.continue_head):
            constants.append(float(head._constant) if head.is_constant else np.nan)
            modules = list(head.net)
            for index in range(0, len(modules) - 1, 3):
                linear_layer, norm = modules[index], modules[index + 1]
                weight, bias = linear_layer.weight.double().T, linear_layer.bias.double()
                if index == 0:  # it read normalised features
                    bias = bias - (feature_mean / feature_std) @ weight
                    weight = weight / feature_std[:, None]
                weight = weight - weight.mean(1, keepdim=True)  # LayerNorm subtracts the mean first
                parts += [weight.reshape(-1), bias - bias.mean(), norm.weight, norm.bias]
                eps = norm.eps
            temperature = head.log_temperature.double().exp()
            parts += [modules[-1].weight.double()[0] / temperature, modules[-1].bias.double() / temperature]
        self.flat = torch.cat([part.double().reshape(-1) for part in parts]).float().numpy()
        head_net = model.success_head.net
        self.dims = np.array(
            [
                len(elites),
                weights[0].shape[1],
                weights[0].shape[2],
                len(linear) - 1,
                self.targets,
                self.obs_dim,
                head_net[0].out_features,
                (len(head_net) - 1) // 3,
            ],
            dtype=np.int64,
        )
        self.constants = np.array(constants, dtype=np.float64)
        self.eps = float(eps)
        self.circles = np.array(model.circles, dtype=np.int64).reshape(-1, 2)

    def inputs(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``(N, D + A)`` what the folded first layer reads: observations and raw (or one-hot) actions."""
        if self.discrete:
            encoded = np.zeros((len(actions), self.action_dim), np.float32)
            encoded[np.arange(len(actions)), actions] = 1.0
            actions = encoded
        return np.concatenate(
            [observations, actions.reshape(len(observations), -1)], axis=1, dtype=np.float32
        )

    def deal(self, rows: int, rng: np.random.Generator) -> np.ndarray:
        """``(rows,)`` the elite of each row: dealt evenly in random order, as
        :meth:`EnsembleModel.step` deals a batch (one uniform draw for a single row)."""
        count = self.count
        if rows == 1:  # floor(u · count) is uniform, and a third of rng.integers's cost
            return np.array([int(rng.random() * count)])
        per_member = -(-rows // count)
        return rng.permutation(count * per_member)[:rows] // per_member

    def step(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rng: np.random.Generator,
        uncertainty: bool = False,
        limits: np.ndarray | None = None,
        members: np.ndarray | None = None,
        noise: np.ndarray | None = None,
        refresh: bool = True,
    ) -> RowPredictions:
        """One sampled step of ``observations`` ``(N, D)`` under checked ``actions`` (as
        :func:`~imaginarium.envs.imagined.check_actions` gives them). ``rng`` deals the rows to the
        elites, then draws the Gaussian noise ``(N, D + 1)``; ``members`` (indices into the elites)
        and ``noise`` given instead are used as they are. With ``uncertainty`` every elite runs on every
        row and their spread of means (in normalised units, as :meth:`EnsembleModel.step` reports
        it) comes back. ``limits`` (see :meth:`limits`; default none but finiteness) decide
        :attr:`RowPredictions.inside`. ``refresh=False`` skips reading the model's tensors' versions
        (4 µs, a twentieth of a single env's step): for a caller that refreshes at the first step of
        each episode."""
        if self.kernel is None:
            from imaginarium.models import row_kernel  # numba: imported only where rows are stepped

            self.kernel = row_kernel.step_rows
        if refresh or self._key is None:
            self.refresh()
        observations = np.asarray(observations, np.float32)
        rows = len(observations)
        if members is None:
            members = self.deal(rows, rng)
        if noise is None:
            noise = rng.standard_normal((rows, self.targets), dtype=np.float32)
        states = np.empty((rows, self.obs_dim), np.float32)
        rewards = np.empty(rows)
        probs = np.empty((rows, 4), np.float32)
        self.kernel(
            self.flat,
            self.dims,
            self.inputs(observations, actions),
            members,
            noise,
            self.circles,
            self.constants,
            self.eps,
            self.no_limits if limits is None else limits,
            uncertainty,
            states,
            rewards,
            probs,
        )
        spread = probs[:, 2] if uncertainty else None
        return RowPredictions(states, rewards, probs[:, 0], probs[:, 1], spread, probs[:, 3] > 0)

    def pays(self, rows: int, uncertainty: bool) -> bool:
        """Whether ``rows`` rows step faster here than by torch's batched step (:data:`COMPILED_ROWS`,
        :data:`COMPILED_ROWS_TRACKED` with the ``uncertainty``)."""
        return rows <= (COMPILED_ROWS_TRACKED if uncertainty else COMPILED_ROWS)

    def refresh(self) -> None:
        """Fold the model's weights again if any of its tensors has changed in place since."""
        key = tuple([tensor._version for tensor in self.tensors])
        if key != self._key:
            self._fold()
            self._key = key

    def limits(
        self,
        state_low: np.ndarray,
        state_high: np.ndarray,
        reward_low: float | None,
        reward_high: float | None,
    ) -> np.ndarray:
        """The ``limits`` of :meth:`step`: beyond them a state or reward is not inside (a reward
        limit of ``None``: any finite reward is)."""
        rewards = [-np.inf, np.inf] if reward_low is None else [reward_low, reward_high]
        return np.concatenate([state_low, state_high, rewards]).astype(np.float64)

    def bounded(self, observations: np.ndarray) -> np.ndarray:
        """``observations`` held inside the observation space's bounds (what ``observe_states`` shows)."""
        return np.minimum(np.maximum(observations, self.low), self.high)


def row_stepper(model: nn.Module) -> RowStepper | None:
    """The compiled stepper of ``model``, or ``None`` where it has none (not an ensemble, not on the
    CPU, a network or head without hidden layers)."""
    from imaginarium.models.ensemble import EnsembleModel

    if not isinstance(model, EnsembleModel) or model.elite_indices.device.type != "cpu":
        return None
    if model.config.layers < 1 or model.config.head_layers < 1:
        return None
    return RowStepper(model)
