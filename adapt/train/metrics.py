"""Trainer logs -> adapt's metric names, sent to the tracker, and the before/after summary.

Names are ``train/loss``, ``train/lr``, ``eval/<set>/loss``: one namespace per eval set, which
the planner and the evaluation reports read back from ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import TrainerCallback

_TRAIN_NAMES = {"loss": "train/loss", "learning_rate": "train/lr", "grad_norm": "train/grad_norm",
                "epoch": "train/epoch", "train_loss": "train/mean_loss", "train_runtime": "train/runtime_s"}


def rename(logs: dict, eval_sets: list[str]) -> dict[str, float]:
    # trl adds its own eval metrics (entropy, token accuracy, DPO rewards) without the set's name;
    # the Trainer evaluates one set per log call, named by its eval_<set>_loss.
    evaluated = [s for s in eval_sets if f"eval_{s}_loss" in logs]
    out = {}
    for key, value in logs.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        name = _TRAIN_NAMES.get(key)
        for eval_set in eval_sets:
            prefix = f"eval_{eval_set}_"
            if key.startswith(prefix):
                name = f"eval/{eval_set}/{key[len(prefix):]}"
        if name is None and key.startswith("eval_"):
            name = f"eval/{evaluated[0]}/{key[len('eval_'):]}" if len(evaluated) == 1 else f"eval/{key[len('eval_'):]}"
        out[name or f"train/{key}"] = float(value)
        if name and name.startswith("eval/") and name.endswith("/loss"):
            out[name[: -len("loss")] + "ppl"] = math.exp(min(float(value), 50.0))
    return out


class TrackerCallback(TrainerCallback):
    """Forwards every Trainer log to the tracker, with the tokens seen so far."""

    def __init__(self, tracker, eval_sets: list[str], tokens_per_step: int):
        self.tracker, self.eval_sets, self.tokens_per_step = tracker, eval_sets, tokens_per_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        metrics = rename(logs, self.eval_sets)
        if self.tokens_per_step:  # 0 where a step is a number of rows, not of tokens (DPO, GRPO)
            metrics["train/tokens"] = float(state.global_step * self.tokens_per_step)
        self.tracker.log_metrics(metrics, step=state.global_step)


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill; the rest is intact
    return rows


def first_last(rows: list[dict], wanted) -> dict[str, tuple[float, float]]:
    """For each metric name that ``wanted(name)`` accepts: its first and last logged values."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for row in sorted(rows, key=lambda r: r["step"]):
        for key, value in row["metrics"].items():
            if wanted(key):
                first.setdefault(key, value)
                last[key] = value
    return {key: (first[key], last[key]) for key in first}


def before_after(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """Per metric ``eval/<set>/loss``: its first and last logged values."""
    return first_last(rows, lambda key: key.startswith("eval/") and key.endswith("/loss"))


def summary_table(rows: list[dict], train_metrics: tuple[str, ...] = (), reported: tuple[str, ...] = ()) -> str:
    """Eval losses before and after from the trace (but for the sets the evaluation report gives),
    then the stage's own training metrics, first and last logged (e.g. DPO's reward margin, or
    GRPO's mean reward per function)."""
    lines = []
    pairs = {key: pair for key, pair in before_after(rows).items() if key[len("eval/"): -len("/loss")] not in reported}
    if pairs:
        lines.append(f"{'eval set':<16}{'loss before':>12}{'loss after':>12}{'change':>10}")
        for key, (before, after) in pairs.items():
            name = key[len("eval/"): -len("/loss")]
            lines.append(f"{name:<16}{before:>12.4f}{after:>12.4f}{(after - before) / before:>+10.1%}")
    logged = first_last(rows, lambda key: key in train_metrics)
    if logged:
        lines.append(f"{'train metric':<32}{'first':>10}{'last':>10}")
        lines += [f"{key:<32}{first:>10.4f}{last:>10.4f}" for key, (first, last) in logged.items()]
    return "\n".join(lines) or ("" if reported else "(no eval sets: add data.eval to see losses before and after)")
