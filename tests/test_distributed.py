"""Two processes on gloo, as `adapt train --nproc 2` starts them on a CPU machine: each rank
sees its own batches, rank 0 alone writes the run directory and logs one MLflow run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from adapt.launch import accelerate_command, launch_env

HELPER = Path(__file__).parent / "helpers" / "rank_batches.py"


def test_two_ranks_see_different_batches(make_recipe, tmp_path):
    recipe = make_recipe("ranks", train={"seq_len": 64, "batch_size": 4, "max_steps": 6, "output_dir": str(tmp_path / "r")})
    done = subprocess.run(accelerate_command(2) + [str(HELPER), str(recipe), str(tmp_path)], env=launch_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == 6, "each rank takes every step's share"
    assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"]), "no batch is seen by both ranks"


def test_adapt_train_nproc_2_runs_one_tracked_run(make_recipe, tmp_path):
    recipe = make_recipe("nproc", tracking={"enabled": True}, evaluation={"completion": {"max_samples": 4}})
    done = subprocess.run([sys.executable, "-m", "adapt", "train", str(recipe), "--nproc", "2", "train.max_steps=4"],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "nproc"
    assert json.loads((run / "data_report.json").read_text())["world_size"] == 2
    assert json.loads((run / "run_state.json").read_text())["status"] == "finished"
    steps = [row["step"] for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if "train/loss" in row["metrics"]]
    assert steps == sorted(set(steps)) and steps[-1] == 4, "one writer: every step logged once"
    assert (run / "final" / "adapter_config.json").is_file() and (run / "eval" / "report.json").is_file()

    import mlflow

    from adapt.tracking import default_tracking_uri

    client = mlflow.tracking.MlflowClient(default_tracking_uri())
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


def test_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    root = Path(__file__).resolve().parents[1] / "recipes" / "accelerate"
    kinds = {path.name: str(load_config_from_file(str(path)).distributed_type) for path in root.glob("*.yaml")}
    assert kinds == {"fsdp.yaml": "DistributedType.FSDP", "deepspeed_zero3.yaml": "DistributedType.DEEPSPEED"}


def test_sigterm_stops_every_rank_at_one_step_and_the_run_resumes(make_recipe, tmp_path):
    import signal
    import time

    recipe = make_recipe("term", evaluation={"completion": {"enabled": False}})
    command = [sys.executable, "-m", "adapt", "train", str(recipe), "--nproc", "2", "train.max_steps=150",
               "train.save_steps=50", "train.eval_steps=50", "train.logging_steps=1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs" / "term" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (metrics.is_file() and '"train/loss"' in metrics.read_text()):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err[-3000:]
    state = json.loads((tmp_path / "runs" / "term" / "run_state.json").read_text())
    assert state["status"] == "preempted"
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "runs" / "term" / "checkpoints").glob("checkpoint-*")
                   if (p / "adapt_complete.json").is_file())
    assert steps and 0 < steps[-1] < 150, "stopped early, with a complete checkpoint"

    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((tmp_path / "runs" / "term" / "run_state.json").read_text())
    assert state["status"] == "finished" and [e["event"] for e in state["history"]] == ["started", "resumed"]
