"""Plots as files: matplotlib without a display, saved atomically."""

from __future__ import annotations

from pathlib import Path

from adapt.fileio import atomic_write


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    pyplot().close(fig)
    return path
