"""The planner on synthetic pilots from known parameters: CMR error against noise, and fit time.

For each noise level (a share of each loss change ΔL, as Gaussian noise), several seeds of pilot
data are drawn from the law's own surface (``LawSurface``, where the CMR is known exactly) and
from a saturating one (``SaturatingSurface``, where the truth is the largest tolerated ratio). The
fit time is that of one whole plan without bootstrap, on 10 ratios × 10 eval points (100 points),
against the time of a plain numpy least-squares line fit on the same points (the baseline).

    python -m benchmarks.planner [--size quick] [--seeds 5]

Writes benchmarks/results/planner.json and prints a table.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from adapt.planner.cmr import Surface, cmr_at, token_grid
from adapt.planner.dcpt import dcpt_ratio
from adapt.planner.plan import PlanSpec, make_plan
from adapt.planner.synthetic import LawSurface, SaturatingSurface, largest_tolerated, sample_pilots
from benchmarks.common import add_common_arguments, print_table, write_result

RATIOS = [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]
NOISE = [0.0, 0.005, 0.01, 0.02, 0.05]


def truth(surface, t: float, epsilon: float) -> float | None:
    if isinstance(surface, LawSurface):
        return cmr_at(surface, t, token_grid(0.1, max(t, 1.0)), epsilon, 100.0).cmr
    return largest_tolerated(surface, t, epsilon)


def errors(surface, noise: float, seeds: int, target: float, bootstrap: int) -> dict:
    found, poor, seconds = [], 0, []
    for seed in range(seeds):
        plan = make_plan(sample_pilots(surface, RATIOS, noise=noise, seed=seed),
                         PlanSpec(target_tokens=target * 1e6, bootstrap=bootstrap, seed=seed))
        found.append(plan["ratio"] - truth(surface, target, 0.05))
        poor += plan["quality"]["verdict"] == "poor"
        seconds.append(plan["fit_seconds"])
    found = np.abs(found)
    return {"mean_abs_error": float(found.mean()), "max_abs_error": float(found.max()), "poor_fits": poor,
            "seeds": seeds, "seconds_per_plan": float(np.mean(seconds))}


def _median_seconds(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def fit_time(repeats: int = 3) -> dict:
    """Seconds for the CMR fit (token laws, ratio laws, CMR), the D-CPT fit, and a whole plan
    without bootstrap, on 100 pilot points; the baseline is a numpy line fit of the same points."""
    data = sample_pilots(LawSurface(), np.linspace(0, 1, 10), points=10)
    t_target = 1.0
    grid = token_grid(0.1, 1.0)
    x = np.concatenate([p.tokens for p in data.pilots])
    y = np.concatenate([p.general for p in data.pilots])
    r = np.concatenate([np.full(len(p.tokens), p.ratio) for p in data.pilots])
    seconds = {
        "cmr_fit": _median_seconds(lambda: cmr_at(Surface(data.pilots, data.t_ref), t_target, grid, 0.05, 100.0), repeats),
        "dcpt_fit": _median_seconds(lambda: dcpt_ratio(x, r, y + 3.0, y + 2.5, 2.5, data.t_ref, t_target, 0.05), repeats),
        "plan_without_bootstrap": _median_seconds(lambda: make_plan(data, PlanSpec(target_tokens=1e6, bootstrap=0)), repeats),
    }
    baseline = _median_seconds(lambda: [np.polyfit(x, y, 1) for _ in range(100)], repeats) / 100
    return {"points": len(x), "seconds": seconds, "baseline_polyfit_seconds": baseline,
            "cmr_fit_ratio_to_baseline": seconds["cmr_fit"] / baseline}


SEEDS = {"tiny": 1, "quick": 1, "full": 5}
NOISE_BY_SIZE = {"tiny": [0.01], "quick": [0.0, 0.01, 0.05], "full": NOISE}
TARGETS = {"tiny": [1.0], "quick": [1.0, 4.0], "full": [1.0, 4.0]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--seeds", type=int, help="pilot draws per setting (default by --size)")
    parser.add_argument("--bootstrap", type=int, default=0)
    parser.add_argument("--noise", help="comma-separated noise levels (default by --size)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    seeds = args.seeds or SEEDS[args.size]
    noises = [float(n) for n in args.noise.split(",")] if args.noise else NOISE_BY_SIZE[args.size]
    rows = []
    for name, surface in (("law", LawSurface()), ("saturating", SaturatingSurface())):
        for target in TARGETS[args.size]:
            for noise in noises:
                rows.append({"surface": name, "target_over_pilot_budget": target, "noise": noise,
                             **errors(surface, noise, seeds, target, args.bootstrap)})
    timing = fit_time(1 if args.size == "tiny" else 3)
    summary = {"max_abs_error": max(r["max_abs_error"] for r in rows), **timing}
    path = write_result("planner", args.size, rows, summary, args.results)
    print_table(rows, [("surface", "surface", ""), ("target_over_pilot_budget", "target/T", "g"),
                       ("noise", "noise", ".3f"), ("mean_abs_error", "mean |err|", ".4f"),
                       ("max_abs_error", "max |err|", ".4f"), ("poor_fits", "poor fits", "d"),
                       ("seconds_per_plan", "s/plan", ".2f")])
    print(f"\non {timing['points']} pilot points: " + ", ".join(f"{k} {v:.2f} s" for k, v in timing["seconds"].items())
          + f" (the CMR fit is {timing['cmr_fit_ratio_to_baseline']:,.0f}x a numpy line fit of the same points)  -> {path}")
    return summary


if __name__ == "__main__":
    main()
