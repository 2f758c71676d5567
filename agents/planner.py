"""A policy that plans: at every real step it imagines many short futures in a world model, from the
real state, and acts on the one its imagination scores best (model-predictive control, as PETS and
TD-MPC2 do).

The model only has to be right a short way ahead, which is where it is right: a planner that
re-imagines from the real state at each step never meets the compounding error of a whole imagined
episode. Two optimisers over action sequences:

- ``cem`` — the cross-entropy method: sample sequences from a Gaussian (a categorical per step for
  discrete actions), refit it on the best ``elites``, repeat ``iterations`` times;
- ``mppi`` — model-predictive path integral: refit on every sample, weighted by the softmax of its
  score (scores are standardised first, so ``temperature`` means the same on every task).

A sequence's score is its discounted imagined return, each reward weighted by the probability that
the episode is still going (the continue head), minus ``penalty`` × the members' disagreement, plus
a terminal value where one is given. With ``particles`` > 1 each sequence is imagined under that
many ensemble members (PETS's TS∞) and scored by mean − ``pessimism`` × their spread, so futures the
members disagree on lose. The previous step's plan, shifted by one, is warm-started and is always
among the samples, so a plan is never dropped for a worse one by chance.

One decision for ``N`` real envs is one batched model call per imagined step for all ``N × samples ×
particles`` futures::

    planner = Planner(load_world_model("models/pendulum"), PlannerConfig(horizon=15))
    actions = planner.act(observations)         # or the policy spec "plan:models/pendulum@horizon=15"
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from imaginarium.config import check_number, config_from_dict
from imaginarium.dataset import Dataset, load_dataset
from imaginarium.errors import ImaginariumError
from imaginarium.models import StepOutput, WorldModel
from imaginarium.models.rows import row_stepper
from imaginarium.models.starts import DIVERGENCE_STDS, DataLimits, data_limits
from imaginarium.policy import detect_sb3_algorithm, load_sb3_policy, mark_slots
from imaginarium.rewards.reward_rules import required_rule

LOGGER = logging.getLogger(__name__)
METHODS = ("cem", "mppi")
PRIORS = ("none", "data", "agent")


@dataclass(frozen=True)
class PlannerConfig:
    """Settings of the planner; the defaults plan 20+ times a second for one env on a laptop CPU."""

    #: ``cem`` (refit on the elites) or ``mppi`` (refit on every sample, softmax-weighted)
    method: str = "mppi"
    #: imagined steps of each candidate future, at most (``max_nmse`` may plan fewer)
    horizon: int = 25
    #: candidate action sequences per decision
    samples: int = 128
    #: refits per decision (the warm start from the last decision makes one enough)
    iterations: int = 1
    #: ``cem``: the best sequences the distribution is refitted on
    elites: int = 32
    #: ``mppi``: softmax temperature over standardised scores (lower follows the best more closely)
    temperature: float = 0.5
    #: discount of imagined rewards
    discount: float = 0.99
    #: ensemble members each sequence is imagined under (scored by mean - pessimism x spread)
    particles: int = 1
    #: how many spreads across particles a sequence's score loses
    pessimism: float = 0.0
    #: reward minus this x the members' disagreement at each step (runs every member: costlier)
    penalty: float = 0.0
    #: what a future is worth after its last imagined step: ``data`` (a value of states fitted on the
    #: discounted returns that followed them in the model's dataset: the behaviour's value, so short
    #: horizons still see which states lead to long, rewarding episodes), ``none``, or ``auto``
    #: (``data`` where the model's card names a dataset of states that can be read, else ``none``)
    value: str = "auto"
    #: an SB3 SAC or TD3 agent trained in this model (``imagine-train``) whose critic values a future's
    #: last state instead: the lesser of its Q-networks at the agent's own action, a value of acting
    #: well rather than of the behaviour (loaded the safe way: its weights only)
    critic: str = ""
    #: a policy that proposes ``prior_share`` of the candidates by acting on each imagined state, with
    #: ``prior_std`` of noise (the policy prior of MBOP and TD-MPC2): ``data``, behaviour cloning fitted
    #: on the model's dataset, keeps the search near actions the data shows, where the model is right;
    #: ``agent``, the actor of the ``critic`` agent, searches around what that agent would do (TD-MPC2);
    #: ``none`` samples around the plan alone. Continuous actions only
    prior: str = "none"
    prior_share: float = 0.25
    prior_std: float = 0.1
    #: training steps of the ``data`` prior (batches of 256)
    prior_steps: int = 10_000
    #: what ends an imagined future: ``learned`` (the model's continue head) or ``rule`` (the real
    #: task's own termination rule applied to the predicted state, where one is known)
    termination: str = "learned"
    #: what a future earns: ``learned`` (the model's reward) or ``rule`` (the real task's own reward
    #: computed from the predicted states and the action, where one is known)
    reward: str = "learned"
    #: a future ends where it leaves the recorded states' range widened by this many of their
    #: standard deviations (the model's heads are guesses there); never more than the divergence
    #: limits (``DIVERGENCE_STDS``), which ``inf`` leaves alone
    margin: float = 1.0
    #: futures stop where the model stops being right: the horizon is cut to the longest step its
    #: card's held-out open-loop check (``nmse_at_N``, N = 1, 5, 10, 25, 50) kept the normalised
    #: error at most this (InvertedPendulum-v5's ``medium`` model: 0.05 at 10 steps, 0.26 at 25; the
    #: planner kept the pole up 1,000 steps at 10 and fell within 352 at 25); 0 plans all of ``horizon``
    max_nmse: float = 0.1
    #: exponent of the sampling noise's power spectrum over the horizon, ``1/f^noise_beta`` (iCEM's
    #: coloured noise): 0 is white noise, each step drawn apart; 1-3 draws smoother sequences (on
    #: Reacher's data 2 plans better, on Pendulum's it loses the swing-up: docs/studies.md).
    #: Continuous actions only
    noise_beta: float = 0.0
    #: first standard deviation of continuous actions, as a share of half the action range
    init_std: float = 0.5
    #: the least standard deviation a refit may reach, as a share of half the action range
    min_std: float = 0.05
    #: share of the old distribution kept at each refit (smooths the plan between iterations)
    momentum: float = 0.1
    #: seeds the candidate sequences
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ImaginariumError(f"planner method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("horizon", "samples", "iterations", "elites", "particles"):
            check_number(getattr(self, name), name, at_least=1, integer=True, where="planner")
        if self.method == "cem" and self.elites > self.samples:
            raise ImaginariumError(f"planner: elites ({self.elites}) cannot exceed samples ({self.samples})")
        check_number(self.temperature, "temperature", above=0, where="planner")
        check_number(self.discount, "discount", above=0, at_most=1, where="planner")
        if self.value not in ("auto", "data", "none"):
            raise ImaginariumError(f"planner value must be auto, data or none, got {self.value!r}")
        if self.prior not in PRIORS:
            raise ImaginariumError(f"planner prior must be one of {', '.join(PRIORS)}, got {self.prior!r}")
        if self.prior == "agent" and not self.critic:
            raise ImaginariumError(
                "planner prior=agent proposes the actions of the critic= agent: give critic"
            )
        check_number(self.prior_share, "prior_share", above=0, at_most=1, where="planner")
        check_number(self.prior_std, "prior_std", at_least=0, where="planner")
        check_number(self.prior_steps, "prior_steps", at_least=1, integer=True, where="planner")
        if self.termination not in ("learned", "rule"):
            raise ImaginariumError(f"planner termination must be learned or rule, got {self.termination!r}")
        if self.reward not in ("learned", "rule"):
            raise ImaginariumError(f"planner reward must be learned or rule, got {self.reward!r}")
        check_number(self.margin, "margin", at_least=0, allow_inf=True, where="planner")
        for name in ("pessimism", "penalty"):
            check_number(getattr(self, name), name, at_least=0, where="planner")
        check_number(self.noise_beta, "noise_beta", at_least=0, where="planner")
        check_number(self.init_std, "init_std", above=0, where="planner")
        check_number(self.max_nmse, "max_nmse", at_least=0, where="planner")
        check_number(self.min_std, "min_std", above=0, at_most=self.init_std, where="planner")
        check_number(self.momentum, "momentum", at_least=0, below=1, where="planner")
        check_number(self.seed, "seed", integer=True, where="planner")


def planner_config(options: dict[str, Any], where: str = "planner options") -> PlannerConfig:
    """A config from ``key=value`` options (numbers given as floats become integers where the field
    is one), unknown keys refused by name."""
    values = {}
    for key, value in options.items():
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        values[key] = value
    return config_from_dict(PlannerConfig, values, where=where)


class Planner:
    """Model-predictive control in ``model``: a batched :class:`~imaginarium.policy.Policy`.

    :param model: any world model; with a recurrent family the planner filters the real history
        through it (``model.update``) as a Dreamer actor does.
    """

    def __init__(self, model: WorldModel, config: PlannerConfig | None = None) -> None:
        self.model = model.eval()
        config = config or PlannerConfig()
        #: the settings planned with: ``horizon`` is the one ``max_nmse`` leaves
        self.config = replace(config, horizon=trusted_horizon(model, config.horizon, config.max_nmse))
        self.observation_space = model.input_space
        self.action_space = model.action_space
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self._start = int(self.action_space.start) if self.discrete else 0
        if not self.discrete:
            space = self.action_space
            if not (isinstance(space, gym.spaces.Box) and space.is_bounded()):
                raise ImaginariumError(f"the planner needs bounded or discrete actions, got {space}")
            device = model.device
            self._low = torch.as_tensor(space.low, dtype=torch.float32, device=device).reshape(-1)
            self._high = torch.as_tensor(space.high, dtype=torch.float32, device=device).reshape(-1)
        if self.config.particles > 1 and model.rollout_members < 2:
            raise ImaginariumError(
                f"particles={self.config.particles} needs an ensemble: this {model.family} model has one member"
            )
        self.generator = torch.Generator(model.device).manual_seed(self.config.seed)
        #: one env's futures in one compiled call a step where the model allows (a CPU ensemble)
        self._rows = row_stepper(model)
        self._rng = np.random.default_rng(self.config.seed)
        self._support = self._data_support(model)
        self._limits = data_limits(model)
        self._value = self._terminal_value(model)
        self._prior: nn.Module | None = None
        if self.config.prior != "none" and self.discrete:
            raise ImaginariumError(f"planner prior={self.config.prior} needs continuous actions")
        if self.config.prior == "data":
            self._prior = data_prior(model, self.config.prior_steps)
        elif self.config.prior == "agent":
            assert isinstance(self._value, CriticValue)  # the config asks for critic= with it
            self._prior = AgentPrior(self._value)
        #: candidates of each row the prior proposes: the last ones, never the warm-started plan
        self._proposed = (
            0
            if self._prior is None
            else min(self.config.samples - 1, max(1, round(self.config.prior_share * self.config.samples)))
        )
        env_id, frames = (getattr(model, "card", None) or {}).get("env_id"), model.observes_pixels
        self._rule = (
            required_rule("termination", env_id, frames, "termination=rule")
            if self.config.termination == "rule"
            else None
        )
        self._reward_rule = (
            required_rule("reward", env_id, frames, "reward=rule") if self.config.reward == "rule" else None
        )
        self._floor = self._reward_floor(model)
        self._plan: torch.Tensor | None = None  # (N, H, A) mean in [-1, 1], or (N, H, K) probabilities
        self._belief: dict[str, torch.Tensor] | None = None
        self._last_actions: torch.Tensor | None = None
        self._fresh = np.zeros(0, dtype=bool)
        #: imagined model steps taken so far (one per horizon step and iteration), for cost reports
        self.model_calls = 0

    def _data_support(self, model: WorldModel) -> DataLimits | None:
        """The box of states the planner trusts futures in, from the states kept with the model: the
        recorded range widened by ``margin`` stds, and never past the divergence limits."""
        starts = getattr(model, "starts", None)
        if starts is None or model.observes_pixels:
            return None
        return starts.limits(min(self.config.margin, DIVERGENCE_STDS))

    def _terminal_value(self, model: WorldModel) -> nn.Module | None:
        if self.config.critic:
            return CriticValue.load(self.config.critic, model)
        if self.config.value == "none":
            return None
        if self.config.value == "data":
            return data_value(model, self.config.discount)
        try:
            return data_value(model, self.config.discount)
        except ImaginariumError as error:
            LOGGER.warning("planner: planning without a terminal value (value=auto): %s", error)
            return None

    def _reward_floor(self, model: WorldModel) -> float:
        """What a future is assumed to earn at each step after it leaves the data: nothing (its episode
        ends) or the worst reward recorded, whichever is less, so leaving is never a way out of costs."""
        rewards = getattr(getattr(model, "starts", None), "rewards", None)
        return min(0.0, float(rewards.min())) if rewards is not None and len(rewards) else 0.0

    def continues(self, out: StepOutput) -> torch.Tensor:
        """``(B,)`` the probability each imagined episode goes on after the step ``out``: the continue
        head's, or 0/1 by the task's rule (``termination="rule"``)."""
        if self._rule is None:
            return out.continue_prob.nan_to_num(0.0)
        return (~self._rule(self.model.decode(out.state))).float()

    # ------------------------------------------------------------------------- policy protocol

    def reset(self, slots: np.ndarray) -> None:
        """New episodes in rows ``slots``: their plans and histories start afresh."""
        self._fresh = mark_slots(self._fresh, slots)

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """The first action of each row's best plan, from the real ``observations`` ``(N, ...)``."""
        self._observe(observations)
        assert self._belief is not None and self._plan is not None
        plan = self._optimise(self._belief, self._plan)
        first = plan[:, 0]
        actions = first.argmax(-1) + self._start if self.discrete else self._to_env(first)
        self._plan = self._shift(plan)
        self._last_actions = actions
        return actions.cpu().numpy().astype(self.action_space.dtype, copy=False)

    @torch.no_grad()
    def follow(self, observations: np.ndarray, actions: np.ndarray) -> None:
        """Take in a real step decided elsewhere (a shield's policy acted): the history and the warm
        start move on as if the planner had acted, so a later :meth:`act` plans from where things are."""
        self._observe(observations)
        assert self._plan is not None
        self._plan = self._shift(self._plan)
        self.taken(actions)

    def taken(self, actions: np.ndarray) -> None:
        """The actions actually executed after the last :meth:`act` or :meth:`follow`, where they differ
        from the planner's (a recurrent model filters what was done, not what was planned)."""
        dtype = torch.long if self.discrete else torch.float32
        self._last_actions = torch.as_tensor(np.asarray(actions), dtype=dtype, device=self.model.device)

    def _observe(self, observations: np.ndarray) -> None:
        """Filter the real ``observations`` into each row's state; fresh rows start a new plan."""
        device = self.model.device
        observed = torch.as_tensor(np.asarray(observations), dtype=torch.float32, device=device)
        count = len(observed)
        fresh = self._fresh_rows(count)
        self._belief = self._filter(observed, fresh)
        if self._plan is None or len(self._plan) != count:
            self._plan = self._initial_plan(count)
        elif fresh.any():
            rows = torch.as_tensor(np.flatnonzero(fresh), device=device)
            self._plan[rows] = self._initial_plan(len(rows))

    # ------------------------------------------------------------------------------- planning

    def _fresh_rows(self, count: int) -> np.ndarray:
        """Which rows start an episode now (and forget the marks)."""
        fresh = np.ones(count, dtype=bool)
        if self._belief is not None and self._last_actions is not None and len(self._last_actions) == count:
            fresh[: min(count, len(self._fresh))] = self._fresh[:count]
            fresh[len(self._fresh) :] = False
        self._fresh = np.zeros(count, dtype=bool)
        return fresh

    def _filter(self, observed: torch.Tensor, fresh: np.ndarray) -> dict[str, torch.Tensor]:
        """The model's state of each row: started from the observation, or updated with the last step."""
        if fresh.all():
            return self.model.initial_state(observed)
        assert self._belief is not None and self._last_actions is not None
        state = self.model.update(self._belief, self._last_actions, observed)
        if fresh.any():
            rows = torch.as_tensor(np.flatnonzero(fresh), device=observed.device)
            started = self.model.initial_state(observed[rows])
            state = {key: value.index_copy(0, rows, started[key]) for key, value in state.items()}
        return state

    def _initial_plan(self, count: int) -> torch.Tensor:
        horizon, device = self.config.horizon, self.model.device
        if self.discrete:
            size = int(self.action_space.n)
            return torch.full((count, horizon, size), 1.0 / size, device=device)
        return torch.zeros((count, horizon, len(self._low)), device=device)

    def _shift(self, plan: torch.Tensor) -> torch.Tensor:
        """Tomorrow's warm start: the plan one step on, its last step repeated."""
        return torch.cat([plan[:, 1:], plan[:, -1:]], dim=1)

    def _optimise(self, belief: dict[str, torch.Tensor], plan: torch.Tensor) -> torch.Tensor:
        config = self.config
        std = None if self.discrete else torch.full_like(plan, config.init_std)
        for _ in range(config.iterations):
            candidates = self._sample(plan, std)  # (N, S, H, A) or (N, S, H) action indices
            scores = self._score(belief, candidates)  # (N, S)
            plan, std = self._refit(plan, std, candidates, scores)
        return plan

    def _sample(self, plan: torch.Tensor, std: torch.Tensor | None) -> torch.Tensor:
        """``samples`` sequences per row; the first is the plan itself (its mode for discrete actions)."""
        count, samples = len(plan), self.config.samples
        if self.discrete:
            flat = plan.reshape(-1, plan.shape[-1])
            drawn = torch.multinomial(flat, samples, replacement=True, generator=self.generator)
            drawn = drawn.reshape(count, self.config.horizon, samples).permute(0, 2, 1)
            drawn[:, 0] = plan.argmax(-1)
            return drawn
        assert std is not None
        noise = coloured_noise(
            (count, samples, *plan.shape[1:]), self.config.noise_beta, self.generator, plan.device
        )
        noise[:, 0] = 0.0
        return (plan[:, None] + std[:, None] * noise).clamp(-1.0, 1.0)

    def _score(self, belief: dict[str, torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
        """Discounted imagined return of every candidate of every row, ``(N, S)``."""
        config, model = self.config, self.model
        count, samples = candidates.shape[:2]
        particles = config.particles
        futures = samples * particles
        state = {key: value.repeat_interleave(futures, dim=0) for key, value in belief.items()}
        if particles > 1:  # each sequence's particles under distinct members, from a random first one
            first = torch.randint(
                model.rollout_members, (count * samples, 1), device=model.device, generator=self.generator
            )
            members = (first + torch.arange(particles, device=model.device)) % model.rollout_members
            state = model.pin_members(state, members.reshape(-1))
        total = torch.zeros(count * futures, device=model.device)
        alive = torch.ones_like(total)
        penalised = config.penalty > 0
        discounts = config.discount ** torch.arange(config.horizon, dtype=torch.float32)
        tails = discounts.flip(0).cumsum(0).flip(0).tolist()  # the discount left from each step on
        for step in range(config.horizon):
            if self._proposed:  # the prior acts on the state its sequences reached (a first particle's)
                self._propose(state, candidates, step, particles)
            chosen = (
                candidates[:, :, step] + self._start
                if self.discrete
                else self._to_env(candidates[:, :, step])
            )
            actions = chosen.repeat_interleave(particles, dim=1).flatten(0, 1)  # (N·S·P, ...)
            before = model.decode(state) if self._reward_rule is not None else None
            out = self._step(state, actions, penalised)
            reward = out.reward if before is None else self._rule_reward(before, actions, out.state)
            if penalised and out.uncertainty is not None:
                reward = reward - config.penalty * out.uncertainty
            finite = torch.isfinite(reward)
            decoded = (
                model.decode(out.state) if self._limits is not None or self._support is not None else None
            )
            if (
                self._support is not None
            ):  # inside the divergence limits too: only the reward is left to check
                inside = self._support.within(decoded)
                if self._limits is not None:
                    finite &= self._limits.within_rewards(out.reward)
                total += ~(inside & finite) * alive * self._floor * tails[step]
                finite &= inside
            elif self._limits is not None:  # a runaway reward wins no plan
                finite &= self._limits.within(decoded, out.reward)
            total += (config.discount**step) * alive * torch.where(finite, reward, torch.zeros_like(reward))
            alive = torch.where(finite, alive * self.continues(out), torch.zeros_like(alive))
            state = out.state
            self.model_calls += 1
        if self._value is not None:  # futures that ended or left the data: their states may be anything
            worth = torch.where(alive > 0, self._value(model.decode(state)), torch.zeros_like(alive))
            total += (config.discount**config.horizon) * alive * worth.nan_to_num(0.0)
        total = total.reshape(count, samples, particles)
        score = total.mean(-1)
        if particles > 1 and config.pessimism > 0:
            score = score - config.pessimism * total.std(-1)
        return score

    def _step(self, state: dict[str, torch.Tensor], actions: torch.Tensor, penalised: bool) -> StepOutput:
        """One sampled imagined step of every future. A few rows of a CPU ensemble (one env's decision
        at the defaults) take one compiled call (:mod:`imaginarium.models.rows`) instead of torch's
        hundreds of small ones, drawing from the planner's numpy generator; the rest the model's own."""
        if self._rows is None or not self._rows.pays(len(actions), penalised):
            return self.model.step(state, actions, uncertainty=penalised, generator=self.generator)
        pinned = state.get("member")
        out = self._rows.step(
            state["observation"].numpy(),
            actions.numpy(),
            self._rng,
            penalised,
            members=None if pinned is None else pinned.numpy(),
        )
        following = {"observation": torch.from_numpy(out.observations)}
        if pinned is not None:
            following["member"] = pinned
        return StepOutput(
            following,
            torch.from_numpy(out.rewards.astype(np.float32)),
            torch.from_numpy(out.success_prob),
            torch.from_numpy(out.continue_prob),
            None if out.uncertainty is None else torch.from_numpy(out.uncertainty),
        )

    def _rule_reward(self, before: torch.Tensor, actions: torch.Tensor, state: dict) -> torch.Tensor:
        """The task's own reward for stepping from the decoded ``before`` to ``state`` with ``actions``."""
        assert self._reward_rule is not None
        after = self.model.decode(state)
        reward = self._reward_rule(
            before.float().cpu().numpy(), actions.cpu().numpy(), after.float().cpu().numpy()
        )
        return torch.as_tensor(np.asarray(reward), dtype=after.dtype, device=after.device)

    def _propose(
        self, state: dict[str, torch.Tensor], candidates: torch.Tensor, step: int, particles: int
    ) -> None:
        """Write the prior's noisy actions at ``step`` into its candidates (the last ``_proposed`` of
        each row), so the refit learns from what was imagined."""
        assert self._prior is not None
        count, samples = candidates.shape[:2]
        decoded = self.model.decode(state).reshape(count, samples, particles, -1)[:, -self._proposed :, 0]
        proposed = self._prior(decoded.flatten(0, 1)).reshape(count, self._proposed, -1)
        noise = torch.randn(proposed.shape, device=proposed.device, generator=self.generator)
        candidates[:, -self._proposed :, step] = (proposed + self.config.prior_std * noise).clamp(-1.0, 1.0)

    def _refit(
        self,
        plan: torch.Tensor,
        std: torch.Tensor | None,
        candidates: torch.Tensor,
        scores: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The sampling distribution refitted on the candidates, weighted by their scores."""
        config = self.config
        if config.method == "cem":
            elite = scores.topk(config.elites, dim=1).indices
            weights = torch.zeros_like(scores).scatter_(1, elite, 1.0 / config.elites)
        else:
            spread = scores.std(1, keepdim=True, unbiased=False)
            standard = (scores - scores.mean(1, keepdim=True)) / (spread + 1e-6)
            weights = torch.softmax(standard / config.temperature, dim=1)
        keep = config.momentum
        if self.discrete:
            chosen = torch.nn.functional.one_hot(candidates, plan.shape[-1]).float()  # (N, S, H, K)
            refit = (weights[:, :, None, None] * chosen).sum(1)
            floor = 0.05 / plan.shape[-1]  # every action stays possible
            refit = keep * plan + (1 - keep) * refit
            refit = refit.clamp_min(floor)
            return refit / refit.sum(-1, keepdim=True), None
        assert std is not None
        w = weights[:, :, None, None]
        mean = (w * candidates).sum(1)
        spread = ((w * (candidates - mean[:, None]) ** 2).sum(1)).sqrt()
        refit_std = (keep * std + (1 - keep) * spread).clamp(config.min_std, config.init_std)
        return keep * plan + (1 - keep) * mean, refit_std

    def _to_env(self, unit: torch.Tensor) -> torch.Tensor:
        """Actions in ``[-1, 1]`` mapped onto the action space's bounds."""
        return self._low + (unit + 1.0) * 0.5 * (self._high - self._low)


def trusted_horizon(model: WorldModel, horizon: int, max_nmse: float) -> int:
    """``horizon``, cut to the longest step the model card's open-loop check (``fidelity``'s
    ``nmse_at_N``) found within ``max_nmse`` before any checked step above it. Unchanged where
    ``max_nmse`` is 0, the card has no check, or even one step is above it (the check then says
    nothing about how far to plan; a warning says so)."""
    fidelity = (getattr(model, "card", None) or {}).get("fidelity") or {}
    checked = sorted(
        (int(key.removeprefix("nmse_at_")), float(value))
        for key, value in fidelity.items()
        if key.startswith("nmse_at_") and key.removeprefix("nmse_at_").isdigit() and value is not None
    )
    if max_nmse <= 0 or not checked:
        return horizon
    trusted = 0
    for steps, error in checked:
        if not error <= max_nmse:  # NaN: the check had no episode that long, so not trusted
            break
        trusted = steps
    if trusted == 0:
        LOGGER.warning(
            "planner: the model's one-step open-loop NMSE %.3g is above max_nmse=%g; planning the whole horizon",
            checked[0][1],
            max_nmse,
        )
        return horizon
    if trusted == checked[-1][0]:
        return horizon
    return min(horizon, trusted)


def coloured_noise(
    shape: tuple[int, ...], exponent: float, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """Standard normal noise of ``shape`` ``(..., H, A)`` whose power over the horizon ``H`` falls as
    ``1/f^exponent`` (white at 0): Gaussian Fourier coefficients shaped by ``f^(-exponent/2)``, turned
    back by the inverse real FFT and scaled to unit variance at every step."""
    if exponent == 0:
        return torch.randn(shape, device=device, generator=generator)
    *lead, horizon, actions = shape
    frequencies = torch.fft.rfftfreq(horizon, device=device)
    frequencies[0] = 1.0 / horizon  # the mean of the sequence is drawn like its slowest wave
    scale = frequencies ** (-exponent / 2.0)
    coefficients = torch.randn((*lead, len(scale), actions, 2), device=device, generator=generator)
    coefficients[..., 0, :, 1] = 0.0  # the inverse real FFT reads only the real part of the mean
    if horizon % 2 == 0:
        coefficients[..., -1, :, 1] = 0.0  # and of the highest frequency
    spectrum = torch.view_as_complex(coefficients) * scale[:, None]
    # each step's variance: the mean's and the highest frequency's power, and every other frequency's
    # twice over (it appears with its mirror) in amplitude, four times in power
    power = scale**2
    paired = power[1:-1] if horizon % 2 == 0 else power[1:]
    variance = (power[0] + 4.0 * paired.sum() + (power[-1] if horizon % 2 == 0 else 0.0)) / horizon**2
    drawn = torch.fft.irfft(spectrum, n=horizon, dim=-2)
    return drawn / variance.sqrt()


class StateValue(nn.Module):
    """A small network from states to the discounted return that follows them."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, scale: float, hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.scale = scale
        self.net = nn.Sequential(
            nn.Linear(len(mean), hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net((states - self.mean) / self.std).squeeze(-1) * self.scale


class StatePolicy(nn.Module):
    """A small network from states to actions in ``[-1, 1]``, the planner's prior."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, actions: int, hidden: int = 256) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.net = nn.Sequential(
            nn.Linear(len(mean), hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, actions),
            nn.Tanh(),
        )

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net((states - self.mean) / self.std)


class CriticValue(nn.Module):
    """The value of states to an SB3 SAC or TD3 agent: ``min_i Q_i(s, π(s))`` of its twin critics,
    in the action scale its critics learned in."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy

    @classmethod
    def load(cls, path: str | Path, model: WorldModel) -> CriticValue:
        """The critic of the agent at ``path`` (its weights only, never its code), checked against the
        spaces of ``model``.

        :raises ImaginariumError: a file that is no SAC or TD3 agent, or one of other spaces.
        """
        path = Path(path)
        try:
            algorithm = detect_sb3_algorithm(path)
        except (OSError, ImaginariumError) as error:
            raise ImaginariumError(f"planner critic {str(path)!r}: {error}") from None
        if algorithm not in ("SAC", "TD3"):
            raise ImaginariumError(
                f"planner critic {str(path)!r} is a {algorithm} agent; it needs SAC or TD3"
            )
        policy = load_sb3_policy(path, algorithm, str(model.device))
        if policy.observation_space.shape != model.input_space.shape:
            raise ImaginariumError(
                f"planner critic {str(path)!r} sees observations of shape {policy.observation_space.shape}, "
                f"the model {model.input_space.shape}"
            )
        return cls(policy)

    def observe(self, states: torch.Tensor) -> torch.Tensor:
        """States as the agent saw observations in training: inside its observation space."""
        low = torch.as_tensor(self.policy.observation_space.low, dtype=states.dtype, device=states.device)
        high = torch.as_tensor(self.policy.observation_space.high, dtype=states.dtype, device=states.device)
        return torch.maximum(torch.minimum(states, high), low)

    def act(self, states: torch.Tensor) -> torch.Tensor:
        """The agent's own actions, in ``[-1, 1]`` of the action space (SB3's scaled actions)."""
        return self.policy._predict(self.observe(states), deterministic=True)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        observations = self.observe(states)
        actions = self.policy._predict(observations, deterministic=True)
        return torch.cat(self.policy.critic(observations, actions), dim=1).min(dim=1).values


class AgentPrior(nn.Module):
    """The actor of the critic's agent as the planner's prior: what it would do in each state."""

    def __init__(self, critic: CriticValue) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.critic.act(states)


#: what was fitted on a model's dataset, by (what, dataset, settings, device): every planner of a
#: process fits each once
_FITTED: dict[tuple[Any, ...], nn.Module] = {}


def data_value(model: WorldModel, discount: float, steps: int = 2_000, seed: int = 0) -> StateValue:
    """The value of states under the policies that logged the model's dataset: fitted by regression on
    the discounted returns that followed each recorded state (episodes cut by a time limit count what
    was recorded). Kept per dataset and discount, so every planner of a process fits it once.

    :raises ImaginariumError: a model of frames, or one whose card names no readable dataset.
    """
    return _fitted_on_data(
        model,
        "value=data",
        (float(discount), steps, seed),
        lambda data: _fit_value(data, discount, steps, seed),
    )


def data_prior(model: WorldModel, steps: int = 10_000, seed: int = 0) -> StatePolicy:
    """The behaviour of the policies that logged the model's dataset, cloned: actions (in ``[-1, 1]``
    of the action space) regressed on states. Kept per dataset, so every planner of a process fits it once.

    :raises ImaginariumError: a model of frames, one whose card names no readable dataset, or
        discrete actions.
    """
    space = model.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ImaginariumError(f"prior=data needs continuous actions, got {space}")
    return _fitted_on_data(
        model, "prior=data", (steps, seed), lambda data: _fit_prior(data, space, steps, seed)
    )


def _fitted_on_data(model: WorldModel, what: str, settings: tuple[Any, ...], fit: Any) -> Any:
    """``fit(dataset)`` on the dataset the model's card names, checked to be the one it learned from,
    once per process for each ``what`` and ``settings``."""
    recorded = (getattr(model, "card", None) or {}).get("dataset") or {}
    path, fingerprint = recorded.get("path"), recorded.get("fingerprint")
    if model.observes_pixels or path is None:
        raise ImaginariumError(f"{what} needs a model of states whose card names its dataset")
    key = (what, str(fingerprint or path), *settings, str(model.device))
    if key not in _FITTED:
        try:
            data = load_dataset(path)
        except ImaginariumError as error:
            raise ImaginariumError(f"{what} cannot read the model's dataset: {error}") from None
        if fingerprint is not None and data.fingerprint() != fingerprint:
            raise ImaginariumError(f"{what}: the dataset at {path!r} is not the one the model learned from")
        _FITTED[key] = fit(data).to(model.device)
    return _FITTED[key]


def _fit_value(data: Dataset, discount: float, steps: int, seed: int) -> StateValue:
    returns = np.zeros(data.num_steps, dtype=np.float64)
    rewards = np.nan_to_num(data.rewards.astype(np.float64))
    for start, stop in zip(data.episode_starts[:-1], data.episode_starts[1:], strict=True):
        following = 0.0
        for row in range(stop - 1, start - 1, -1):
            following = rewards[row] + discount * following
            returns[row] = following
    keep = np.isfinite(data.observations).all(1) & ~data.action_free
    states = torch.as_tensor(data.observations[keep], dtype=torch.float32)
    targets = torch.as_tensor(returns[keep], dtype=torch.float32)
    scale = float(targets.abs().max().clamp_min(1e-6))
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        value = StateValue(states.mean(0), states.std(0) + 1e-6, scale)
    optimizer = torch.optim.Adam(value.parameters(), lr=3e-3)
    for _ in range(steps):
        rows = torch.randint(len(states), (256,), generator=generator)
        loss = nn.functional.mse_loss(value(states[rows]) / scale, targets[rows] / scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return value.eval().requires_grad_(False)


def _fit_prior(data: Dataset, space: gym.spaces.Box, steps: int, seed: int) -> StatePolicy:
    keep = np.isfinite(data.observations).all(1) & ~data.action_free & np.isfinite(data.actions).all(1)
    states = torch.as_tensor(data.observations[keep], dtype=torch.float32)
    low, high = (torch.as_tensor(bound, dtype=torch.float32).reshape(-1) for bound in (space.low, space.high))
    taken = torch.as_tensor(data.actions[keep], dtype=torch.float32).reshape(len(states), -1)
    targets = (2.0 * (taken - low) / (high - low) - 1.0).clamp(-1.0, 1.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        prior = StatePolicy(states.mean(0), states.std(0) + 1e-6, targets.shape[1])
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-3)
    for _ in range(steps):
        rows = torch.randint(len(states), (256,), generator=generator)
        loss = nn.functional.mse_loss(prior(states[rows]), targets[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return prior.eval().requires_grad_(False)


__all__ = [
    "METHODS",
    "PRIORS",
    "AgentPrior",
    "CriticValue",
    "Planner",
    "PlannerConfig",
    "StatePolicy",
    "StateValue",
    "data_prior",
    "data_value",
    "planner_config",
]
