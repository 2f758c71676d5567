"""Probabilistic MLP ensemble (PETS / MBPO): the strong choice for low-dimensional state.

Each member maps a normalised ``(observation, action)`` to a Gaussian over the normalised
``(next observation - observation, reward)``, with a softly bounded log-variance (PETS). Members
differ by initialisation and by the minibatches they see; the ``elites`` best on held-out episodes
serve predictions (MBPO). A step samples one elite per sample (trajectory sampling), and the
members' disagreement is the epistemic uncertainty. Success and continue are Bernoulli heads on
the predicted next observation.

The state is ``{"observation": (B, D)}``: this family is Markov in the observation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from imaginarium.config import check_number, config_from_dict
from imaginarium.dataset import Dataset
from imaginarium.errors import ImaginariumError
from imaginarium.models.base import (
    Normalizer,
    State,
    StepOutput,
    TransitionPredictions,
    WorldModel,
    shared_draw,
    spread,
)
from imaginarium.rewards.heads import BernoulliHead
from imaginarium.samplers import Batch

#: number formats an ensemble can imagine in (:meth:`EnsembleModel.set_precision`)
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class EnsembleConfig:
    """Hyperparameters of the ensemble family (the ``s`` preset by default)."""

    members: int = 7
    elites: int = 5
    hidden: int = 200
    layers: int = 3
    #: 64 predicts success and continue as well as 128 on hopper, cartpole and reacher at a quarter of
    #: the FLOPs (experiments/head_size_study.py)
    head_hidden: int = 64
    head_layers: int = 2
    #: transitions per training window; > 1 adds an open-loop multi-step loss on the model's own predictions
    horizon: int = 1
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 5e-5
    #: bounds of the predicted log-variance (normalised units), softly enforced and learned
    min_logvar: float = -10.0
    max_logvar: float = 0.5

    def __post_init__(self) -> None:
        """Refuse settings that mean nothing (no members, a negative learning rate, crossed log-variance
        bounds) where the config is built, not as a torch error or a silent bad fit later."""
        where = "ensemble config"
        for name in ("members", "hidden", "head_hidden", "horizon", "batch_size"):
            check_number(getattr(self, name), name, at_least=1, integer=True, where=where)
        for name in ("layers", "head_layers"):
            check_number(getattr(self, name), name, at_least=0, integer=True, where=where)
        check_number(self.elites, "elites", at_least=1, integer=True, where=where)
        if self.elites > self.members:
            raise ImaginariumError(
                f"{where}: 'elites' must be at most members ({self.members}), got {self.elites}"
            )
        check_number(self.learning_rate, "learning_rate", above=0, where=where)
        check_number(self.weight_decay, "weight_decay", at_least=0, where=where)
        check_number(self.min_logvar, "min_logvar", where=where)
        check_number(self.max_logvar, "max_logvar", where=where)
        if self.min_logvar >= self.max_logvar:
            raise ImaginariumError(
                f"{where}: 'min_logvar' must be below max_logvar ({self.max_logvar}), got {self.min_logvar}"
            )


PRESETS: dict[str, dict[str, Any]] = {
    "xs": {"members": 5, "elites": 3, "hidden": 64, "layers": 2},
    "s": {},
    "m": {"hidden": 200, "layers": 4},
}


def ensemble_config(preset: str = "s", **overrides: Any) -> EnsembleConfig:
    """The preset's config with ``overrides`` applied (unknown keys refused)."""
    if preset not in PRESETS:
        raise ImaginariumError(f"unknown ensemble preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return config_from_dict(
        EnsembleConfig, {**PRESETS[preset], **overrides}, where=f"ensemble preset {preset!r}"
    )


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied in one batched matmul: ``(E, B, I) -> (E, B, O)``."""

    def __init__(self, members: int, inputs: int, outputs: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, inputs, outputs))
        self.bias = nn.Parameter(torch.zeros(members, 1, outputs))
        nn.init.trunc_normal_(self.weight, std=1.0 / (2.0 * math.sqrt(inputs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleModel(WorldModel):
    """Gaussian MLP ensemble over observation deltas and reward; see the module docstring."""

    family = "ensemble"
    config_class = EnsembleConfig

    def __init__(self, observation_space, action_space, config: EnsembleConfig | None = None) -> None:
        config = config or EnsembleConfig()
        super().__init__(observation_space, action_space, config)
        self.sequence_length = config.horizon
        inputs, self.target_dim = self.obs_dim + self.action_dim, self.obs_dim + 1
        layers: list[nn.Module] = []
        width = inputs
        for _ in range(config.layers):
            layers += [EnsembleLinear(config.members, width, config.hidden), nn.SiLU()]
            width = config.hidden
        layers.append(EnsembleLinear(config.members, width, 2 * self.target_dim))
        self.net = nn.Sequential(*layers)
        self.max_logvar = nn.Parameter(torch.full((self.target_dim,), config.max_logvar))
        self.min_logvar = nn.Parameter(torch.full((self.target_dim,), config.min_logvar))
        self.input_norm = Normalizer(inputs)
        self.target_norm = Normalizer(self.target_dim)
        self.observation_norm = Normalizer(self.obs_dim)
        self.success_head = BernoulliHead(self.obs_dim, config.head_hidden, config.head_layers)
        self.continue_head = BernoulliHead(self.obs_dim, config.head_hidden, config.head_layers)
        self.register_buffer("elite_indices", torch.arange(config.elites))

    # -------------------------------------------------------------------------------- training

    @property
    def draws_per_step(self) -> int:
        """Each member trains on its own batch of windows."""
        return self.config.members

    def fit_normalizers(self, dataset: Dataset) -> None:
        actions = self.encode_actions(torch.as_tensor(dataset.actions, device=self.device)).cpu().numpy()
        keep = np.r_[np.zeros(self.obs_dim, bool), np.full(self.action_dim, self.discrete)]
        self.input_norm.fit(np.concatenate([dataset.observations, actions], axis=1), keep=keep)
        deltas = dataset.next_observations - dataset.observations
        self.target_norm.fit(np.concatenate([deltas, dataset.rewards[:, None]], axis=1))
        self.observation_norm.fit(np.concatenate([dataset.observations, dataset.next_observations]))

    def _predict(
        self, observations: torch.Tensor, encoded_actions: torch.Tensor, members: torch.Tensor | None = None
    ):
        """Normalised Gaussian ``(mean, logvar)``, each ``(E, B, D + 1)``, for inputs ``(E, B, ·)``.

        :param members: which members' weights to use (default all); ``E`` must match it.
        """
        inputs = self.input_norm(torch.cat([observations, encoded_actions], dim=-1))
        return self._gaussian(self._forward(inputs, members))

    def _forward(
        self, x: torch.Tensor, members: torch.Tensor | None, elite: int | None = None
    ) -> torch.Tensor:
        """The members' raw outputs ``(E, B, 2·(D + 1))`` for normalised inputs ``(E, B, ·)``.

        :param members: which members' weights to use (default all).
        :param elite: run only ``members[elite]`` (``E`` is then 1).
        """
        if members is None:
            layers = [(layer.weight, layer.bias) for layer in self.net if isinstance(layer, EnsembleLinear)]
        elif members is self.elite_indices and not torch.is_grad_enabled():
            layers = self._elite_layers()
            if elite is not None:
                layers = [(weight[elite : elite + 1], bias[elite : elite + 1]) for weight, bias in layers]
        else:
            if elite is not None:
                members = members[elite : elite + 1]
            layers = [
                (layer.weight[members], layer.bias[members])
                for layer in self.net
                if isinstance(layer, EnsembleLinear)
            ]
        low = self.precision == "bfloat16" and not torch.is_grad_enabled()
        if low:
            x = x.to(torch.bfloat16)
            if members is not self.elite_indices:
                layers = [(weight.to(torch.bfloat16), bias.to(torch.bfloat16)) for weight, bias in layers]
        for index, (weight, bias) in enumerate(layers):
            x = torch.baddbmm(bias, x, weight)
            if index < len(layers) - 1:
                x = nn.functional.silu(x, inplace=True)
        return x.float() if low else x

    def set_precision(self, precision: str) -> None:
        """Take imagined steps in ``float32`` or ``bfloat16``. In ``bfloat16`` the layers' inputs,
        weights and activations keep 8 bits of mantissa (outputs, sampling and the heads stay in
        ``float32``): on CPUs with bfloat16 matrix units (AMX, Intel Sapphire Rapids and later) large
        batches step 1.4–1.7× faster (their matmuls 2–4×); elsewhere it is slower. Training is
        always in ``float32``.

        :raises ImaginariumError: for another precision.
        """
        if precision not in PRECISIONS:
            raise ImaginariumError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision

    def _gaussian(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs -> ``(mean, logvar)``, the log-variance softly held inside its learned bounds."""
        mean, logvar = raw.chunk(2, dim=-1)
        logvar = self.max_logvar - nn.functional.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + nn.functional.softplus(logvar - self.min_logvar)
        return mean, logvar

    def _elite_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The elites' weights and biases, gathered once into contiguous tensors and reused for every
        imagined step until a parameter or the elite set changes (their version counters say so)."""
        tensors = self.__dict__.get("_elite_sources")
        if tensors is None or tensors[-1] is not self.elite_indices:  # made anew after a move or a load
            linear = [layer for layer in self.net if isinstance(layer, EnsembleLinear)]
            tensors = [tensor for layer in linear for tensor in (layer.weight, layer.bias)]
            tensors = self.__dict__["_elite_sources"] = [*tensors, self.elite_indices]
        key = tuple((tensor.data_ptr(), tensor._version) for tensor in tensors)
        cached = getattr(self, "_elite_cache", None)
        if cached is None or cached[0] != key:
            linear = [layer for layer in self.net if isinstance(layer, EnsembleLinear)]
            with torch.no_grad():
                layers = [
                    (
                        layer.weight[self.elite_indices].contiguous(),
                        layer.bias[self.elite_indices].contiguous(),
                    )
                    for layer in linear
                ]
            cached = self._elite_cache = (key, layers, {})
        if self.precision == "float32":
            return cached[1]
        dtype = getattr(torch, self.precision)
        if dtype not in cached[2]:
            cached[2][dtype] = [(weight.to(dtype), bias.to(dtype)) for weight, bias in cached[1]]
        return cached[2][dtype]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Gaussian NLL over the window, each member on its own slice of the batch.

        ``batch`` holds ``members × batch_size`` windows of ``horizon`` transitions; beyond the first
        transition the input is the member's own predicted observation (open-loop), so errors that
        compound are trained against.
        """
        members = self.config.members
        per_member = batch.observations.shape[0] // members

        def split(tensor: torch.Tensor) -> torch.Tensor:  # (E·B, L, ...) -> (E, B, L, ...)
            return tensor[: members * per_member].reshape(members, per_member, *tensor.shape[1:])

        observations, next_observations = split(batch.observations), split(batch.next_observations)
        actions, rewards = self.encode_actions(split(batch.actions)), split(batch.rewards)
        current = observations[:, :, 0]
        nll = observations.new_zeros(())
        # rows whose rewards were never recorded (action-free episodes) teach the dynamics only
        free = batch.action_free
        weights = None
        if free is not None and bool(free.any()):
            weights = torch.ones(*free.shape, self.obs_dim + 1, device=free.device)
            weights[..., -1] = (~free).float()
            weights = split(weights)
        for h in range(observations.shape[2]):
            mean, logvar = self._predict(current, actions[:, :, h])
            target = self.target_norm(
                torch.cat([next_observations[:, :, h] - current, rewards[:, :, h, None]], dim=-1)
            )
            terms = ((mean - target) ** 2) * torch.exp(-logvar) + logvar
            nll = nll + (terms if weights is None else terms * weights[:, :, h]).mean()
            current = current + self.target_norm.inverse(mean)[..., : self.obs_dim]
        nll = nll / observations.shape[2]
        bound_penalty = 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        head_features = self.observation_norm(batch.next_observations)
        success_loss = self.success_head.loss(head_features, batch.success)
        continue_loss = self.continue_head.loss(head_features, ~batch.terminated)
        total = nll + bound_penalty + success_loss + continue_loss
        return total, {
            "nll": float(nll.detach()),
            "success_bce": float(success_loss.detach()),
            "continue_bce": float(continue_loss.detach()),
        }

    def predict_transitions(self, batch: Batch) -> TransitionPredictions:
        state = {"observation": batch.observations}
        flat = {key: value.reshape(-1, *value.shape[2:]) for key, value in state.items()}
        actions = batch.actions.reshape(-1, *batch.actions.shape[2:])
        out = self.step(flat, actions, sample=False)
        shape = batch.rewards.shape
        return TransitionPredictions(
            out.reward.reshape(shape),
            out.success_prob.reshape(shape),
            out.continue_prob.reshape(shape),
            self.features(out.state).reshape(*shape, -1),
        )

    @torch.no_grad()
    def member_errors(self, dataset: Dataset, chunk: int = 8192) -> torch.Tensor:
        """``(E,)`` one-step MSE of each member's mean in normalised target units on ``dataset``."""
        members = self.config.members
        squared_sum = torch.zeros(members, device=self.device)
        for start in range(0, dataset.num_steps, chunk):
            rows = slice(start, start + chunk)
            observations = torch.as_tensor(dataset.observations[rows], device=self.device)
            actions = self.encode_actions(torch.as_tensor(dataset.actions[rows], device=self.device))
            deltas = dataset.next_observations[rows] - dataset.observations[rows]
            targets = torch.cat(
                [
                    torch.as_tensor(deltas, device=self.device),
                    torch.as_tensor(dataset.rewards[rows, None], device=self.device),
                ],
                dim=-1,
            )
            mean, _ = self._predict(observations.expand(members, -1, -1), actions.expand(members, -1, -1))
            squared_sum += ((mean - self.target_norm(targets)) ** 2).sum(dim=(1, 2))
        return squared_sum / (dataset.num_steps * self.target_dim)

    def finalize(self, validation: Dataset) -> dict[str, Any]:
        """Choose the elites on held-out episodes (MBPO)."""
        errors = self.member_errors(validation)
        self.elite_indices.copy_(torch.argsort(errors)[: self.config.elites])
        return {"member_validation_mse": errors.tolist(), "elites": self.elite_indices.tolist()}

    # ------------------------------------------------------------------------------- inference

    def initial_state(self, observations: torch.Tensor) -> State:
        return {"observation": observations.float()}

    def observe(self, observations: torch.Tensor, actions: torch.Tensor) -> State:
        return self.initial_state(observations[:, -1])

    def step(
        self,
        state: State,
        actions: torch.Tensor,
        sample: bool = True,
        *,
        uncertainty: bool = True,
        generator: torch.Generator | None = None,
        tiles: int = 1,
    ) -> StepOutput:
        """Each sample takes one elite's prediction, drawn afresh every step (PETS's TS1), sampled from
        its Gaussian when ``sample``; ``sample=False`` takes the elites' mean.

        With ``uncertainty`` every elite runs on every sample and their spread of means is the
        uncertainty. Without it, only the drawn elite runs for each sample: the batch is shuffled and
        dealt out evenly to the elites in random order, one batched matmul for all of them, a
        ``1/elites`` of the work. Samples pinned by :meth:`pin_members` keep their elite (TS∞).
        ``tiles`` blocks of the batch share their draws of elites and noise.
        """
        observations = state["observation"]
        encoded = self.encode_actions(actions)
        batch, device = observations.shape[0], observations.device
        elites = self.elite_indices
        count = len(elites)
        disagreement = None
        pinned = state.get("member")
        if uncertainty or not sample:
            mean, logvar = self._predict(
                observations.expand(count, -1, -1), encoded.expand(count, -1, -1), elites
            )
            disagreement = spread(mean[..., : self.obs_dim], 0)  # zero for a single elite
            if sample:
                chosen = (
                    pinned
                    if pinned is not None
                    else shared_draw(
                        lambda shape: torch.randint(count, shape, device=device, generator=generator),
                        (batch,),
                        tiles,
                    )
                )
                rows = torch.arange(batch, device=device)
                mean, logvar = mean[chosen, rows], logvar[chosen, rows]
            else:
                mean, logvar = mean.mean(0), None
        else:
            rows, slots = self._deal(batch, pinned, generator, tiles)
            inputs = self.input_norm(torch.cat([observations, encoded], dim=-1))
            if batch == 1:  # one slot per elite: only the drawn one runs, not every elite's slot
                mean, logvar = self._gaussian(self._forward(inputs[None], elites, elite=int(slots[0]))[0])
            else:
                dealt = inputs.index_select(0, rows).view(count, len(rows) // count, -1)
                raw = self._forward(dealt, elites)
                mean, logvar = self._gaussian(raw.view(len(rows), -1).index_select(0, slots))
        if sample:
            noise = shared_draw(
                lambda shape: torch.randn(shape, generator=generator, device=device, dtype=mean.dtype),
                tuple(mean.shape),
                tiles,
            )
            prediction = mean + torch.exp(0.5 * logvar) * noise
        else:
            prediction = mean
        delta_and_reward = self.target_norm.inverse(prediction)
        next_observations = self.clip_observations(observations + delta_and_reward[:, : self.obs_dim])
        features = self.observation_norm(next_observations)
        next_state = {"observation": next_observations}
        if pinned is not None:
            next_state["member"] = pinned
        return StepOutput(
            next_state,
            delta_and_reward[:, self.obs_dim],
            self.success_head.prob(features),
            self.continue_head.prob(features),
            disagreement,
        )

    @property
    def rollout_members(self) -> int:
        return len(self.elite_indices)

    def pin_members(self, state: State, members: torch.Tensor) -> State:
        """Pin sample ``i`` to elite ``members[i]`` (an index into the elites) for every later step."""
        members = torch.as_tensor(members, device=state["observation"].device).long()
        if members.shape != state["observation"].shape[:1] or bool(
            (members < 0).any() or (members >= self.rollout_members).any()
        ):
            raise ImaginariumError(
                f"members must be {state['observation'].shape[0]} indices in 0..{self.rollout_members - 1}"
            )
        return {**state, "member": members}

    def _deal(
        self, batch: int, pinned: torch.Tensor | None, generator: torch.Generator | None, tiles: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Which row each elite runs, and where each row's prediction lands.

        The elites get ``P`` slots each (``P`` the largest group), slot ``s`` belonging to elite
        ``s // P``. Returns ``rows`` ``(E·P,)``, the row each slot computes (spare slots repeat a row and
        are ignored), and ``slots`` ``(batch,)``, the slot holding each row. Unpinned rows take uniformly
        random slots (a random permutation), so each row's elite is uniform and the groups are even;
        pinned rows take slots of their own elite. With ``tiles``, one block is dealt and every block's
        row ``r`` goes to the elite of the first block's row ``r``.
        """
        device = self.elite_indices.device
        count = len(self.elite_indices)
        if pinned is None and tiles > 1:
            if batch % tiles:
                raise ImaginariumError(f"a batch of {batch} cannot be split into {tiles} equal tiles")
            block = batch // tiles
            _, block_slots = self._deal(block, None, generator)
            per_member = -(-block // count)
            member, offset = block_slots // per_member, block_slots % per_member
            tile = torch.arange(tiles, device=device)[:, None]
            slots = ((member[None] * tiles + tile) * per_member + offset[None]).reshape(-1)
            rows = torch.zeros(count * tiles * per_member, dtype=torch.long, device=device)
            rows[slots] = torch.arange(batch, device=device)
            return rows, slots
        if pinned is None:
            per_member = -(-batch // count)
            permutation = torch.randperm(count * per_member, device=device, generator=generator)
            slots = torch.empty_like(permutation)
            slots[permutation] = torch.arange(len(permutation), device=device)
            return permutation.clamp(max=batch - 1), slots[:batch]
        order = torch.argsort(pinned, stable=True)
        counts = torch.bincount(pinned, minlength=count)
        per_member = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        # the k-th row of elite e (in order) sits in slot e·P + k
        rank = torch.arange(batch, device=device) - starts[pinned[order]]
        slots = torch.empty_like(order)
        slots[order] = pinned[order] * per_member + rank
        rows = torch.zeros(count * per_member, dtype=torch.long, device=device)
        rows[slots] = torch.arange(batch, device=device)
        return rows, slots

    def decode(self, state: State) -> torch.Tensor:
        return state["observation"]

    def features(self, state: State) -> torch.Tensor:
        return self.observation_norm(state["observation"])
