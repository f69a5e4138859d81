"""A grid over replay ratio and LoRA rank, one `adapt train` per point with overrides, then
`adapt compare` and one plot of every run's general-loss trace. `--quick` is CI's smoke test."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from steps import QUICK, adapt  # noqa: E402

REPLAY = (0.0, 0.1, 0.25, 0.5)
RANKS = (8, 32)


def main(quick: bool) -> None:
    os.chdir(HERE)
    grid = list(itertools.product(REPLAY[:2] if quick else REPLAY, RANKS[:1] if quick else RANKS))
    runs = []
    for replay, rank in grid:
        name = f"replay{replay:g}-r{rank}"
        run = f"runs/{name}"
        adapt("train", "recipe.yaml", f"data.mixture={{code: {1 - replay:g}, general: {replay:g}}}",
              f"adapter.r={rank}", f"adapter.alpha={2 * rank}", f"train.output_dir={run}",
              f"tracking.run_name={name}", *(QUICK if quick else []))
        runs.append(run)
    adapt("compare", *runs)
    print(f"\nplot: {plot(runs, Path('runs/general_traces.png'))}")


def plot(runs: list[str], path: Path) -> Path:
    """Every run's general eval loss against the step: the forgetting trace, side by side."""
    from adapt.evaluate.trace import loss_traces
    from adapt.figures import pyplot, save_png
    from adapt.train.metrics import read_metrics

    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4))
    for run in runs:
        traces = loss_traces(read_metrics(Path(run) / "metrics.jsonl"))
        for ax, name in zip(axes, ("domain", "general")):
            if name in traces:
                steps, losses = zip(*traces[name])
                ax.plot(steps, losses, "o-", ms=2, label=Path(run).name)
    for ax, name in zip(axes, ("domain", "general")):
        ax.set_title(f"{name} eval loss")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    return save_png(fig, path)


if __name__ == "__main__":
    main("--quick" in sys.argv)
