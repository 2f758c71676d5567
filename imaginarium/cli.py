"""The ``imaginarium`` command line: a thin layer over functions that can be called from Python.

Every error a user can fix ends as one line on stderr and exit status 2; Ctrl-C ends with 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imaginarium.errors import ImaginariumError, SearchInterrupted
from imaginarium.run.console import interval, print_closed_loop, print_summary

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
POLICY_HELP = (
    "policy spec: random, a policy file or folder (SB3 .zip, TorchScript module, Dreamer agent), "
    "sb3:PATH, torchscript:PATH, dreamer:FOLDER or py:MODULE:FUNCTION (--allow-code); SPEC@noise=S adds "
    "action noise; '0.5*SPEC + 0.5*SPEC' draws one per episode"
)
ALLOW_CODE_HELP = (
    "accept policies that run code when loaded: py:MODULE:FUNCTION, and SB3 files naming classes "
    "outside the safe loader's allowlist"
)


class LibraryDefault:
    """An option's default where it lives: a parameter of a library function, a field of a config
    dataclass or a key of a mapping, named ``module:attribute``. It is read only when help is shown,
    so building the parser imports nothing heavy; an option left unset is not passed (:func:`given`),
    and the library applies its own default."""

    def __init__(self, target: str, name: str) -> None:
        self.target, self.name = target, name

    def __str__(self) -> str:
        module, _, attribute = self.target.partition(":")
        owner = getattr(importlib.import_module(module), attribute)
        if dataclasses.is_dataclass(owner):
            value = getattr(owner(), self.name)
        elif isinstance(owner, dict):
            value = owner if self.name == "*" else owner[self.name]
        else:
            value = inspect.signature(owner).parameters[self.name].default
        return str(value)


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` that the user set, by name: the others keep the library's default."""
    values = {name: getattr(args, name) for name in names}
    return {name: value for name, value in values.items() if not isinstance(value, LibraryDefault)}


def _option(parser: argparse.ArgumentParser, flag: str, target: str, help: str, **options: Any) -> None:
    """An option whose default is the library's (``target``, as :class:`LibraryDefault` names it),
    shown in its help."""
    name = options.pop("name", None) or options.get("dest") or flag.lstrip("-").replace("-", "_")
    parser.add_argument(
        flag, default=LibraryDefault(target, name), help=f"{help} (default %(default)s)", **options
    )


def cmd_collect(args: argparse.Namespace) -> int:
    from imaginarium.collect import collect
    from imaginarium.envs.suite import get_task

    task = get_task(args.task, args.max_episode_steps)
    result = collect(
        task,
        args.out,
        episodes=args.episodes,
        steps=args.steps,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        pixels=args.pixels,
        allow_code=args.allow_code,
        **given(args, "policy", "seed", "num_envs", "data_format"),
    )
    if result.interrupted:
        if result.path is None:
            print("interrupted before any episode was complete: nothing was written", file=sys.stderr)
        else:
            print(
                f"interrupted: wrote the {result.episodes} complete episodes ({result.steps} steps) to "
                f"{result.path}; dropped {result.dropped_steps} steps of unfinished episodes",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    print(
        f"wrote {result.episodes} episodes ({result.steps} steps) of {task.name} to {result.path} "
        f"in {result.seconds:.1f} s ({result.steps_per_second:,.0f} steps/s)"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from imaginarium.dataset import load_dataset

    summary = load_dataset(args.dataset, task=args.task).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
    return 0


def _parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs from ``--set``, values read as YAML scalars (numbers, booleans, strings)."""
    import yaml

    overrides = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise ImaginariumError(f"--set takes key=value, got {pair!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ImaginariumError(f"--set {pair!r}: the value does not parse: {error}") from None
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    from imaginarium.config import load_yaml
    from imaginarium.models.train import train_world_model, train_world_models

    file_config = load_yaml(args.config) if args.config else {}
    unknown = set(file_config) - {"model", "train"}
    if unknown:
        raise ImaginariumError(
            f"unknown section {sorted(unknown)[0]!r} in {args.config}; expected model and train"
        )
    for section in ("model", "train"):
        if not isinstance(file_config.get(section) or {}, dict):
            raise ImaginariumError(
                f"section {section!r} of {args.config} must be a mapping of keys to values"
            )
    model_overrides = {**(file_config.get("model") or {}), **_parse_overrides(args.set)}
    if args.pixels is not None:
        if args.family != "rssm":
            raise ImaginariumError("only the rssm family learns from frames: use --model rssm with --pixels")
        model_overrides["image_size"] = args.pixels
    train_config = {
        **(file_config.get("train") or {}),
        **given(args, "steps", "seed", "patience", "eval_every", "selection"),
    }
    options = dict(
        **given(args, "family", "preset"),
        model_overrides=model_overrides,
        config=train_config,
        device=args.device,
        resume=args.resume,
        progress=not args.no_progress,
        action_free=args.action_free,
    )
    if args.seeds is not None:
        if args.overwrite:
            raise ImaginariumError("--seeds trains into new seed folders: remove the old ones, or --resume")
        results = train_world_models(args.data, args.out, args.seeds, **options)
    else:
        results = [train_world_model(args.data, args.out, overwrite=args.overwrite, **options)]
    for result in results:
        training = result.card["training"]
        stop = "stopped early" if result.stopped_early else "ran all steps"
        open_loop = result.card["train_config"].get("selection") == "open_loop"
        print(
            f"trained {result.model.family} for {result.steps} steps ({stop}) in {result.seconds:.0f} s; best "
            f"{'open-loop error' if open_loop else 'validation loss'} {training['best_validation_loss']:.4g} at "
            f"step {training['best_step']}; wrote {result.directory}"
        )
    if args.seeds is not None:
        print(f"rank in all {len(results)} models with: imaginarium rank --model {args.out} ...")
    return 0


def cmd_evaluate_model(args: argparse.Namespace) -> int:
    from imaginarium.run.pipeline import evaluate_fidelity

    report = evaluate_fidelity(
        args.model_dir,
        args.data,
        out=args.out,
        overwrite=args.overwrite,
        visual=args.visual,
        policies=args.policies or (),
        allow_code=args.allow_code,
        **given(args, "horizon", "starts", "context", "episodes", "precision"),
    )
    print_summary(report["summary"])
    if "closed_loop" in report:
        print_closed_loop(report["closed_loop"])
    print(f"wrote {Path(args.out or args.model_dir) / 'fidelity.json'} and fidelity.png")
    return 0


def cmd_import_video(args: argparse.Namespace) -> int:
    from imaginarium.dataset import load_dataset
    from imaginarium.video_import import import_videos

    path = import_videos(args.videos, args.into, args.out, resize=args.resize, overwrite=args.overwrite)
    summary = load_dataset(path).summary()
    print(
        f"wrote {path}: {summary['episodes']} episodes, {summary['action_free_episodes']} of them "
        "observations only (train with --pixels N --action-free label)"
    )
    return 0


def cmd_imagine_train(args: argparse.Namespace) -> int:
    from imaginarium.agents.sb3 import score_agent, train_in_imagination

    if args.eval_episodes < 0:
        raise ImaginariumError(f"--eval-episodes must be 0 (no scoring) or more, got {args.eval_episodes}")
    env_options = given(args, "uncertainty_penalty", "termination", "reward", "starts", "time_limit")
    if args.pixels:
        env_options.update(observation="pixels", pixels=args.pixels)
    path = train_in_imagination(
        args.model,
        args.algo,
        args.steps,
        args.out,
        **given(args, "num_envs", "seed", "real_ratio"),
        env_options=env_options,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    print(f"trained {args.algo} for {args.steps} imagined steps; wrote {path}")
    if args.eval_episodes > 0:
        score = score_agent(path, args.model, episodes=args.eval_episodes, env_options=env_options)
        line = f"imagined return {interval(score.imagined)}"
        if score.real is not None:
            line += f"   real return on {score.task} {interval(score.real)}"
        print(f"{line}   ({score.episodes} episodes each)")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from imaginarium.models import model_folders
    from imaginarium.outputs import check_output
    from imaginarium.report import REPORT_FILES, markdown_report, write_report
    from imaginarium.run.rank import rank_policies

    check_output(args.report, args.overwrite, files=REPORT_FILES)  # before the ranking, not after it
    started = time.perf_counter()
    result = rank_policies(
        args.model,
        args.policies,
        horizon=args.horizon,
        real_env=args.real_env,
        dataset=args.data,
        workers=args.workers,
        address=args.address,
        allow_code=args.allow_code,
        progress=not args.no_progress,
        group=args.group,
        rules=args.rules,
        level=args.level,
        calibrate=args.calibrate,
        **given(args, "starts", "real_episodes", "seed", "members"),
    )
    seconds = time.perf_counter() - started  # Ray's start and stop included, where it ran on Ray
    paths = write_report(
        result,
        args.report,
        model_dir=model_folders(args.model[0])[0],
        overwrite=args.overwrite,
        **given(args, "videos"),
    )
    print(markdown_report(result))
    where = "in this process" if result.settings is not None and result.settings.workers == 0 else "on Ray"
    print(f"ranked in {seconds:.1f} s {where}")
    print(f"wrote {paths['json']}, {paths['markdown']} and {paths['html']}")
    if result.all_failed:
        first = result.failed[0]
        raise ImaginariumError(
            f"none of the {len(result.failed)} policies could be ranked (first, {first.name}: "
            f"{first.error.splitlines()[0]}); {paths['markdown']} lists every failure"
        )
    return 0


def cmd_dream(args: argparse.Namespace) -> int:
    from imaginarium.agents.dreamer import score_dreamer, train_dreamer

    config = {**_parse_overrides(args.set)}
    if args.online:
        from imaginarium.run.online import dream_online

        if not args.task:
            raise ImaginariumError("dream --online needs --task")
        online = {**given(args, "real_steps"), "eval_episodes": max(1, args.eval_episodes)}
        result = dream_online(args.task, args.out, online, config, overwrite=args.overwrite)
        last = result.curve[-1]
        print(
            f"{last['real_steps']} real steps, {result.updates} updates: real return {last['mean']:.1f}; "
            f"wrote {args.out} (curve.json, curve.png)"
        )
        return 0
    if not args.model:
        raise ImaginariumError("dream needs --model MODEL_DIR, or --task TASK --online")
    config.update(given(args, "steps"))
    summary = train_dreamer(
        args.model,
        args.out,
        config,
        device=args.device,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(f"{summary.updates} imagined updates in {summary.seconds:.0f} s; wrote {args.out}")
    if args.eval_episodes > 0:
        score = score_dreamer(args.out, args.eval_episodes)
        if score.real is not None:
            print(f"real return on {score.task}: {interval(score.real)}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from imaginarium.run.search import run_search

    result = run_search(
        args.model,
        args.algo,
        out=args.out,
        space=args.space,
        workers=args.workers,
        address=args.address,
        resume=args.resume,
        overwrite=args.overwrite,
        allow_code=args.allow_code,
        **given(args, "samples", "steps", "reports", "top_k", "real_episodes", "uncertainty_penalty", "seed"),
    )
    print((Path(args.out) / "tune.md").read_text())
    print(f"search took {result.seconds:.0f} s; chosen agent: {result.best_agent}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from imaginarium.video import write_rollout_video

    video = write_rollout_video(
        args.model,
        args.policy,
        args.out,
        steps=args.steps,
        **given(args, "seed", "size", "fps"),
        allow_code=args.allow_code,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {video.path}: {video.frames} frames, real episode {video.real_steps} steps, "
        f"imagined {video.imagined_steps}"
    )
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from imaginarium.envs.suite import SUITE

    for task in SUITE.values():
        success = task.success.description if task.success else "(return only)"
        print(f"{task.name:<12} {task.env_id:<26} {task.max_episode_steps:>5} steps   success: {success}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from imaginarium.run.demo import run_demo

    run_demo(Path(args.out), agent_steps=args.agent_steps, **given(args, "task", "episodes", "seed"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="imaginarium",
        description="Learn a world model from logged experience and train, search and rank policies inside it.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    collect = commands.add_parser("collect", help="roll a policy in a real task and write a Minari dataset")
    collect.add_argument(
        "--task", required=True, help="suite task (pendulum, cartpole, ...) or a Gymnasium id"
    )
    _option(collect, "--policy", "imaginarium.collect:collect", POLICY_HELP)
    amount = collect.add_mutually_exclusive_group(required=True)
    amount.add_argument("--episodes", type=int, help="number of episodes to collect")
    amount.add_argument(
        "--steps", type=int, help="collect complete episodes until this many steps are stored"
    )
    collect.add_argument("--out", required=True, help="dataset folder to create")
    _option(collect, "--seed", "imaginarium.collect:collect", "seeds the resets and the policy", type=int)
    _option(
        collect,
        "--num-envs",
        "imaginarium.collect:collect",
        "environment copies stepped side by side",
        type=int,
    )
    _option(
        collect,
        "--format",
        "imaginarium.collect:collect",
        "Minari storage format",
        dest="data_format",
        choices=("hdf5", "arrow"),
    )
    collect.add_argument("--max-episode-steps", type=int, help="override the task's time limit")
    collect.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    collect.add_argument(
        "--pixels", type=int, help="also store each observation's rendered frame, N x N RGB (e.g. 64)"
    )
    collect.add_argument(
        "--allow-code",
        action="store_true",
        help=ALLOW_CODE_HELP,
    )
    collect.add_argument("--no-progress", action="store_true", help="no progress bar")
    collect.set_defaults(func=cmd_collect)

    info = commands.add_parser("info", help="print what a dataset holds")
    info.add_argument("dataset", help="dataset folder or Minari dataset id")
    info.add_argument("--task", help="check the dataset against this task")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=cmd_info)

    videos = commands.add_parser(
        "import-video",
        help="add a folder of video files to a dataset with frames, as observation-only episodes",
    )
    videos.add_argument("--videos", required=True, help="folder of .mp4/.webm/.avi/.mov/.mkv/.gif files")
    videos.add_argument("--into", required=True, help="dataset with frames (collect --pixels N)")
    videos.add_argument("--out", required=True, help="new dataset folder: its episodes, then the videos")
    videos.add_argument("--resize", action="store_true", help="scale frames of another size to the dataset's")
    videos.add_argument("--overwrite", action="store_true")
    videos.set_defaults(func=cmd_import_video)

    train = commands.add_parser("train", help="fit a world model to a dataset")
    train.add_argument("--data", required=True, help="dataset folder or Minari dataset id")
    _option(
        train, "--model", "imaginarium.models.train:train_world_model", "world-model family", dest="family",
        choices=("ensemble", "rssm"),
    )  # fmt: skip
    _option(
        train,
        "--preset",
        "imaginarium.models.train:train_world_model",
        "model size",
        choices=("xs", "s", "m"),
    )
    train.add_argument("--out", required=True, help="model folder to write")
    train.add_argument(
        "--pixels", type=int, metavar="N", help="learn from the dataset's N x N frames, not its states (rssm)"
    )
    train.add_argument(
        "--action-free",
        choices=("refuse", "drop", "label"),
        default="refuse",
        help="episodes with observations only (video): refuse them, drop them, or label their actions "
        "with an inverse-dynamics model learned from the others",
    )
    _option(train, "--steps", "imaginarium.models.train:TrainConfig", "gradient steps", type=int)
    _option(
        train,
        "--eval-every",
        "imaginarium.models.train:TrainConfig",
        "steps between validation checks",
        type=int,
    )
    _option(
        train,
        "--patience",
        "imaginarium.models.train:TrainConfig",
        "validation checks without improvement before stopping",
        type=int,
    )
    _option(
        train,
        "--seed",
        "imaginarium.models.train:TrainConfig",
        "seeds the split, the weights and the batches",
        type=int,
    )
    _option(
        train, "--selection", "imaginarium.models.train:TrainConfig",
        "what picks the best weights: the validation loss, or the held-out open-loop error",
        choices=("loss", "open_loop"),
    )  # fmt: skip
    train.add_argument("--device", default="cpu", help="cpu or cuda")
    train.add_argument("--config", help="YAML file with 'model' and 'train' sections")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one model setting"
    )
    train.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="train N models independently (seeds --seed onwards, each its own held-out split) into "
        "--out/seed-<seed>; rank in all of them with --model of that folder",
    )
    train.add_argument("--resume", action="store_true", help="continue from the folder's last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="discard a model already in --out")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate-model", help="measure a model's fidelity on held-out episodes")
    evaluate.add_argument("model_dir")
    evaluate.add_argument(
        "--data", required=True, help="the model's dataset (held-out split) or another of its task"
    )
    _option(evaluate, "--horizon", "imaginarium.models.evaluate:evaluate_model", "open-loop steps", type=int)
    _option(
        evaluate, "--starts", "imaginarium.models.evaluate:evaluate_model", "open-loop start states", type=int
    )
    _option(
        evaluate,
        "--context",
        "imaginarium.models.evaluate:evaluate_model",
        "real steps filtered before each open-loop start",
        type=int,
    )
    evaluate.add_argument(
        "--out", help="folder for fidelity.json and fidelity.png (default: the model folder)"
    )
    evaluate.add_argument(
        "--overwrite", action="store_true", help="replace the figures of an earlier evaluation in --out"
    )
    evaluate.add_argument(
        "--visual",
        action="store_true",
        help="also draw real and imagined trajectories: PSNR and SSIM over the horizon",
    )
    evaluate.add_argument(
        "--policies",
        nargs="+",
        metavar="SPEC",
        help="also run these policies closed loop, on the real task and in the model from the same starts: "
        "returns, episode lengths and the step where the imagined states leave the real ones",
    )
    _option(
        evaluate,
        "--episodes",
        "imaginarium.run.pipeline:evaluate_fidelity",
        "closed-loop episodes per policy",
        type=int,
    )
    _option(
        evaluate,
        "--precision",
        "imaginarium.models.evaluate:evaluate_model",
        "imagine in this number format, to see what bfloat16 costs this model; the card keeps float32's",
        choices=["float32", "bfloat16"],
    )
    evaluate.add_argument("--allow-code", action="store_true", help=ALLOW_CODE_HELP)
    evaluate.set_defaults(func=cmd_evaluate_model)

    imagine = commands.add_parser(
        "imagine-train", help="train a Stable-Baselines3 agent inside a world model"
    )
    imagine.add_argument("--model", required=True, help="model folder")
    imagine.add_argument("--algo", choices=("ppo", "sac", "td3", "a2c", "dqn"), required=True)
    imagine.add_argument("--steps", type=int, required=True, help="imagined environment steps")
    imagine.add_argument("--out", required=True, help="where to save the agent (.zip)")
    _option(
        imagine,
        "--num-envs",
        "imaginarium.agents.sb3:train_in_imagination",
        "imagined envs stepped as one batch",
        type=int,
    )
    _option(imagine, "--seed", "imaginarium.agents.sb3:train_in_imagination", "seeds the agent", type=int)
    _option(
        imagine,
        "--uncertainty-penalty",
        "imaginarium.envs.imagined:Imagination",
        "reward minus this x uncertainty",
        type=float,
    )
    _option(
        imagine, "--termination", "imaginarium.envs.imagined:Imagination",
        "what ends an imagined episode (rule: the task's own termination rule)",
        choices=("continue", "success", "both", "rule", "none"),
    )  # fmt: skip
    _option(
        imagine, "--reward", "imaginarium.envs.imagined:Imagination",
        "the model's reward, or the task's own reward rule on the imagined states",
        choices=("model", "rule"),
    )  # fmt: skip
    _option(
        imagine, "--starts", "imaginarium.envs.imagined:Imagination",
        "where imagined episodes start: the dataset's episode starts, or any recorded state (MBPO)",
        choices=("episodes", "states"),
    )  # fmt: skip
    _option(
        imagine,
        "--time-limit",
        "imaginarium.envs.imagined:Imagination",
        "imagined steps per episode, short with --starts states (None: the task's)",
        type=int,
    )
    _option(
        imagine,
        "--real-ratio",
        "imaginarium.agents.sb3:train_in_imagination",
        "share of each replay batch drawn from the dataset (sac, td3, dqn)",
        type=float,
    )
    imagine.add_argument(
        "--eval-episodes", type=int, default=10, help="score in the model and on the real task"
    )
    imagine.add_argument(
        "--pixels", type=int, help="train a CnnPolicy on imagined states drawn as N x N frames (e.g. 64)"
    )
    imagine.add_argument("--overwrite", action="store_true", help="replace an agent already at --out")
    imagine.add_argument("--no-progress", action="store_true")
    imagine.set_defaults(func=cmd_imagine_train)

    dream = commands.add_parser(
        "dream", help="learn a Dreamer-style actor-critic on trajectories imagined in a world model"
    )
    dream.add_argument("--model", help="model folder (offline: learn from the model and its dataset alone)")
    dream.add_argument("--task", help="task for --online")
    dream.add_argument("--online", action="store_true", help="act on the real task, refit, imagine, repeat")
    dream.add_argument("--out", required=True, help="agent folder")
    _option(dream, "--steps", "imaginarium.agents.dreamer:DreamerConfig", "actor-critic updates", type=int)
    _option(
        dream,
        "--real-steps",
        "imaginarium.run.online:OnlineConfig",
        "--online: real steps to use in all",
        type=int,
    )
    dream.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a DreamerConfig field"
    )
    dream.add_argument("--device", default="cpu")
    dream.add_argument("--resume", action="store_true")
    dream.add_argument("--overwrite", action="store_true")
    dream.add_argument("--eval-episodes", type=int, default=10, help="real episodes to score the actor")
    dream.add_argument("--no-progress", action="store_true")
    dream.set_defaults(func=cmd_dream)

    tune = commands.add_parser(
        "tune",
        help="Ray Tune search of an agent's hyperparameters inside a model; the best checked for real",
    )
    tune.add_argument("--model", required=True, help="model folder")
    tune.add_argument("--algo", choices=("ppo", "sac", "dreamer"), required=True)
    _option(tune, "--samples", "imaginarium.run.search:run_search", "configurations to try", type=int)
    tune.add_argument(
        "--out", required=True, help="folder for the search, its reports and best_agent.zip (or best_agent/)"
    )
    tune.add_argument(
        "--steps",
        type=int,
        default=LibraryDefault("imaginarium.run.search:DEFAULT_STEPS", "*"),
        help="training per trial: agent steps for ppo and sac, updates for dreamer (default %(default)s)",
    )
    _option(
        tune,
        "--reports",
        "imaginarium.run.search:run_search",
        "scores reported per trial (ASHA's rungs)",
        type=int,
    )
    tune.add_argument(
        "--space", help="YAML search space replacing the default (parameter: {distribution: args})"
    )
    _option(
        tune,
        "--top-k",
        "imaginarium.run.search:run_search",
        "best trials validated on the real task",
        type=int,
    )
    _option(
        tune,
        "--real-episodes",
        "imaginarium.run.search:run_search",
        "real episodes per validated trial",
        type=int,
    )
    _option(
        tune,
        "--uncertainty-penalty",
        "imaginarium.run.search:run_search",
        "score = return - this x member spread",
        type=float,
    )
    tune.add_argument("--workers", type=int, help="local Ray CPUs (default all)")
    tune.add_argument("--address", help="join the Ray cluster at this address")
    tune.add_argument(
        "--resume",
        action="store_true",
        help="restore an interrupted search in --out (with --allow-code: it unpickles Ray Tune's saved state)",
    )
    tune.add_argument("--overwrite", action="store_true", help="start afresh where an earlier search is")
    tune.add_argument(
        "--allow-code", action="store_true", help="trust the search folder's saved state (needed by --resume)"
    )
    _option(tune, "--seed", "imaginarium.run.search:run_search", "seeds the search", type=int)
    tune.set_defaults(func=cmd_tune)

    rank = commands.add_parser(
        "rank", help="rank candidate policies inside a world model (on Ray), optionally against real returns"
    )
    rank.add_argument(
        "--model",
        nargs="+",
        required=True,
        help="model folder; several, or a folder of models from train --seeds, to rank in them all",
    )
    rank.add_argument(
        "--policies",
        nargs="+",
        required=True,
        help=f"one or more policies; each a {POLICY_HELP}",
    )
    rank.add_argument("--report", required=True, help="folder for ranking.json, report.md and report.html")
    rank.add_argument("--real-env", help="also run real episodes on this task or Gymnasium id")
    _option(
        rank,
        "--real-episodes",
        "imaginarium.run.rank:rank_policies",
        "real episodes per policy with --real-env",
        type=int,
    )
    _option(
        rank,
        "--starts",
        "imaginarium.run.rank:rank_policies",
        "real start states every policy is rolled from",
        type=int,
    )
    rank.add_argument("--horizon", type=int, help="steps per rollout (default: the task's time limit)")
    rank.add_argument(
        "--members",
        choices=("each", "one"),
        default="each",
        help="roll each start once per ensemble member, measuring their spread (each), or once with a "
        "member drawn every step, a 1/members of the work for screening many policies (one)",
    )
    rank.add_argument(
        "--level",
        type=float,
        default=0.9,
        help="level of the interval on each policy's real return, prediction-powered from the real "
        "episodes and the model together (with --real-episodes 2 or more)",
    )
    rank.add_argument(
        "--calibrate",
        metavar="episode|N",
        help="give policies without real episodes an interval on their real return, calibrated on held-out "
        "episodes of the model's data replayed in the model whole (episode) or in segments of N steps "
        "(experimental: docs/studies.md says how far each covers)",
    )
    rank.add_argument(
        "--rules",
        action="store_true",
        help="the task's own termination and reward rules judge the imagined states where known, in place "
        "of the model's continue and reward heads",
    )
    rank.add_argument(
        "--group",
        type=int,
        help="policies imagined together, one model call per step for all of them (default: spread "
        "evenly over the workers, at most 32)",
    )
    rank.add_argument("--data", help="dataset for start states (default: the model's own)")
    rank.add_argument(
        "--workers",
        type=int,
        help="local Ray CPUs; 0 runs in this process (default: with no Ray running, this process for a "
        "small ranking of a state model without --real-env or py: callables, else all local CPUs)",
    )
    rank.add_argument("--address", help="join the Ray cluster at this address")
    _option(
        rank,
        "--seed",
        "imaginarium.run.rank:rank_policies",
        "seeds the starts and the model's sampling",
        type=int,
    )
    _option(
        rank,
        "--videos",
        "imaginarium.report:write_report",
        "top policies shown as real and imagined GIFs",
        type=int,
    )
    rank.add_argument("--allow-code", action="store_true", help=ALLOW_CODE_HELP)
    rank.add_argument("--overwrite", action="store_true", help="replace a report already in --report")
    rank.add_argument("--no-progress", action="store_true")
    rank.set_defaults(func=cmd_rank)

    video = commands.add_parser(
        "video", help="a policy's real and imagined episodes side by side from the same start (.mp4 or .gif)"
    )
    video.add_argument("--model", required=True, help="model folder (its task gives the real episode)")
    video.add_argument("--policy", required=True, help=POLICY_HELP)
    video.add_argument("--out", required=True, help="rollout.mp4 or rollout.gif")
    video.add_argument("--steps", type=int, help="at most this many steps (default: the task's time limit)")
    _option(
        video,
        "--seed",
        "imaginarium.video:write_rollout_video",
        "seed of the real reset both episodes start from",
        type=int,
    )
    _option(video, "--size", "imaginarium.video:write_rollout_video", "pixels of each square panel", type=int)
    _option(video, "--fps", "imaginarium.video:write_rollout_video", "frames per second", type=int)
    video.add_argument("--allow-code", action="store_true", help=ALLOW_CODE_HELP)
    video.add_argument("--overwrite", action="store_true", help="replace a video already at --out")
    video.set_defaults(func=cmd_video)

    tasks = commands.add_parser("tasks", help="list the real-task suite")
    tasks.set_defaults(func=cmd_tasks)

    demo = commands.add_parser("demo", help="run the whole job end to end at small scale")
    demo.add_argument("--out", default="demo", help="folder for everything the demo writes")
    _option(demo, "--task", "imaginarium.run.demo:run_demo", "suite task")
    _option(demo, "--episodes", "imaginarium.run.demo:run_demo", "random episodes to collect", type=int)
    _option(demo, "--seed", "imaginarium.run.demo:run_demo", "seeds every stage", type=int)
    demo.add_argument(
        "--agent-steps", type=int, help="imagined steps for the SB3 agent (default per task; 0 skips it)"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``imaginarium`` console script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except SearchInterrupted as error:
        print(f"imaginarium {args.command}: interrupted: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ImaginariumError as error:
        print(f"imaginarium {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"imaginarium {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
