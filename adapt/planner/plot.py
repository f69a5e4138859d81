"""One PNG of a plan: the pilots' points against the fitted laws, the tolerance band and the choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adapt.figures import pyplot, save_png
from adapt.planner.cmr import Surface
from adapt.planner.plan import PilotSet


def plot_plan(path: Path, data: PilotSet, plan: dict) -> Path:
    plt = pyplot()

    surface = Surface(data.pilots, data.t_ref)
    t_target = plan["target_tokens"] / data.t_ref
    epsilon, ratio = plan["epsilon"], plan["ratio"]
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(data.pilots)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))

    tokens = np.geomspace(min(p.tokens.min() for p in data.pilots), max(plan["target_tokens"], data.t_ref), 100)
    for ax, name, fits in ((axes[0], "general", surface.general_fits), (axes[1], "domain", surface.domain_fits)):
        for pilot, fit, colour in zip(data.pilots, fits, colours):
            ax.plot(pilot.tokens, getattr(pilot, name), "o", color=colour, ms=4)
            ax.plot(tokens, fit(tokens / data.t_ref), "-", color=colour, lw=1, label=f"R={pilot.ratio:g}")
        ax.axvline(plan["target_tokens"], color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("training tokens T")
        ax.set_ylabel(f"Δ{name} loss (nats)")
        ax.set_title(f"{name} loss against tokens (points: pilots, lines: fits)")
    axes[0].axhspan(axes[0].get_ylim()[0], epsilon, color="tab:green", alpha=0.08, label=f"within ε={epsilon:.3g}")
    axes[0].legend(fontsize=7)

    ax = axes[2]
    grid = np.linspace(0, 1, 101)
    for name, colour in (("general", "tab:red"), ("domain", "tab:blue")):
        at_target = getattr(surface, name)(grid, t_target)
        ax.plot(grid, at_target, "-", color=colour, label=f"Δ{name} at T={plan['target_tokens']:.3g}")
        ax.plot(surface.ratios, [getattr(p, name)[-1] for p in data.pilots], "o", color=colour, ms=5,
                label=f"Δ{name}, pilots at T={data.t_ref:.3g}")
    ax.axhline(epsilon, color="tab:green", ls="--", lw=1, label="tolerance ε")
    ax.axvline(ratio, color="black", lw=1.5, label=f"chosen R={ratio:.3f}")
    interval = plan["interval"]
    if interval["low"] is not None:
        ax.axvspan(interval["low"], interval["high"], color="black", alpha=0.1, label="90% bootstrap interval")
    ax.set_xlabel("domain share R")
    ax.set_ylabel("loss change against the base model (nats)")
    ax.set_title(f"CMR {ratio:.3f} ({plan['method']}, fit {plan['quality']['verdict']})")
    ax.legend(fontsize=7)
    return save_png(fig, path)
