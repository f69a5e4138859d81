"""The D-CPT law (Que et al. 2024, "D-CPT Law: Domain-specific Continual Pre-Training Scaling Law
for Large Language Models", arXiv 2406.01375), at a fixed model size, as a second opinion.

    L(D, r) = E + B·r^η / D^β + C / (r + ε')^γ                                 (D-CPT eq. 3)

D is the training tokens (as t = T / T_ref) and r the share of the corpus whose loss is modelled:
the domain share R for the domain loss, the general share 1 − R for the general loss. As in the
paper (and Chinchilla before it) the fit minimises a Huber loss on log-loss residuals with
L-BFGS from a grid of starts; E, B, C, ε' are fitted in log space so they stay positive.
The ratio is the one that minimises the domain loss subject to the general-loss tolerance.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from adapt.planner.laws import r_squared

HUBER_DELTA = 1e-3
NAMES = ("log_E", "log_B", "eta", "beta", "log_C", "gamma", "log_eps")


def dcpt_loss(d, r, log_E, log_B, eta, beta, log_C, gamma, log_eps):
    d, r = np.asarray(d, dtype=float), np.clip(np.asarray(r, dtype=float), 0.0, 1.0)
    return (np.exp(log_E) + np.exp(log_B) * np.power(r, eta) / np.power(d, beta)
            + np.exp(log_C) / np.power(r + np.exp(log_eps), gamma))


def _huber(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return np.where(a <= HUBER_DELTA, 0.5 * x ** 2, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))


@dataclass
class DcptFit:
    params: dict[str, float]
    r2: float

    def __call__(self, d, r) -> np.ndarray:
        return dcpt_loss(d, r, **self.params)


def fit_dcpt(d, r, loss) -> DcptFit:
    """Huber on log residuals, L-BFGS-B from 2^3 starts over the exponents (the scales start at
    the data's own)."""
    d, r, loss = (np.asarray(a, dtype=float) for a in (d, r, loss))
    log_loss = np.log(loss)

    def objective(p):
        with np.errstate(all="ignore"):
            predicted = dcpt_loss(d, r, *p)
        if not np.all(np.isfinite(predicted)) or np.any(predicted <= 0):
            return 1e6
        return float(np.sum(_huber(np.log(predicted) - log_loss)))

    floor = np.log(max(loss.min() * 0.9, 1e-6))
    spread = np.log(max(np.ptp(loss), 1e-6))
    bounds = [(None, None), (None, None), (0.0, 3.0), (0.0, 3.0), (None, None), (0.0, 3.0), (np.log(1e-3), 0.0)]
    best = None
    for eta, beta, gamma, log_eps in itertools.product((0.5, 1.5), (0.3, 1.0), (0.2, 1.0), (np.log(0.05),)):
        start = [floor, spread, eta, beta, spread - 2, gamma, log_eps]
        result = minimize(objective, start, method="L-BFGS-B", bounds=bounds, options={"maxiter": 300})
        if best is None or result.fun < best.fun:
            best = result
    params = dict(zip(NAMES, map(float, best.x)))
    return DcptFit(params, r_squared(loss, dcpt_loss(d, r, **params)))


@dataclass
class DcptChoice:
    ratio: float | None
    domain: DcptFit
    general: DcptFit


def dcpt_ratio(tokens, ratios, domain_loss, general_loss, base_general: float, t_ref: float,
               t_target: float, epsilon: float) -> DcptChoice:
    """Fit both losses, then the R minimising the domain loss at t_target with the general loss
    within ε of the base model (None if no ratio satisfies that)."""
    d = np.asarray(tokens, dtype=float) / t_ref
    ratios = np.asarray(ratios, dtype=float)
    domain = fit_dcpt(d, ratios, domain_loss)
    general = fit_dcpt(d, 1.0 - ratios, general_loss)
    grid = np.linspace(0.0, 1.0, 201)
    allowed = general(t_target, 1.0 - grid) - base_general <= epsilon
    if not allowed.any():
        return DcptChoice(None, domain, general)
    candidates = grid[allowed]
    return DcptChoice(float(candidates[np.argmin(domain(t_target, candidates))]), domain, general)
