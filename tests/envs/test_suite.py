from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from imaginarium.envs.suite import SUITE, get_task
from imaginarium.errors import TaskError


@pytest.mark.parametrize("name", list(SUITE))
def test_every_suite_task_makes_its_env_with_the_task_time_limit(name: str) -> None:
    task = SUITE[name]
    env = task.make()
    assert env.spec is not None and env.spec.max_episode_steps == task.max_episode_steps
    observation, _ = env.reset(seed=0)
    assert env.observation_space.contains(observation.astype(env.observation_space.dtype))
    env.close()


def test_task_is_found_by_suite_name_or_env_id() -> None:
    assert get_task("Pendulum").name == "pendulum"
    assert get_task("Pendulum-v1") is SUITE["pendulum"]


def test_other_gymnasium_ids_are_accepted_as_is_with_info_success() -> None:
    task = get_task("Acrobot-v1")
    assert task.env_id == "Acrobot-v1" and task.success is None and task.max_episode_steps == 500


def test_time_limit_override() -> None:
    task = get_task("hopper", max_episode_steps=20)
    assert task.max_episode_steps == 20 and SUITE["hopper"].max_episode_steps == 1000


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(TaskError, match="unknown task 'pendulm'.*pendulum"):
        get_task("pendulm")


def test_bad_time_limit_is_refused() -> None:
    with pytest.raises(TaskError, match="max_episode_steps"):
        get_task("pendulum", max_episode_steps=0)


def test_check_spaces_refuses_other_shapes_and_bounds() -> None:
    task = SUITE["pendulum"]
    task.check_spaces(task.observation_space, task.action_space, "same")
    with pytest.raises(TaskError, match="observation space"):
        task.check_spaces(SUITE["cartpole"].observation_space, task.action_space, "dataset 'x'")
    with pytest.raises(TaskError, match="different bounds"):
        task.check_spaces(task.observation_space, gym.spaces.Box(-1.0, 1.0, (1,)), "dataset 'x'")
    with pytest.raises(TaskError, match="Discrete is not Box"):
        task.check_spaces(task.observation_space, gym.spaces.Discrete(2), "dataset 'x'")


def test_reacher_frames_show_the_arm_large_enough_to_learn_from_at_64_pixels() -> None:
    """Reacher is drawn from above with the arena filling the frame: swinging the arm round changes
    hundreds of a 64×64 frame's pixels (the default tilted view changed 59, the target one pixel)."""
    import numpy as np

    from imaginarium.envs.render import rendered_frame, rendering_env

    env = rendering_env(get_task("reacher"), 64)
    env.reset(seed=0)
    frames = []
    for angles, target in (((0.0, 0.0), (0.1, 0.1)), ((np.pi, 0.0), (-0.1, -0.1))):
        env.unwrapped.set_state(np.array([*angles, *target]), np.zeros(4))
        frames.append(rendered_frame(env, 64).astype(int))
    changed = (np.abs(frames[0] - frames[1]).sum(axis=-1) > 30).sum()
    assert changed > 150
    env.close()


def test_a_task_id_naming_a_module_never_imports_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Datasets and model cards name their task: an id of the form ``module:Env-v0`` read from one
    must not import that module (Gymnasium imports it only in ``make``, after the lookup refused it)."""
    marker = tmp_path / "imported"
    (tmp_path / "planted_env.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TaskError, match="unknown task"):
        get_task("planted_env:Env-v0")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["pendulum", "reacher"])
def test_the_circles_a_task_declares_are_cosine_sine_pairs_of_its_real_observations(name: str) -> None:
    task = get_task(name)
    env = task.make()
    observation, _ = env.reset(seed=0)
    observations = [observation] + [env.step(env.action_space.sample())[0] for _ in range(20)]
    env.close()
    for cos, sin in task.circles:
        norms = [float(np.hypot(values[cos], values[sin])) for values in observations]
        assert np.allclose(norms, 1.0, atol=1e-5)
    assert task.circles and get_task(name, max_episode_steps=7).circles == task.circles
