"""The planner against reality: `adapt plan` chooses a ratio from pilots at budget T, then a dense
sweep of real runs at the target 4T measures the largest ratio whose general-loss rise stays
within ε. Resumable: pilots and sweep runs are adapt run directories, so a killed benchmark
continues where it stopped (the plan's pilots are reused, finished sweep runs are skipped).

    python -m benchmarks.planner_real [--recipe recipes/plan_embedded.yaml] [--ratios 0,0.1,...,1]

Writes benchmarks/results/planner_real.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from adapt.fileio import write_json
from adapt.planner.sweep import run_plan, trajectory
from adapt.recipe import load_recipe
from adapt.recipe.load import LoadedRecipe, validate_data
from adapt.recipe.schema import Recipe
from adapt.train.stages import train
from adapt.train.runner import run_dir_of
from adapt.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def sweep_recipe(loaded: LoadedRecipe, ratio: float, sweep_dir: Path) -> LoadedRecipe:
    """The recipe at the target budget and one domain share, evaluated at its start and end only."""
    data = loaded.recipe.model_dump(mode="json")
    domain = data["data"]["eval"][loaded.recipe.plan.domain_eval]["source"]
    general = data["data"]["eval"][loaded.recipe.plan.general_eval]["source"]
    data["data"]["mixture"] = {domain: ratio, general: round(1.0 - ratio, 6)}
    data["train"].update(eval_steps=100_000, save_steps=100_000, output_dir=str(sweep_dir / f"R{ratio:.3f}"))
    data["tracking"]["enabled"] = False
    return LoadedRecipe(validate_data(data, Recipe, loaded.path, {}), loaded.path, loaded.lines)


def largest_within(ratios: list[float], rises: list[float], epsilon: float) -> float | None:
    """The largest R with a general-loss rise ≤ ε, interpolating linearly at the last crossing."""
    r, g = np.asarray(ratios), np.asarray(rises)
    within = np.nonzero(g <= epsilon)[0]
    if len(within) == 0:
        return None
    i = within[-1]
    if i == len(r) - 1:
        return float(r[-1])
    return float(r[i] + (epsilon - g[i]) * (r[i + 1] - r[i]) / (g[i + 1] - g[i]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "plan_embedded.yaml"))
    parser.add_argument("--ratios", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    loaded = load_recipe(args.recipe, ["tracking.enabled=false", *args.overrides])
    started = time.time()
    outcome = run_plan(loaded)
    plan = outcome.plan
    plan_seconds = time.time() - started

    sweep_dir = Path(str(run_dir_of(loaded)) + "-sweep")
    rows = []
    for ratio in [float(x) for x in args.ratios.split(",")]:
        run = sweep_recipe(loaded, ratio, sweep_dir)
        print(f"benchmark: sweep run at R={ratio:g}, {run.recipe.train.max_tokens:,} tokens")
        done = train(run)
        points = trajectory(read_metrics(done.run_dir / "metrics.jsonl"), loaded.recipe.plan.domain_eval,
                            loaded.recipe.plan.general_eval)
        rows.append({"ratio": ratio, "tokens": points["tokens"][-1],
                     "domain_change": points["domain"][-1] - points["domain"][0],
                     "domain_change_rel": points["domain"][-1] / points["domain"][0] - 1,
                     "general_change": points["general"][-1] - points["general"][0]})
    epsilon = plan["epsilon"]
    actual = largest_within([r["ratio"] for r in rows], [r["general_change"] for r in rows], epsilon)
    result = {
        "time": time.time(), "recipe": str(args.recipe), "overrides": args.overrides,
        "pilot_tokens": plan["t_ref"], "target_tokens": plan["target_tokens"], "epsilon": epsilon,
        "planned_ratio": plan["ratio"], "interval": plan["interval"], "method": plan["method"],
        "quality": plan["quality"], "dcpt_ratio": plan["dcpt"]["ratio"], "cmr_by_lambda": plan["cmr_by_lambda"],
        "actual_ratio": actual, "error": None if actual is None else plan["ratio"] - actual,
        "plan_seconds": round(plan_seconds, 1), "total_seconds": round(time.time() - started, 1), "sweep": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "planner_real.json", result)
    print(f"\n{'R':>6}{'Δdomain':>10}{'Δdomain %':>11}{'Δgeneral':>10}   (real runs at {plan['target_tokens']:,.0f} tokens)")
    for r in rows:
        print(f"{r['ratio']:>6.2f}{r['domain_change']:>+10.3f}{r['domain_change_rel']:>+11.1%}{r['general_change']:>+10.3f}")
    interval = plan["interval"]
    print(f"\nplanned CMR {plan['ratio']:.3f} [{interval['low']}, {interval['high']}] ({plan['method']}, "
          f"fit {plan['quality']['verdict']}); D-CPT {plan['dcpt']['ratio']}")
    print(f"actual largest ratio within ε={epsilon:g}: {actual}; error {result['error']}")
    print(f"written to {RESULTS / 'planner_real.json'}")


if __name__ == "__main__":
    main()
