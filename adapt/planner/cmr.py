"""The critical mixture ratio (CMR) from pilot trajectories: tolerance, feasibility, extrapolation.

Gu et al. 2024 (arXiv 2407.17467) frame continual pretraining as "lower the domain loss while the
general loss stays within ε of the base model", and call the largest domain share R for which
that holds within the budget the critical mixture ratio. Here, as in their §3-§5:

1. every pilot ratio gets its loss-against-tokens laws (``laws.fit_power_law`` for the domain,
   ``laws.fit_general_law`` for the general set);
2. at any budget t, the ratio law ΔL(R) = α·R^s + β is fitted across the pilots' predictions at t,
   which gives ΔL_dom(R, t) and ΔL_gen(R, t) for every R in [0, 1] (``Surface``);
3. the **tolerance set** at the budget is {R : ΔL_gen(R, T) ≤ ε};
4. a ratio is **feasible** when the Lagrangian F_R(T) = ΔL_dom + λ·(ΔL_gen − ε) has not stopped
   decreasing before the budget: T0, the last root of dF/dlnT after which F only rises (found on
   a cubic spline of F), lies at or past T, i.e. F still falls at T. Past T0, at the exchange rate λ, what the run gains in
   the domain no longer pays for what it loses in general. The paper words it "stops decreasing at
   some T0 ≤ T_max"; read literally, every ratio whose general loss keeps recovering would be
   infeasible and every ratio whose general loss only rises feasible (on law-form data that
   reading finds no CMR at all), so we take T0 ≥ T, which keeps the intent;
5. the **CMR** is the largest tolerated ratio; with ``plan.constraint: lagrangian`` the largest
   that is also feasible. Tolerance is the default because the Lagrangian binds below the
   tolerance boundary wherever forgetting is still growing at the budget (saturating curves, most
   real CPT runs), and the planner's promise is the largest ratio within ε; the plan always
   reports the Lagrangian CMR at λ = 1 ... 7000 and whether the chosen ratio is feasible;
6. beyond the pilots' budget, the CMR at several pilot budgets is fitted with
   R_CMR(T) = α4·T^s4 + β3 (§5) and evaluated at the target budget, clamped to [0, 1].

λ: the paper used 100 to 7000. We default to 100, the low end: it already prices a nat of
general loss at a hundred nats of domain loss, so the constraint dominates, and larger values
move the CMR little (the diagnostics show the CMR at λ = 1 ... 7000).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq

from adapt.planner.laws import Fit, fit_general_law, fit_power_law, fit_ratio_curve

DEFAULT_LAMBDA = 100.0
LAMBDA_SWEEP = (1.0, 10.0, 100.0, 1000.0, 7000.0)
RATIO_GRID = np.linspace(0.0, 1.0, 201)
MIN_RATIOS = 3
MIN_POINTS = 4


class PlannerError(ValueError):
    """Pilot data the laws cannot be fitted to; the message says what to add."""

    def __init__(self, what: str, fix: str):
        self.what, self.fix = what, fix
        super().__init__(f"{what}; {fix}")


@dataclass
class Pilot:
    """One pilot run: its domain share and its eval trajectory as changes against the base model.

    ``tokens`` excludes T = 0 (the base model itself, where both changes are 0 by definition)."""

    ratio: float
    tokens: np.ndarray
    domain: np.ndarray
    general: np.ndarray

    def __post_init__(self):
        self.tokens, self.domain, self.general = (np.asarray(a, dtype=float)
                                                  for a in (self.tokens, self.domain, self.general))


@dataclass
class Surface:
    """ΔL_dom(R, t) and ΔL_gen(R, t), with t = T / t_ref, from per-ratio token laws and a
    ratio law at each t (Gu et al. §4). Ratio fits are cached per t."""

    pilots: list[Pilot]
    t_ref: float
    max_misfit: float | None = None  # see laws.fit_ratio_curve
    domain_fits: list[Fit] = field(init=False)
    general_fits: list[Fit] = field(init=False)

    def __post_init__(self):
        self.ratios = np.array([p.ratio for p in self.pilots])
        self.domain_fits = [fit_power_law(p.tokens / self.t_ref, p.domain) for p in self.pilots]
        self.general_fits = [fit_general_law(p.tokens / self.t_ref, p.general) for p in self.pilots]
        self._cache: dict[float, tuple[Fit, Fit]] = {}

    def ratio_fits(self, t: float, leave_out: int | None = None) -> tuple[Fit, Fit]:
        key = (round(float(t), 12), leave_out)
        if key not in self._cache:
            keep = [i for i in range(len(self.pilots)) if i != leave_out]
            r = self.ratios[keep]
            dom = np.array([self.domain_fits[i](t) for i in keep])
            gen = np.array([self.general_fits[i](t) for i in keep])
            self._cache[key] = (fit_ratio_curve(r, dom, self.max_misfit), fit_ratio_curve(r, gen, self.max_misfit))
        return self._cache[key]

    def domain(self, r, t: float) -> np.ndarray:
        return self.ratio_fits(t)[0](r)

    def general(self, r, t: float) -> np.ndarray:
        return self.ratio_fits(t)[1](r)


def tolerance_ratio(surface, t: float, epsilon: float) -> float | None:
    """The largest R with ΔL_gen(R, t) ≤ ε, or None when even R = 0 exceeds ε."""
    excess = surface.general(RATIO_GRID, t) - epsilon
    if excess[-1] <= 0:
        return 1.0
    within = np.nonzero(excess <= 0)[0]
    if len(within) == 0:
        return None
    i = within[-1]
    f = lambda r: float(surface.general(r, t)) - epsilon  # noqa: E731
    return float(brentq(f, RATIO_GRID[i], RATIO_GRID[i + 1]))


def token_grid(t_min: float, t_max: float, points: int = 48) -> np.ndarray:
    """The log-spaced budgets F is evaluated on, shared by every budget of one plan so that the
    ratio fits at each point are made once (``Surface`` caches them)."""
    return np.geomspace(t_min, t_max, points)


def stopping_tokens(surface, ratios: np.ndarray, grid: np.ndarray, t_budget: float, epsilon: float,
                    lam: float) -> np.ndarray:
    """T0 per ratio: where F_R(t) = ΔL_dom + λ(ΔL_gen − ε) stopped decreasing for the last time
    before ``t_budget`` (the last root of dF/dln t, after which F only rises to the budget); the
    grid's start if F rises all the way; inf if F is still decreasing at the budget."""
    log_t = np.log(np.append(grid[grid < t_budget * (1 - 1e-9)], t_budget))
    values = np.array([surface.domain(ratios, np.exp(lt)) + lam * (surface.general(ratios, np.exp(lt)) - epsilon)
                       for lt in log_t])  # (points, ratios)
    t0 = np.full(len(ratios), np.inf)
    for j in range(len(ratios)):
        slope = CubicSpline(log_t, values[:, j]).derivative()
        if slope(log_t[-1]) < 0:
            continue
        roots = [x for x in slope.roots(extrapolate=False) if x < log_t[-1] - 1e-9]
        t0[j] = float(np.exp(max(roots))) if roots else float(np.exp(log_t[0]))
    return t0


@dataclass
class CmrAtBudget:
    budget: float  # t
    cmr: float | None
    tolerance: float | None


def cmr_at(surface, t_budget: float, grid: np.ndarray, epsilon: float, lam: float | None) -> CmrAtBudget:
    """The largest ratio that is tolerated at ``t_budget`` and, unless ``lam`` is None, feasible
    under the Lagrangian with that λ."""
    tolerated = tolerance_ratio(surface, t_budget, epsilon)
    if tolerated is None or lam is None:
        return CmrAtBudget(t_budget, tolerated, tolerated)
    if stopping_tokens(surface, np.array([tolerated]), grid, t_budget, epsilon, lam)[0] >= t_budget:
        return CmrAtBudget(t_budget, tolerated, tolerated)
    below = RATIO_GRID[RATIO_GRID < tolerated]
    feasible = below[stopping_tokens(surface, below, grid, t_budget, epsilon, lam) >= t_budget]
    return CmrAtBudget(t_budget, float(feasible[-1]) if len(feasible) else None, tolerated)


def extrapolate_cmr(points: list[CmrAtBudget], t_target: float) -> tuple[float | None, Fit | None]:
    """R_CMR(t) = α4·t^s4 + β3 (Gu et al. §5) over the budgets that have a CMR, at t_target."""
    have = [p for p in points if p.cmr is not None]
    if len(have) < 4:
        return None, None
    t = np.array([p.budget for p in have])
    r = np.array([p.cmr for p in have])
    if np.ptp(r) < 1e-6:  # a constant CMR (often 1.0, or a clamp): the law is flat
        return float(r[-1]), None
    law = fit_power_law(t, r)
    return float(np.clip(law(t_target), 0.0, 1.0)), law
