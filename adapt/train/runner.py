"""What every stage kind shares, top to bottom: begin or resume the run directory -> the stage's
setup (model, data, adapter) -> tracker -> the stage's Trainer -> train -> save -> cleanup.

A run lives in one directory: the resolved recipe, ``run_state.json``, ``metrics.jsonl``, the
data report, checkpoints, and ``final/`` (the adapter or the whole model). Running the same
recipe on the same directory again resumes from the last complete checkpoint, in the same
MLflow run; the Trainer skips the batches it already trained on. The stage modules (``cpt``,
``sft``, ``dpo``, ``grpo``) only say how to build their model, data and Trainer.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from adapt.checks import check_recipe
from adapt.errors import AdaptError
from adapt.fileio import atomic_write
from adapt.data.report import DATA_OUTPUTS
from adapt.recipe.load import LoadedRecipe
from adapt.train import provenance
from adapt.train.run_state import RunState, changed_keys, is_main_process, load_state

EXIT_PREEMPTED = 143  # 128 + SIGTERM, what schedulers expect from a preempted job


@dataclass
class RunOutcome:
    run_dir: Path
    status: str  # finished | already_finished | preempted
    summary: str = ""
    tracking_run_id: str | None = None
    tracking_uri: str | None = None


@dataclass
class Setup:
    """What a stage's ``setup`` hands the runner: its data, and how to build its Trainer around
    the model (the Trainer's model is the one trained and saved; trl may wrap it in an adapter)."""

    tokenizer: Any
    model_path: str
    report: dict
    manifest: list[dict]
    eval_sets: list[str]
    tokens_per_step: int
    make_trainer: Callable[[dict, list], Any]  # (TrainingArguments kwargs, callbacks) -> Trainer
    summary_metrics: tuple[str, ...] = field(default=())  # train metrics the summary shows first -> last


def run_dir_of(loaded: LoadedRecipe) -> Path:
    return Path(loaded.recipe.train.output_dir or Path("runs") / loaded.recipe.name)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def run_stage(loaded: LoadedRecipe, setup_stage: Callable[[LoadedRecipe], Setup],
              tags: dict[str, str] | None = None) -> RunOutcome:
    """Run (or resume) the recipe with ``setup_stage`` building its model, data and Trainer.
    ``tags`` go to the tracking run, e.g. ``mlflow.parentRunId`` to nest a pilot under its plan."""
    recipe = loaded.recipe
    check_recipe(loaded)  # nothing is written before the recipe passes
    run_dir = run_dir_of(loaded)
    resolved = recipe.record()
    main = is_main_process()
    # Other ranks follow what rank 0 decided; they write nothing but their checkpoint shards.
    state = _begin(run_dir, resolved) if main else (load_state(run_dir) or RunState(recipe=resolved))
    if state.status == "finished":
        return RunOutcome(run_dir, "already_finished")

    # ---- setup: the stage's model and data, then the tracker
    from adapt.adapters import trainable_parameters
    from adapt.data.report import write_data_outputs
    from adapt.tracking import SilentTracker, open_tracker
    from adapt.train.arguments import training_kwargs
    from adapt.train.checkpoints import (CompleteCheckpointCallback, PreemptionCallback,
                                         discard_incomplete, last_complete_checkpoint)
    from adapt.train.metrics import TrackerCallback, read_metrics, summary_table

    if main and recipe.tracking.enabled:
        from adapt.tracking import warm_up

        warm_up(recipe.tracking.uri)
    setup = setup_stage(loaded)
    setup.report["world_size"] = world_size()
    data_files = write_data_outputs(run_dir, setup.report, setup.manifest) if main else []
    tracking = recipe.tracking
    # The tracker keeps its MLflow run id in the run directory, so a resumed run logs to the same run.
    tracker = open_tracker(enabled=tracking.enabled, uri=tracking.uri, experiment=tracking.experiment,
                           run_dir=run_dir, run_name=tracking.run_name or recipe.name,
                           flush_timeout_s=tracking.flush_timeout_s) if main else SilentTracker()
    checkpoint_dir = run_dir / "checkpoints"
    if main:
        discard_incomplete(checkpoint_dir)
    resume_from = last_complete_checkpoint(checkpoint_dir)
    preemption = PreemptionCallback()
    resuming = bool(state.history)
    try:
        args = training_kwargs(recipe.train, str(checkpoint_dir), setup.report["steps"], bool(setup.eval_sets),
                               resume_from is not None)
        best = _best_checkpoint(loaded, run_dir, setup.eval_sets)
        trainer = setup.make_trainer(args, [
            TrackerCallback(tracker, setup.eval_sets, setup.tokens_per_step * world_size()),
            CompleteCheckpointCallback(recipe.train.save_total_limit, best and best.step), preemption])
        evaluation = _start_evaluation(loaded, setup, trainer)
        if not resuming:
            trainable, total = trainable_parameters(trainer.model)
            tracker.log_params(resolved)
            tracker.set_tags({**provenance.tags(loaded.path, setup.model_path, trainable, total),
                              "adapt.kind": recipe.kind, **(tags or {})})
            tracker.log_artifact(run_dir / "recipe.yaml")
            tracker.log_metrics(provenance.data_metrics(setup.report), step=0)
        state.status = "running"
        state.history.append({"event": "resumed" if resuming else "started", "argv": sys.argv[1:]})
        state.save(run_dir)

        # ---- train
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if preemption.requested:
            state.status = "preempted"
            state.save(run_dir)
            tracker.finish("KILLED")
            return RunOutcome(run_dir, "preempted", tracking_run_id=tracker.run_id)
        if setup.eval_sets and trainer.state.global_step % recipe.train.eval_steps != 0:
            trainer.evaluate()  # the "after" numbers are always at the final step
        if best is not None:
            state.best_step = _load_best(trainer, best, checkpoint_dir)
    except BaseException:
        _fail(state, run_dir, tracker)
        raise
    finally:
        preemption.restore()

    # ---- save, then measure the saved model against its base
    final_dir = run_dir / "final"
    _save_final(trainer, setup.tokenizer, final_dir, main)
    if not main:
        return RunOutcome(run_dir, "finished")
    for path in data_files:
        tracker.log_artifact(path, "data")
    if tracking.log_model:
        tracker.log_artifact(final_dir, "model")
    reported = tuple(s.spec.name for s in evaluation.evaluator.sets) if evaluation else ()
    summary = summary_table(read_metrics(run_dir / "metrics.jsonl"), setup.summary_metrics, reported)
    if evaluation is not None:
        try:
            report = evaluation.finish(trainer.model, run_dir, tracker, trainer.state.global_step)
        except BaseException:
            _fail(state, run_dir, tracker)
            raise
        summary = f"{report}\n{summary}".rstrip()
    if state.best_step is not None:
        summary += f"\nkept checkpoint-{state.best_step}: the lowest domain loss within the forgetting tolerance"
    with atomic_write(run_dir / "summary.txt") as f:
        f.write(summary + "\n")
    tracker.log_artifact(run_dir / "summary.txt")

    # ---- cleanup
    tracker.finish("FINISHED")
    state.status, state.final_step = "finished", trainer.state.global_step
    state.save(run_dir)
    return RunOutcome(run_dir, "finished", summary, tracker.run_id, tracker.tracking_uri)


def _best_checkpoint(loaded: LoadedRecipe, run_dir: Path, eval_sets: list[str]):
    if not loaded.recipe.train.keep_best:
        return None
    from adapt.data.eval_sets import eval_specs
    from adapt.train.best import BestCheckpoint

    general = [spec.name for spec in eval_specs(loaded.recipe) if spec.general and spec.name in eval_sets]
    domain = [name for name in eval_sets if name not in general]
    if not general or not domain:  # e.g. an SFT run whose general set is the report's, not the trainer's
        raise loaded.error(f"keep_best needs the trainer to evaluate a domain and a general set, not "
                           f"{eval_sets or 'none'}", "train.keep_best",
                           fix="name both in data.eval (the general one in evaluation.general)")
    evaluation = loaded.recipe.evaluation
    return BestCheckpoint(run_dir, domain, general, evaluation.epsilon, evaluation.tolerance)


def _load_best(trainer, best, checkpoint_dir: Path) -> int | None:
    """Load the chosen checkpoint's weights into the trained model; its step, or None (the last
    step is kept) when no checkpoint is within the tolerance."""
    from accelerate.utils import broadcast_object_list

    from adapt.train.checkpoints import complete_checkpoints

    if getattr(trainer, "is_deepspeed_enabled", False):
        print("adapt: keep_best is not supported under DeepSpeed; keeping the last step", file=sys.stderr)
        return None
    # Rank 0 has written every eval row; the others take its choice, so all load the same weights.
    chosen = [best.step([s for s, _ in complete_checkpoints(checkpoint_dir)]) if is_main_process() else None]
    if world_size() > 1:
        broadcast_object_list(chosen)
    step = chosen[0]
    if step is None:
        print("adapt: no checkpoint is within the forgetting tolerance; keeping the last step", file=sys.stderr)
    elif step != trainer.state.global_step:
        # The Trainer's own loader: adapters, whole models and FSDP checkpoints alike.
        trainer._load_from_checkpoint(str(checkpoint_dir / f"checkpoint-{step}"))
    return step


def _fail(state: RunState, run_dir: Path, tracker) -> None:
    state.status = "failed"
    state.save(run_dir)
    tracker.finish("FAILED")


def _start_evaluation(loaded: LoadedRecipe, setup: Setup, trainer):
    """The run's evaluation, with the base model measured (or read from the cache) now, before
    training changes it; None where the run is not evaluated."""
    if not loaded.recipe.evaluation.enabled or not trainer.is_world_process_zero():
        return None
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
        # The weights are sharded over the ranks: a forward pass on one rank alone would hang.
        print("adapt: sharded run (FSDP or ZeRO): evaluate the result with `adapt eval` on one process",
              file=sys.stderr)
        return None
    from adapt.evaluate import RunEvaluation

    evaluation = RunEvaluation(loaded, setup.tokenizer, setup.model_path)
    evaluation.start(trainer.model)
    return evaluation


def _begin(run_dir: Path, resolved: dict) -> RunState:
    """Start a new run directory, or check that the recipe matches the run being resumed."""
    state = load_state(run_dir)
    if state is not None:
        # The plan and evaluation sections do not change what this run trains.
        changed = [k for k in changed_keys(state.recipe, resolved) if k.split(".")[0] not in ("plan", "evaluation")]
        if not changed:
            return state
        from adapt.train.checkpoints import last_complete_checkpoint

        if last_complete_checkpoint(run_dir / "checkpoints") is not None:
            raise AdaptError(
                f"the recipe changed since this run began ({', '.join(changed)}); refusing to resume",
                file=str(run_dir / "recipe.yaml"), key=changed[0],
                fix=f"restore the recipe as in {run_dir / 'recipe.yaml'}, or set train.output_dir to a new directory")
        # Nothing to resume (it stopped on a bad row, say, or before its first checkpoint): start
        # again with the fixed recipe, in a new tracking run.
        _clear(run_dir)
    elif run_dir.exists() and {p.name for p in run_dir.iterdir()} - set(DATA_OUTPUTS):
        raise AdaptError(f"{run_dir} exists and is not an adapt run directory", key="train.output_dir",
                         fix="choose an empty or new output directory")
    state = RunState(recipe=resolved)
    with atomic_write(run_dir / "recipe.yaml") as f:
        yaml.safe_dump(resolved, f, sort_keys=False)
    state.save(run_dir)
    return state


def _clear(run_dir: Path) -> None:
    import shutil

    from adapt.tracking import METRICS_FILE, OUTBOX_FILE, STATE_FILE

    for name in (METRICS_FILE, OUTBOX_FILE, STATE_FILE):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _save_final(trainer, tokenizer, final_dir: Path, main: bool) -> None:
    """Save the adapter (or the whole model) and tokenizer beside ``final_dir``, then swap it in.
    Every rank takes part in ``save_model`` (FSDP and ZeRO-3 gather or write shards there)."""
    import shutil

    staging = final_dir.with_name(final_dir.name + ".tmp")
    if main:
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))
    trainer.accelerator.wait_for_everyone()
    if not main:
        return
    tokenizer.save_pretrained(str(staging))
    if final_dir.exists():
        shutil.rmtree(final_dir)
    staging.rename(final_dir)


def base_tokenizer(loaded: LoadedRecipe):
    """The base model's path (the built-in model is built on first use) and its tokenizer."""
    from adapt.model import load_tokenizer, resolve_model_path, tokenizer_path

    model = loaded.recipe.model
    return resolve_model_path(model), load_tokenizer(tokenizer_path(model), model.trust_remote_code)


def load_base(loaded: LoadedRecipe):
    """The base model's path, tokenizer and weights, as the recipe asks for them."""
    from adapt.model import load_model

    model_path, tokenizer = base_tokenizer(loaded)
    return model_path, tokenizer, load_model(model_path, loaded.recipe.model, loaded.recipe.adapter)


def with_adapter(loaded: LoadedRecipe, model, new_token_ids: list[int]):
    """Wrap ``model`` in the recipe's adapter, seeded so that runs (and resumes) are reproducible."""
    from transformers import set_seed

    from adapt.adapters import apply_adapter

    recipe = loaded.recipe
    set_seed(recipe.train.seed)  # the adapter's initial weights come from the global RNG
    return apply_adapter(model, recipe.adapter, recipe.train.gradient_checkpointing, new_token_ids)
