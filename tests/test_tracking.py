"""The run tracker against real MLflow stores: a sqlite file, and a real ``mlflow server`` that is
stopped and restarted under a running tracker. Nothing of mlflow is mocked, because the point is
how mlflow 3.17 itself behaves (artifact locations, HTTP retries, duplicate points)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from adapt.errors import AdaptError
from adapt.paths import mlflow_dir
from adapt.tracking import OUTBOX_FILE, STATE_FILE, default_tracking_uri, open_tracker

MlflowClient = pytest.importorskip("mlflow").MlflowClient

REPO = Path(__file__).resolve().parents[1]
MLFLOW_CLI = Path(sys.executable).with_name("mlflow")
# The tracker sets these for its process when they are unset; monkeypatch undoes that.
HTTP_VARS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, caplog):
    """A temporary ADAPT_HOME and cwd for each test, so ~/.adapt and ./mlruns stay untouched."""
    monkeypatch.setenv("ADAPT_HOME", str(tmp_path / "home"))
    for name in HTTP_VARS + ("MLFLOW_TRACKING_URI", "MLFLOW_ENABLE_ASYNC_LOGGING"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    caplog.set_level(logging.INFO, logger="adapt.tracking")


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def history(client, run_id: str, key: str = "loss") -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def messages(caplog, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "adapt.tracking" and r.levelno == level and text in r.getMessage()]


def wait_for(condition, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sqlite_store_gets_params_metrics_tags_and_artifacts(tmp_path):
    (tmp_path / "report.txt").write_text("report")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "weights.bin").write_bytes(b"\0" * 10)
    run_dir = tmp_path / "run"

    tracker = open_tracker(enabled=True, uri=None, experiment="cpt", run_dir=run_dir,
                           run_name="first")
    params = {f"p{i}": i for i in range(150)}  # more than mlflow's 100 per request
    tracker.log_params({"model": {"hidden": 256}, "long": "x" * 7000, **params})
    for step in range(1, 31):
        tracker.log_metrics({"loss": 1.0 / step, "lr": 0.001}, step)
    tracker.set_tags({"stage": "cpt"})
    tracker.log_artifact(tmp_path / "report.txt")
    tracker.log_artifact(tmp_path / "ckpt", "checkpoint")
    tracker.finish()

    client = MlflowClient(default_tracking_uri())
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.hidden"] == "256" and run.data.params["p149"] == "149"
    assert len(run.data.params["long"]) == 6000 and run.data.params["long"].endswith("[truncated]")
    assert run.data.tags["stage"] == "cpt"
    assert history(client, run.info.run_id) == {s: 1.0 / s for s in range(1, 31)}
    assert len(client.get_metric_history(run.info.run_id, "lr")) == 30
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"report.txt", "checkpoint"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == [
        "checkpoint/weights.bin"]
    # With sqlite, mlflow would put artifacts in ./mlruns of the cwd without an artifact_location.
    assert run.info.artifact_uri.startswith(str((mlflow_dir() / "artifacts").resolve()))
    assert list(Path.cwd().iterdir()) == []
    assert len(jsonl(run_dir / "metrics.jsonl")) == 30


def test_resume_appends_to_the_same_run(tmp_path, caplog):
    run_dir = tmp_path / "run"
    first = open_tracker(enabled=True, uri=None, experiment="cpt", run_dir=run_dir,
                         run_name="resumable")
    first.log_params({"lr": 0.1, "seed": 1})
    for step in range(1, 6):
        first.log_metrics({"loss": float(step)}, step)
    first.finish("FAILED")
    run_id = json.loads((run_dir / STATE_FILE).read_text())["run_id"]
    assert run_id == first.run_id
    with open(run_dir / "metrics.jsonl", "a") as file:  # a crash in the middle of a write
        file.write('{"step": 6, "ti')

    second = open_tracker(enabled=True, uri=None, experiment="cpt", run_dir=run_dir,
                          run_name="resumable", run_id=run_id)
    client = MlflowClient(default_tracking_uri())
    wait_for(lambda: client.get_run(run_id).info.status == "RUNNING")
    second.log_params({"lr": 0.2, "max_steps": 10})  # mlflow refuses to change a param
    for step in range(6, 11):
        second.log_metrics({"loss": float(step)}, step)
    second.finish()

    assert second.run_id == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1", "seed": "1", "max_steps": "10"}
    assert len(messages(caplog, logging.WARNING, "refused param 'lr'")) == 1
    assert len(messages(caplog, logging.WARNING, "unreadable line")) == 1
    assert history(client, run_id) == {s: float(s) for s in range(1, 11)}
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 11 and lines[5] == '{"step": 6, "ti'  # appended, torn line kept apart
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1


def test_file_store_uri_is_a_user_error(tmp_path):
    with pytest.raises(AdaptError, match="file store"):
        open_tracker(enabled=True, uri=str(tmp_path / "mlruns"), experiment="cpt",
                     run_dir=tmp_path / "run", run_name="r")


def test_null_tracker_writes_metrics_without_importing_mlflow(tmp_path):
    run_dir = tmp_path / "run"
    code = (
        "import sys; from pathlib import Path; from adapt.tracking import open_tracker\n"
        "t = open_tracker(enabled=False, uri=None, experiment='e', run_dir=Path(sys.argv[1]),"
        " run_name='r')\n"
        "t.log_params({'a': 1}); t.set_tags({'b': 'c'}); t.log_metrics({'loss': 2.5}, 7)\n"
        "t.finish()\n"
        "assert t.run_id is None and 'mlflow' not in sys.modules, sorted(sys.modules)\n"
    )
    for _ in range(2):  # the second process appends
        subprocess.run([sys.executable, "-c", code, str(run_dir)], cwd=REPO, check=True)
    records = jsonl(run_dir / "metrics.jsonl")
    assert [(r["step"], r["metrics"]) for r in records] == [(7, {"loss": 2.5})] * 2
    assert not (run_dir / OUTBOX_FILE).exists() and not mlflow_dir().exists()


class Server:
    """``mlflow server`` on a sqlite store, in its own process group so it can be stopped whole.
    Job execution is off: otherwise 3.17 starts eight extra worker processes for nothing."""

    def __init__(self, root: Path, port: int):
        self.root, self.port, self.uri = root, port, f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60) -> None:
        command = [str(MLFLOW_CLI), "server", "--backend-store-uri",
                   f"sqlite:///{self.root}/db.sqlite", "--default-artifact-root",
                   str(self.root / "art"), "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.root / "server.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.root / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"mlflow server not ready in {timeout_s} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def server(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "server").mkdir()
    server = Server(tmp_path / "server", port)
    try:
        yield server
    finally:
        server.stop()


def test_server_outage_keeps_training_fast_and_loses_nothing(tmp_path, server, caplog):
    server.start()
    client = MlflowClient(server.uri)
    tracker = open_tracker(enabled=True, uri=server.uri, experiment="cpt",
                           run_dir=tmp_path / "run", run_name="outage")
    for step in range(1, 6):
        tracker.log_metrics({"loss": 1.0 / step}, step)
    wait_for(lambda: tracker.run_id and len(history(client, tracker.run_id)) == 5)

    server.stop()
    for step in range(6, 21):
        start = time.monotonic()
        tracker.log_metrics({"loss": 1.0 / step}, step)
        assert time.monotonic() - start < 0.5
        time.sleep(0.1)
    wait_for(lambda: messages(caplog, logging.WARNING, "unreachable"))

    server.start()
    tracker.finish()
    assert len(messages(caplog, logging.WARNING, "unreachable")) == 1
    assert len(messages(caplog, logging.INFO, "reachable again")) == 1
    assert len(messages(caplog, logging.WARNING, "backlog stays")) == 0
    local = {r["step"]: r["metrics"]["loss"] for r in jsonl(tmp_path / "run" / "metrics.jsonl")}
    assert history(client, tracker.run_id) == local == {s: 1.0 / s for s in range(1, 21)}
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_server_down_at_start_sends_backlog_on_resume(tmp_path, server, caplog):
    run_dir = tmp_path / "run"
    tracker = open_tracker(enabled=True, uri=server.uri, experiment="cpt", run_dir=run_dir,
                           run_name="late", flush_timeout_s=1)
    tracker.log_params({"lr": 0.01})
    (tmp_path / "notes.txt").write_text("kept until the upload")
    tracker.log_artifact(tmp_path / "notes.txt")
    for step in range(1, 4):
        tracker.log_metrics({"loss": float(step)}, step)
    start = time.monotonic()
    tracker.finish()  # must not raise, nor wait much longer than flush_timeout_s
    assert time.monotonic() - start < 3 and tracker.run_id is None
    assert len(messages(caplog, logging.WARNING, "unreachable")) == 1
    assert len(messages(caplog, logging.WARNING, "backlog stays")) == 1

    server.start()
    resumed = open_tracker(enabled=True, uri=server.uri, experiment="cpt", run_dir=run_dir,
                           run_name="late")
    resumed.log_metrics({"loss": 4.0}, 4)
    resumed.finish()
    client = MlflowClient(server.uri)
    run = client.get_run(resumed.run_id)
    assert history(client, resumed.run_id) == {s: float(s) for s in range(1, 5)}
    assert run.data.params == {"lr": "0.01"} and run.info.status == "FINISHED"
    # A server chooses the artifact location itself (here its --default-artifact-root).
    assert run.info.artifact_uri.startswith(str(server.root / "art"))
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["notes.txt"]
    assert json.loads((run_dir / STATE_FILE).read_text())["run_id"] == resumed.run_id


def test_training_survives_a_server_outage(make_recipe, tmp_path, server):
    """`adapt train` against a real server that stops mid-run: training goes on with one
    warning, and once the server is back every metric of metrics.jsonl is in the run."""
    server.start()
    recipe = make_recipe("outage", tracking={"uri": server.uri, "experiment": "outage"})
    run_dir = tmp_path / "runs" / "outage"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "adapt", "train", str(recipe), "train.max_steps=240",
               "train.batch_size=4", "train.logging_steps=1", "train.eval_steps=120", "train.save_steps=120"]
    training = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for(lambda: (run_dir / "metrics.jsonl").is_file() and len(jsonl(run_dir / "metrics.jsonl")) > 10, 120)
    server.stop()
    stopped_at = len(jsonl(run_dir / "metrics.jsonl"))
    wait_for(lambda: len(jsonl(run_dir / "metrics.jsonl")) > stopped_at + 20, 60)  # training goes on
    server.start()
    out, err = training.communicate(timeout=300)
    assert training.returncode == 0, err[-3000:]
    assert err.count("unreachable") == 1, err[-3000:]

    client = MlflowClient(server.uri)
    run_id = json.loads((run_dir / STATE_FILE).read_text())["run_id"]
    local = {r["step"]: r["metrics"]["train/loss"] for r in jsonl(run_dir / "metrics.jsonl")
             if "train/loss" in r["metrics"]}
    assert history(client, run_id, "train/loss") == local and len(local) == 240
    assert client.get_run(run_id).info.status == "FINISHED"
