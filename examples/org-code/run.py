"""The org-code example from start to finish: make the repositories, look at the data report,
plan the replay ratio, train with it, evaluate, export. `python run.py --quick` is CI's smoke test."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from steps import QUICK, adapt  # noqa: E402

from make_repos import make  # noqa: E402

PLAN_QUICK = ["plan.pilot_tokens=16384", "plan.ratios=[0.5, 0.75, 1.0]", "plan.eval_steps=1", "plan.bootstrap=0"]


def main(quick: bool) -> None:
    import os

    os.chdir(HERE)
    make(HERE / "repos")
    extra = QUICK if quick else []
    adapt("data", "recipe.yaml", *extra)
    report = json.loads(Path("runs/org-code/data_report.json").read_text())

    # The planner weighs one domain source against replay; the two repositories then share the
    # domain part in proportion to their tokens.
    planned = adapt("plan", "recipe.yaml", "data.mixture={progress-ui: 0.75, general: 0.25}", *extra,
                    *(PLAN_QUICK if quick else []), check=not quick) == 0
    if planned:
        ratio = yaml.safe_load(Path("mixtures/org-code.plan.yaml").read_text())["mixture"]["progress-ui"]
    else:  # --quick: two-step pilots of a barely pretrained model are too noisy to fit
        ratio = 0.75
        print(f"(--quick: no plan from pilots this short; using the domain share {ratio})")
    tokens = {name: report["sources"][name]["tokens"] for name in ("progress-ui", "config-loader")}
    shares = {name: round(ratio * n / sum(tokens.values()), 4) for name, n in tokens.items()}
    shares["general"] = round(1 - sum(shares.values()), 4)
    mixture = "{" + ", ".join(f"{name}: {share}" for name, share in shares.items()) + "}"
    print(f"\nplanned domain share {ratio:.3f} -> mixture {mixture}")

    adapt("train", "recipe.yaml", f"data.mixture={mixture}", *extra)
    adapt("export", "runs/org-code", "--merged")
    print(Path("runs/org-code/eval/report.md").read_text())


if __name__ == "__main__":
    main("--quick" in sys.argv)
