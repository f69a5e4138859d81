"""Pilot data from known loss surfaces, for the planner's tests and benchmark.

``LawSurface`` follows the CMR law's own forms (so its CMR is known exactly); ``SaturatingSurface``
is a plausible CPT process of another shape (exponential saturation), to test the planner when
its laws are only approximately right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapt.planner.cmr import Pilot
from adapt.planner.plan import PilotSet


@dataclass
class LawSurface:
    """ΔL_dom = R^a·(A·t^s1 − B)/2 and ΔL_gen = R^g·(G∞ − G1·t^s2) + H·(t^s3 − 1): at fixed t both
    are α·R^s + β in R, and at fixed R they are the token laws' forms in t."""

    A: float = 0.3
    B: float = 1.2
    s1: float = -0.6
    a: float = 0.7
    G1: float = 0.05
    G_inf: float = 0.35
    s2: float = -0.8
    g: float = 1.6
    H: float = 0.08
    s3: float = -0.3

    def domain(self, r, t):
        return np.power(np.asarray(r, dtype=float), self.a) * (self.A * np.power(t, self.s1) - self.B) / 2

    def general(self, r, t):
        r = np.asarray(r, dtype=float)
        return np.power(r, self.g) * (self.G_inf - self.G1 * np.power(t, self.s2)) + self.H * (np.power(t, self.s3) - 1)


@dataclass
class SaturatingSurface:
    """Losses that saturate exponentially in t: forgetting grows as R², replay recovers (1 − R)."""

    forget: float = 0.5
    recover: float = 0.06
    learn: float = 0.9
    tau: float = 0.3

    def domain(self, r, t):
        r = np.asarray(r, dtype=float)
        return -self.learn * (1 - np.exp(-3 * (r + 0.05) * t))

    def general(self, r, t):
        r = np.asarray(r, dtype=float)
        saturation = 1 - np.exp(-t / self.tau)
        return self.forget * r ** 2 * saturation - self.recover * (1 - r) * saturation


def largest_tolerated(surface, t: float, epsilon: float) -> float | None:
    """The true largest R with ΔL_gen(R, t) ≤ ε, by brute force on a fine grid."""
    grid = np.linspace(0, 1, 100_001)
    within = grid[surface.general(grid, t) <= epsilon]
    return float(within[-1]) if len(within) else None


def sample_pilots(surface, ratios, t_ref: float = 1e6, points: int = 10, noise: float = 0.01,
                  seed: int = 0, base=(3.0, 2.5)) -> PilotSet:
    """Each pilot evaluated at ``points`` budgets up to ``t_ref`` tokens, with Gaussian noise of
    ``noise`` times each loss change (the issue's "1% of each ΔL")."""
    rng = np.random.default_rng(seed)
    t = np.linspace(1.0 / points, 1.0, points)
    pilots = []
    for r in ratios:
        domain, general = surface.domain(r, t), surface.general(r, t)
        pilots.append(Pilot(float(r), t * t_ref, domain + rng.normal(0, 1, points) * noise * np.abs(domain),
                            general + rng.normal(0, 1, points) * noise * np.abs(general)))
    return PilotSet(pilots, *base)
