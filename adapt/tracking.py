"""Run tracking: metrics always land in ``<run_dir>/metrics.jsonl``; MLflow gets a copy when it can.

Why not transformers' ``MLflowCallback``: it logs synchronously, with mlflow's default HTTP retries
(7 retries with backoff, about four minutes per call when the server is down), so an unreachable
tracking server stalls training, and what it failed to send is lost.

Here the local file is the record. Every ``log_metrics`` call appends one line to
``metrics.jsonl`` before anything else happens, whether tracking is on or not. With MLflow on,
params, tags, artifacts and run status are appended to ``tracking_outbox.jsonl``, and a background
thread (:mod:`adapt.mlflow_sender`) sends both files to the server from cursors it persists in
``tracking_run.json``. A server that is down, or a crash, therefore loses nothing: the backlog is
sent when the server returns, or on the next ``open_tracker`` of the same ``run_dir`` (resume).

The null tracker (``enabled=False``) never imports mlflow, which costs about 1.5 s per process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from adapt.errors import AdaptError
from adapt.paths import mlflow_dir

log = logging.getLogger("adapt.tracking")

METRICS_FILE = "metrics.jsonl"
OUTBOX_FILE = "tracking_outbox.jsonl"
STATE_FILE = "tracking_run.json"

# mlflow's limits (mlflow.utils.validation): longer values are refused, not truncated.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
_TRUNCATED = "...[truncated]"
LINES_PER_READ = 1000  # bounds the memory of sending a long backlog

_END_STATUSES = ("FINISHED", "FAILED", "KILLED")
# Servers that pick the artifact location themselves; any other store (sqlite, a database)
# would put artifacts in ./mlruns of whatever the current directory happens to be.
_SERVER_SCHEMES = ("http", "https", "databricks")


class Tracker(Protocol):
    """What training code logs to. ``run_id`` is None for the null tracker, and for an MLflow
    tracker until its run exists (the run is created in the background, maybe late)."""

    run_id: str | None
    tracking_uri: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def wait_for_run_id(self, timeout_s: float) -> str | None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


def default_tracking_uri() -> str:
    """The sqlite store under ``$ADAPT_HOME/mlflow``: MLflow 3.17 refuses the old ./mlruns
    file store, and a fixed place means every run of this user lands in one store."""
    directory = mlflow_dir().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory}/mlflow.db"


def warm_up(uri: str | None) -> None:
    """Start opening the MLflow store in the background, before the run's setup (see
    ``adapt.mlflow_sender.warm_up``)."""
    from adapt.mlflow_sender import warm_up as start

    start(uri or default_tracking_uri())


def open_tracker(*, enabled: bool, uri: str | None, experiment: str, run_dir: Path,
                 run_name: str, run_id: str | None = None,
                 flush_timeout_s: float = 30.0) -> Tracker:
    """Open the tracker of one training run; it never blocks on the tracking server.

    ``run_id`` reuses that MLflow run; without it, the run recorded in ``run_dir`` by an earlier
    ``open_tracker`` of the same directory and store is reused, else a new run is created.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not enabled:
        return NullTracker(run_dir)
    uri = uri or default_tracking_uri()
    _check_uri(uri)
    from adapt.mlflow_sender import Sender  # imports mlflow only in its own thread

    sender = Sender(uri=uri, experiment=experiment, run_dir=run_dir, run_name=run_name,
                    run_id=run_id, artifact_location=_artifact_location(uri, experiment))
    return MlflowTracker(run_dir, sender, flush_timeout_s)


class NullTracker:
    """Writes ``metrics.jsonl`` and nothing else; the base of the MLflow tracker."""

    run_id: str | None = None
    tracking_uri: str | None = None

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._metrics = _JsonLines(run_dir / METRICS_FILE)
        self._skipped: set[str] = set()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Append one line ``{"step", "time", "metrics"}``. Values that are not numbers are
        skipped (with one warning per key), as transformers' callbacks do."""
        values = {}
        for key, value in metrics.items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                if key not in self._skipped:
                    self._skipped.add(key)
                    log.warning("metric %r is not a number (%r); not logged", key, value)
        self._metrics.append({"step": int(step), "time": time.time(), "metrics": values})

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def wait_for_run_id(self, timeout_s: float) -> str | None:
        """The tracking run's id once it exists (None without tracking, or if not within the timeout)."""
        return self.run_id

    def finish(self, status: str = "FINISHED") -> None:
        _check_status(status)
        self._metrics.close()


class SilentTracker(NullTracker):
    """For the processes of a multi-process run other than rank 0, which logs for the run."""

    def __init__(self):
        self.run_dir = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


class MlflowTracker(NullTracker):
    """Appends every MLflow-bound event to the outbox and wakes the sender thread; the calls
    cost a file append, however slow or absent the server is.

    Artifacts are uploaded by the sender, later: the caller must leave the files in place until
    ``finish()`` has returned (a file gone by then is skipped with a warning).
    """

    def __init__(self, run_dir: Path, sender, flush_timeout_s: float):
        super().__init__(run_dir)
        self._sender = sender
        self._flush_timeout_s = flush_timeout_s
        self._outbox = _JsonLines(run_dir / OUTBOX_FILE)
        self.tracking_uri = sender.uri
        # A resumed run was set to FINISHED or FAILED by the last session: make it RUNNING again.
        self._send({"op": "status", "status": "RUNNING", "time": time.time()})
        sender.start()

    @property
    def run_id(self) -> str | None:
        return self._sender.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        super().log_metrics(metrics, step)
        self._sender.wake()

    def wait_for_run_id(self, timeout_s: float) -> str | None:
        """Wait (up to ``timeout_s``) for the sender to create the run, e.g. to nest child runs."""
        self._sender.wait_drained(timeout_s)
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Nested dicts become dotted keys; values become strings cut to mlflow's 6000 chars.
        The sender splits them into batches of 100, mlflow's limit per request."""
        flat = {key: _clip(str(value), MAX_PARAM_VALUE) for key, value in flatten(params).items()}
        self._send({"op": "params", "params": flat})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Queue a file or a directory (uploaded as a directory) for upload."""
        path = Path(path).resolve()
        if not path.exists():
            raise FileNotFoundError(f"artifact {path} does not exist")
        self._send({"op": "artifact", "path": str(path), "artifact_path": artifact_path})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._send({"op": "tags",
                    "tags": {key: _clip(str(value), MAX_TAG_VALUE) for key, value in tags.items()}})

    def finish(self, status: str = "FINISHED") -> None:
        """Queue the final status, wait up to ``flush_timeout_s`` for the backlog to be sent,
        then stop the sender. Never raises because of the server: what was not sent stays in
        ``run_dir`` for the next ``open_tracker`` of that directory."""
        _check_status(status)
        if self._outbox.closed:
            return
        self._send({"op": "status", "status": status, "time": time.time()})
        drained = self._sender.wait_drained(self._flush_timeout_s)
        self._sender.stop()
        if not drained:
            log.warning("could not send everything to tracking server %s within %g s; the "
                        "backlog stays in %s and will be sent on the next `adapt train` of that "
                        "directory", self.tracking_uri, self._flush_timeout_s, self.run_dir)
        self._outbox.close()
        super().finish(status)

    def _send(self, event: dict) -> None:
        self._outbox.append(event)
        self._sender.wake()


class _JsonLines:
    """An append-only JSON-lines file, flushed after each record so that the sender thread and a
    crash both see every record that was logged. Safe to call from several threads."""

    def __init__(self, path: Path):
        # A crash in the middle of a write leaves a torn last line: end it, so that it stays one
        # unreadable line (which readers skip) instead of corrupting the next record.
        torn = file_size(path) > 0 and _last_byte(path) != b"\n"
        self._file = open(path, "a", encoding="utf-8")
        if torn:
            self._file.write("\n")
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def append(self, record: dict) -> None:
        line = json.dumps(record) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_records(path: Path, offset: int,
                 keys: tuple[str, ...]) -> list[tuple[int, dict | None]]:
    """The JSON records after ``offset``, each with the offset just past it: the reader of
    ``_JsonLines``, for the sender. None stands for a line that is not a record with ``keys`` (a
    line torn by a crash). A last line without its newline is still being written: left for the
    next read."""
    records: list[tuple[int, dict | None]] = []
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return records
    with file:
        file.seek(offset)
        while len(records) < LINES_PER_READ:
            line = file.readline()
            if not line.endswith(b"\n"):
                break
            offset += len(line)
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            ok = isinstance(record, dict) and all(key in record for key in keys)
            records.append((offset, record if ok else None))
    return records


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def flatten(params: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"hidden": 256}}`` -> ``{"model.hidden": 256}``: mlflow params are flat.
    Lists that hold sections (e.g. data sources) are flattened by index: ``data.sources.0.name``."""
    if isinstance(params, Mapping):
        items = params.items()
    elif isinstance(params, list) and any(isinstance(v, (Mapping, list)) for v in params):
        items = ((str(i), v) for i, v in enumerate(params))
    else:
        return {prefix.rstrip("."): params}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - len(_TRUNCATED)] + _TRUNCATED


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1)


def _check_status(status: str) -> None:
    if status not in _END_STATUSES:
        raise ValueError(f"status must be one of {_END_STATUSES}, not {status!r}")


def _check_uri(uri: str) -> None:
    """Refuse the file store up front: MLflow 3.17 refuses it too, but only later, in the sender
    thread, where the user would see a warning instead of an error."""
    scheme = urlparse(uri).scheme
    file_store = scheme in ("", "file") or len(scheme) == 1  # len 1: a Windows drive letter
    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true")
    if file_store and not allowed:
        raise AdaptError(f"{uri!r} is an MLflow file store, which MLflow 3.17 no longer accepts",
                         key="tracking.uri",
                         fix="use a sqlite store such as sqlite:///path/mlflow.db, a server such "
                             "as http://host:5000, or leave tracking.uri unset for the default")


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: None lets a server choose; any local store
    gets a folder under ``$ADAPT_HOME/mlflow/artifacts``, instead of ./mlruns of the cwd."""
    if urlparse(uri).scheme.lower() in _SERVER_SCHEMES:
        return None
    folder = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment).lstrip(".")
    return str((mlflow_dir() / "artifacts" / (folder or "_")).resolve())
