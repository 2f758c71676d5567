"""Training Stable-Baselines3 agents entirely inside a world model, and scoring them.

    from imaginarium.agents.sb3 import train_in_imagination
    agent_path = train_in_imagination("models/pendulum", "sac", steps=20_000, out="agents/sac.zip")
    score = score_agent(agent_path, "models/pendulum", episodes=10)  # score.imagined, score.real

Agents see decoded observations, so the saved agent runs unchanged on the real task.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from imaginarium.config import check_number
from imaginarium.dataset import Dataset, load_dataset
from imaginarium.envs.imagined import ImaginedEnv
from imaginarium.envs.sb3 import imagined_vec_env
from imaginarium.envs.suite import Task, get_task
from imaginarium.errors import ImaginariumError
from imaginarium.evaluation import Interval, episode_rollouts, real_rollouts
from imaginarium.models import load_world_model
from imaginarium.models.checkpoint import read_card
from imaginarium.models.starts import card_dataset_path
from imaginarium.outputs import atomic_path, check_output
from imaginarium.policy import SB3Policy
from imaginarium.rewards.reward_rules import RULES, task_rule
from imaginarium.threads import threads_for

ALGORITHMS = ("ppo", "sac", "td3", "a2c", "dqn")
_CONTINUOUS_ONLY = {"sac", "td3"}
_DISCRETE_ONLY = {"dqn"}
_OFF_POLICY = {"sac", "td3", "dqn"}


def with_task_rules(model_dir: str | Path | Any, options: dict[str, Any] | None) -> dict[str, Any]:
    """``options`` with the task's own termination and reward rules wherever the model's task has them
    and ``options`` do not choose: an agent trained in the model ends episodes and earns rewards as the
    real task would (on every task of ``experiments/agents_study.py`` this beat the model's heads or
    tied with them: docs/studies.md). A model of frames keeps its heads (no state for a rule to read).
    """
    card = getattr(model_dir, "card", None) if not isinstance(model_dir, str | Path) else read_card(model_dir)
    card = card or {}
    frames = bool((card.get("config") or {}).get("image_size"))
    defaults = {kind: "rule" for kind in RULES if task_rule(kind, card.get("env_id"), frames) is not None}
    return {**defaults, **(options or {})}


def train_in_imagination(
    model_dir: str | Path,
    algo: str,
    steps: int,
    out: str | Path,
    num_envs: int = 16,
    seed: int = 0,
    env_options: dict[str, Any] | None = None,
    algo_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    overwrite: bool = False,
    real_ratio: float = 0.0,
) -> Path:
    """Train an SB3 ``algo`` for ``steps`` imagined steps on ``num_envs`` envs; save it to ``out``.

    :param env_options: options of ``WAMImagined-v0`` (``uncertainty_penalty``, ``termination``,
        ``starts``, ``time_limit``, ...); ``observation="pixels"`` (or a model that sees images) trains a
        ``CnnPolicy`` on imagined frames. Where the model's task has its own termination and reward
        rules they are the default (:func:`with_task_rules`); ``termination="continue"`` and
        ``reward="model"`` train on the model's heads instead.
    :param algo_kwargs: keyword arguments for the SB3 algorithm's constructor. Off-policy algorithms
        (sac, td3, dqn) make as many updates per imagined transition as SB3 makes with one env
        (``gradient_steps=num_envs``) unless these set ``gradient_steps``: SB3's own default makes
        ``num_envs`` times fewer, and the agent underfits its model.
    :param real_ratio: the share of each replay batch drawn from the model's dataset, the rest from
        imagination (MBPO, MOPO); off-policy algorithms (sac, td3, dqn) on decoded states only.
    :param overwrite: replace an agent already at ``out`` (else refused before training starts).
    :returns: where the agent was saved: ``out``, with ``.zip`` added as SB3 adds it.
    :raises ImaginariumError: unknown algorithm, one that cannot act in the model's action space, or
        an output that exists or cannot be written.
    """
    import stable_baselines3

    algo = algo.lower()
    if algo not in ALGORITHMS:
        raise ImaginariumError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGORITHMS)}")
    if steps < 1:
        raise ImaginariumError(f"steps must be a positive integer, got {steps}")
    if num_envs < 1:
        raise ImaginariumError(f"num_envs must be a positive integer, got {num_envs}")
    check_number(real_ratio, "real_ratio", at_least=0, at_most=1)
    if real_ratio > 0 and algo not in _OFF_POLICY:
        raise ImaginariumError(
            f"real_ratio mixes real transitions into a replay buffer: {algo} has none (use sac, td3 or dqn)"
        )
    out = Path(out)
    out = check_output(out if out.suffix == ".zip" else out.with_name(out.name + ".zip"), overwrite)
    options = {"observation": "decoded", **with_task_rules(model_dir, env_options)}
    if options["observation"] not in ("decoded", "pixels"):
        raise ImaginariumError("an agent for the real task sees decoded states or pixels, not latents")
    if not options.get("uncertainty_penalty") and options.get("uncertainty_limit") is None:
        options.setdefault("track_uncertainty", False)  # nothing reads it: the ensemble's fast path
    venv = imagined_vec_env(model_dir, num_envs=num_envs, **options)
    discrete = isinstance(venv.action_space, gym.spaces.Discrete)
    if (discrete and algo in _CONTINUOUS_ONLY) or (not discrete and algo in _DISCRETE_ONLY):
        kind = "discrete" if discrete else "continuous"
        raise ImaginariumError(f"{algo} cannot act in the model's {kind} action space {venv.action_space}")
    agent_class = getattr(stable_baselines3, algo.upper())
    network = "CnnPolicy" if len(venv.observation_space.shape) == 3 else "MlpPolicy"
    algo_kwargs = dict(algo_kwargs or {})
    if algo in _OFF_POLICY:
        algo_kwargs.setdefault("gradient_steps", num_envs)
    if real_ratio > 0:
        if network != "MlpPolicy":
            raise ImaginariumError("real_ratio needs an agent of decoded states; the dataset holds no frames")
        model = venv.vector_env.imagination.model
        data = load_dataset(options.get("dataset") or _dataset_path(model))
        algo_kwargs["replay_buffer_class"] = MixedReplayBuffer
        algo_kwargs["replay_buffer_kwargs"] = {
            **algo_kwargs.get("replay_buffer_kwargs", {}),
            "real": real_transitions(data, venv.action_space),
            "real_ratio": real_ratio,
            "seed": seed,
        }
    agent = agent_class(network, venv, seed=seed, verbose=0, **algo_kwargs)
    agent.set_logger(silent_logger())
    # an MLP's small batches run fastest on one thread, idle or beside other work (imaginarium/threads.py)
    with threads_for(1) if network == "MlpPolicy" else nullcontext():
        agent.learn(steps, progress_bar=progress)
    if real_ratio > 0:  # the saved agent keeps no copy of the dataset, and loads with SB3's own buffer
        agent.replay_buffer_class, agent.replay_buffer_kwargs = None, {}
    with atomic_path(out) as partial:
        agent.save(partial)
    return out


@dataclass(frozen=True)
class RealTransitions:
    """A dataset's transitions as an SB3 replay buffer stores them: ``(N, ...)`` arrays, Box actions
    scaled to [-1, 1], ``dones`` true only where an episode terminated (a time limit bootstraps)."""

    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)


def real_transitions(data: Dataset, action_space: gym.Space) -> RealTransitions:
    """The transitions of ``data`` that have actions, ready to mix into an agent's replay."""
    rows = np.flatnonzero(~data.action_free) if data.action_free is not None else np.arange(data.num_steps)
    if len(rows) == 0:
        raise ImaginariumError("the dataset has no transitions with actions to mix into the replay")
    actions = data.actions[rows]
    if isinstance(action_space, gym.spaces.Box):
        low, high = action_space.low, action_space.high
        actions = np.clip(2.0 * (actions - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)
    return RealTransitions(
        observations=data.observations[rows].reshape(len(rows), -1).astype(np.float32),
        actions=actions.reshape(len(rows), -1),
        next_observations=data.next_observations[rows].reshape(len(rows), -1).astype(np.float32),
        rewards=data.rewards[rows].astype(np.float32).reshape(-1, 1),
        dones=data.terminated[rows].astype(np.float32).reshape(-1, 1),
    )


class MixedReplayBuffer(ReplayBuffer):
    """An SB3 replay buffer of imagined transitions whose every batch also draws a ``real_ratio``
    share (binomially) from fixed real transitions, so what the model gets wrong is corrected by data."""

    def __init__(
        self, *args: Any, real: RealTransitions, real_ratio: float, seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.real, self.real_ratio = real, float(real_ratio)
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        """``batch_size`` transitions: imagined ones from the buffer and real ones, in one batch."""
        count = int(self.rng.binomial(batch_size, self.real_ratio))
        if self.size() == 0:
            count = batch_size
        rows = self.rng.integers(len(self.real), size=count)
        real = ReplayBufferSamples(
            self.to_torch(self.real.observations[rows]),
            self.to_torch(self.real.actions[rows].astype(self.actions.dtype)),
            self.to_torch(self.real.next_observations[rows]),
            self.to_torch(self.real.dones[rows]),
            self.to_torch(self.real.rewards[rows]),
        )
        if count == batch_size:
            return real
        imagined = super().sample(batch_size - count, env)
        return ReplayBufferSamples(*(torch.cat([a, b]) for a, b in zip(imagined[:5], real[:5], strict=True)))


def _dataset_path(model: Any) -> str:
    path = card_dataset_path(model)
    if not path:
        raise ImaginariumError("real_ratio needs the model's dataset; its card names none")
    return path


def real_return(
    agent_path: str | Path,
    task: str | Task,
    episodes: int = 10,
    seed: int = 10_000,
    pixels: int | None = None,
    rendered: bool = False,
) -> dict[str, float]:
    """The agent's undiscounted return on the real task (deterministic actions): mean with a
    bootstrap 95% CI over episodes, as every evaluation reports it.

    :param pixels: the agent sees frames: the real states are drawn as ``WAMImagined-v0`` draws them.
    :param rendered: the frames are instead the env's own, as ``collect --pixels`` stores them (the
        agent of a model that learned from frames).
    """
    task = get_task(task) if isinstance(task, str) else task
    outcome = real_rollouts(task, SB3Policy(agent_path), episodes, seed, pixels=pixels, drawn=not rendered)
    return outcome.return_


def imagined_return(
    agent_path: str | Path, model_dir: str | Path, episodes: int = 10, seed: int = 10_000, **env_options: Any
) -> dict[str, float]:
    """The same figure inside the model: real start states, the model's own episode ends."""
    if episodes < 1:
        raise ImaginariumError(f"episodes must be a positive integer, got {episodes}")
    model = load_world_model(model_dir)
    options = {"observation": "decoded", **env_options}
    envs: list[gym.Env] = [ImaginedEnv(model, **options) for _ in range(episodes)]
    return episode_rollouts(envs, SB3Policy(agent_path), seed).return_


@dataclass(frozen=True)
class AgentScore:
    """An agent's return in the model it learned in and on the real task, each over ``episodes``
    episodes from the same seeds.

    :param real: None when the model card names no task to check against.
    """

    episodes: int
    imagined: Interval
    task: str | None
    real: Interval | None


def score_agent(
    agent_path: str | Path,
    model_dir: str | Path,
    episodes: int = 10,
    env_options: dict[str, Any] | None = None,
) -> AgentScore:
    """Score an agent trained by :func:`train_in_imagination` inside its model and on the model's task.

    The real episodes show the agent what it saw in training: the env's own frames for a model that
    learned from frames, states drawn as frames for an agent trained on ``observation="pixels"``.

    :param env_options: the options the agent was trained with (``uncertainty_penalty``,
        ``observation``, ``pixels``, ...).
    """
    env_options = with_task_rules(model_dir, env_options)
    imagined = imagined_return(agent_path, model_dir, episodes=episodes, **env_options)
    card = read_card(model_dir)
    task, image_size = card.get("task"), (card.get("config") or {}).get("image_size")
    real = None
    if task:
        real = real_return(
            agent_path,
            task,
            episodes=episodes,
            pixels=image_size or env_options.get("pixels"),
            rendered=bool(image_size),
        )
    return AgentScore(episodes=episodes, imagined=imagined, task=task, real=real)


def silent_logger() -> Any:
    """An SB3 logger that writes nothing: without one, every ``learn`` leaves an empty
    ``SB3-<time>`` folder in the system's temporary directory."""
    from stable_baselines3.common.logger import Logger

    return Logger(folder=None, output_formats=[])
