"""Run a pipeline's stages in order, each from the previous stage's output, each an MLflow child
run under one parent run for the pipeline.

Every stage is an ordinary run in ``<pipeline dir>/<i>-<stage>/``, so running the pipeline again
skips the finished stages (their runs say so) and resumes the interrupted one from its last
complete checkpoint. Each stage has its own learning-rate schedule, so every stage re-warms and
re-decays the learning rate (Ibrahim et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adapt.recipe.pipeline import Pipeline
from adapt.train.run_state import is_main_process
from adapt.train.runner import RunOutcome

PARENT_TIMEOUT_S = 30.0


@dataclass
class PipelineOutcome:
    run_dir: Path
    stages: list[tuple[str, RunOutcome]] = field(default_factory=list)
    preempted: bool = False
    tracking_run_id: str | None = None
    tracking_uri: str | None = None


def run_pipeline(pipeline: Pipeline) -> PipelineOutcome:
    from adapt.tracking import SilentTracker, open_tracker
    from adapt.train.stages import train

    first = pipeline.loaded(0)
    tracking = first.recipe.tracking
    parent = open_tracker(enabled=tracking.enabled, uri=tracking.uri, experiment=tracking.experiment,
                          run_dir=pipeline.run_dir, run_name=pipeline.name,
                          flush_timeout_s=tracking.flush_timeout_s) if is_main_process() else SilentTracker()
    parent_id = parent.wait_for_run_id(PARENT_TIMEOUT_S)
    outcome = PipelineOutcome(pipeline.run_dir, tracking_run_id=parent_id, tracking_uri=parent.tracking_uri)
    model = None  # the first stage starts from the recipe's own base; later ones from the previous output
    try:
        for index, stage in enumerate(pipeline.stages):
            loaded = pipeline.loaded(index, model)
            tags = {"adapt.pipeline": pipeline.name, "adapt.stage": stage.name}
            if parent_id:
                tags["mlflow.parentRunId"] = parent_id
            result = train(loaded, tags)
            outcome.stages.append((stage.name, result))
            if result.status == "preempted":
                outcome.preempted = True
                parent.finish("KILLED")
                return outcome
            if index + 1 < len(pipeline.stages):
                following = pipeline.stages[index + 1]
                model = next_model(loaded, result.run_dir, following.carry, following.data.get("model", {}))
    except BaseException:
        parent.finish("FAILED")
        raise
    parent.log_metrics(_stage_metrics(outcome), step=0)
    parent.finish("FINISHED")
    return outcome


def next_model(loaded, run_dir: Path, carry: str, next_stage_model: dict) -> dict:
    """Where the stage after the run in ``run_dir`` starts: the merged model (exported beside the
    run, once), the whole fine-tuned model, or the same base with one more adapter to merge as it
    loads. These keys replace the next stage's own; with ``stack``, the run's RoPE settings carry
    on too, unless the next stage sets its own."""
    from adapt.export import export_run
    from adapt.recipe.model import ModelSection

    model = loaded.recipe.model
    chain = {"origin": "builtin"} if model.builtin_family else {}
    final = run_dir / "final"
    if not (final / "adapter_config.json").is_file():
        return {**chain, "base_model": str(final.resolve()), "adapters": []}
    if carry == "stack":
        rope = {key: value for key, value in model.model_dump(mode="json").items()
                if key in ModelSection.LATER_OPTIONS and key not in ("adapters", "origin")
                and value is not None and key not in next_stage_model}
        return {**rope, **chain, "base_model": model.base_model, "adapters": [*model.adapters, str(final.resolve())]}
    merged = run_dir / "export-merged"
    if not (merged / "config.json").is_file() and is_main_process():
        export_run(run_dir, merged, merged=True)
    _wait_for(merged / "config.json")
    return {**chain, "base_model": str(merged.resolve()), "adapters": []}


def _wait_for(path: Path, timeout_s: float = 3600.0) -> None:
    """Other ranks wait for rank 0's merged export before they load it."""
    import time

    from adapt.errors import AdaptError

    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise AdaptError(f"rank 0 did not write {path} within {timeout_s:.0f} s", file=str(path),
                             fix="see rank 0's output; run the pipeline again to resume")
        time.sleep(1.0)


def _stage_metrics(outcome: PipelineOutcome) -> dict[str, float]:
    """Each stage's headline numbers on the parent run: its loss changes and forgetting verdict."""
    import json

    metrics = {}
    for name, result in outcome.stages:
        report = result.run_dir / "eval" / "report.json"
        if not report.is_file():
            continue
        data = json.loads(report.read_text())
        for set_name, change in data["changes"].items():
            metrics[f"stage/{name}/{set_name}/delta"] = change["delta"]
            metrics[f"stage/{name}/{set_name}/loss_after"] = change["loss_after"]
        if data["forgetting"]["pass"] is not None:
            metrics[f"stage/{name}/forgetting_pass"] = float(data["forgetting"]["pass"])
    return metrics
