"""``train.keep_best``: keep as the run's final model the checkpoint with the lowest domain eval
loss among those whose general eval loss rose by at most ``evaluation.epsilon`` over the base's.

The choice is read from ``metrics.jsonl`` (the trace every checkpoint step is evaluated in), never
from memory, so a resumed run chooses as an uninterrupted one would; the chosen checkpoint is kept
when older ones are rotated away.
"""

from __future__ import annotations

from pathlib import Path

from adapt.train.metrics import read_metrics


def best_step(rows: list[dict], steps: list[int], domain: list[str], general: list[str], epsilon: float,
              tolerance: str = "absolute") -> int | None:
    """The step of ``steps`` with the lowest mean domain loss among those within the tolerance
    (each general set against its first logged loss, the base's); None when none is."""
    losses: dict[int, dict[str, float]] = {}
    for row in rows:
        for name in domain + general:
            value = row["metrics"].get(f"eval/{name}/loss")
            if value is not None:
                losses.setdefault(row["step"], {})[name] = value
    if not losses:
        return None
    base = losses[min(losses)]
    feasible = []
    for step in steps:
        at = losses.get(step, {})
        if not all(name in at for name in domain + general):
            continue
        rises = [at[g] - base[g] if tolerance == "absolute" else (at[g] - base[g]) / base[g] for g in general]
        if all(rise <= epsilon for rise in rises):
            feasible.append((sum(at[d] for d in domain) / len(domain), step))
    return min(feasible)[1] if feasible else None


class BestCheckpoint:
    """The run's eval sets by role, and its tolerance; ``step(steps)`` picks among checkpoints."""

    def __init__(self, run_dir: Path, domain: list[str], general: list[str], epsilon: float, tolerance: str):
        self.metrics = run_dir / "metrics.jsonl"
        self.domain, self.general, self.epsilon, self.tolerance = domain, general, epsilon, tolerance

    def step(self, steps: list[int]) -> int | None:
        return best_step(read_metrics(self.metrics), steps, self.domain, self.general, self.epsilon,
                         self.tolerance)
