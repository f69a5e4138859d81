"""Infilling: FIM-trained against diffusion-adapted versions of the same base, at equal training
tokens.

Both start from the built-in base model and train on the same code for the same tokens
(``recipes/diffusion.yaml``). One keeps the causal objective and learns FIM (rate 0.5, PSM and
SPM); the other is adapted to masked diffusion. Each is then measured by adapt's own evaluation
on the same held-out (prefix, middle, suffix) samples: FIM exact match by generating after the
sentinels, diffusion exact match by iterative unmasking of a middle of the true length.

    python -m benchmarks.diffusion_infill [--tokens 300000]

Runs are adapt run directories under ``--work``; a killed benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import ROOT, note, print_table, write_result

RECIPE = ROOT / "recipes" / "diffusion.yaml"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=300_000)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "runs" / "diffusion_infill")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="recipe overrides for both runs")
    args = parser.parse_args(argv)
    from adapt.recipe import load_recipe
    from adapt.train.stages import train

    common = [f"train.max_tokens={args.tokens}", "tracking.experiment=bench-diffusion-infill", *args.overrides]
    variants = {
        "fim": ["train.objective=clm", "data.sources.0.fim.rate=0.5", "data.sources.0.fim.spm_rate=0.5"],
        "diffusion": ["train.objective=diffusion"],
    }
    started, rows = time.time(), []
    for name, overrides in variants.items():
        loaded = load_recipe(RECIPE, [*common, *overrides, f"train.output_dir={args.work / name}"])
        note(f"{name}: {args.tokens:,} training tokens")
        outcome = train(loaded)
        report = json.loads((outcome.run_dir / "eval" / "report.json").read_text())
        for set_name, entry in report["after"]["sets"].items():
            before = report["before"]["sets"][set_name].get("infill", {})
            for kind, values in entry.get("infill", {}).items():
                rows.append({"objective": name, "set": set_name, "infill": kind, "samples": values["samples"],
                             "exact_match_before": before.get(kind, {}).get("exact_match"),
                             "exact_match": values["exact_match"]})
    summary = {"tokens": args.tokens, "hours": round((time.time() - started) / 3600, 2),
               "mean_exact_match": {
                   name: _mean([r["exact_match"] for r in rows if r["objective"] == name and r["set"] == "domain"])
                   for name in variants}}
    path = write_result("diffusion_infill", "full", rows, summary, args.results)
    print_table(rows, [("objective", "objective", ""), ("set", "set", ""), ("infill", "infill", ""),
                       ("samples", "samples", "d"), ("exact_match_before", "EM before", ".3f"),
                       ("exact_match", "EM after", ".3f")])
    print(f"-> {path}")
    return summary


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


if __name__ == "__main__":
    main()
