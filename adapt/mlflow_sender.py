"""The background thread that copies a run's local record (``metrics.jsonl`` and the outbox) to
MLflow, so that training never waits for the tracking server.

Delivery is at least once: a cursor (byte offsets into both files, in ``tracking_run.json``) is
saved after each request that succeeded, so a crash between a request and its cursor resends that
request. That is harmless: mlflow drops a metric point identical to one it has (same key, step,
timestamp and value), and params, tags and statuses are set to the same values again.

Errors come in two kinds. A refusal (a 4xx answer: a param whose value changed on resume, a
deleted run) cannot be fixed by retrying: the item is skipped with one warning, and stays in the
local files. Anything else (connection refused, timeouts, 5xx, auth) is an outage: one warning,
then retries with backoff, and the backlog is sent when the store answers again.

mlflow is imported off the main thread (here, or earlier by ``warm_up``), so that opening a
tracker costs no import time.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

from adapt.fileio import write_json
from adapt.tracking import METRICS_FILE, OUTBOX_FILE, STATE_FILE, file_size, read_records

log = logging.getLogger("adapt.tracking")

# mlflow reads these on every request (mlflow.utils.rest_utils.http_request). Its defaults, 7
# retries with exponential backoff and a 120 s timeout, keep one call to a dead server busy for
# about four minutes; this thread retries by itself instead. The timeout is not shorter because
# artifact uploads through a server use it too.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
_BACKOFF_FIRST_S, _BACKOFF_CAP_S = 0.5, 5.0
_METRICS_PER_REQUEST = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH
_PARAMS_PER_REQUEST = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH


_warming: threading.Thread | None = None


def warm_up(uri: str) -> None:
    """Import mlflow and open a local sqlite store (a new one creates its tables) in the background,
    while the run loads its model and data: done later, on the sender's first pass, this costs
    seconds of CPU taken from the first training steps. A server is not contacted here: the
    sender's own retries handle one that is down. Errors are left for the sender to report."""
    global _warming

    def work():
        try:
            from mlflow import MlflowClient

            if uri.startswith("sqlite:"):
                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception:
            pass

    if _warming is None:
        # Not a daemon: an exit during setup waits for it, rather than cutting a new store's table
        # creation short and leaving a schema the next run cannot open.
        _warming = threading.Thread(target=work, name="adapt-mlflow-warm-up")
        _warming.start()


class _Stopped(Exception):
    """``finish()`` stopped waiting: leave the rest of the backlog for the next session."""


class Sender:
    """Owns the MLflow client, the run and the cursors of one ``run_dir``."""

    def __init__(self, *, uri: str, experiment: str, run_dir: Path, run_name: str,
                 run_id: str | None, artifact_location: str | None):
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)  # the user's own settings win
        self.uri, self.experiment, self.run_name = uri, experiment, run_name
        self.run_dir, self.artifact_location = run_dir, artifact_location
        self._metrics_path, self._outbox_path = run_dir / METRICS_FILE, run_dir / OUTBOX_FILE
        self._start_ms = int(time.time() * 1000)  # the run may be created much later
        self._state = _load_state(run_dir, uri, run_id)
        self._client = None
        self._run_checked = False
        self._down = False
        self._warned: set[tuple] = set()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._main, name="adapt-mlflow-sender",
                                        daemon=True)  # a crash must not hang on it

    @property
    def run_id(self) -> str | None:
        return self._state["run_id"]

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=1.0)  # a request in flight ends by itself within its timeout

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until everything written to the two files so far has been sent."""
        deadline = time.monotonic() + timeout_s
        with self._progress:
            while not self._drained():
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._progress.wait(min(left, 0.5))
        return True

    def _drained(self) -> bool:
        return (self._state["metrics_offset"] >= file_size(self._metrics_path)
                and self._state["outbox_offset"] >= file_size(self._outbox_path))

    def _main(self) -> None:
        delay = _BACKOFF_FIRST_S
        while not self._stop.is_set():
            self._wake.clear()  # before the pass, so a record logged during it wakes us again
            try:
                self._connect()
                self._send_metrics()
                self._send_outbox()
            except _Stopped:
                return
            except Exception as exc:
                if _refused(exc):  # the store refuses the experiment or the uri: no retry helps
                    log.warning("tracking to %s is off for this run (%s); metrics are kept in %s",
                                self.uri, _brief(exc), self._metrics_path)
                    return
                self._went_down(exc)
                self._stop.wait(delay)
                delay = min(2 * delay, _BACKOFF_CAP_S)
                continue
            self._came_back()
            delay = _BACKOFF_FIRST_S
            self._wake.wait()

    def _connect(self) -> None:
        """Create the client and the run, or check that the run to resume exists."""
        if self._client is None:
            if _warming is not None:
                _warming.join(timeout=120)  # two threads creating one sqlite store's tables would collide
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        if self.run_id is None:
            run = self._client.create_run(self._experiment_id(), start_time=self._start_ms,
                                          run_name=self.run_name,
                                          tags={"adapt.run_dir": str(self.run_dir)})
            self._commit(run_id=run.info.run_id)
        elif not self._run_checked and not self._run_exists():
            log.warning("run %s is not in %s, or was deleted; sending the whole history of %s to "
                        "a new run", self.run_id, self.uri, self.run_dir)
            self._commit(run_id=None, metrics_offset=0, outbox_offset=0)
            return self._connect()
        self._run_checked = True

    def _run_exists(self) -> bool:
        try:
            return self._client.get_run(self.run_id).info.lifecycle_stage != "deleted"
        except Exception as exc:
            if not _refused(exc):
                raise
            return False

    def _experiment_id(self) -> str:
        experiment = self._client.get_experiment_by_name(self.experiment)
        if experiment is None:
            try:
                return self._client.create_experiment(self.experiment,
                                                      artifact_location=self.artifact_location)
            except Exception:
                # Another process may have created it just now; if not, raise the real error.
                experiment = self._client.get_experiment_by_name(self.experiment)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            self._client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _send_metrics(self) -> None:
        from mlflow.entities import Metric

        keys = ("step", "time", "metrics")
        while records := self._read(self._metrics_path, self._state["metrics_offset"], keys):
            metrics = [Metric(key, float(value), int(record["time"] * 1000), int(record["step"]))
                       for _, record in records if record
                       for key, value in record["metrics"].items()]
            self._send_items("metric", metrics, _METRICS_PER_REQUEST,
                             lambda chunk: self._client.log_batch(
                                 self.run_id, metrics=chunk, synchronous=True))
            self._commit(metrics_offset=records[-1][0])

    def _send_outbox(self) -> None:
        while records := self._read(self._outbox_path, self._state["outbox_offset"], ("op",)):
            for end, event in records:
                self._check_stop()
                if event:
                    self._send_event(event)
                self._commit(outbox_offset=end)

    def _send_event(self, event: dict) -> None:
        from mlflow.entities import Param, RunTag

        client, run_id, op = self._client, self.run_id, event["op"]
        if op in ("params", "tags"):  # log_batch(params=...) or log_batch(tags=...)
            entity = Param if op == "params" else RunTag
            self._send_items(op[:-1], [entity(k, v) for k, v in event[op].items()],
                             _PARAMS_PER_REQUEST, lambda chunk: client.log_batch(
                                 run_id, synchronous=True, **{op: chunk}))
        elif op == "artifact":
            self._send_items("artifact", [event["path"]], 1,
                             lambda chunk: self._upload(chunk[0], event.get("artifact_path")))
        elif op == "status":
            status, end_ms = event["status"], int(event["time"] * 1000)
            self._send_items("status", [status], 1, lambda _: (
                client.update_run(run_id, status=status) if status == "RUNNING"
                else client.set_terminated(run_id, status, end_time=end_ms)))
        else:
            log.warning("skipped an unknown event in %s: %r", self._outbox_path, event)

    def _upload(self, path: str, artifact_path: str | None) -> None:
        """mlflow copies the file now, not when it was logged: the caller may have deleted it."""
        if not os.path.exists(path):
            log.warning("artifact %s was deleted before it could be uploaded; skipped", path)
        elif os.path.isdir(path):
            self._client.log_artifacts(self.run_id, path, artifact_path)
        else:
            self._client.log_artifact(self.run_id, path, artifact_path)

    def _send_items(self, what: str, items: list, per_request: int, send) -> None:
        """Send in chunks of ``per_request``; when the store refuses a chunk, send it again one
        item at a time so that only the refused items are skipped. Outages raise."""
        for start in range(0, len(items), per_request):
            self._check_stop()
            chunk = items[start:start + per_request]
            try:
                send(chunk)
            except Exception as exc:
                if not _refused(exc):
                    raise
                if len(chunk) > 1:
                    self._send_items(what, chunk, 1, send)
                else:  # warned once, not at every step that logs this metric
                    name = str(getattr(chunk[0], "key", chunk[0]))
                    self._warn_once((what, name), "tracking server %s refused %s %r, which stays "
                                    "only in %s: %s", self.uri, what, name, self.run_dir,
                                    _brief(exc))

    def _read(self, path: Path, offset: int, keys: tuple[str, ...]) -> list:
        """The records after ``offset`` (see ``read_records``), warning once per unreadable line
        although a pass that meets an outage reads the same lines again."""
        records = read_records(path, offset, keys)
        for end, record in records:
            if record is None:
                self._warn_once((path, end), "skipped an unreadable line of %s (ends at byte %d)",
                                path, end)
        return records

    def _warn_once(self, key: tuple, message: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped

    def _commit(self, **changes) -> None:
        """Save the cursor after each request that succeeded; a crash then resends at most one."""
        self._state.update(changes)
        write_json(self.run_dir / STATE_FILE, self._state)
        with self._progress:
            self._progress.notify_all()

    def _went_down(self, exc: Exception) -> None:
        if not self._down:  # one warning per outage, not one per retry
            self._down = True
            log.warning("tracking server %s unreachable; metrics are kept in %s and will be sent "
                        "when it returns (%s)", self.uri, self._metrics_path, _brief(_root(exc)))

    def _came_back(self) -> None:
        if self._down:
            self._down = False
            log.info("tracking server %s is reachable again; the backlog was sent to run %s",
                     self.uri, self.run_id)


def _load_state(run_dir: Path, uri: str, run_id: str | None) -> dict:
    """The run and cursors of an earlier session of this run_dir. They only hold for the same
    store and run, and files that did not shrink; otherwise the whole history is sent again."""
    try:
        old = json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        old = {}
    if old.get("tracking_uri") != uri or (run_id and run_id != old.get("run_id")):
        old = {}
    state = {"tracking_uri": uri, "run_id": run_id or old.get("run_id")}
    for key, name in (("metrics_offset", METRICS_FILE), ("outbox_offset", OUTBOX_FILE)):
        offset = old.get(key, 0)
        state[key] = offset if offset <= file_size(run_dir / name) else 0
    return state


def _refused(exc: Exception) -> bool:
    """True when the store understood the request and refused it (a 4xx answer), so that sending
    it again cannot help. Auth errors, timeouts and rate limits are retried like an outage."""
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(exc, exceptions.MlflowException):
        return False
    code = exc.get_http_status_code()
    return 400 <= code < 500 and code not in (401, 403, 408, 429)


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _root(exc: BaseException) -> BaseException:
    """mlflow wraps a refused connection in three layers of long messages: show the cause."""
    while (inner := exc.__cause__ or exc.__context__) is not None and str(inner):
        exc = inner
    return exc
