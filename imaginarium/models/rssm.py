"""Dreamer-style recurrent state-space model (DreamerV3's RSSM, for vectors or RGB frames).

The state is a deterministic GRU state ``deter (B, H)`` and a stochastic state of ``stoch``
categorical latents with ``classes`` classes each, ``stoch (B, S·C)`` one-hot. The prior predicts
the stochastic state from ``deter`` alone (imagination); the posterior also sees the encoded
observation (filtering). Vector observations enter and leave in symlog space; with ``image_size``
the model sees ``image_size`` × ``image_size`` RGB frames through a convolutional encoder and
decoder instead. Reward is a two-hot symlog head; KL balancing with free bits keeps the prior close
to the posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from imaginarium.config import check_number, config_from_dict
from imaginarium.dataset import Dataset
from imaginarium.errors import ImaginariumError
from imaginarium.models.base import State, StepOutput, TransitionPredictions, WorldModel, shared_draw
from imaginarium.models.vision import ConvDecoder, ConvEncoder, check_image_size, to_frames
from imaginarium.rewards.heads import BernoulliHead, TwoHotRewardHead, mlp, symexp, symlog
from imaginarium.samplers import Batch


@dataclass(frozen=True)
class RSSMConfig:
    """Hyperparameters of the rssm family (the ``s`` preset by default)."""

    deter: int = 256
    stoch: int = 16
    classes: int = 16
    hidden: int = 256
    layers: int = 2
    #: share of uniform probability mixed into every categorical, so no class has zero mass
    unimix: float = 0.01
    free_nats: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    #: windows of 32 × 32 transitions: the same samples as DreamerV3's 16 × 64 in half the sequential steps
    sequence_length: int = 32
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    reward_bins: int = 255
    #: 0: the model sees state vectors; N: it sees N × N RGB frames (``dataset.images``)
    image_size: int = 0
    #: channels of the first convolution; they double at every halving of the frame
    cnn_depth: int = 32

    def __post_init__(self) -> None:
        """Refuse settings that mean nothing (an empty state, a negative learning rate, a mix that is
        all uniform) where the config is built, not as a torch error or a silent bad fit later."""
        where = "rssm config"
        for name in ("deter", "stoch", "classes", "hidden", "sequence_length", "batch_size", "cnn_depth"):
            check_number(getattr(self, name), name, at_least=1, integer=True, where=where)
        check_number(self.layers, "layers", at_least=0, integer=True, where=where)
        check_number(self.reward_bins, "reward_bins", at_least=2, integer=True, where=where)
        check_number(self.unimix, "unimix", at_least=0, below=1, where=where)
        for name in ("free_nats", "dyn_scale", "rep_scale", "weight_decay"):
            check_number(getattr(self, name), name, at_least=0, where=where)
        check_number(self.learning_rate, "learning_rate", above=0, where=where)
        check_number(self.image_size, "image_size", at_least=0, integer=True, where=where)
        if self.image_size:
            check_image_size(self.image_size)


PRESETS: dict[str, dict[str, Any]] = {
    "xs": {
        "deter": 64,
        "stoch": 8,
        "classes": 8,
        "hidden": 64,
        "layers": 1,
        "sequence_length": 16,
        "cnn_depth": 8,
    },
    "s": {},
    "m": {"deter": 512, "stoch": 32, "classes": 32, "hidden": 512},
}


def rssm_config(preset: str = "s", **overrides: Any) -> RSSMConfig:
    """The preset's config with ``overrides`` applied (unknown keys refused)."""
    if preset not in PRESETS:
        raise ImaginariumError(f"unknown rssm preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return config_from_dict(RSSMConfig, {**PRESETS[preset], **overrides}, where=f"rssm preset {preset!r}")


class RSSMModel(WorldModel):
    """Recurrent state-space world model; see the module docstring."""

    family = "rssm"
    config_class = RSSMConfig
    within_episodes = False

    def __init__(self, observation_space, action_space, config: RSSMConfig | None = None) -> None:
        config = config or RSSMConfig()
        super().__init__(observation_space, action_space, config)
        self.sequence_length = config.sequence_length
        latent = config.stoch * config.classes
        self.feature_dim = config.deter + latent
        self.image_shape: tuple[int, int, int] | None = None
        if config.image_size:
            size = check_image_size(config.image_size)
            self.image_shape = (size, size, 3)
            self.encoder = ConvEncoder(size, config.cnn_depth, config.hidden)
        else:
            self.encoder = mlp(self.obs_dim, config.hidden, config.layers, config.hidden)
        self.image_in = nn.Sequential(
            nn.Linear(latent + self.action_dim, config.hidden), nn.LayerNorm(config.hidden), nn.SiLU()
        )
        self.gru = nn.GRUCell(config.hidden, config.deter)
        self.prior_net = mlp(config.deter, config.hidden, 1, latent)
        self.posterior_net = mlp(config.deter + config.hidden, config.hidden, 1, latent)
        if self.image_shape:
            self.decoder = ConvDecoder(self.feature_dim, self.image_shape[0], config.cnn_depth)
        else:
            self.decoder = mlp(self.feature_dim, config.hidden, config.layers, self.obs_dim)
        self.reward_head = TwoHotRewardHead(
            self.feature_dim, config.hidden, config.layers, config.reward_bins
        )
        self.success_head = BernoulliHead(self.feature_dim, config.hidden, config.layers)
        self.continue_head = BernoulliHead(self.feature_dim, config.hidden, config.layers)

    @property
    def input_space(self) -> gym.spaces.Box:
        if self.image_shape is None:
            return self.observation_space
        return gym.spaces.Box(0, 255, self.image_shape, np.uint8)

    # ------------------------------------------------------------------------ latent machinery

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, S·C)`` logits -> ``(B, S, C)`` probabilities with the uniform mix."""
        probs = torch.softmax(logits.reshape(*logits.shape[:-1], self.config.stoch, self.config.classes), -1)
        return (1.0 - self.config.unimix) * probs + self.config.unimix / self.config.classes

    def _latent(
        self, probs: torch.Tensor, sample: bool, generator: torch.Generator | None = None, tiles: int = 1
    ) -> torch.Tensor:
        """A one-hot draw (straight-through gradients) or the mode; ``(B, S, C) -> (B, S·C)``."""
        if sample:  # Gumbel-max: a categorical draw for every latent in one vectorised op
            uniform = shared_draw(
                lambda shape: torch.rand(shape, generator=generator, device=probs.device, dtype=probs.dtype),
                tuple(probs.shape),
                tiles,
            )
            gumbel = -torch.log(-torch.log(uniform.clamp_(1e-20, 1.0)))
            index = (torch.log(probs) + gumbel).argmax(-1)
        else:
            index = probs.argmax(-1)
        one_hot = F.one_hot(index, self.config.classes).to(probs.dtype)
        return (one_hot + probs - probs.detach()).flatten(-2)

    def _transition(
        self, deter: torch.Tensor, stoch: torch.Tensor, encoded_action: torch.Tensor
    ) -> torch.Tensor:
        return self.gru(self.image_in(torch.cat([stoch, encoded_action], -1)), deter)

    def _posterior(self, deter: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
        return self._probs(self.posterior_net(torch.cat([deter, embed], -1)))

    def _embed(self, observations: torch.Tensor) -> torch.Tensor:
        if self.image_shape:
            return self.encoder(observations)
        return self.encoder(symlog(observations.float()))

    def _reconstruction(self, features: torch.Tensor, observations: torch.Tensor) -> torch.Tensor:
        """Squared error of the decoded observations, summed over an observation, averaged over the rest."""
        if self.image_shape:
            return self.decoder.loss(features, observations)
        return ((self.decoder(features) - symlog(observations)) ** 2).sum(-1).mean()

    @staticmethod
    def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """KL(p || q) of ``(..., S, C)`` categoricals, summed over the latents: ``(...)``."""
        return (p * (torch.log(p) - torch.log(q))).sum((-1, -2))

    # -------------------------------------------------------------------------------- training

    def fit_normalizers(self, dataset: Dataset) -> None:
        """Frames: the decoder starts from the average training frame. Vectors: nothing to fit,
        symlog takes the place of normalisation."""
        if self.image_shape:
            self.check_frames(dataset)
            self.decoder.fit(dataset.frames)

    def _filter(self, batch: Batch, sample: bool) -> dict[str, torch.Tensor]:
        """Run the posterior along the windows; rows flagged ``firsts`` restart from the observation.

        For each transition ``t``: the state filtered up to ``observations[t]``, the prior after the
        action, and the posterior that also sees ``next_observations[t]``.
        """
        batch_size, length = batch.rewards.shape
        embed_next = self._embed(batch.next_observations)  # (B, L, E)
        # observations[t] is next_observations[t - 1] except where an episode starts: encode those alone
        embed_now = torch.cat([self._embed(batch.observations[:, :1]), embed_next[:, :-1]], 1)
        starts = batch.firsts.clone()
        starts[:, 0] = False
        if starts.any():
            embed_now = embed_now.index_put((starts,), self._embed(batch.observations[starts]))
        actions = self.encode_actions(batch.actions)  # (B, L, A)
        # Everything that does not depend on the recurrence runs batched over (B, L), outside the loop.
        zeros = embed_now.new_zeros(batch_size, length, self.config.deter)
        start_stoch = self._latent(self._posterior(zeros, embed_now), sample)  # (B, L, S·C)
        restart = batch.firsts.clone()
        restart[:, 0] = True
        deter = zeros[:, 0]
        stoch = start_stoch[:, 0]
        deters, posteriors, stochs = [], [], []
        for t in range(length):
            keep = (~restart[:, t]).unsqueeze(-1).float()
            deter = deter * keep
            stoch = stoch * keep + start_stoch[:, t] * (1.0 - keep)
            deter = self._transition(deter, stoch, actions[:, t])
            posterior = self._posterior(deter, embed_next[:, t])
            stoch = self._latent(posterior, sample)
            deters.append(deter)
            posteriors.append(posterior)
            stochs.append(stoch)
        deter_all = torch.stack(deters, 1)  # (B, L, H)
        return {
            "start": torch.cat([zeros, start_stoch], -1),
            "deter": deter_all,
            "prior": self._probs(self.prior_net(deter_all)),
            "post": torch.stack(posteriors, 1),
            "stoch": torch.stack(stochs, 1),
        }

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        filtered = self._filter(batch, sample=True)
        features = torch.cat([filtered["deter"], filtered["stoch"]], -1)  # (B, L, F)
        reconstruction = self._reconstruction(features, batch.next_observations)
        if self.image_shape:  # decoding frames is costly: the windows' first starts teach the encoder alone
            start_reconstruction = self._reconstruction(filtered["start"][:, 0], batch.observations[:, 0])
        else:
            start_reconstruction = self._reconstruction(filtered["start"], batch.observations)
        if batch.action_free is not None and bool(batch.action_free.any()):
            recorded = (~batch.action_free).float()  # rewards of action-free rows were never recorded
            nll = self.reward_head.nll(features, batch.rewards)
            reward_loss = (nll * recorded).sum() / recorded.sum().clamp_min(1.0)
        else:
            reward_loss = self.reward_head.loss(features, batch.rewards)
        continue_loss = self.continue_head.loss(features, ~batch.terminated)
        success_loss = self.success_head.loss(features, batch.success)
        prior, posterior = filtered["prior"], filtered["post"]
        dynamics = self._kl(posterior.detach(), prior).clamp_min(self.config.free_nats).mean()
        representation = self._kl(posterior, prior.detach()).clamp_min(self.config.free_nats).mean()
        total = (
            reconstruction
            + start_reconstruction
            + reward_loss
            + continue_loss
            + success_loss
            + self.config.dyn_scale * dynamics
            + self.config.rep_scale * representation
        )
        return total, {
            "reconstruction": float(reconstruction.detach()),
            "reward": float(reward_loss.detach()),
            "continue_bce": float(continue_loss.detach()),
            "success_bce": float(success_loss.detach()),
            "kl_dynamics": float(dynamics.detach()),
        }

    def predict_transitions(self, batch: Batch) -> TransitionPredictions:
        filtered = self._filter(batch, sample=False)
        prior_stoch = self._latent(filtered["prior"], sample=False)
        features = torch.cat([filtered["deter"], prior_stoch], -1)
        return TransitionPredictions(
            self.reward_head.mean(features),
            self.success_head.prob(features),
            self.continue_head.prob(features),
            features,
        )

    # ------------------------------------------------------------------------------- inference

    def initial_state(self, observations: torch.Tensor) -> State:
        deter = torch.zeros(observations.shape[0], self.config.deter, device=observations.device)
        stoch = self._latent(self._posterior(deter, self._embed(observations)), sample=False)
        return {"deter": deter, "stoch": stoch}

    def observe(self, observations: torch.Tensor, actions: torch.Tensor) -> State:
        state = self.initial_state(observations[:, 0])
        deter, stoch = state["deter"], state["stoch"]
        encoded = self.encode_actions(actions)
        for t in range(1, observations.shape[1]):
            deter = self._transition(deter, stoch, encoded[:, t - 1])
            stoch = self._latent(self._posterior(deter, self._embed(observations[:, t])), sample=False)
        return {"deter": deter, "stoch": stoch}

    def update(self, state: State, actions: torch.Tensor, observations: torch.Tensor) -> State:
        deter = self._transition(state["deter"], state["stoch"], self.encode_actions(actions))
        stoch = self._latent(self._posterior(deter, self._embed(observations)), sample=False)
        return {"deter": deter, "stoch": stoch}

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
        """Imagine one step with the prior; uncertainty is the prior's entropy (nats, summed over latents)."""
        deter = self._transition(state["deter"], state["stoch"], self.encode_actions(actions))
        prior = self._probs(self.prior_net(deter))
        stoch = self._latent(prior, sample, generator, tiles)
        features = torch.cat([deter, stoch], -1)
        entropy = -(prior * torch.log(prior)).sum((-1, -2))
        return StepOutput(
            {"deter": deter, "stoch": stoch},
            self.reward_head.mean(features),
            self.success_head.prob(features),
            self.continue_head.prob(features),
            entropy,
        )

    def decode(self, state: State) -> torch.Tensor:
        """Decoded observations: state vectors, or ``(B, H, W, 3)`` uint8 frames."""
        if self.image_shape:
            return to_frames(self.decoder(self.features(state)))
        return symexp(self.decoder(self.features(state)))

    def features(self, state: State) -> torch.Tensor:
        return torch.cat([state["deter"], state["stoch"]], -1)
