"""Evaluation: what a run gained in its domain and what it lost in general.

Every run measures the base model before it trains (cached by fingerprint, so once per base model
and eval data) and the trained model when it ends, and writes ``<run_dir>/eval/report.json``,
``report.md`` and ``trace.png``; ``adapt eval`` does the same for any run or model. The metrics
live in their own modules: ``perplexity``, ``completion``, ``infill``, ``execution``.
"""

from __future__ import annotations

from pathlib import Path

from adapt.evaluate.report import (REPORT_JSON, REPORT_MD, TRACE_PNG, build_report, forgetting_line, loss_table,
                                   markdown)
from adapt.fileio import atomic_write, write_json
from adapt.recipe.load import LoadedRecipe

EVAL_DIR = "eval"


class RunEvaluation:
    """The evaluation of one training run: ``start`` before it trains, ``finish`` once it is saved."""

    def __init__(self, loaded: LoadedRecipe, tokenizer, model_path: str):
        from adapt.evaluate.measure import build_evaluator

        self.loaded, self.model_path = loaded, model_path
        self.evaluator = build_evaluator(loaded, tokenizer)
        self.before: dict | None = None

    def start(self, model) -> None:
        """The base model's numbers. Before training, the model (with any adapter, still the
        identity) is the base, even when resuming: the checkpoint is loaded by ``train``."""
        self.before = self.evaluator.base(self.model_path, lambda: model)

    def finish(self, model, run_dir: Path, tracker, step: int) -> str:
        """Measure the trained model, write and log the report; returns the forgetting line."""
        from adapt.train.metrics import read_metrics

        report = build_report(self.before, self.evaluator.measure(model), **_about(self.loaded),
                              model=str(run_dir / "final"), base_model=self.model_path)
        write_evaluation(run_dir / EVAL_DIR, report, tracker, step, read_metrics(run_dir / "metrics.jsonl"))
        return f"{loss_table(report)}\n\n{forgetting_line(report)}\nreport: {run_dir / EVAL_DIR / REPORT_MD}\n"


def write_evaluation(out_dir: Path, report: dict, tracker, step: int, trace_rows: list[dict]) -> None:
    """report.json, report.md and (given a trace) trace.png in ``out_dir``, all logged to the tracker."""
    from adapt.evaluate.report import report_metrics
    from adapt.evaluate.trace import plot_trace

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / REPORT_JSON, report)
    with atomic_write(out_dir / REPORT_MD) as f:
        f.write(markdown(report))
    roles = {name: change["role"] for name, change in report["changes"].items()}
    forgetting = report["forgetting"]
    plot_trace(out_dir / TRACE_PNG, trace_rows, roles, forgetting["epsilon"], forgetting["tolerance"])
    tracker.log_metrics(report_metrics(report), step=step)
    tracker.log_artifact(out_dir, EVAL_DIR)


def evaluate_target(target: str, loaded: LoadedRecipe, output: str | None = None) -> tuple[dict, Path]:
    """``adapt eval``: the recipe's base against ``target`` (a run directory, a model directory,
    ``builtin`` or a hub id). Returns the report and the directory it was written to."""
    from adapt.evaluate.measure import build_evaluator
    from adapt.generate import resolve_generation_model
    from adapt.model import load_run_base, load_tokenizer, load_trained, resolve_model_path
    from adapt.tracking import open_tracker
    from adapt.train.metrics import read_metrics
    from adapt.train.run_state import load_state

    recipe = loaded.recipe
    path, is_adapter = resolve_generation_model(target)
    state = load_state(Path(target))
    run_dir = Path(target) if state is not None else None
    tokenizer = load_tokenizer(path, recipe.model.trust_remote_code)
    evaluator = build_evaluator(loaded, tokenizer)
    base_path = resolve_model_path(recipe.model)
    recipe_model, adapter = recipe.model, recipe.adapter
    before = evaluator.base(base_path, lambda: load_run_base(base_path, recipe_model, adapter, tokenizer))
    if path == base_path and not is_adapter:
        after = before  # the base model itself: nothing to measure twice
    else:
        after = evaluator.measure(load_trained(run_dir, tokenizer) if run_dir else
                                  _load_target(loaded, path, is_adapter, base_path, tokenizer))
    about = _about(loaded)
    if state:  # what the run trained on, whatever recipe the evaluation reads its sets from
        about["mixture"] = state.recipe["data"]["mixture"]
    report = build_report(before, after, **about, model=target, base_model=base_path)
    out_dir = Path(output) if output else (run_dir / EVAL_DIR if run_dir else Path("runs") / EVAL_DIR / _slug(target))
    tracking = recipe.tracking
    tracker = open_tracker(enabled=tracking.enabled, uri=tracking.uri, experiment=tracking.experiment,
                           run_dir=run_dir or out_dir, run_name=f"eval-{_slug(target)}",
                           flush_timeout_s=tracking.flush_timeout_s)
    rows = read_metrics(run_dir / "metrics.jsonl") if run_dir else []
    write_evaluation(out_dir, report, tracker, (state.final_step or 0) if state else 0, rows)
    tracker.finish("FINISHED")
    return report, out_dir


def _about(loaded: LoadedRecipe) -> dict:
    evaluation = loaded.recipe.evaluation
    return {"epsilon": evaluation.epsilon, "tolerance": evaluation.tolerance, "recipe": str(loaded.path),
            "mixture": loaded.recipe.data.mixture}


def _load_target(loaded: LoadedRecipe, path: str, is_adapter: bool, base_path: str, tokenizer):
    """An adapter directory over the recipe's base, or a whole model."""
    from adapt.model import load_model, load_run_base

    if is_adapter:
        from peft import PeftModel

        base = load_run_base(base_path, loaded.recipe.model, loaded.recipe.adapter, tokenizer)
        return PeftModel.from_pretrained(base, path)
    return load_model(path, loaded.recipe.model, loaded.recipe.adapter.model_copy(update={"method": "full"}))


def _slug(target: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in target.strip("/")).strip("_.")[-80:] or "model"
