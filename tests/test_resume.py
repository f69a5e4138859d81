"""A killed run resumes: SIGKILL mid-training, then `adapt train` again, reaches the same final
step with the same losses as an uninterrupted run, in the same MLflow run. SIGTERM saves first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from adapt.cli import main
from adapt.train.checkpoints import COMPLETE_MARKER, last_complete_checkpoint
from adapt.train.metrics import read_metrics

STEPS = 240
SETTINGS = [f"train.max_steps={STEPS}", "train.save_steps=20", "train.eval_steps=120", "train.logging_steps=1",
            "train.save_total_limit=2", "train.batch_size=4"]


def start(recipe: Path, *overrides: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # slower steps give the test time to kill mid-run
    return subprocess.Popen([sys.executable, "-m", "adapt", "train", str(recipe), *SETTINGS, *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, checkpoints: Path, min_step: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = last_complete_checkpoint(checkpoints)
        if done and int(done.name.split("-")[1]) >= min_step:
            return
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.02)
    raise AssertionError("no checkpoint in time")


def losses(run_dir: Path) -> dict[int, float]:
    """The last logged train loss of each step (steps re-done after a kill appear twice)."""
    return {r["step"]: r["metrics"]["train/loss"] for r in read_metrics(run_dir / "metrics.jsonl")
            if "train/loss" in r["metrics"]}


def test_sigkill_then_resume_matches_an_uninterrupted_run(make_recipe, tmp_path):
    from mlflow.tracking import MlflowClient

    from adapt.tracking import default_tracking_uri

    # Create the sqlite store first: a SIGKILL while MLflow is still creating its tables (the
    # sender does that in the background, slowly on a loaded machine) leaves a store that the
    # resumed run cannot open ("table ... already exists"). That is MLflow's migration, not ours.
    MlflowClient(default_tracking_uri()).search_experiments()
    recipe = make_recipe("killed", tracking={"enabled": True})
    run_dir = tmp_path / "runs" / "killed"
    proc = start(recipe)
    wait_for_checkpoint(proc, run_dir / "checkpoints", 40)
    proc.kill()
    proc.wait()
    assert json.loads((run_dir / "run_state.json").read_text())["status"] == "running"

    resumed = start(recipe)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out[-3000:]
    state = json.loads((run_dir / "run_state.json").read_text())
    assert state["status"] == "finished" and state["final_step"] == STEPS
    assert [h["event"] for h in state["history"]] == ["started", "resumed"]

    reference = start(make_recipe("reference"))  # same thread count: same float reductions
    assert reference.wait(timeout=300) == 0
    expected, got = losses(tmp_path / "runs" / "reference"), losses(run_dir)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):  # same data, in the same order, and the same optimizer state
        assert abs(got[step] - expected[step]) < 1e-4, (step, got[step], expected[step])

    client = MlflowClient(default_tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name("adapt").experiment_id])
    assert len(runs) == 1, "the resumed run logs to the run it started"
    history = client.get_metric_history(runs[0].info.run_id, "train/loss")
    assert {m.step for m in history} == set(range(1, STEPS + 1))
    assert runs[0].info.status == "FINISHED"


def test_truncated_checkpoint_is_skipped(make_recipe, tmp_path):
    recipe = make_recipe("truncated")
    assert main(["train", str(recipe), "train.max_steps=4", "train.save_steps=2", "train.eval_steps=4"]) == 0
    checkpoints = tmp_path / "runs" / "truncated" / "checkpoints"
    # What a kill during the Trainer's save leaves: files, but no completion marker.
    fake = checkpoints / "checkpoint-6"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(b"partial")
    assert last_complete_checkpoint(checkpoints).name == "checkpoint-4"
    assert (checkpoints / "checkpoint-4" / COMPLETE_MARKER).is_file()


def test_sigterm_saves_a_checkpoint_then_exits(make_recipe, tmp_path):
    recipe = make_recipe("preempted")
    run_dir = tmp_path / "runs" / "preempted"
    proc = start(recipe, "train.save_steps=1000")
    deadline = time.time() + 120
    while not any(losses(run_dir)) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, out[-3000:]
    assert "run the same command again to resume" in out
    saved = last_complete_checkpoint(run_dir / "checkpoints")
    assert saved is not None and 0 < int(saved.name.split("-")[1]) < STEPS
    assert json.loads((run_dir / "run_state.json").read_text())["status"] == "preempted"
