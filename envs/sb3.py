"""Stable-Baselines3 face of the imagined vector env: the whole batch in one call, SB3's conventions.

    from imaginarium.envs.sb3 import imagined_vec_env
    venv = imagined_vec_env("models/pendulum", num_envs=64)
    SAC("MlpPolicy", venv).learn(10_000)

Infos are a list of dicts with ``terminal_observation`` and ``TimeLimit.truncated`` where an episode
ended; rewards are float32, dones bool, as SB3's own vector envs give them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from imaginarium.envs.imagined import ImaginedVectorEnv
from imaginarium.models import WorldModel


class ImaginedSB3VecEnv(VecEnv):
    """Adapter from :class:`ImaginedVectorEnv` to SB3's ``VecEnv`` (same-step autoreset on both sides)."""

    def __init__(self, vector_env: ImaginedVectorEnv) -> None:
        self.vector_env = vector_env
        super().__init__(
            vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space
        )
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        seed = self._seeds[0]
        observations, _ = self.vector_env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        observations, rewards, terminated, truncated, info = self.vector_env.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        final = {key: value for key, value in info.get("final_info", {}).items() if not key.startswith("_")}
        for row in np.flatnonzero(dones):
            infos[row] = {
                **{key: value[row].item() for key, value in final.items()},
                "terminal_observation": info["final_obs"][row],
                "TimeLimit.truncated": bool(truncated[row] and not terminated[row]),
            }
        return observations, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.vector_env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.vector_env, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.vector_env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        method = getattr(self.vector_env, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


def imagined_vec_env(model: str | Path | WorldModel, num_envs: int = 64, **options: Any) -> ImaginedSB3VecEnv:
    """An SB3 ``VecEnv`` of ``num_envs`` imagined envs; ``options`` are those of ``WAMImagined-v0``."""
    return ImaginedSB3VecEnv(ImaginedVectorEnv(num_envs, model, **options))
