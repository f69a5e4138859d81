"""The stability-gap trace (Guo et al. 2024): domain and general eval loss every ``eval_steps``
during training, from the run's ``metrics.jsonl``, as one PNG. General loss often rises early in
continual pretraining and then recovers, so the end point alone can hide what happened."""

from __future__ import annotations

from pathlib import Path

from adapt.figures import pyplot, save_png


def loss_traces(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Per eval set: (step, loss) at each evaluation, in step order."""
    traces: dict[str, list] = {}
    for row in sorted(rows, key=lambda r: r["step"]):
        metrics = row["metrics"]
        for key, value in metrics.items():
            if key.startswith("eval/") and key.endswith("/loss") and key.count("/") == 2:
                traces.setdefault(key[len("eval/"): -len("/loss")], []).append((row["step"], value))
    return traces


def plot_trace(path: Path, rows: list[dict], roles: dict[str, str], epsilon: float | None,
               tolerance: str = "absolute") -> Path | None:
    """Two panels, domain sets and general sets, loss against step; the general panel shades the
    band the forgetting tolerance allows above the base loss. None when nothing was traced."""
    traces = loss_traces(rows)
    if not traces:
        return None
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4))
    for ax, role in zip(axes, ("domain", "general")):
        names = [name for name in traces if roles.get(name, "domain") == role]
        for name in names:
            steps, losses = zip(*traces[name])
            ax.plot(steps, losses, "o-", ms=3, label=name)
            if role == "general" and epsilon is not None:
                limit = losses[0] + epsilon if tolerance == "absolute" else losses[0] * (1 + epsilon)
                ax.axhspan(min(losses), limit, color="tab:green", alpha=0.08)
                ax.axhline(limit, color="tab:green", ls="--", lw=1, label=f"{name} base + ε")
        ax.set_title(f"{role} eval loss" if names else f"{role}: no eval set")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
        if names:
            ax.legend(fontsize=8)
    return save_png(fig, path)
