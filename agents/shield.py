"""A safety shield: any policy, checked a few steps ahead in the world model before each action.

At every real step the shield imagines ``lookahead`` steps of the wrapped policy from the real state,
under every ensemble member (``particles`` futures per env). Where the imagined futures say the
episode is likely to end (the probability of ending within the look-ahead, by the continue head or
the task's rule as the planner's ``termination`` says, above ``risk``) or they leave the data (a state farther from every recorded one than held-out real
states ever are, :class:`~imaginarium.evaluation.KnownStates`), the planner's action is taken
instead. :attr:`ShieldPolicy.interventions` counts the replaced actions.

The futures are acted by a copy of the wrapped policy, started afresh at every check (so a stateful
policy, a Dreamer actor or a mixture, is imagined from a new episode, and the real one's history and
random draws are untouched). The planner takes in every real step, its own or not, so its history
and warm start stay those of the real episode.

    shield = ShieldPolicy(policy, Planner(model), ShieldConfig(lookahead=10))
    # or the spec shield:models/cartpole@lookahead=10,risk=0.3:sb3:agent.zip@noise=0.3
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch

from imaginarium.agents.planner import Planner
from imaginarium.config import check_number
from imaginarium.errors import ImaginariumError
from imaginarium.evaluation import KnownStates
from imaginarium.policy import Policy

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShieldConfig:
    """When the shield steps in."""

    #: imagined steps checked ahead of each action
    lookahead: int = 10
    #: the largest probability of the episode ending within the look-ahead that is let through
    risk: float = 0.3
    #: imagined futures per env (spread over the ensemble's members)
    particles: int = 8
    #: also step in where the imagined states leave the data
    outside: bool = True

    def __post_init__(self) -> None:
        for name in ("lookahead", "particles"):
            check_number(getattr(self, name), name, at_least=1, integer=True, where="shield")
        check_number(self.risk, "risk", at_least=0, below=1, where="shield")


class ShieldPolicy:
    """``policy`` whose actions the planner replaces where the model foresees the episode ending."""

    def __init__(self, policy: Policy, planner: Planner, config: ShieldConfig | None = None) -> None:
        self.policy, self.planner = policy, planner
        try:  # a copy acts the futures, so the real policy's state stays real
            self.imagined = copy.deepcopy(policy)
        except Exception as error:  # a user's policy object may not copy; a stateless one needs no copy
            LOGGER.warning("shield: the policy does not copy (%s); its own state acts the futures", error)
            self.imagined = policy
        self.config = config or ShieldConfig()
        self.model = planner.model
        if self.model.observes_pixels:
            raise ImaginariumError("the shield checks decoded states: it needs a model of states, not frames")
        self.observation_space = planner.observation_space
        self.action_space = planner.action_space
        starts = getattr(self.model, "starts", None)
        states = None if starts is None else getattr(starts, "states", None)
        self.known = (
            KnownStates(states) if self.config.outside and states is not None and len(states) >= 20 else None
        )
        self.generator = torch.Generator(self.model.device).manual_seed(planner.config.seed + 1)
        #: actions replaced by the planner, and actions decided, since the shield was made
        self.interventions = 0
        self.decisions = 0

    def reset(self, slots: np.ndarray) -> None:
        self.policy.reset(slots)
        self.planner.reset(slots)

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        observations = np.asarray(observations)
        proposed = np.asarray(self.policy.act(observations))
        unsafe = self.unsafe(observations, proposed)
        self.decisions += len(observations)
        if not unsafe.any():
            self.planner.follow(observations, proposed)
            return proposed
        self.interventions += int(unsafe.sum())
        planned = self.planner.act(observations)
        chosen = np.where(unsafe.reshape(-1, *[1] * (proposed.ndim - 1)), planned, proposed)
        chosen = chosen.astype(proposed.dtype, copy=False)
        self.planner.taken(chosen)
        return chosen

    def unsafe(self, observations: np.ndarray, proposed: np.ndarray) -> np.ndarray:
        """``(N,)`` whether following the policy from each observation, first with ``proposed``, is
        foreseen to end the episode or to leave the data within the look-ahead."""
        config, model = self.config, self.model
        count, particles = len(observations), config.particles
        device = model.device
        state = model.initial_state(
            torch.as_tensor(observations, dtype=torch.float32, device=device).repeat_interleave(particles, 0)
        )
        if model.rollout_members > 1:
            members = torch.arange(count * particles, device=device) % model.rollout_members
            state = model.pin_members(state, members)
        actions = np.repeat(proposed, particles, axis=0)
        self.imagined.reset(np.arange(count * particles))
        alive = torch.ones(count * particles, device=device)
        outside = torch.zeros(count * particles, dtype=torch.bool, device=device)
        low = torch.as_tensor(model.observation_space.low, device=device)
        high = torch.as_tensor(model.observation_space.high, device=device)
        for step in range(config.lookahead):
            out = model.step(
                state, torch.as_tensor(actions, device=device), uncertainty=False, generator=self.generator
            )
            finite = torch.isfinite(out.reward) & torch.isfinite(model.decode(out.state)).all(-1)
            alive = torch.where(finite, alive * self.planner.continues(out), torch.zeros_like(alive))
            if self.known is not None:
                outside |= self.known.distances(model.decode(out.state)).to(device) > self.known.threshold
            state = out.state
            if step + 1 < config.lookahead:
                seen = torch.clamp(model.decode(state), low, high).float().cpu().numpy()
                actions = np.asarray(self.imagined.act(seen))
        ending = 1.0 - alive.reshape(count, particles).mean(1)
        left = outside.reshape(count, particles).float().mean(1) > 0.5
        return ((ending > config.risk) | left).cpu().numpy()


__all__ = ["ShieldConfig", "ShieldPolicy"]
