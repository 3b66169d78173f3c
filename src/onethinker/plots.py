"""PNG plots drawn offline with matplotlib (``dvc plots show`` needs a CDN; these do not).

- :func:`task_bars`: one horizontal bar per model and task, its value written at the bar's end (a model
  at 0 still shows "0.00"), the mean over tasks as the top group, the legend above the plot, clear of
  the bars. The evaluate stage draws accuracy and format rate per task with it.
- :func:`reward_small_multiples`: GRPO training reward per task, one small panel per task on shared axes:
  the raw per-step mean as a faint line, a rolling mean on top, and a note on the figure saying what the
  reward part means (``overall`` can exceed 1).

Pure functions of their inputs: they write the PNG and return its path. Matplotlib is imported inside,
with the Agg backend, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

MODEL_COLOURS = {"base": "#9e9e9e", "sft": "#4c78a8", "grpo": "#f58518", "champion": "#54a24b"}
"""Fixed colours for the pipeline's models (others take the next colours of tab10)."""

REWARD_PART_NOTES = {
    "overall": (
        "overall = (1 - format_weight) x accuracy + format_weight x format + structure   "
        "(format_weight {format_weight:g}; structure in [0, {structure_max:g}] rewards a well-formed "
        "answer, so overall ranges over [0, {overall_max:g}])"
    ),
    "accuracy": "accuracy: the task's answer score in [0, 1] (exact, IoU-based or text similarity per task)",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(names: Sequence[str]) -> dict[str, str]:
    plt = _pyplot()
    spare = [c for c in plt.get_cmap("tab10").colors if c not in MODEL_COLOURS.values()]
    out: dict[str, str] = {}
    for i, name in enumerate(names):
        out[name] = MODEL_COLOURS.get(name) or spare[i % len(spare)]
    return out


def rolling_mean(values: Sequence[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    out = []
    for j in range(len(values)):
        chunk = values[max(0, j - window + 1) : j + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def task_bars(
    values: Mapping[str, Mapping[str, float]],
    means: Mapping[str, float],
    path: Path,
    title: str,
    xlabel: str,
    mean_label: str = "mean over tasks",
    note: str | None = None,
) -> Path:
    """Grouped horizontal bars: ``values[model][task]`` in [0, 1], ``means[model]`` as the top group
    (named ``mean_label``).

    Every bar carries its value; a value of 0 is drawn as a thin stub in the model's colour, labelled "0.000".
    """
    plt = _pyplot()
    models = list(values)
    tasks = sorted({t for per_task in values.values() for t in per_task})
    groups = [mean_label, *tasks]
    colours = _colours(models)
    bar_h = 0.8 / max(1, len(models))
    fig_h = 1.6 + 0.17 * len(groups) * max(1, len(models))
    fig, ax = plt.subplots(figsize=(9.5, fig_h))
    for i, model in enumerate(models):
        ys = [g - 0.4 + bar_h * (i + 0.5) for g in range(len(groups))]
        vals = [float(means.get(model, float("nan")))] + [
            float(values[model].get(t, float("nan"))) for t in tasks
        ]
        # a stub of 0.004 keeps a 0 visible in the model's colour (the label says 0.00)
        widths = [max(v, 0.004) if v == v else 0.0 for v in vals]
        ax.barh(ys, widths, bar_h * 0.92, color=colours[model], label=model)
        for y, v in zip(ys, vals, strict=True):
            text = "n/a" if v != v else f"{v:.3f}"
            ax.text(max(v, 0.0) + 0.008 if v == v else 0.008, y, text, va="center", ha="left", fontsize=7)
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels(groups, fontsize=8)
    ax.get_yticklabels()[0].set_fontweight("bold")
    ax.axhline(0.5, color="black", linewidth=0.6)  # separates the mean from the tasks
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(title, loc="left", fontsize=11, pad=26)
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=len(models),
        frameon=False,
        fontsize=8,
        borderaxespad=0.2,
    )
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="#555555", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03 if note else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reward_small_multiples(
    series: Mapping[str, Sequence[tuple[int, float]]],
    part: str,
    path: Path,
    window: int = 5,
    format_weight: float = 0.1,
    structure_max: float = 0.5,
) -> Path:
    """One panel per task (shared axes) of ``series[task] = [(step, mean reward), ...]`` for ``part``.

    The faint line is the per-step mean (few prompts per task per step: noisy), the bold line its rolling
    mean over ``window`` steps, the grey line the rolling mean over every task (the same in every panel,
    for comparison). The figure says what ``part`` means.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    tasks = sorted(t for t, pts in series.items() if pts)
    cols = 4 if len(tasks) > 6 else max(1, min(3, len(tasks)))
    rows = max(1, -(-len(tasks) // cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.9 * cols, 1.9 * rows + 1.1), sharex=True, sharey=True, squeeze=False
    )
    by_step: dict[int, list[float]] = {}
    for pts in series.values():
        for step, v in pts:
            by_step.setdefault(int(step), []).append(float(v))
    all_steps = sorted(by_step)
    all_mean = rolling_mean([sum(by_step[s]) / len(by_step[s]) for s in all_steps], window)
    overall_max = 1.0 + structure_max
    top = overall_max if part == "overall" else 1.0
    for k, ax in enumerate(axes.flat):
        if k >= len(tasks):
            ax.set_visible(False)
            continue
        task = tasks[k]
        xs = [int(s) for s, _ in series[task]]
        ys = [float(v) for _, v in series[task]]
        smooth = rolling_mean(ys, window)
        ax.plot(all_steps, all_mean, color="#bbbbbb", linewidth=1.0, label="all tasks (rolling mean)")
        few = len(xs) < 20  # a short run: mark each step, or a task seen once would not show
        ax.plot(
            xs,
            ys,
            color="#4c78a8",
            linewidth=0.7,
            alpha=0.3,
            marker="o" if few else None,
            ms=3,
            label="per step",
        )
        ax.plot(xs, smooth, color="#4c78a8", linewidth=1.8, label=f"rolling mean ({window} steps)")
        ax.set_title(f"{task}: {smooth[-1]:.2f} at the end", fontsize=8, loc="left")
        ax.set_ylim(-0.02, top + 0.02)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[-1]:
        ax.set_xlabel("RL step", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(part, fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"GRPO training reward per task: {part}", x=0.01, ha="left", fontsize=11)
    note = REWARD_PART_NOTES.get(part, part).format(
        format_weight=format_weight, structure_max=structure_max, overall_max=overall_max
    )
    fig.text(0.01, 0.01, note, fontsize=8, color="#333333", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
