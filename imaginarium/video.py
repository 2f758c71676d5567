"""Videos of a policy's real and imagined episodes side by side, from the same start.

The real episode starts from a seeded reset of the task; the imagined one from that same first
observation (``reset(options={"start_observation": ...})``), both drawn with the task's own renderer,
so what the model gets wrong is seen frame by frame::

    write_rollout_video("models/pendulum", "agents/sac.zip", "rollout.mp4")

MP4 goes through imageio's ffmpeg plugin, GIF through Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imaginarium.errors import ImaginariumError
from imaginarium.outputs import atomic_path, check_output

#: what ``write_rollout_video`` can write, by file suffix
VIDEO_SUFFIXES = (".mp4", ".gif")


def episode_frames(
    env: Any, policy: Any, steps: int, reset: dict[str, Any], stride: int = 1
) -> list[np.ndarray]:
    """Frames of one episode of ``policy`` in ``env`` (every ``stride``-th step, the first included),
    the env reset with ``reset``; at most ``steps`` steps."""
    observation, _ = env.reset(**reset)
    policy.reset(np.arange(1))
    frames = [env.render()]
    for step in range(steps):
        action = np.asarray(policy.act(np.asarray(observation)[None]))[0]
        observation, _, terminated, truncated, _ = env.step(action)
        if step % stride == stride - 1:
            frames.append(env.render())
        if terminated or truncated:
            break
    return frames


def real_env_for(model: str | Path, task: Any) -> Any:
    """The real env a model's policies act in, drawing frames: one that observes its own rendered
    frames for a model learned from frames, else the task's env."""
    from imaginarium.envs.render import FrameObservation
    from imaginarium.models.checkpoint import read_card

    image_size = (read_card(model).get("config") or {}).get("image_size")
    return FrameObservation(task, image_size) if image_size else task.make(render_mode="rgb_array")


def side_by_side(real: list[np.ndarray], imagined: list[np.ndarray], size: int = 256) -> list[np.ndarray]:
    """Frames with the real episode left and the imagined one right, each ``size`` pixels square and
    labelled; the shorter episode holds its last frame while the longer goes on."""
    from PIL import Image, ImageDraw

    def panel(frame: np.ndarray, label: str) -> np.ndarray:
        image = Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("RGB").resize((size, size))
        ImageDraw.Draw(image).text((6, 4), label, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
        return np.asarray(image)

    frames = []
    for index in range(max(len(real), len(imagined))):
        left = panel(real[min(index, len(real) - 1)], "real")
        right = panel(imagined[min(index, len(imagined) - 1)], "imagined")
        frames.append(np.concatenate([left, right], axis=1))
    return frames


@dataclass(frozen=True)
class RolloutVideo:
    """A written side-by-side video: where it is, its frames, and each episode's steps."""

    path: str
    frames: int
    real_steps: int
    imagined_steps: int


def write_rollout_video(
    model: str | Path,
    policy: str | Path,
    out: str | Path,
    steps: int | None = None,
    seed: int = 0,
    size: int = 256,
    fps: int = 30,
    allow_code: bool = False,
    overwrite: bool = False,
) -> RolloutVideo:
    """Write ``out`` (``.mp4`` or ``.gif``): ``policy``'s real episode on the model's task beside its
    imagined episode in ``model`` from the same first observation.

    :param steps: at most this many steps (default the task's time limit).
    :param overwrite: replace a file already at ``out`` (else refused before anything runs).
    :returns: the path, the number of frames, and each episode's length.
    :raises ImaginariumError: an unknown suffix, an output that exists or cannot be written, bad
        numbers, a model without a task, or a task the renderer cannot draw.
    """
    from imaginarium.envs.imagined import ImaginedEnv
    from imaginarium.envs.render import offscreen
    from imaginarium.envs.suite import get_task
    from imaginarium.models.checkpoint import read_card
    from imaginarium.policy import load_policy

    out = Path(out)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise ImaginariumError(
            f"cannot write {out.name!r}: a video must end in {' or '.join(VIDEO_SUFFIXES)}"
        )
    if size < 16 or fps < 1:
        raise ImaginariumError(f"size must be at least 16 pixels and fps positive, got {size} and {fps}")
    if steps is not None and steps < 1:
        raise ImaginariumError(f"steps must be a positive number of steps, got {steps}")
    check_output(out, overwrite)
    task_name = read_card(model).get("task")
    if not task_name:
        raise ImaginariumError(f"the model at {str(model)!r} names no task to roll the real episode in")
    offscreen()
    task = get_task(task_name)
    imagined_env = ImaginedEnv(model, render_mode="rgb_array", track_uncertainty=False)
    real_env = real_env_for(model, task)
    try:
        acting = load_policy(policy, real_env.observation_space, real_env.action_space, allow_code=allow_code)
        limit = steps or task.max_episode_steps
        start, _ = real_env.reset(seed=seed)
        real = episode_frames(real_env, acting, limit, {"seed": seed})
        imagined = episode_frames(
            imagined_env, acting, limit, {"seed": seed, "options": {"start_observation": start}}
        )
    finally:
        real_env.close()
        imagined_env.close()
    frames = side_by_side(real, imagined, size)
    _write(out, frames, fps)
    return RolloutVideo(str(out), len(frames), len(real) - 1, len(imagined) - 1)


def _write(out: Path, frames: list[np.ndarray], fps: int) -> None:
    import imageio.v3 as iio

    with atomic_path(out) as partial:
        if out.suffix.lower() == ".gif":
            iio.imwrite(partial, frames, extension=".gif", duration=1000 / fps, loop=0)
        else:
            iio.imwrite(partial, frames, extension=".mp4", fps=fps, codec="libx264", macro_block_size=16)
