"""Continual pretraining (CPT), top to bottom: setup -> train -> save -> cleanup.

A run lives in one directory: the resolved recipe, ``run_state.json``, ``metrics.jsonl``, the
data report, checkpoints, and ``final/`` (the adapter or the whole model). Running the same
recipe on the same directory again resumes from the last complete checkpoint, in the same
MLflow run; the Trainer skips the batches it already trained on.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from adapt.checks import check_recipe
from adapt.errors import AdaptError
from adapt.fileio import atomic_write
from adapt.data.report import DATA_OUTPUTS
from adapt.recipe.load import LoadedRecipe
from adapt.train import provenance
from adapt.train.run_state import RunState, changed_keys, load_state

EXIT_PREEMPTED = 143  # 128 + SIGTERM, what schedulers expect from a preempted job


@dataclass
class RunOutcome:
    run_dir: Path
    status: str  # finished | already_finished | preempted
    summary: str = ""
    tracking_run_id: str | None = None
    tracking_uri: str | None = None


def run_dir_of(loaded: LoadedRecipe) -> Path:
    return Path(loaded.recipe.train.output_dir or Path("runs") / loaded.recipe.name)


def train(loaded: LoadedRecipe, tags: dict[str, str] | None = None) -> RunOutcome:
    """Run (or resume) the recipe. ``tags`` go to the tracking run, e.g. ``mlflow.parentRunId``
    to nest a pilot under its plan."""
    recipe = loaded.recipe
    check_recipe(loaded)  # nothing is written before the recipe passes
    run_dir = run_dir_of(loaded)
    resolved = recipe.model_dump(mode="json")
    state = _begin(run_dir, resolved)
    if state.status == "finished":
        return RunOutcome(run_dir, "already_finished")

    # ---- setup: model, data, tracker, Trainer
    from transformers import Trainer, set_seed

    from adapt.adapters import apply_adapter, trainable_parameters
    from adapt.data.packing import collate, configure_model
    from adapt.data.prepare import prepare_data
    from adapt.data.report import write_data_outputs
    from adapt.model import load_model, load_tokenizer, resolve_model_path
    from adapt.tracking import open_tracker
    from adapt.train.arguments import training_arguments
    from adapt.train.checkpoints import (CompleteCheckpointCallback, PreemptionCallback,
                                         discard_incomplete, last_complete_checkpoint)
    from adapt.train.metrics import TrackerCallback, read_metrics, summary_table

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    model_path = resolve_model_path(recipe.model)
    tokenizer = load_tokenizer(model_path, recipe.model.trust_remote_code)
    model = load_model(model_path, recipe.model, recipe.adapter)
    sentinels, new_token_ids = fim_sentinels(loaded, tokenizer, model)
    data = prepare_data(loaded, tokenizer, world_size, sentinels)
    data_files = write_data_outputs(run_dir, data.report, data.manifest)
    configure_model(model, recipe.data.packing)
    set_seed(recipe.train.seed)  # the adapter's initial weights come from the global RNG
    model = apply_adapter(model, recipe.adapter, recipe.train.gradient_checkpointing, new_token_ids)
    trainable, total = trainable_parameters(model)

    tracking = recipe.tracking
    # The tracker keeps its MLflow run id in the run directory, so a resumed run logs to the same run.
    tracker = open_tracker(enabled=tracking.enabled, uri=tracking.uri, experiment=tracking.experiment,
                           run_dir=run_dir, run_name=tracking.run_name or recipe.name,
                           flush_timeout_s=tracking.flush_timeout_s)
    resuming = bool(state.history)
    if not resuming:
        tracker.log_params(resolved)
        tracker.set_tags({**provenance.tags(loaded.path, model_path, trainable, total), **(tags or {})})
        tracker.log_artifact(run_dir / "recipe.yaml")
        tracker.log_metrics(provenance.data_metrics(data.report), step=0)
    state.status = "running"
    state.history.append({"event": "resumed" if resuming else "started", "argv": sys.argv[1:]})
    state.save(run_dir)

    checkpoint_dir = run_dir / "checkpoints"
    discard_incomplete(checkpoint_dir)
    resume_from = last_complete_checkpoint(checkpoint_dir)
    preemption = PreemptionCallback()
    trainer = Trainer(
        model=model,
        args=training_arguments(recipe.train, str(checkpoint_dir), data.steps, bool(data.eval), resume_from is not None),
        train_dataset=data.train,
        eval_dataset=data.eval or None,
        data_collator=collate,
        processing_class=tokenizer,
        callbacks=[TrackerCallback(tracker, list(data.eval), recipe.train.tokens_per_step * world_size),
                   CompleteCheckpointCallback(recipe.train.save_total_limit), preemption],
    )

    # ---- train
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if preemption.requested:
            state.status = "preempted"
            state.save(run_dir)
            tracker.finish("KILLED")
            return RunOutcome(run_dir, "preempted", tracking_run_id=tracker.run_id)
        if data.eval and trainer.state.global_step % recipe.train.eval_steps != 0:
            trainer.evaluate()  # the "after" numbers are always at the final step
    except BaseException:
        state.status = "failed"
        state.save(run_dir)
        tracker.finish("FAILED")
        raise
    finally:
        preemption.restore()

    # ---- save
    final_dir = run_dir / "final"
    _save_final(trainer, tokenizer, final_dir)
    for path in data_files:
        tracker.log_artifact(path, "data")
    if tracking.log_model:
        tracker.log_artifact(final_dir, "model")
    summary = summary_table(read_metrics(run_dir / "metrics.jsonl"))
    with atomic_write(run_dir / "summary.txt") as f:
        f.write(summary + "\n")
    tracker.log_artifact(run_dir / "summary.txt")

    # ---- cleanup
    tracker.finish("FINISHED")
    state.status, state.final_step = "finished", trainer.state.global_step
    state.save(run_dir)
    return RunOutcome(run_dir, "finished", summary, tracker.run_id, tracker.tracking_uri)


def fim_sentinels(loaded: LoadedRecipe, tokenizer, model=None):
    """The tokenizer's FIM sentinels, added (with new embedding rows) if a source needs them."""
    from adapt.data.fim import add_sentinels, find_sentinels
    from adapt.data.prepare import fim_sources

    if not fim_sources(loaded):
        return None, []
    found = find_sentinels(tokenizer)
    return (found, []) if found else add_sentinels(tokenizer, model)


def _begin(run_dir: Path, resolved: dict) -> RunState:
    """Start a new run directory, or check that the recipe matches the run being resumed."""
    state = load_state(run_dir)
    if state is None:
        if run_dir.exists() and {p.name for p in run_dir.iterdir()} - set(DATA_OUTPUTS):
            raise AdaptError(f"{run_dir} exists and is not an adapt run directory", key="train.output_dir",
                             fix="choose an empty or new output directory")
        state = RunState(recipe=resolved)
        with atomic_write(run_dir / "recipe.yaml") as f:
            yaml.safe_dump(resolved, f, sort_keys=False)
        state.save(run_dir)
        return state
    # The plan section only steers `adapt plan`; editing it does not change what this run trains.
    changed = [key for key in changed_keys(state.recipe, resolved) if key != "plan" and not key.startswith("plan.")]
    if changed:
        raise AdaptError(
            f"the recipe changed since this run began ({', '.join(changed)}); refusing to resume",
            file=str(run_dir / "recipe.yaml"), key=changed[0],
            fix=f"restore the recipe as in {run_dir / 'recipe.yaml'}, or set train.output_dir to a new directory")
    return state


def _save_final(trainer, tokenizer, final_dir: Path) -> None:
    """Save the adapter (or the whole model) and tokenizer beside ``final_dir``, then swap it in."""
    import shutil

    staging = final_dir.with_name(final_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(str(staging))
    tokenizer.save_pretrained(str(staging))
    if final_dir.exists():
        shutil.rmtree(final_dir)
    staging.rename(final_dir)
