"""The ranking report: ``ranking.json`` for programs, ``report.md`` for terminals and pull requests, and
``report.html``, one self-contained page (every image embedded) for people::

    write_report(result, "reports/pendulum", model_dir="models/pendulum")

The page holds the ranking table with intervals, a scatter of imagined against real return, the
ranking metrics, the model's fidelity figures, a warning on each policy whose rollouts leave what the
model knows, and side-by-side GIFs of a real and an imagined rollout of the top policies.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from imaginarium.models.starts import DIVERGENCE_STDS
from imaginarium.outputs import atomic_write_bytes, atomic_write_text, check_output
from imaginarium.ranking import OUTSIDE_FRACTION_WARNING, PolicyEntry, RankingResult
from imaginarium.rewards.success import SUCCESS_DEFINITIONS

METRIC_LABELS = {
    "spearman": "Spearman ρ",
    "kendall": "Kendall τ",
    "pearson": "Pearson r",
    "regret_at_1": "regret@1",
    "regret_at_3": "regret@3",
    "abs_error": "mean abs. error (normalised)",
    "mmrv": "MMRV",
}

#: one sentence per metric, for the reader who has not met it
METRIC_NOTES = {
    "spearman": "rank correlation of imagined and real returns (1: the same order).",
    "kendall": "the share of policy pairs put in the same order, rescaled to [-1, 1].",
    "pearson": "linear correlation of imagined and real returns.",
    "regret_at_1": "how much real return is lost by deploying the top-ranked policy instead of the best "
    "one, as a share of the real returns' range (0: the best was ranked first).",
    "regret_at_3": "the same for the best of the top three.",
    "abs_error": "mean distance of imagined from real return, both normalised to the real returns' range.",
    "mmrv": "mean maximum rank violation: for each policy, the largest real-return gap (as a share of the "
    "range) among the pairs it is put in the wrong order with, averaged (0: none).",
}

#: one line per column of the ranking table
COLUMN_NOTES = {
    "imagined return [95% CI]": "mean return of the policy's imagined episodes from real start states.",
    "member spread": "std of that return across the ensemble's members: how much the models disagree.",
    "model spread": "std of that return across independently trained models (— for one model): how much "
    "the result depends on one training run.",
    "order held": "share of resamples of the start states (and models) in which the policy stays above the "
    "next one: near 50%, the two are not told apart.",
    "imagined success": "share of imagined episodes that succeed (how it is decided: below the table).",
    "real return [95% CI]": "mean return of real episodes, the figure the imagined one estimates.",
    "real success": "share of real episodes the task counts as successes.",
    "uncertainty": "mean per-step disagreement of the model about the next state.",
    "outside": "share of imagined states farther from the model's data than real held-out states are.",
}

#: a mean distance of imagined from real success above this is explained in the report
SUCCESS_GAP_WARNING = 0.15

#: what :func:`write_report` writes into its folder
REPORT_FILES = ("ranking.json", "report.md", "report.html")


def write_report(
    result: RankingResult,
    out: str | Path,
    model_dir: str | Path | None = None,
    videos: int = 3,
    video_steps: int = 200,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``ranking.json``, ``report.md`` and ``report.html`` for a :func:`rank_policies` result.

    :param model_dir: the model folder, for its fidelity figures and the imagined videos.
    :param videos: how many top policies get a real and an imagined GIF (0: none).
    :param overwrite: replace a report already in ``out`` (else refused).
    :returns: the paths written, by kind.
    :raises OutputError: ``out`` cannot be written, or holds a report and ``overwrite`` is not given.
    """
    out = check_output(out, overwrite, files=REPORT_FILES)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / name for kind, name in zip(("json", "markdown", "html"), REPORT_FILES, strict=True)}
    fidelity = _fidelity(model_dir)
    success_auc = (fidelity.get("summary") or {}).get("success_auc")
    atomic_write_text(paths["json"], json.dumps(result.to_json(), indent=2))
    atomic_write_text(paths["markdown"], markdown_report(result, success_auc))
    animations = []
    if videos and model_dir is not None and result.settings is not None and result.settings.real_env:
        animations = _rollout_gifs(result, Path(model_dir), videos, video_steps)
    atomic_write_text(paths["html"], html_report(result, fidelity, animations))
    return paths


def _interval(figure: dict[str, float] | None) -> str:
    if figure is None:
        return "—"
    return f"{figure['mean']:.1f} [{figure['ci_low']:.1f}, {figure['ci_high']:.1f}]"


def _estimate(figure: dict[str, Any] | None) -> str:
    return "—" if figure is None else f"{figure['mean']:.1f} [{figure['low']:.1f}, {figure['high']:.1f}]"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _rows(result: RankingResult) -> list[dict[str, str]]:
    """Table rows shared by the markdown and HTML reports."""
    rows = []
    for entry in result.ranked:
        rows.append(
            {
                "rank": str(entry.rank),
                "name": entry.name,
                "imagined": _interval(entry.imagined_return),
                "spread": _number(entry.member_spread, 1),
                "model_spread": _number(entry.model_spread, 1),
                "order": _percent(entry.order_confidence),
                "success": _number(entry.imagined_success),
                "real": _interval(entry.real_return),
                "real_success": _number(entry.real_success),
                "uncertainty": "—" if entry.uncertainty is None else f"{entry.uncertainty:.3g}",
                "outside": _percent(entry.outside_fraction),
                "warning": _warning(entry),
            }
        )
    return rows


def _warning(entry: PolicyEntry) -> str:
    if entry.diverged:
        return f"⚠ {entry.diverged} rollouts diverged"
    return "⚠ outside the data" if entry.uncertainty_warning else ""


def _success_note(result: RankingResult, success_auc: float | None = None) -> str | None:
    """How the imagined success column was decided, and how far it agreed with the real one."""
    sources = {entry.success_source for entry in result.ranked if entry.success_source is not None}
    if not sources:
        return None
    rules = {definition.name: definition for definition in SUCCESS_DEFINITIONS.values()}
    gap = result.success_gap
    with_both = sum(entry.real_success is not None for entry in result.ranked)
    parts = []
    for source in sorted(sources):
        name = source.removeprefix("rule:")
        if source.startswith("rule:") and name in rules:
            parts.append(
                f"Imagined success applies the task's own rule, {rules[name].description}, to the decoded "
                "imagined states, as the real task judges real ones."
            )
        else:
            auc = "" if success_auc is None else f" (per-step AUC on held-out data: {success_auc:.2f})"
            parts.append(
                "Imagined success comes from the model's success head, a per-state probability at the episode's "
                f"end{auc}: no rule is known for this task, and a head cannot express a rule over several steps."
            )
    if gap is not None:
        parts.append(
            f"Over the {with_both} policies with real episodes it differs from real success by {gap:.2f} on average."
        )
        if gap > SUCCESS_GAP_WARNING and any(source.startswith("rule:") for source in sources):
            parts.append(
                "The rule is the real task's, so the difference is the model's: its imagined states are not the "
                "real ones (compare the returns, and the share of states outside its data)."
            )
    return " ".join(parts)


def _notes(result: RankingResult, success_auc: float | None = None) -> list[str]:
    settings = result.settings
    notes = []
    if settings is not None:
        notes.append(
            f"{settings.starts} real start states, horizon {settings.horizon}, seed {settings.seed}; "
            "intervals are bootstrap 95% over start states (real: over episodes); spread is the std of the "
            "mean return across ensemble members. 'uncertainty' is the mean per-step disagreement of the "
            "ensemble's members about the next state's change, in the data's standard deviations of that "
            "change (an RSSM's: the entropy of its prior, in nats). A rollout diverged where a state or "
            f"reward went more than {DIVERGENCE_STDS:g} of the data's standard deviations beyond anything "
            "recorded: it ended there, its return counted to that step."
        )
        if settings.rules:
            notes.append(
                "The task's own termination and reward rules judged the imagined states where they are known "
                "(imaginarium.rewards), in place of the model's continue and reward heads."
            )
        if settings.truncated:
            notes.append(
                f"The horizon {settings.horizon} is shorter than the task's time limit {settings.time_limit}: "
                "imagined returns are truncated and do not estimate full-episode returns."
            )
    if result.ranking_confidence is not None:
        over = (
            "the start states"
            if settings is None or settings.models == 1
            else (f"the {settings.models} independently trained models and the start states")
        )
        notes.append(
            f"Ranking confidence {_percent(result.ranking_confidence)}: over resamples of {over}, that share "
            f"of the pairs of policies keeps its order on average; the first-ranked stays first in "
            f"{_percent(result.top_confidence)}. This is the ranking's sensitivity to the model's own "
            "randomness, not its distance from the real task."
        )
    powered = [entry for entry in result.ranked if (entry.predicted_real_return or {}).get("method") == "ppi"]
    if powered:
        level = powered[0].predicted_real_return["level"]
        shown = "; ".join(
            f"{entry.name} {_estimate(entry.predicted_real_return)} (real episodes alone "
            f"{_estimate(entry.real_interval)}, mostly {entry.predicted_real_return.get('dominant')})"
            for entry in powered
        )
        notes.append(
            f"Real return predicted from the real episodes and the model together, {100 * level:g}% "
            f"intervals (prediction-powered: unbiased however biased the model, narrower where its returns "
            f"track the real ones from the same starts): {shown}."
        )
    calibrated = [
        entry for entry in result.ranked if (entry.predicted_real_return or {}).get("method") == "conformal"
    ]
    if calibrated:
        first = calibrated[0].predicted_real_return
        shown = "; ".join(
            f"{entry.name} {_estimate(entry.predicted_real_return)}, mostly "
            f"{entry.predicted_real_return['dominant']}"
            for entry in calibrated
        )
        notes.append(
            f"Real return predicted without real episodes, {100 * first['level']:g}% intervals calibrated on "
            f"{first['held_out']} held-out episodes of the model's data (their logged actions replayed in the "
            "model from their first states; split conformal on the real minus imagined returns): "
            f"{shown}. They hold for policies that err in the model as the data's own episodes do; a policy "
            "that goes where the data never went (see 'outside') can err more."
        )
    success = _success_note(result, success_auc)
    if success is not None:
        notes.append(success)
    shields = [entry for entry in result.ranked if entry.interventions is not None]
    if shields:
        notes.append("Shields replaced the policy's action in " + "; ".join(
            f"{entry.name}: {_percent(entry.interventions)} of imagined decisions"
            + ("" if entry.real_interventions is None else f", {_percent(entry.real_interventions)} of real ones")
            for entry in shields
        ) + ".")  # fmt: skip
    if result.outside_threshold is not None:
        notes.append(
            "'outside' is the share of imagined states farther from every state of the model's data than "
            f"99% of real held-out states are ({result.outside_threshold:.3g} std units); ⚠ marks "
            f"policies with more than {OUTSIDE_FRACTION_WARNING:.0%} of states outside, or whose rollouts "
            "diverged: the model knows least about where they go, so their estimates are the least trustworthy."
        )
    return notes


def markdown_report(result: RankingResult, success_auc: float | None = None) -> str:
    """A short summary: the ranking, the metrics, failures, and how far to trust the figures.

    :param success_auc: the success head's per-step AUC on held-out data, shown beside how well its
        imagined success matched the real one.
    """
    task = result.settings.task if result.settings is not None else None
    lines = [f"# Policy ranking: {task or 'model'}", ""]
    header = ["rank", "policy", *COLUMN_NOTES, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in _rows(result):
        cells = [row[key] for key in ("rank", "name", "imagined", "spread", "model_spread", "order")]
        cells += [row[key] for key in ("success", "real", "real_success")]
        cells += [row["uncertainty"], row["outside"], row["warning"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if result.metrics:
        lines.append("Ranking against real returns: " + ", ".join(
            f"{METRIC_LABELS[key]} {value:.3f}" for key, value in result.metrics.items()
        ) + ".")  # fmt: skip
        lines.append("")
    if result.failed:
        lines += ["Failed policies (not ranked):", ""]
        lines += [f"- `{entry.path}`: {entry.error}" for entry in result.failed]
        lines.append("")
    lines += _notes(result, success_auc)
    lines += ["", "Columns:", ""] + [f"- **{column}**: {note}" for column, note in COLUMN_NOTES.items()]
    if result.metrics:
        lines += ["", "Metrics:", ""]
        lines += [
            f"- **{METRIC_LABELS[key]}**: {METRIC_NOTES[key]}"
            for key in result.metrics
            if key in METRIC_NOTES
        ]
    return "\n".join(lines) + "\n"


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _scatter(result: RankingResult) -> str | None:
    """A base64 PNG of imagined against real return with both intervals, or None without real returns."""
    entries = [entry for entry in result.ranked if entry.real_return]
    if not entries:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 5))
    real = np.array([[e.real_return[k] for k in ("mean", "ci_low", "ci_high")] for e in entries])
    imagined = np.array([[e.imagined_return[k] for k in ("mean", "ci_low", "ci_high")] for e in entries])
    colors = ["tab:red" if e.uncertainty_warning else "tab:blue" for e in entries]
    axis.errorbar(
        real[:, 0], imagined[:, 0],
        xerr=[real[:, 0] - real[:, 1], real[:, 2] - real[:, 0]],
        yerr=[imagined[:, 0] - imagined[:, 1], imagined[:, 2] - imagined[:, 0]],
        fmt="none", ecolor="0.6", elinewidth=1,
    )  # fmt: skip
    axis.scatter(real[:, 0], imagined[:, 0], c=colors, zorder=3)
    low = min(real[:, 1].min(), imagined[:, 1].min())
    high = max(real[:, 2].max(), imagined[:, 2].max())
    axis.plot([low, high], [low, high], "k--", linewidth=1, label="imagined = real")
    axis.set_xlabel("real return")
    axis.set_ylabel("imagined return")
    axis.legend(loc="upper left")
    axis.set_title("imagined vs real return (red: outside the data)")
    encoded = _png(figure)
    plt.close(figure)
    return encoded


def _fidelity(model_dir: str | Path | None) -> dict[str, Any]:
    """The model's fidelity summary and plot (base64), when it has been evaluated."""
    if model_dir is None:
        return {}
    folder = Path(model_dir)
    fidelity: dict[str, Any] = {}
    card = folder / "model_card.json"
    if card.is_file():
        summary = json.loads(card.read_text()).get("fidelity") or {}
        fidelity["summary"] = {
            key: value
            for key, value in summary.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
    plot = folder / "fidelity.png"
    if plot.is_file():
        fidelity["plot"] = base64.b64encode(plot.read_bytes()).decode()
    return fidelity


def _rollout_gifs(result: RankingResult, model_dir: Path, count: int, steps: int) -> list[dict[str, str]]:
    """Side-by-side GIFs (base64) of a real and an imagined episode of the top ``count`` policies, the
    imagined one started from the real episode's first observation."""
    from imaginarium.envs.imagined import ImaginedEnv
    from imaginarium.envs.render import offscreen
    from imaginarium.envs.suite import get_task
    from imaginarium.errors import ImaginariumError
    from imaginarium.policy import load_policy
    from imaginarium.video import episode_frames, real_env_for

    offscreen()
    settings = result.settings
    assert settings is not None and settings.real_env is not None  # write_report checked
    task = get_task(settings.real_env)
    animations = []
    for entry in result.ranked[:count]:
        try:
            imagined_env = ImaginedEnv(model_dir, render_mode="rgb_array", track_uncertainty=False)
        except ImaginariumError:
            return animations  # a task the renderer cannot draw: the report goes on without videos
        real_env = real_env_for(model_dir, task)
        try:
            policy = load_policy(
                entry.path,
                real_env.observation_space,
                real_env.action_space,
                allow_code=settings.allow_code,
            )
            start, _ = real_env.reset(seed=settings.seed)
            frames = {
                "real": episode_frames(real_env, policy, steps, {"seed": settings.seed}, stride=2),
                "imagined": episode_frames(
                    imagined_env, policy, steps, {"options": {"start_observation": start}}, stride=2
                ),
            }
            animations.append(
                {
                    "name": entry.name,
                    "real": _gif(frames["real"]),
                    "imagined": _gif(frames["imagined"]),
                }
            )
        finally:
            real_env.close()
            imagined_env.close()
    return animations


def _gif(frames: list[np.ndarray], size: int = 200) -> str:
    import imageio.v3 as iio
    from PIL import Image

    small = [np.asarray(Image.fromarray(frame).resize((size, size))) for frame in frames]
    return base64.b64encode(iio.imwrite("<bytes>", small, extension=".gif", duration=60, loop=0)).decode()


def html_report(result: RankingResult, fidelity: dict[str, Any], animations: list[dict[str, str]]) -> str:
    """One self-contained HTML page (images inline as data URIs, no scripts, no external requests)."""
    from jinja2 import Environment

    template = Environment(autoescape=True).from_string(HTML_TEMPLATE)
    return template.render(
        settings=result.settings.to_json() if result.settings is not None else {},
        rows=_rows(result),
        metrics=[
            (METRIC_LABELS[key], f"{value:.3f}", METRIC_NOTES.get(key, ""))
            for key, value in (result.metrics or {}).items()
        ],
        columns=COLUMN_NOTES,
        scatter=_scatter(result),
        fidelity=fidelity,
        animations=animations,
        failed=result.failed,
        notes=_notes(result, (fidelity.get("summary") or {}).get("success_auc")),
    )


HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Policy ranking{% if settings.task %}: {{ settings.task }}{% endif %}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th { background: #f4f4f4; }
td.name { text-align: left; font-family: monospace; }
tr.warn td { background: #fff3f0; }
.warning { color: #b32; }
.videos { display: flex; flex-wrap: wrap; gap: 2em; }
figure { margin: 0; }
figcaption { font-size: 0.9em; color: #555; }
td.note { text-align: left; color: #555; font-size: 0.9em; }
dl.legend { font-size: 0.9em; color: #555; display: grid; grid-template-columns: max-content auto; gap: 0.1em 1em; }
dl.legend dt { font-weight: bold; } dl.legend dd { margin: 0; }
</style>
</head>
<body>
<h1>Policy ranking{% if settings.task %}: {{ settings.task }}{% endif %}</h1>
<p>Model: <code>{{ settings.model or "(object)" }}</code>.
{% for note in notes %}{{ note }} {% endfor %}</p>

<h2>Ranking</h2>
<table>
<tr><th>rank</th><th>policy</th>{% for column, note in columns.items() %}<th title="{{ note }}">{{ column }}</th>{% endfor %}
<th></th></tr>
{% for row in rows %}<tr{% if row.warning %} class="warn"{% endif %}>
<td>{{ row.rank }}</td><td class="name">{{ row.name }}</td><td>{{ row.imagined }}</td><td>{{ row.spread }}</td>
<td>{{ row.model_spread }}</td><td>{{ row.order }}</td><td>{{ row.success }}</td><td>{{ row.real }}</td><td>{{ row.real_success }}</td><td>{{ row.uncertainty }}</td>
<td>{{ row.outside }}</td>
<td class="warning">{{ row.warning }}</td></tr>
{% endfor %}</table>
<dl class="legend">{% for column, note in columns.items() %}<dt>{{ column }}</dt><dd>{{ note }}</dd>{% endfor %}</dl>
{% if failed %}<h3>Failed policies (not ranked)</h3>
<ul>{% for entry in failed %}<li><code>{{ entry.path }}</code>: {{ entry.error }}</li>{% endfor %}</ul>{% endif %}

{% if metrics %}<h2>Agreement with real returns</h2>
<table>{% for label, value, note in metrics %}<tr><th title="{{ note }}">{{ label }}</th><td>{{ value }}</td>
<td class="note">{{ note }}</td></tr>{% endfor %}</table>{% endif %}
{% if scatter %}<img alt="imagined against real return" src="data:image/png;base64,{{ scatter }}">{% endif %}

{% if fidelity %}<h2>Model fidelity (held-out episodes)</h2>
{% if fidelity.summary %}<table>{% for key, value in fidelity.summary.items() %}
<tr><th>{{ key }}</th><td>{{ "%.4g"|format(value) }}</td></tr>{% endfor %}</table>{% endif %}
{% if fidelity.plot %}<img alt="model fidelity" src="data:image/png;base64,{{ fidelity.plot }}" style="max-width:100%">{% endif %}
{% endif %}

{% if animations %}<h2>Top policies: real and imagined episodes</h2>
{% for animation in animations %}<h3>{{ animation.name }}</h3>
<div class="videos">
<figure><img alt="real episode of {{ animation.name }}" src="data:image/gif;base64,{{ animation.real }}">
<figcaption>real</figcaption></figure>
<figure><img alt="imagined episode of {{ animation.name }}" src="data:image/gif;base64,{{ animation.imagined }}">
<figcaption>imagined (drawn by the real renderer)</figcaption></figure>
</div>{% endfor %}{% endif %}
</body>
</html>
"""


def write_fidelity_plot(report: dict[str, Any], path: Path, title: str = "") -> None:
    """``fidelity.png`` of an :func:`imaginarium.models.evaluate.evaluate_model` report: normalised MSE
    over the open-loop horizon (model against repeat-last), and the model's uncertainty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizons = np.arange(1, report["horizon"] + 1)
    errors = report["open_loop"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(horizons, errors["nmse"], label="world model")
    left.plot(horizons, errors["repeat_last_nmse"], "--", label="repeat last observation")
    left.set_yscale("log")
    left.set_xlabel("open-loop horizon (steps)")
    left.set_ylabel("normalised MSE")
    left.legend()
    left.grid(alpha=0.3)
    right.plot(horizons, errors["uncertainty"], color="tab:red")
    right.set_xlabel("open-loop horizon (steps)")
    right.set_ylabel("model uncertainty")
    right.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    atomic_write_bytes(Path(path), lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)
