"""``WAMImagined-v0``: a trained world model served as a Gymnasium environment, single or batched.

Episodes start from real initial states (the first observations of the dataset's episodes, filtered
through the model) and run entirely inside the model::

    env = gym.make("imaginarium:WAMImagined-v0", model="models/pendulum")
    envs = gym.make_vec("imaginarium:WAMImagined-v0", num_envs=1024, model="models/pendulum")

``info`` carries ``success`` (whether the episode would succeed if it ended at this step: the real
task's own rule applied to the decoded imagined states for the suite's tasks, else the model's success
head over 0.5; ``env.unwrapped.imagination.success_source`` says which), ``success_prob`` (the head),
``continue_prob``, ``uncertainty`` (unless ``track_uncertainty=False``), and the flags
``uncertainty_limit_hit`` and ``diverged`` when an episode was cut short for those reasons (a state or
reward not finite, or farther beyond the data's recorded range than ``DIVERGENCE_STDS`` of its
standard deviations: that step's reward is 0 and its observation the last one shown). The vector env
makes one model call per step for the whole batch and resets finished envs in the same step
(``final_obs`` and ``final_info`` in ``info``, laid out as Gymnasium's own vector envs lay them out:
``final_obs`` an object array of each finished env's last observation, ``final_info`` a dict of
arrays with a ``_key`` mask each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from imaginarium.config import check_number
from imaginarium.dataset import Dataset
from imaginarium.envs.suite import Task, get_task, success_rule
from imaginarium.errors import ImaginariumError
from imaginarium.models import State, WorldModel, load_world_model
from imaginarium.models.rows import RowPredictions, row_stepper
from imaginarium.models.starts import model_starts
from imaginarium.rewards.reward_rules import required_rule
from imaginarium.rewards.success import SuccessDefinition, SuccessJudge

OBSERVATION_KINDS = ("decoded", "latent", "pixels")
TERMINATIONS = ("continue", "success", "both", "rule", "none")
#: where rewards come from: the model's reward, or the task's own reward rule on the imagined states
REWARDS = ("model", "rule")
#: where imagined episodes start: the dataset's episode starts, or any recorded state (MBPO)
START_KINDS = ("episodes", "states")


@dataclass
class Transition:
    """One batched imagined step, as numpy arrays with leading dim ``N``."""

    state: State
    observations: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    info: dict[str, np.ndarray]

    def first(self) -> RowTransition:
        """The first row, in Python scalars."""
        return RowTransition(
            {key: value[:1] for key, value in self.state.items()},
            self.observations[0],
            float(self.rewards[0]),
            bool(self.terminated[0]),
            bool(self.truncated[0]),
            {key: value[0].item() for key, value in self.info.items()},
        )


def model_success_rule(model: WorldModel, task: Task | None = None) -> SuccessDefinition | None:
    """The success rule of ``task`` (default: the task on the model's card) when the model decodes
    states the rule can read; ``None`` for a task with no known rule or a model of frames, whose
    success head then decides."""
    if model.observes_pixels:
        return None
    if task is not None:
        return task.success
    card = getattr(model, "card", {}) or {}
    return success_rule(card.get("task") or card.get("env_id"))


def success_source(rule: SuccessDefinition | None) -> str:
    """How imagined success is decided, as reports name it: ``rule:<name>`` or ``head``."""
    return f"rule:{rule.name}" if rule is not None else "head"


class Imagination:
    """What the single and vector envs share: the model, start states, spaces, and one batched step.

    Options are those of :class:`ImaginedEnv`.
    """

    def __init__(
        self,
        model: str | Path | WorldModel,
        dataset: str | Path | Dataset | None = None,
        task: str | Task | None = None,
        observation: str = "decoded",
        termination: str = "continue",
        uncertainty_penalty: float = 0.0,
        uncertainty_limit: float | None = None,
        time_limit: int | None = None,
        track_uncertainty: bool = True,
        device: str = "cpu",
        pixels: int | None = None,
        starts: str = "episodes",
        reward: str = "model",
        precision: str = "float32",
    ) -> None:
        if observation not in OBSERVATION_KINDS:
            raise ImaginariumError(
                f"observation must be one of {', '.join(OBSERVATION_KINDS)}, got {observation!r}"
            )
        if termination not in TERMINATIONS:
            raise ImaginariumError(
                f"termination must be one of {', '.join(TERMINATIONS)}, got {termination!r}"
            )
        if starts not in START_KINDS:
            raise ImaginariumError(f"starts must be one of {', '.join(START_KINDS)}, got {starts!r}")
        if reward not in REWARDS:
            raise ImaginariumError(f"reward must be one of {', '.join(REWARDS)}, got {reward!r}")
        check_number(uncertainty_penalty, "uncertainty_penalty", at_least=0)
        if uncertainty_limit is not None:
            check_number(uncertainty_limit, "uncertainty_limit", above=0)
        if time_limit is not None:
            check_number(time_limit, "time_limit", at_least=1, integer=True)
        if not track_uncertainty and (uncertainty_penalty > 0 or uncertainty_limit is not None):
            raise ImaginariumError(
                "track_uncertainty=False cannot go with an uncertainty penalty or limit, which need it"
            )
        resolved = get_task(task) if isinstance(task, str) else task
        if isinstance(model, WorldModel):
            self.model = model.to(device).eval()
            if resolved is not None:
                resolved.check_spaces(self.model.observation_space, self.model.action_space, "the model")
        else:
            self.model = load_world_model(model, task=task, device=device)
        self.model.set_precision(precision)
        card = getattr(self.model, "card", {}) or {}
        rule = (
            resolved.success if resolved is not None else success_rule(card.get("task") or card.get("env_id"))
        )
        #: the real task's success rule, applied to decoded imagined states (``None``: the success head
        #: decides, for tasks with no known rule and for models of frames, which decode no state)
        self.success_rule: SuccessDefinition | None = None if self.model.observes_pixels else rule
        #: what decides ``info["success"]``: ``rule:<name>`` or ``head``
        self.success_source = f"rule:{rule.name}" if self.success_rule is not None else "head"
        env_id = resolved.env_id if resolved is not None else card.get("env_id")
        #: the task's termination and reward rules, on the decoded states, when asked for
        frames = self.model.observes_pixels
        self.termination_rule = (
            required_rule("termination", env_id, frames, "termination='rule'")
            if termination == "rule"
            else None
        )
        self.reward_rule = (
            required_rule("reward", env_id, frames, "reward='rule'") if reward == "rule" else None
        )
        recorded = model_starts(self.model, dataset)
        self.start_observations = recorded.inputs
        if starts == "states":
            if self.model.observes_pixels or recorded.states.shape[1:] != self.model.input_space.shape:
                raise ImaginariumError(
                    "starts='states' needs a model that observes the recorded states, not frames"
                )
            self.start_observations = recorded.states
        #: beyond these an imagined state or reward has diverged (``None``: a model of frames)
        self.limits = None if self.model.observes_pixels else recorded.limits()
        if self.start_observations.shape[1:] != self.model.input_space.shape:
            raise ImaginariumError(
                f"start states have shape {self.start_observations.shape[1:]}, the model observes "
                f"{self.model.input_space.shape}"
            )
        self.observation_kind = observation
        self.termination = termination
        self.uncertainty_penalty = float(uncertainty_penalty)
        self.uncertainty_limit = None if uncertainty_limit is None else float(uncertainty_limit)
        self.time_limit = (
            int(card.get("max_episode_steps") or 1000) if time_limit is None else int(time_limit)
        )
        self.track_uncertainty = bool(track_uncertainty)
        self.device = torch.device(device)
        self.generator = torch.Generator(self.device)
        self.rows = None  # chosen at the end of __init__; start(), used before then, reads it
        self.action_space = self.model.action_space
        space = self.model.input_space
        self.renderer = None
        if self.model.observes_pixels:
            if observation == "pixels" and pixels not in (None, space.shape[0]):
                raise ImaginariumError(
                    f"the model sees {space.shape[0]}×{space.shape[0]} frames; pixels={pixels} cannot be served"
                )
            if observation != "latent":
                self.observation_kind = "decoded"  # the model's own frames are its decoded observations
                self.observation_space = space
        if self.observation_kind == "decoded" and not self.model.observes_pixels:
            self.observation_space = gym.spaces.Box(space.low, space.high, space.shape, np.float32)
        elif self.observation_kind == "pixels":
            from imaginarium.envs.render import StateRenderer, check_pixels

            self.pixels = check_pixels(64 if pixels is None else pixels)
            task_name = card.get("task") or card.get("env_id")
            if task_name is None:
                raise ImaginariumError("observation 'pixels' needs a model whose card names its task")
            self.renderer = StateRenderer(get_task(task_name))
            self.observation_space = gym.spaces.Box(0, 255, (self.pixels, self.pixels, 3), np.uint8)
        elif self.observation_kind == "latent":
            with torch.inference_mode():
                features = self.model.features(self.start(np.zeros(1, dtype=np.int64)))
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (features.shape[-1],), np.float32)
        #: whether a step decodes the clipped states for the task's rules (success, termination, reward)
        self.needs_states = any(
            rule is not None for rule in (self.success_rule, self.termination_rule, self.reward_rule)
        )
        #: small batches step in one compiled call where the model has that path (see :meth:`step`)
        self.rows = row_stepper(self.model) if self.observation_kind == "decoded" else None
        if self.rows is not None and self.limits is not None:
            limits = self.limits
            self._row_limits = self.rows.limits(
                limits.state_low, limits.state_high, limits.reward_low, limits.reward_high
            )
        else:
            self._row_limits = None

    def start(self, indices: np.ndarray) -> State:
        """Model states of the real start states ``indices``."""
        if self.rows is not None:  # a CPU model: no copy to a device
            return self.model.initial_state(torch.from_numpy(self.start_observations[indices]))
        observations = torch.as_tensor(self.start_observations[indices], device=self.device)
        return self.model.initial_state(observations)

    def start_from(self, observation: Any) -> State:
        """The model state of one given real observation."""
        values = np.asarray(observation, dtype=np.float32)
        if values.shape != self.model.input_space.shape or not np.isfinite(values).all():
            raise ValueError(
                f"start_observation must be a finite array of shape {self.model.input_space.shape}, "
                f"got shape {values.shape}"
            )
        return self.model.initial_state(torch.as_tensor(values[None], device=self.device))

    def observe(self, state: State) -> np.ndarray:
        """``(N, *obs_shape)`` observations of the chosen kind: decoded ones clipped to the space, or
        the decoded states drawn by the real task's renderer (a state that is not finite draws black)."""
        if self.rows is not None:  # decoded states of a CPU ensemble: its state is the observation
            return self.rows.bounded(state["observation"].numpy())
        if self.observation_kind == "latent":
            return self.model.features(state).float().cpu().numpy()
        if self.model.observes_pixels:
            return self.model.decode(state).cpu().numpy()
        if self.observation_kind == "pixels":
            return np.stack([self._draw(row) for row in self.model.decode(state).float().cpu().numpy()])
        return self.observe_states(state)

    def observe_states(self, state: State) -> np.ndarray:
        """``(N, D)`` the decoded states clipped to the observation space, whatever kind is served."""
        decoded = self.model.decode(state).float()
        return torch.clamp(decoded, self.model.observation_low, self.model.observation_high).cpu().numpy()

    def _draw(self, decoded: np.ndarray) -> np.ndarray:
        if not np.isfinite(decoded).all():
            return np.zeros(self.observation_space.shape, np.uint8)
        low, high = self.model.observation_space.low, self.model.observation_space.high
        return self.renderer.frame(np.clip(decoded, low, high), self.pixels)

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()

    def check_actions(self, actions: Any, count: int) -> np.ndarray:
        """``count`` actions as the model takes them (see :func:`check_actions`)."""
        return check_actions(self.action_space, actions, count)

    def check_action(self, action: Any) -> np.ndarray:
        """One env's action as a batch of one for the model. A Box action must have exactly the space's
        shape: a batch of one, ``(1, *shape)``, is the vector env's form, and taking it here would let a
        batched policy pass for a single one.

        :raises ValueError: as :func:`check_actions` does.
        """
        shape = np.shape(action)
        if isinstance(self.action_space, gym.spaces.Box) and shape != self.action_space.shape:
            raise ValueError(
                f"action has shape {shape}, expected {self.action_space.shape} for {self.action_space}"
            )
        return self.check_actions(action, 1)

    def judge(self, rows: int) -> SuccessJudge | None:
        """What keeps the recent decoded states of ``rows`` episodes for the success rule (``None``
        when the head decides)."""
        if self.success_rule is None:
            return None
        return SuccessJudge(self.success_rule, rows, int(np.prod(self.model.observation_space.shape)))

    def step(
        self, state: State, actions: np.ndarray, rng: np.random.Generator, judge: SuccessJudge | None = None
    ) -> Transition:
        """One model call for the whole batch; ``rng`` seeds the model's sampling and the continue draws;
        ``judge`` (from :meth:`judge`, restarted with its episodes) decides success by the task's rule.

        A few rows of an ensemble on the CPU (:meth:`RowStepper.pays`) step in one compiled call
        (:mod:`imaginarium.models.rows`): the same model and rules, drawn from ``rng`` directly, at a
        fraction of torch's cost per operation."""
        if (
            self.rows is not None
            and self.rows.pays(len(actions), self.track_uncertainty)
            and "member" not in state
        ):
            predicted = self._predict_rows(state, actions, rng)
        else:
            predicted = self._predict(state, actions, rng)
        return self._outcome(predicted, actions, rng, judge)

    def step_row(
        self,
        state: State,
        action: np.ndarray,
        rng: np.random.Generator,
        judge: SuccessJudge | None = None,
        refresh: bool = True,
    ) -> RowTransition:
        """:meth:`step` for a single env, its one row's outcome worked out in Python scalars (numpy's
        calls on one-row arrays cost about a microsecond each, several times the arithmetic).
        ``action`` is a batch of one, as :meth:`check_action` gives it; ``refresh=False`` steps the
        model's weights as last read (see :meth:`RowStepper.step`)."""
        if self.rows is None or "member" in state:
            return self.step(state, action, rng, judge).first()
        current = state["observation"].numpy()
        out = self.rows.step(current, action, rng, self.track_uncertainty, self._row_limits, refresh=refresh)
        before = self.rows.bounded(current) if self.reward_rule is not None else None
        return self._outcome_row(out, before, action, rng, judge)

    def _outcome_row(
        self,
        out: RowPredictions,
        before: np.ndarray | None,
        action: np.ndarray,
        rng: np.random.Generator,
        judge: SuccessJudge | None,
    ) -> RowTransition:
        """:meth:`_outcome` of one row in Python scalars; ``tests/envs/test_rows_outcome.py`` holds the
        two to the same results."""
        observations = out.observations
        model_reward = float(out.rewards[0])
        states = observations if self.needs_states else None
        if judge is not None:
            judge.push(states)
        reward = model_reward
        if before is not None:
            reward = float(np.asarray(self.reward_rule(before, action, states), dtype=np.float64)[0])
        uncertainty = None if out.uncertainty is None else float(out.uncertainty[0])
        if uncertainty is not None:
            reward -= self.uncertainty_penalty * uncertainty
        success_prob, continue_prob = float(out.success_prob[0]), float(out.continue_prob[0])
        terminated = False
        if self.termination in ("continue", "both"):
            terminated = rng.random() > continue_prob  # the draw rng.random(1) would make
        elif self.termination_rule is not None:
            terminated = bool(np.asarray(self.termination_rule(states), dtype=bool)[0])
        diverged = not (out.inside[0] and math.isfinite(reward))
        if judge is not None:
            success = bool(judge.label(terminated)[0]) and not diverged
        else:
            success = success_prob > 0.5 and not diverged
        if self.termination in ("success", "both"):
            terminated = terminated or success
        limit_hit = self.uncertainty_limit is not None and uncertainty > self.uncertainty_limit
        info = {"success": success, "success_prob": success_prob, "continue_prob": continue_prob}
        if uncertainty is not None:
            info["uncertainty"] = uncertainty
        info.update(uncertainty_limit_hit=limit_hit, diverged=diverged)
        return RowTransition(
            {"observation": torch.from_numpy(observations)},
            observations[0].copy(),  # the user may write the observation; the state stays the model's
            0.0 if diverged else reward,
            terminated,
            diverged or limit_hit,
            info,
        )

    def _predict_rows(self, state: State, actions: np.ndarray, rng: np.random.Generator) -> _Predicted:
        """The compiled step of a few rows (decoded observations of an ensemble on the CPU)."""
        current = state["observation"].numpy()
        out = self.rows.step(current, actions, rng, self.track_uncertainty, self._row_limits)
        observations = out.observations
        return _Predicted(
            {"observation": torch.from_numpy(observations.copy())},  # the env may write its observations
            observations,
            observations if self.needs_states else None,
            self.rows.bounded(current) if self.reward_rule is not None else None,
            out.rewards,
            out.success_prob,
            out.continue_prob,
            out.uncertainty,
            out.inside,
        )

    def _predict(self, state: State, actions: np.ndarray, rng: np.random.Generator) -> _Predicted:
        """The model's batched step, as numpy arrays."""
        self.generator.manual_seed(int(rng.integers(2**62)))
        with torch.inference_mode():
            before = self.observe_states(state) if self.reward_rule is not None else None
            out = self.model.step(
                state,
                torch.as_tensor(actions, device=self.device),
                sample=True,
                uncertainty=self.track_uncertainty,
                generator=self.generator,
            )
            observations = self.observe(out.state)
            finite = True  # frames are always finite: whether the state is decides for them
            if self.model.observes_pixels:
                finite = torch.isfinite(self.model.features(out.state)).all(-1).cpu().numpy()
            elif self.observation_kind == "pixels":
                finite = torch.isfinite(self.model.decode(out.state)).all(-1).cpu().numpy()
            if self.limits is not None:  # far outside the data is as good as infinite
                finite = finite & self.limits.within(self.model.decode(out.state), out.reward).cpu().numpy()
            states = None  # the clipped decoded states the task's rules read
            if self.needs_states:
                states = (
                    observations if self.observation_kind == "decoded" else self.observe_states(out.state)
                )
                states = states.reshape(len(states), -1)
        return _Predicted(
            out.state,
            observations,
            states,
            before,
            out.reward.float().cpu().numpy().astype(np.float64),
            out.success_prob.float().cpu().numpy(),
            out.continue_prob.float().cpu().numpy(),
            None if out.uncertainty is None else out.uncertainty.float().cpu().numpy(),
            finite,
        )

    def _outcome(
        self, predicted: _Predicted, actions: np.ndarray, rng: np.random.Generator, judge: SuccessJudge | None
    ) -> Transition:
        """Rewards, ends of episodes, success and flags from a step's predictions, by the env's rules."""
        states = predicted.states
        if judge is not None:
            judge.push(states)
        if predicted.before is not None:
            rewards = np.asarray(self.reward_rule(predicted.before, actions, states), dtype=np.float64)
        else:
            rewards = predicted.rewards
        uncertainty = predicted.uncertainty
        if uncertainty is not None:
            rewards -= self.uncertainty_penalty * uncertainty
        success_prob, continue_prob = predicted.success_prob, predicted.continue_prob
        count = len(rewards)
        terminated = np.zeros(count, dtype=bool)
        if self.termination in ("continue", "both"):
            terminated |= rng.random(count) > continue_prob
        elif self.termination_rule is not None:
            terminated |= np.asarray(self.termination_rule(states), dtype=bool)
        observations = predicted.observations
        finite = predicted.finite
        diverged = ~(np.isfinite(rewards) & finite & np.isfinite(observations.reshape(count, -1)).all(1))
        success = (judge.label(terminated) if judge is not None else success_prob > 0.5) & ~diverged
        if self.termination in ("success", "both"):
            terminated |= success
        limit_hit = np.zeros(count, dtype=bool)
        if self.uncertainty_limit is not None:
            limit_hit = uncertainty > self.uncertainty_limit
        rewards = np.where(diverged, 0.0, rewards)
        info = {"success": success, "success_prob": success_prob, "continue_prob": continue_prob}
        if uncertainty is not None:
            info["uncertainty"] = uncertainty
        info.update(uncertainty_limit_hit=limit_hit, diverged=diverged)
        return Transition(predicted.state, observations, rewards, terminated, diverged | limit_hit, info)


@dataclass
class RowTransition:
    """One env's imagined step: :class:`Transition`'s fields for a single row, in Python scalars."""

    state: State
    observation: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


@dataclass
class _Predicted:
    """What one batched step predicts, as numpy arrays with leading dim ``N``, before the env's rules.

    ``states`` are the clipped decoded states the task's rules read (``None`` when none reads them),
    ``before`` the decoded states the step started from (for a reward rule), ``finite`` whether each
    row's state and reward are finite and within the data's limits.
    """

    state: State
    observations: np.ndarray
    states: np.ndarray | None
    before: np.ndarray | None
    rewards: np.ndarray
    success_prob: np.ndarray
    continue_prob: np.ndarray
    uncertainty: np.ndarray | None
    finite: np.ndarray | bool


class ImaginedEnv(gym.Env):
    """One imagined episode at a time (``render_mode="rgb_array"`` draws classic-control tasks).

    :param model: a model folder or a loaded :class:`WorldModel`.
    :param dataset: where real start states come from (default: the dataset named in the model card).
    :param task: check the model against this task (refused at make when it does not fit).
    :param observation: ``decoded`` (the real observation space; clipped to its bounds),
        ``latent`` (the model's feature vector), or ``pixels`` (the decoded state drawn by the real
        task's renderer, ``pixels`` × ``pixels`` RGB uint8, for agents that see images). A model that
        sees images serves its decoded frames for ``decoded`` and ``pixels`` alike.
    :param pixels: the frame size of ``observation="pixels"`` (default 64; a model that sees frames
        serves its own size).
    :param termination: what ends an episode: the ``continue`` head (sampled), ``success``, ``both``,
        ``rule`` (the task's own termination rule on the decoded states, for the tasks
        :data:`~imaginarium.rewards.termination.TERMINATION_RULES` knows), or ``none`` (only the time
        limit).
    :param reward: ``model`` (the model's reward), or ``rule``: the task's own reward computed from the
        decoded states and the action, for the tasks :data:`~imaginarium.rewards.reward_rules.REWARD_RULES`
        knows (a reward the data shows rarely, like a sparse goal's, is then paid where the imagined
        state reaches it).
    :param uncertainty_penalty: reward is reduced by this (a finite number ≥ 0) times the model's
        uncertainty (MOPO).
    :param uncertainty_limit: an uncertainty above this (a finite number > 0) truncates the episode and
        flags it in ``info``.
    :param time_limit: steps per episode (a positive integer); default the task's time limit from the
        model card. When ``gym.make(..., max_episode_steps=N)`` adds a ``TimeLimit``, that one governs
        instead.
    :param track_uncertainty: compute the model's uncertainty every step (``info["uncertainty"]``).
        ``False`` is the fast path for training: an ensemble then runs one member per sample instead of
        every member, and ``info`` has no ``uncertainty``; it cannot go with a penalty or limit.
    :param device: where the model runs.
    :param starts: where episodes start: ``episodes``, the first states of the dataset's episodes, or
        ``states``, any recorded state (MBPO's branched rollouts: with a short ``time_limit``, imagined
        episodes stay near the data, where the model is right).
    :param precision: the number format of the model's layers when imagining: ``float32``, or
        ``bfloat16`` for an ensemble (batches of 1,000–4,000 rows 1.4–1.7× faster on CPUs with
        bfloat16 matrix units, at about 0.2% relative error a layer; slower elsewhere). Sets it on the model, which a passed
        :class:`WorldModel` keeps. Batches the compiled step serves stay in ``float32``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self, model: str | Path | WorldModel, render_mode: str | None = None, **options: Any
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ImaginariumError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.imagination = Imagination(model, **options)
        self.render_mode = render_mode
        self._renderer = None
        if render_mode == "rgb_array" and not self.imagination.model.observes_pixels:
            from imaginarium.envs.render import StateRenderer

            env_id = (getattr(self.imagination.model, "card", {}) or {}).get("env_id")
            if env_id is None:
                raise ImaginariumError("render_mode 'rgb_array' needs a model whose card names its task")
            self._renderer = StateRenderer(get_task(env_id))
        self.observation_space = self.imagination.observation_space
        self.action_space = self.imagination.action_space
        self._state: State | None = None
        self._last_observation: np.ndarray | None = None
        self._judge = self.imagination.judge(1)
        self._steps = 0
        self._done = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        """Start from a real initial state drawn with the env's seeded generator, or from
        ``options["start_observation"]`` (e.g. the real env's first observation, to compare the two)."""
        super().reset(seed=seed)
        index = np.array([self.np_random.integers(len(self.imagination.start_observations))])
        if options and "start_observation" in options:
            with torch.inference_mode():
                self._state = self.imagination.start_from(options["start_observation"])
                observation = self.imagination.observe(self._state)[0]
            index = np.array([-1])
        elif self.imagination.rows is not None:  # numpy all the way: no torch op to pay for
            self._state = self.imagination.start(index)
            observation = self.imagination.observe(self._state)[0]
        else:
            with torch.inference_mode():
                self._state = self.imagination.start(index)
                observation = self.imagination.observe(self._state)[0]
        self._last_observation = observation
        if self._judge is not None:
            self._judge.restart()
        self._steps = 0
        self._done = False
        return observation, {"start_index": int(index[0])}

    def render(self) -> np.ndarray | None:
        """The current imagined state drawn by the real task's renderer (``rgb_array`` mode), or the
        frame a model that sees images decodes from it."""
        if self.render_mode is None or self._state is None:
            return None
        if self.imagination.model.observes_pixels:
            with torch.inference_mode():
                return self.imagination.model.decode(self._state)[0].cpu().numpy()
        with torch.inference_mode():
            decoded = self.imagination.model.decode(self._state)[0].float().cpu().numpy()
        return self._renderer.render(decoded)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self.imagination.close()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance the imagined episode by one action (Box actions outside the box are clipped)."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before stepping again")
        actions = self.imagination.check_action(action)
        # the model's weights are read at the first step of each episode: a model changed in place is
        # stepped as it now is from the next episode on
        first = self._steps == 0
        result = self.imagination.step_row(self._state, actions, self.np_random, self._judge, refresh=first)
        self._steps += 1
        info = result.info
        observation = result.observation if not info["diverged"] else self._last_observation
        governed_by_make = self.spec is not None and self.spec.max_episode_steps is not None
        at_limit = not governed_by_make and self._steps >= self.imagination.time_limit
        terminated, truncated = result.terminated, result.truncated or at_limit
        self._state, self._last_observation = result.state, observation
        self._done = terminated or truncated
        return observation, result.reward, terminated, truncated, info


class ImaginedVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` imagined episodes stepped by one model call; finished ones reset in the same step.

    Options are those of :class:`ImaginedEnv`. ``reset(options={"reset_mask": mask})`` resets only
    the envs where ``mask`` is true.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self, num_envs: int, model: str | Path | WorldModel, render_mode: str | None = None, **options: Any
    ):
        check_number(num_envs, "num_envs", at_least=1, integer=True)
        num_envs = int(num_envs)
        if render_mode is not None:
            raise ImaginariumError(f"render_mode {render_mode!r} is not supported yet")
        self.imagination = Imagination(model, **options)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = self.imagination.observation_space
        self.single_action_space = self.imagination.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._state: State | None = None
        self._observations = np.zeros(
            (num_envs, *self.single_observation_space.shape), self.single_observation_space.dtype
        )
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._judge = self.imagination.judge(num_envs)
        self._everywhere = np.ones(num_envs, dtype=bool)  # the mask of infos every env has
        self._everywhere.flags.writeable = False

    def _restart(self, mask: np.ndarray) -> np.ndarray:
        """Put fresh real start states into the rows of ``mask``; returns their start indices."""
        count = int(mask.sum())
        indices = self.np_random.integers(len(self.imagination.start_observations), size=count)
        with torch.inference_mode():
            fresh = self.imagination.start(indices)
            if self._state is None or mask.all():
                self._state = fresh
            elif self.imagination.rows is not None:  # a CPU ensemble's state is its observation: by numpy
                current = self._state["observation"].numpy().copy()
                current[mask] = fresh["observation"].numpy()
                self._state = {**self._state, "observation": torch.from_numpy(current)}
            else:
                rows = torch.as_tensor(np.flatnonzero(mask), device=self.imagination.device)
                self._state = {
                    key: value.index_copy(0, rows, fresh[key]) for key, value in self._state.items()
                }
            self._observations[mask] = self.imagination.observe(fresh)
        if self._judge is not None:
            self._judge.restart(mask)
        self._steps[mask] = 0
        return indices

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (self.num_envs,):
                raise ValueError(f"reset_mask has shape {mask.shape}, expected ({self.num_envs},)")
            if self._state is None and not mask.all():
                raise RuntimeError("the first reset must reset every env")
        indices = np.full(self.num_envs, -1)
        indices[mask] = self._restart(mask)
        return self._observations.copy(), {"start_index": indices, "_start_index": mask}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        valid = self.imagination.check_actions(actions, self.num_envs)
        result = self.imagination.step(self._state, valid, self.np_random, self._judge)
        self._steps += 1
        truncated = result.truncated | (self._steps >= self.imagination.time_limit)
        done = result.terminated | truncated
        observations = result.observations  # a fresh array, this env's own
        diverged = result.info["diverged"]
        if diverged.any():  # a diverged env shows its last finite observation
            observations[diverged] = self._observations[diverged]
        self._state = result.state
        self._observations = observations
        info: dict[str, Any] = {**result.info}
        info.update({f"_{key}": self._everywhere for key in result.info})
        if done.any():
            final_obs = np.empty(self.num_envs, dtype=object)
            for row in np.flatnonzero(done):
                final_obs[row] = observations[row].copy()
            final_info: dict[str, Any] = {key: value.copy() for key, value in result.info.items()}
            final_info.update({f"_{key}": done for key in result.info})
            info.update(
                {"final_obs": final_obs, "_final_obs": done, "final_info": final_info, "_final_info": done}
            )
            self._restart(done)
        return self._observations.copy(), result.rewards, result.terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self.imagination.close()


def check_actions(space: gym.Space, actions: Any, count: int) -> np.ndarray:
    """``count`` actions of ``space`` as a model takes them: integers in range (shifted to start at 0),
    or finite floats clipped to the box.

    :raises ValueError: a wrong shape, non-integers for a discrete space, out-of-range integers, NaN.
    """
    if isinstance(space, gym.spaces.Discrete):
        values = np.asarray(actions)
        if values.shape not in ((count,), () if count == 1 else (count,)):
            raise ValueError(f"actions have shape {values.shape}, expected ({count},) integers of {space}")
        if not np.issubdtype(values.dtype, np.integer) and not np.all(np.mod(values, 1) == 0):
            raise ValueError(f"actions {_first(values, np.mod(values, 1) != 0)} are not integers of {space}")
        values = values.astype(np.int64).reshape(count)
        outside = (values < space.start) | (values >= space.start + space.n)
        if np.any(outside):
            raise ValueError(f"action {_first(values, outside)} is outside {space}")
        return values - space.start
    values = np.asarray(actions, dtype=np.float32)
    expected = (count, *space.shape)
    if values.shape != expected and not (count == 1 and values.shape == space.shape):
        shown = space.shape if count == 1 else expected
        raise ValueError(f"action has shape {values.shape}, expected {shown} for {space}")
    if not np.isfinite(values).all():
        raise ValueError(f"action {_first(values, ~np.isfinite(values))} is not finite")
    # out-of-box actions are clipped (np.minimum and np.maximum: np.clip's Python layer costs more)
    return np.minimum(np.maximum(values.reshape(expected), space.low), space.high)


def _first(values: np.ndarray, bad: np.ndarray) -> str:
    """The first offending value, and how many there are when more than one (batches can be large)."""
    count = int(np.count_nonzero(bad))
    first = values[bad].reshape(-1)[0].item()
    return f"{first!r}" if count == 1 else f"{first!r} (and {count - 1} more)"
