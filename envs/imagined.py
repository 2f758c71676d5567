"""``WAMImagined-v0``: a trained world model served as a Gymnasium environment.

Episodes start from real initial states (the first observations of the dataset's episodes, filtered
through the model) and run entirely inside the model::

    env = gym.make("imaginarium:WAMImagined-v0", model="models/pendulum")
    observation, info = env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step(env.action_space.sample())

``info`` carries ``success``, ``success_prob``, ``continue_prob``, ``uncertainty``, and the flags
``uncertainty_limit_hit`` and ``diverged`` when an episode was cut short for those reasons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from imaginarium.dataset import Dataset, load_dataset
from imaginarium.envs.suite import Task, get_task
from imaginarium.errors import ImaginariumError
from imaginarium.models import WorldModel, load_world_model

OBSERVATION_KINDS = ("decoded", "latent")
TERMINATIONS = ("continue", "success", "both", "none")


class ImaginedEnv(gym.Env):
    """One imagined episode at a time; see the module docstring.

    :param model: a model folder or a loaded :class:`WorldModel`.
    :param dataset: where real start states come from (default: the dataset named in the model card).
    :param task: check the model against this task (refused at make when it does not fit).
    :param observation: ``decoded`` (the real observation space; clipped to its bounds) or
        ``latent`` (the model's feature vector).
    :param termination: what ends an episode: the ``continue`` head (sampled), ``success``, ``both``,
        or ``none`` (only the time limit).
    :param uncertainty_penalty: reward is reduced by this times the model's uncertainty (MOPO).
    :param uncertainty_limit: an uncertainty above this truncates the episode and flags it in ``info``.
    :param time_limit: steps per episode; default the task's time limit from the model card. When
        ``gym.make(..., max_episode_steps=N)`` adds a ``TimeLimit``, that one governs instead.
    :param device: where the model runs.
    """

    metadata = {"render_modes": [], "render_fps": 30}

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
        device: str = "cpu",
        render_mode: str | None = None,
    ) -> None:
        if observation not in OBSERVATION_KINDS:
            raise ImaginariumError(
                f"observation must be one of {', '.join(OBSERVATION_KINDS)}, got {observation!r}"
            )
        if termination not in TERMINATIONS:
            raise ImaginariumError(
                f"termination must be one of {', '.join(TERMINATIONS)}, got {termination!r}"
            )
        if uncertainty_penalty < 0:
            raise ImaginariumError(f"uncertainty_penalty must be ≥ 0, got {uncertainty_penalty}")
        if render_mode is not None:
            raise ImaginariumError(f"render_mode {render_mode!r} is not supported yet")
        if isinstance(model, WorldModel):
            self.model = model.to(device).eval()
        else:
            self.model = load_world_model(model, task=task, device=device)
        card = getattr(self.model, "card", {}) or {}
        if task is not None and isinstance(model, WorldModel):
            resolved = get_task(task) if isinstance(task, str) else task
            resolved.check_spaces(self.model.observation_space, self.model.action_space, "the model")
        self.start_observations = _start_observations(dataset, card)
        if self.start_observations.shape[1:] != self.model.observation_space.shape:
            raise ImaginariumError(
                f"start states have shape {self.start_observations.shape[1:]}, the model observes "
                f"{self.model.observation_space.shape}"
            )
        self.observation_kind = observation
        self.termination = termination
        self.uncertainty_penalty = float(uncertainty_penalty)
        self.uncertainty_limit = uncertainty_limit
        self.time_limit = time_limit or card.get("max_episode_steps") or 1000
        self.device = torch.device(device)
        self.render_mode = render_mode
        self.action_space = self.model.action_space
        space = self.model.observation_space
        if observation == "decoded":
            self.observation_space = gym.spaces.Box(space.low, space.high, space.shape, np.float32)
        else:
            features = self.model.features(
                self.model.initial_state(self._tensor(self.start_observations[:1]))
            )
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (features.shape[-1],), np.float32)
        self._state: dict[str, torch.Tensor] | None = None
        self._last_observation: np.ndarray | None = None
        self._steps = 0
        self._done = False

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), device=self.device)

    def _observe(self, state: dict[str, torch.Tensor]) -> np.ndarray:
        if self.observation_kind == "latent":
            return self.model.features(state)[0].float().cpu().numpy()
        decoded = self.model.decode(state)[0].float().cpu().numpy()
        return np.clip(decoded, self.observation_space.low, self.observation_space.high).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        """Start from a real initial state drawn with the env's seeded generator."""
        super().reset(seed=seed)
        index = int(self.np_random.integers(len(self.start_observations)))
        with torch.inference_mode():
            self._state = self.model.initial_state(self._tensor(self.start_observations[index : index + 1]))
            observation = self._observe(self._state)
        self._last_observation = observation
        self._steps = 0
        self._done = False
        return observation, {"start_index": index}

    def _check_action(self, action: Any) -> np.ndarray:
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            value = np.asarray(action)
            if (
                value.size != 1
                or not np.issubdtype(value.dtype, np.integer)
                and not float(value).is_integer()
            ):
                raise ValueError(f"action {action!r} is not an integer action of {space}")
            index = int(value.reshape(()))
            if not space.start <= index < space.start + space.n:
                raise ValueError(f"action {index} is outside {space}")
            return np.asarray(index - space.start)
        value = np.asarray(action, dtype=np.float32)
        if value.shape != space.shape:
            raise ValueError(f"action has shape {value.shape}, expected {space.shape} for {space}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"action {value.tolist()} is not finite")
        return np.clip(value, space.low, space.high)  # out-of-box actions are clipped, as documented

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance the imagined episode by one action (Box actions outside the box are clipped)."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before stepping again")
        valid_action = self._check_action(action)
        # Model sampling draws from a generator seeded by the env's own, so a seeded env repeats itself.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(self.np_random.integers(2**62)))
            out = self.model.step(self._state, self._tensor(valid_action[None]), sample=True)
            observation = self._observe(out.state)
        reward = float(out.reward[0]) - self.uncertainty_penalty * float(out.uncertainty[0])
        success_prob, continue_prob = float(out.success_prob[0]), float(out.continue_prob[0])
        uncertainty = float(out.uncertainty[0])
        self._steps += 1
        info: dict[str, Any] = {
            "success": success_prob > 0.5,
            "success_prob": success_prob,
            "continue_prob": continue_prob,
            "uncertainty": uncertainty,
            "uncertainty_limit_hit": False,
            "diverged": False,
        }
        terminated = False
        if self.termination in ("continue", "both"):
            terminated = bool(self.np_random.random() > continue_prob)
        if self.termination in ("success", "both"):
            terminated = terminated or info["success"]
        truncated = False
        if not (np.all(np.isfinite(observation)) and np.isfinite(reward)):
            observation, reward = self._last_observation, 0.0
            truncated = info["diverged"] = True
        if self.uncertainty_limit is not None and uncertainty > self.uncertainty_limit:
            truncated = info["uncertainty_limit_hit"] = True
        governed_by_make = self.spec is not None and self.spec.max_episode_steps is not None
        if not governed_by_make and self._steps >= self.time_limit:
            truncated = True
        self._state = out.state
        self._last_observation = observation
        self._done = terminated or truncated
        return observation, reward, terminated, truncated, info


def _start_observations(dataset: str | Path | Dataset | None, card: dict[str, Any]) -> np.ndarray:
    """``(E, D)`` real initial observations: the first observation of every episode of the dataset."""
    if dataset is None:
        dataset = (card.get("dataset") or {}).get("path")
        if dataset is None:
            raise ImaginariumError("the model card names no dataset; give dataset= for the start states")
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    return data.observations[data.episode_starts[:-1]]
