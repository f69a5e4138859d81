"""From pilots to a plan: checks on the data, both laws, the CMR with its confidence interval, and
the diagnostics that say how far to trust it. numpy and scipy only."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from adapt.planner.cmr import (DEFAULT_LAMBDA, LAMBDA_SWEEP, MIN_POINTS, MIN_RATIOS, Pilot,
                               PlannerError, Surface, cmr_at, extrapolate_cmr, stopping_tokens,
                               token_grid)
from adapt.planner.dcpt import dcpt_ratio

# A fit is called poor, and the plan says so, past any of these.
MIN_R2 = 0.9
MAX_METHOD_GAP = 0.1     # CMR-law extrapolation against the token laws' own extrapolation
MAX_CI_WIDTH = 0.25
MAX_RATIO_MISFIT = 0.25  # of ε: past it the ratio law gives way to interpolating the pilots
MAX_LOO_SHARE = 0.5      # of ε: a ratio law that cannot predict a left-out pilot to ε/2 cannot place ε
EXTRAPOLATION_BUDGETS = 8


@dataclass
class PlanSpec:
    """What the plan optimises. ``epsilon`` is absolute (nats) unless ``tolerance`` is
    ``relative``, where it is a share of the base model's general loss (as D-CPT does)."""

    target_tokens: float
    epsilon: float = 0.05
    tolerance: str = "absolute"
    lam: float = DEFAULT_LAMBDA
    constraint: str = "tolerance"  # or "lagrangian": the CMR must also be feasible at λ
    bootstrap: int = 50
    seed: int = 0


@dataclass
class PilotSet:
    """Pilot trajectories with the base model's losses (T = 0), shared by every pilot."""

    pilots: list[Pilot]
    base_domain: float
    base_general: float

    @property
    def t_ref(self) -> float:
        return float(max(p.tokens.max() for p in self.pilots))


def epsilon_abs(spec: PlanSpec, base_general: float) -> float:
    return spec.epsilon * base_general if spec.tolerance == "relative" else spec.epsilon


def check_pilots(data: PilotSet) -> list[str]:
    """Refuse data no law can be fitted to; return milder warnings for the diagnostics."""
    ratios = sorted({p.ratio for p in data.pilots})
    if len(ratios) < MIN_RATIOS:
        raise PlannerError(f"only {len(ratios)} distinct ratio(s) ({', '.join(map(str, ratios))})",
                           f"add pilots at {MIN_RATIOS} or more ratios, e.g. plan.ratios=[0,0.25,0.5,0.75,1]")
    for p in data.pilots:
        if len(p.tokens) < MIN_POINTS:
            raise PlannerError(f"the pilot at R={p.ratio} has {len(p.tokens)} eval point(s) after step 0",
                               f"evaluate more often (lower plan.eval_steps) or raise plan.pilot_tokens, "
                               f"for at least {MIN_POINTS} points per pilot")
        if not (np.all(np.isfinite(p.domain)) and np.all(np.isfinite(p.general))):
            raise PlannerError(f"the pilot at R={p.ratio} has NaN or infinite losses",
                               "lower train.lr for the pilots and run adapt plan again")
    swing = max(max(np.abs(p.domain).max(), np.abs(p.general).max()) for p in data.pilots)
    if swing < 1e-3:
        raise PlannerError(f"the loss curves are flat (largest change {swing:.2g} nats)",
                           "raise plan.pilot_tokens or train.lr so the pilots move the losses")
    final = np.array([p.domain[-1] for p in sorted(data.pilots, key=lambda p: p.ratio)])
    if np.ptp(final) == 0 or np.corrcoef(sorted(p.ratio for p in data.pilots), final)[0, 1] > 0:
        raise PlannerError("the domain loss does not fall as the domain share grows",
                           "check that the domain eval set holds the domain source's held-out files, "
                           "and raise plan.pilot_tokens so the pilots learn the domain")
    warnings = []
    rises = np.sum(np.diff(final) > 0.02 * max(np.ptp(final), 1e-9))
    if rises:
        warnings.append(f"the final domain loss is not monotone in R ({rises} rise(s) between neighbours)")
    return warnings


def make_plan(data: PilotSet, spec: PlanSpec) -> dict:
    """Fit both laws and choose the ratio. Raises PlannerError when no ratio is feasible."""
    started = time.perf_counter()
    warnings = check_pilots(data)
    epsilon = epsilon_abs(spec, data.base_general)
    t_ref = data.t_ref
    t_target = spec.target_tokens / t_ref
    grid = token_grid(float(min(p.tokens.min() for p in data.pilots)) / t_ref, max(t_target, 1.0))
    surface = Surface(data.pilots, t_ref, MAX_RATIO_MISFIT * epsilon)

    chosen = _cmr(surface, grid, t_target, epsilon, spec.lam if spec.constraint == "lagrangian" else None)
    if chosen["ratio"] is None:
        excess = float(surface.general(0.0, t_target))
        raise PlannerError(
            f"no feasible ratio: even the lowest domain share raises the general loss by {excess:.3f} nats "
            f"at the target budget, more than the tolerance ε = {epsilon:.3f}",
            "raise plan.epsilon, lower train.lr, or use a stronger replay source")
    interval = _bootstrap(data, spec, surface, grid, t_target, epsilon)
    t0 = stopping_tokens(surface, np.array([chosen["ratio"]]), grid, t_target, epsilon, spec.lam)[0]
    fits = _fit_report(surface, min(t_target, 1.0))
    loo = _leave_one_ratio_out(surface)
    dcpt = _dcpt(data, t_ref, t_target, epsilon)
    lambdas = {str(lam): _cmr(surface, grid, t_target, epsilon, lam)["ratio"]
               for lam in sorted(set(LAMBDA_SWEEP) | {spec.lam})}
    quality = _quality(fits, chosen, interval, loo, epsilon)
    return {
        "ratio": round(float(chosen["ratio"]), 4),
        "method": chosen["method"],
        "interval": interval,
        "target_tokens": float(spec.target_tokens),
        "epsilon": epsilon,
        "tolerance": spec.tolerance,
        "lambda": spec.lam,
        "constraint": spec.constraint,
        # T0: where F stopped decreasing before the budget; None: F still falls there (feasible).
        "lagrangian_t0": None if np.isinf(t0) else float(t0 * t_ref),
        "lagrangian_feasible": bool(np.isinf(t0)),
        "base_loss": {"domain": data.base_domain, "general": data.base_general},
        "predicted_change": {"domain": float(surface.domain(chosen["ratio"], t_target)),
                             "general": float(surface.general(chosen["ratio"], t_target))},
        "quality": quality,
        "warnings": warnings + quality["reasons"],
        "cmr_by_lambda": lambdas,
        "cmr_by_budget": chosen["by_budget"],
        "extrapolation": chosen["extrapolation"],
        "fits": fits,
        "leave_one_ratio_out": loo,
        "dcpt": dcpt,
        "pilots": [{"ratio": p.ratio, "points": int(len(p.tokens)), "max_tokens": float(p.tokens.max())}
                   for p in data.pilots],
        "t_ref": t_ref,
        "fit_seconds": round(time.perf_counter() - started, 3),
    }


def _cmr(surface: Surface, grid: np.ndarray, t_target: float, epsilon: float, lam: float | None) -> dict:
    """The CMR at the target: direct when the pilots reach it, else the R_CMR(T) law."""
    if t_target <= 1.0 + 1e-9:
        at = cmr_at(surface, t_target, grid, epsilon, lam)
        return _fallback({"ratio": at.cmr, "method": "direct", "by_budget": [], "extrapolation": None}, at)
    budgets = np.geomspace(max(2 * grid[0], 0.25), 1.0, EXTRAPOLATION_BUDGETS)
    points = [cmr_at(surface, float(b), grid, epsilon, lam) for b in budgets]
    by_law, law = extrapolate_cmr(points, t_target)
    direct = cmr_at(surface, t_target, grid, epsilon, lam)  # the token laws extrapolated
    by_budget = [{"tokens": p.budget * surface.t_ref, "cmr": p.cmr} for p in points]
    extrapolation = {"cmr_law": law.summary() if law else None, "by_cmr_law": by_law,
                     "by_token_laws": direct.cmr}
    if by_law is None:
        return _fallback({"ratio": direct.cmr, "method": "token-laws", "by_budget": by_budget,
                          "extrapolation": extrapolation}, direct)
    return {"ratio": by_law, "method": "cmr-law", "by_budget": by_budget, "extrapolation": extrapolation}


def _fallback(chosen: dict, at) -> dict:
    """No tolerated ratio is Lagrangian-feasible (with noisy pilots the fitted F can turn up near
    the budget for every ratio): fall back to the tolerance set alone, and say so."""
    if chosen["ratio"] is None and at.tolerance is not None:
        return {**chosen, "ratio": at.tolerance, "method": chosen["method"] + ", tolerance only"}
    return chosen


def _bootstrap(data: PilotSet, spec: PlanSpec, surface: Surface, grid: np.ndarray, t_target: float,
               epsilon: float) -> dict:
    """A 90% interval for the CMR by the residual bootstrap over pilot points: each pilot's
    fitted curves plus its own residuals drawn with replacement, refitted from scratch. The
    eval points stay where they were, so no replicate loses the pilots' last budget."""
    rng = np.random.default_rng(spec.seed)
    values, failed = [], 0
    for _ in range(spec.bootstrap):
        pilots = []
        for p, dom, gen in zip(data.pilots, surface.domain_fits, surface.general_fits):
            t = p.tokens / data.t_ref
            pilots.append(Pilot(p.ratio, p.tokens, dom(t) + rng.choice(p.domain - dom(t), len(t)),
                                gen(t) + rng.choice(p.general - gen(t), len(t))))
        try:
            ratio = _cmr(Surface(pilots, data.t_ref, surface.max_misfit), grid, t_target, epsilon,
                         spec.lam if spec.constraint == "lagrangian" else None)["ratio"]
        except (ValueError, FloatingPointError):
            ratio = None
        if ratio is None:
            failed += 1
        else:
            values.append(ratio)
    if not values:
        return {"low": None, "high": None, "samples": spec.bootstrap, "without_cmr": failed}
    low, high = np.percentile(values, [5, 95])
    return {"low": float(low), "high": float(high), "samples": spec.bootstrap, "without_cmr": failed}


def _fit_report(surface: Surface, t_budget: float) -> dict:
    domain_fit, general_fit = surface.ratio_fits(t_budget)
    return {
        "tokens": [{"ratio": float(r), "domain": d.summary(), "general": g.summary()}
                   for r, d, g in zip(surface.ratios, surface.domain_fits, surface.general_fits)],
        "ratio_law": {"tokens": t_budget * surface.t_ref, "domain": domain_fit.summary(),
                      "general": general_fit.summary()},
    }


def _leave_one_ratio_out(surface: Surface) -> dict:
    """Refit the ratio curve at the pilots' budget without each interior ratio (one with pilots on
    both sides: leaving out an end would test extrapolation, which no plan needs); its error there."""
    errors = []
    order = np.argsort(surface.ratios)
    interior = order[1:-1] if len(surface.ratios) > MIN_RATIOS else []
    for i in interior:
        ratio = surface.ratios[i]
        domain_fit, general_fit = surface.ratio_fits(1.0, leave_out=int(i))
        errors.append({"ratio": float(ratio),
                       "domain": float(abs(domain_fit(ratio) - surface.domain_fits[i](1.0))),
                       "general": float(abs(general_fit(ratio) - surface.general_fits[i](1.0)))})
    worst = max((e["general"] for e in errors), default=None)
    return {"errors": errors, "max_general_error": worst}


def _dcpt(data: PilotSet, t_ref: float, t_target: float, epsilon: float) -> dict:
    tokens = np.concatenate([p.tokens for p in data.pilots])
    ratios = np.concatenate([np.full(len(p.tokens), p.ratio) for p in data.pilots])
    domain = np.concatenate([p.domain for p in data.pilots]) + data.base_domain
    general = np.concatenate([p.general for p in data.pilots]) + data.base_general
    choice = dcpt_ratio(tokens, ratios, domain, general, data.base_general, t_ref, t_target, epsilon)
    return {"ratio": choice.ratio, "domain": {"params": choice.domain.params, "r2": choice.domain.r2},
            "general": {"params": choice.general.params, "r2": choice.general.r2}}


def _quality(fits: dict, chosen: dict, interval: dict, loo: dict, epsilon: float) -> dict:
    reasons = []
    # R² says nothing about a curve that barely moves (the domain loss at R = 0, say): only
    # curves that move by more than ε/2 are judged.
    judged = [f[name] for f in fits["tokens"] for name in ("domain", "general") if f[name]["range"] > 0.5 * epsilon]
    worst = min((f["r2"] for f in judged), default=1.0)
    if worst < MIN_R2:
        reasons.append(f"a token law fits with R² {worst:.2f} (< {MIN_R2})")
    for name in ("domain", "general"):
        r2 = fits["ratio_law"][name]["r2"]
        if r2 < MIN_R2:
            reasons.append(f"the {name} ratio law fits with R² {r2:.2f} (< {MIN_R2})")
    if loo["max_general_error"] is not None and loo["max_general_error"] > MAX_LOO_SHARE * epsilon:
        reasons.append(f"leaving one ratio out, the general loss is predicted {loo['max_general_error']:.3f} "
                       f"off (more than {MAX_LOO_SHARE:g}·ε = {MAX_LOO_SHARE * epsilon:.3f})")
    if interval["low"] is not None and interval["high"] - interval["low"] > MAX_CI_WIDTH:
        reasons.append(f"the bootstrap interval [{interval['low']:.2f}, {interval['high']:.2f}] is wide")
    if interval["without_cmr"] > 0.2 * interval["samples"]:
        reasons.append(f"{interval['without_cmr']} of {interval['samples']} bootstrap fits found no feasible ratio")
    if "tolerance only" in chosen["method"]:
        reasons.append("no tolerated ratio is feasible under the Lagrangian at this λ: the ratio comes "
                       "from the tolerance set alone (see cmr_by_lambda)")
    ex = chosen["extrapolation"]
    if ex and ex["by_cmr_law"] is not None and ex["by_token_laws"] is not None \
            and abs(ex["by_cmr_law"] - ex["by_token_laws"]) > MAX_METHOD_GAP:
        reasons.append(f"the CMR law ({ex['by_cmr_law']:.2f}) and the token laws ({ex['by_token_laws']:.2f}) "
                       f"disagree on the extrapolated CMR")
    return {"verdict": "poor" if reasons else "good", "reasons": reasons}
