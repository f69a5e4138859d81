"""Functional forms of the CMR scaling law and their least-squares fits (numpy and scipy only).

Notation as in Gu et al. 2024, "CMR Scaling Law: Predicting Critical Mixture Ratios for Continual
Pre-training of Language Models" (arXiv 2407.17467): R is the domain share of the CPT tokens, T
the training tokens, ΔL a loss change against the base model before CPT. T enters every fit as
``t = T / T_ref`` (``T_ref``: the largest pilot budget), so that the coefficients stay of order
one and the fits are well conditioned; the exponents are the same in either unit.

- ratio law at fixed T (§4):          ΔL(R) = α·R^s + β
- domain loss against tokens (§4):    ΔL_dom(t) = α1·t^s1 + β1
- general loss against tokens (§4):   ΔL_gen(t) = α2·t^s2 + α3·t^s3 + β2   (rises, then falls)
- CMR against budget (§5):            R_CMR(t) = α4·t^s4 + β3
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import minimize, minimize_scalar

# Bounds on the exponents. Unbounded, a fit on five or six points drives s to ±50 and α to
# 1e-30: a perfect fit that extrapolates to nonsense.
RATIO_EXPONENT = (0.2, 4.0)
# Token exponents: a loss change that grows like t^3 fits a short pilot and explodes at 4x its
# budget. Forgetting that keeps growing may do so sub-linearly, hence the small positive bound.
TOKEN_EXPONENT = (-2.0, 0.5)
# The log form ΔL(R) = α·ln(R + δ) + β: two parameters, linear in them, so it always fits.
LOG_OFFSET = 0.05
MIN_EXPONENT_GAP = 0.2


@dataclass
class Fit:
    """A fitted law: its name, parameters, the points it was fitted on and how well it fits."""

    form: str
    params: dict[str, float]
    x: np.ndarray
    y: np.ndarray
    notes: list[str] = field(default_factory=list)

    def __call__(self, x) -> np.ndarray:
        return FORMS[self.form](np.asarray(x, dtype=float), **self.params)

    @property
    def r2(self) -> float:
        return r_squared(self.y, self(self.x))

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean((self.y - self(self.x)) ** 2)))

    def summary(self) -> dict:
        return {"form": self.form, "params": {k: float(v) for k, v in self.params.items()},
                "r2": self.r2, "rmse": self.rmse, "range": float(np.ptp(self.y)), "y_last": float(self.y[-1]), "points": int(len(self.x)), "notes": list(self.notes)}


def r_squared(y: np.ndarray, predicted: np.ndarray) -> float:
    total = float(np.sum((y - np.mean(y)) ** 2))
    residual = float(np.sum((y - predicted) ** 2))
    return 1.0 - residual / total if total > 0 else (1.0 if residual == 0 else 0.0)


def _ratio_power(r, alpha, s, beta):
    return alpha * np.power(np.clip(r, 0.0, None), s) + beta


def _ratio_log(r, alpha, beta):
    return alpha * np.log(np.clip(r, 0.0, None) + LOG_OFFSET) + beta


def _power(t, alpha, s, beta):
    return alpha * np.power(t, s) + beta


def _two_power(t, alpha_a, s_a, alpha_b, s_b, beta):
    return alpha_a * np.power(t, s_a) + alpha_b * np.power(t, s_b) + beta


FORMS = {"ratio_power": _ratio_power, "ratio_log": _ratio_log, "power": _power, "two_power": _two_power}


def _linear_fit(columns: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares coefficients of y on ``columns`` plus a constant, and the residual sum."""
    basis = np.column_stack(columns + [np.ones_like(y)])
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return coef, float(np.sum((basis @ coef - y) ** 2))


def _best_exponent(x: np.ndarray, y: np.ndarray, bounds: tuple[float, float]) -> float:
    """Variable projection (Golub and Pereyra 1973): for a fixed exponent s, α and β of
    α·x^s + β are a linear least-squares problem, so only s is searched, on a grid and then
    with a bounded scalar minimiser. Global in s, and thousands of times faster than a
    three-parameter nonlinear fit from several starts."""
    sse = lambda s: _linear_fit([np.power(x, s)], y)[1]  # noqa: E731
    grid = np.linspace(bounds[0], bounds[1], 61)
    grid = grid[np.abs(grid) > 1e-6]  # x^0 is the constant column again
    columns = np.power(x[None, :], grid[:, None])  # every grid exponent at once, in closed form
    centred = columns - columns.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    variance = np.maximum(np.sum(centred ** 2, axis=1), 1e-300)
    values = np.sum(yc ** 2) - np.sum(centred * yc, axis=1) ** 2 / variance
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    result = minimize_scalar(sse, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    return float(result.x) if result.fun < values[i] else float(grid[i])


def _power_fit(x, y, bounds, form: str) -> Fit:
    s = _best_exponent(x, y, bounds)
    (alpha, beta), _ = _linear_fit([np.power(x, s)], y)
    return Fit(form, {"alpha": float(alpha), "s": s, "beta": float(beta)}, x, y)


def fit_ratio_law(ratios, losses) -> Fit:
    """ΔL(R) = α·R^s + β at one budget (Gu et al. §4), with s bounded to ``RATIO_EXPONENT``.

    With a handful of ratios the exponent is poorly determined; when it lands on a bound the law
    falls back to the log form α·ln(R + δ) + β, and the fit's notes say so."""
    r, y = np.asarray(ratios, dtype=float), np.asarray(losses, dtype=float)
    if len(r) < 3:
        raise ValueError("the ratio law needs at least 3 ratios")
    fit = _power_fit(r, y, RATIO_EXPONENT, "ratio_power")
    lo, hi = RATIO_EXPONENT
    if min(fit.params["s"] - lo, hi - fit.params["s"]) > 1e-3:
        return fit
    (alpha, beta), _ = _linear_fit([np.log(r + LOG_OFFSET)], y)
    return Fit("ratio_log", {"alpha": float(alpha), "beta": float(beta)}, r, y,
               notes=[f"exponent reached its bound {fit.params['s']:.2f}; fell back to α·ln(R+{LOG_OFFSET})+β"])


class InterpolatedFit(Fit):
    """A shape-preserving (PCHIP) curve through the points: where the ratio law misses the pilots
    by a sizeable part of ε, placing ε on the law would place it on the misfit."""

    def __call__(self, x) -> np.ndarray:
        return PchipInterpolator(self.x, self.y, extrapolate=True)(np.asarray(x, dtype=float))


def fit_ratio_curve(ratios, losses, max_misfit: float | None) -> Fit:
    """The ratio law, or a PCHIP interpolation of the pilots when the law misses one of them by
    more than ``max_misfit`` (the notes say so)."""
    law = fit_ratio_law(ratios, losses)
    if max_misfit is None:
        return law
    misfit = float(np.max(np.abs(law(law.x) - law.y)))
    if misfit <= max_misfit:
        return law
    order = np.argsort(law.x)
    return InterpolatedFit("pchip", {}, law.x[order], law.y[order],
                           notes=[f"the {law.form} law missed a pilot by {misfit:.3f} nats; interpolated the pilots"])


def fit_power_law(t, losses) -> Fit:
    """y = α·t^s + β: the domain loss against tokens (α1, s1, β1), and R_CMR(t) (α4, s4, β3)."""
    t, y = np.asarray(t, dtype=float), np.asarray(losses, dtype=float)
    if len(t) < 3:
        raise ValueError("a power law needs at least 3 points")
    return _power_fit(t, y, TOKEN_EXPONENT, "power")


def fit_general_law(t, losses) -> Fit:
    """ΔL_gen(t) = α2·t^s2 + α3·t^s3 + β2 (Gu et al. §4): the sum of a forgetting term and a
    recovery term, so that the general loss can rise and then fall (the stability gap).

    Five parameters on a dozen points overfit easily: the two-term law is kept only when it
    explains clearly more than a single power law (a 20% cut in the residual). Its exponents are
    searched by variable projection on a grid of pairs, then refined with Nelder-Mead; they are
    kept ``MIN_EXPONENT_GAP`` apart, where the two columns would be nearly the same."""
    t, y = np.asarray(t, dtype=float), np.asarray(losses, dtype=float)
    single = fit_power_law(t, y)
    if len(t) < 6:
        single.notes.append("fewer than 6 points: the single power law α·t^s+β stands in")
        return single
    lo, hi = TOKEN_EXPONENT

    def sse(pair) -> float:
        a, b = pair
        if not (lo <= a <= hi and lo <= b <= hi) or b - a < MIN_EXPONENT_GAP or min(abs(a), abs(b)) < 1e-6:
            return np.inf
        return _linear_fit([np.power(t, a), np.power(t, b)], y)[1]

    grid = np.linspace(lo, hi, 25)
    pairs = [(a, b) for a in grid for b in grid if b - a >= MIN_EXPONENT_GAP]
    start = min(pairs, key=sse)
    result = minimize(sse, start, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-14})
    a, b = result.x if result.fun <= sse(start) else start
    (alpha_a, alpha_b, beta), two_sse = _linear_fit([np.power(t, a), np.power(t, b)], y)
    single_sse = float(np.sum((single(t) - y) ** 2))
    if two_sse < 0.8 * single_sse:
        return Fit("two_power", {"alpha_a": float(alpha_a), "s_a": float(a), "alpha_b": float(alpha_b),
                                 "s_b": float(b), "beta": float(beta)}, t, y)
    single.notes.append("the two-term law did not fit clearly better; using α·t^s+β")
    return single
