"""Success definitions of the real tasks, computed per step from an episode's arrays.

A definition maps one episode to a boolean per step: ``success[t]`` says whether the task would count
as solved if the episode ended in the state reached by step ``t``. An episode succeeds when its last step does. Labels per
step are what the learned success head is trained on; the per-episode figure is what reports show.

The labels are causal: ``success[t]`` reads steps ``t - window + 1 .. t`` only. So a rule can judge an
imagined trajectory step by step from its recent decoded states (:class:`SuccessJudge`), the way the real
task judges the real one, where a per-state head cannot express a rule over several steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

SuccessFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SuccessDefinition:
    """A named success rule over one episode.

    :param name: short identifier stored in dataset metadata.
    :param description: one sentence for reports and ``imaginarium info``.
    :param fn: ``fn(next_observations (..., T, D), terminated (..., T), truncated (..., T)) -> success
        (..., T) bool``, over any leading batch dimensions.
    :param window: the steps the label of a step reads, itself included (1: that step alone).
    """

    name: str
    description: str
    fn: SuccessFn
    window: int = 1

    def __call__(
        self, next_observations: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
    ) -> np.ndarray:
        """Label every step of one episode, or of a batch of them; see the class docstring for shapes."""
        success = np.asarray(self.fn(next_observations, terminated, truncated), dtype=bool)
        if success.shape != terminated.shape:
            raise ValueError(
                f"success definition {self.name!r} returned shape {success.shape}, expected {terminated.shape}"
            )
        return success


def _alive(next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    # Per step: "would count as success if the time limit ended the episode here", i.e. still up.
    # At the last step this is exactly the task's rule; earlier it gives the success head a label
    # it can learn from the state, instead of one that only the step counter could predict.
    return ~terminated


def _upright_for_last(window: int, cos_threshold: float) -> SuccessFn:
    def upright(next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        is_up = next_obs[..., 0] > cos_threshold  # Pendulum observation is (cos θ, sin θ, θ̇)
        # Count of upright steps in the trailing window ending at each step, via a cumulative sum.
        zero = np.zeros((*is_up.shape[:-1], 1), dtype=np.int64)
        counts = np.cumsum(np.concatenate([zero, is_up.astype(np.int64)], axis=-1), axis=-1)
        steps = is_up.shape[-1]
        trailing = counts[..., 1:] - counts[..., np.maximum(np.arange(1, steps + 1) - window, 0)]
        return trailing >= window

    return upright


def _position_reached(goal_position: float) -> SuccessFn:
    def reached(next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        return next_obs[..., 0] >= goal_position

    return reached


def _distance_below(first: slice, second: slice | None, threshold: float) -> SuccessFn:
    """Success when two observed points are closer than ``threshold`` (or one offset vector is short)."""

    def close(next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        offset = next_obs[..., first] if second is None else next_obs[..., first] - next_obs[..., second]
        return np.linalg.norm(offset, axis=-1) < threshold

    return close


SUCCESS_DEFINITIONS: Mapping[str, SuccessDefinition] = {
    "cartpole": SuccessDefinition(
        "alive_at_time_limit",
        "the pole is still up when the time limit ends the episode",
        _alive,
    ),
    "pendulum": SuccessDefinition(
        "upright_last_20",
        "upright (cos θ > 0.95) over the last 20 steps",
        _upright_for_last(window=20, cos_threshold=0.95),
        window=20,
    ),
    "mountaincar": SuccessDefinition(
        "goal_reached", "the car reaches the goal (position ≥ 0.45)", _position_reached(0.45)
    ),
    # Reacher-v5 observation[8:10] is fingertip minus target in the plane.
    "reacher": SuccessDefinition(
        "fingertip_within_0.02",
        "fingertip within 0.02 of the target",
        _distance_below(slice(8, 10), None, 0.02),
    ),
    # Pusher-v5 observation[17:20] is the object's position, [20:23] the goal's.
    "pusher": SuccessDefinition(
        "object_within_0.1",
        "object within 0.1 of the goal",
        _distance_below(slice(17, 20), slice(20, 23), 0.1),
    ),
}


def episode_success(success_per_step: np.ndarray) -> bool:
    """An episode succeeds when its last step does."""
    return bool(len(success_per_step) > 0 and success_per_step[-1])


class SuccessJudge:
    """A task's success rule applied to ``rows`` trajectories as they are imagined, one step at a time.

    It keeps each row's last ``window`` states: :meth:`push` adds a step, :meth:`label` says whether
    each row would succeed if its episode ended there. A row younger than the window is padded in
    front with NaN, which no comparison of the suite's rules counts as met.
    """

    def __init__(self, definition: SuccessDefinition, rows: int, observation_size: int) -> None:
        self.definition = definition
        self.recent = np.full((rows, definition.window, observation_size), np.nan, dtype=np.float32)

    def restart(self, mask: np.ndarray | None = None) -> None:
        """Forget the steps of the rows in ``mask`` (every row when ``None``)."""
        if mask is None:
            self.recent[:] = np.nan
        else:
            self.recent[np.asarray(mask, dtype=bool)] = np.nan

    def push(self, next_observations: np.ndarray) -> None:
        """Add each row's newest state ``(rows, D)``."""
        self.recent[:, :-1] = self.recent[:, 1:]
        self.recent[:, -1] = next_observations

    def label(self, terminated: np.ndarray | bool) -> np.ndarray:
        """``(rows,)`` whether each row's episode succeeds if it ends at its newest step: ended by
        termination where ``terminated`` (a bool or ``(rows,)``), by the time limit elsewhere."""
        rows, window = self.recent.shape[:2]
        ended_here = np.zeros((rows, window), dtype=bool)
        ended_here[:, -1] = terminated
        cut_here = np.zeros((rows, window), dtype=bool)
        cut_here[:, -1] = ~ended_here[:, -1]
        return self.definition(self.recent, ended_here, cut_here)[:, -1]
