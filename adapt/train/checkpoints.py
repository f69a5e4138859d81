"""Checkpoints that a kill cannot corrupt, and a clean stop on SIGTERM.

The Trainer writes a checkpoint's files in place, so a kill can leave a half-written one.
adapt marks a checkpoint complete only after the Trainer has written all of it, resumes only
from marked ones, and rotates old checkpoints itself, after the new one is marked.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

from adapt.fileio import write_json

COMPLETE_MARKER = "adapt_complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """All ``checkpoint-N`` directories, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
    return sorted(found)


def last_complete_checkpoint(directory: Path) -> Path | None:
    complete = complete_checkpoints(directory)
    return complete[-1][1] if complete else None


def discard_incomplete(directory: Path) -> list[Path]:
    """Delete checkpoints a kill left half-written, so the Trainer never sees them."""
    removed = [p for _, p in checkpoints(directory) if not (p / COMPLETE_MARKER).is_file()]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


class CompleteCheckpointCallback(TrainerCallback):
    """Marks each saved checkpoint complete, then keeps the newest ``limit`` complete ones, and
    the one ``best`` (steps -> chosen step) picks, if given."""

    def __init__(self, limit: int | None, best=None):
        self.limit, self.best = limit, best

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        directory = Path(args.output_dir)
        write_json(directory / f"checkpoint-{state.global_step}" / COMPLETE_MARKER,
                   {"step": state.global_step, "time": time.time()})
        complete = complete_checkpoints(directory)
        kept = self.best([step for step, _ in complete]) if self.best else None
        if self.limit:
            for step, old in complete[: -self.limit]:
                if step != kept:
                    shutil.rmtree(old, ignore_errors=True)


def complete_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    return [(step, p) for step, p in checkpoints(directory) if (p / COMPLETE_MARKER).is_file()]


class PreemptionCallback(TrainerCallback):
    """On SIGTERM, finish the current step, save a checkpoint and stop. With several processes,
    each step ends with the ranks agreeing on whether any was signalled, so they all stop at the
    same step (one stopping alone would leave the others waiting in a collective)."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        self.requested = True

    def on_step_end(self, args, state, control, **kwargs):
        if args.world_size > 1:
            import torch
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                flag = torch.tensor([float(self.requested)], device=args.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                self.requested = bool(flag.item())
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
        return control

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)
