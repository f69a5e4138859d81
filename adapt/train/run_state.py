"""The run directory's state file: which recipe a run started with, and its status.

A second ``adapt train`` on the same directory reads it to resume, to refuse a changed recipe,
or to say that the run is already finished. (The MLflow run id is the tracker's to keep, in
``tracking_run.json`` beside it.)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adapt.errors import AdaptError
from adapt.fileio import write_json

STATE_FILE = "run_state.json"


@dataclass
class RunState:
    recipe: dict[str, Any]
    status: str = "running"  # running | finished | failed | preempted
    final_step: int | None = None
    best_step: int | None = None  # train.keep_best: the checkpoint kept as the final model
    history: list[dict[str, Any]] = field(default_factory=list)

    def save(self, run_dir: Path) -> None:
        if is_main_process():  # one writer: rank 0 of a multi-process run
            write_json(run_dir / STATE_FILE, asdict(self))


def is_main_process() -> bool:
    """Whether this is rank 0, the process that writes the run directory and logs the run."""
    return int(os.environ.get("RANK", "0")) == 0


def load_state(run_dir: Path) -> RunState | None:
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return RunState(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:  # written atomically, so only a hand edit breaks it
        raise AdaptError(f"cannot read the run state ({exc})", file=str(path),
                         fix="restore the file, or set train.output_dir to a new directory") from None


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested recipe dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [k for key in keys for k in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]
