"""Adaptation quality end to end: CPT on embedded C, full fine-tuning and LoRA, at several replay
shares and at the planner's, measured on held-out domain and general files.

- Base: the built-in model pretrained longer, on ``../shared/corpora/general`` (the Python docs)
  plus the standard library (3.4M tokens, as in the issue's hand-written reference).
- CPT: ``../shared/corpora/embedded``, 700k tokens per run, replay of the base's own corpus at
  0%, 5%, 25% and 50% of the tokens, and at the share ``adapt plan`` picks from its pilots
  (100k-token pilots at six domain shares; the target is the 700k-token run).
- Report per run: domain and general held-out loss change (adapt's evaluation report), whether
  the general rise is within ε, and code-completion accuracy on the domain files.

Every run is an adapt run directory under ``--work`` (default ``benchmarks/runs/adaptation``):
a killed benchmark resumes where it stopped, and finished runs are read back, not retrained.

    python -m benchmarks.adaptation [--methods full,lora] [--replay 0,0.05,0.25,0.5] [--no-plan]

About an hour on 2 CPU cores (the base model takes a quarter of it, once).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from benchmarks.common import ROOT, SHARED_CORPORA, note, print_table, write_result

EPSILON = 0.05  # nats of general held-out loss
# The reference: a 5.3M model, base on 3.4M general tokens, then 700k CPT tokens.
REFERENCE = {("full", 0.0): (-0.48, 1.34), ("full", 0.5): (-0.40, 0.105),
             ("lora", 0.0): (-0.24, 0.50), ("lora", 0.5): (-0.22, 0.077)}


def recipe(method: str, domain_share: float, work: Path, tokens: int) -> dict:
    adapter = {"method": "full"} if method == "full" else {"method": "lora", "r": 64, "alpha": 128,
                                                            "target_modules": "all-linear"}
    return {
        "name": f"adapt-{method}", "kind": "cpt",
        "model": {"base_model": "builtin", "builtin": {"corpus": ["stdlib", str(SHARED_CORPORA / "general")],
                                                       "pretrain_tokens": 3_400_000}},
        "adapter": adapter,
        "data": {
            "sources": [{"name": "embedded", "kind": "files", "root": str(SHARED_CORPORA / "embedded"),
                         "include": ["**/*.c", "**/*.h", "**/*.cpp", "**/*.S", "**/*.ino"],
                         "heldout": {"fraction": 0.05, "max_files": 40}},
                        {"name": "general", "kind": "builtin_corpus"}],
            "mixture": {"embedded": round(domain_share, 6), "general": round(1.0 - domain_share, 6)},
            "eval": {"domain": {"source": "embedded", "max_tokens": 16000, "max_tokens_per_file": 1000},
                     "general": {"source": "general", "max_tokens": 16000, "max_tokens_per_file": 1000}},
        },
        "train": {"seq_len": 512, "batch_size": 8, "max_tokens": tokens, "lr": 1e-3 if method == "full" else 2e-3,
                  "schedule": "cosine", "warmup_ratio": 0.05, "eval_steps": 40, "save_steps": 40,
                  "output_dir": str(work / f"{method}-R{domain_share:.3f}")},
        "evaluation": {"epsilon": EPSILON, "completion": {"max_samples": 48}},
        "plan": {"ratios": [0.0, 0.25, 0.5, 0.75, 0.9, 1.0], "pilot_tokens": 100_000, "eval_steps": 3,
                 "epsilon": EPSILON, "bootstrap": 50, "output": str(work / f"{method}.plan.yaml")},
        "tracking": {"experiment": "bench-adaptation"},
    }


def load(spec: dict, work: Path):
    from adapt.recipe import load_recipe

    path = work / f"{spec['name']}-{spec['data']['mixture']['embedded']:.3f}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_recipe(path)


def measured(method: str, replay: float, source: str, run_dir: Path) -> dict:
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    domain, general = report["changes"]["domain"], report["changes"]["general"]
    completion = report["after"]["sets"]["domain"].get("completion", {})
    completion_before = report["before"]["sets"]["domain"].get("completion", {})
    reference = REFERENCE.get((method, round(replay, 3)))
    return {"method": method, "replay": replay, "chosen_by": source,
            "domain_loss_before": domain["loss_before"], "domain_change": domain["relative"],
            "general_rise": general["delta"], "within_epsilon": general["delta"] <= EPSILON,
            "completion_token_accuracy_before": completion_before.get("token_accuracy"),
            "completion_token_accuracy": completion.get("token_accuracy"),
            "line_exact_match": completion.get("line_exact_match"),
            "reference_domain_change": reference[0] if reference else None,
            "reference_general_rise": reference[1] if reference else None, "run_dir": str(run_dir)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="full,lora")
    parser.add_argument("--replay", default="0,0.05,0.25,0.5", help="replay shares (general tokens / all)")
    parser.add_argument("--tokens", type=int, default=700_000, help="CPT tokens per run")
    parser.add_argument("--no-plan", action="store_true", help="skip adapt plan and the run at its ratio")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "runs" / "adaptation")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    from adapt.planner.sweep import run_plan
    from adapt.train.stages import train

    args.work.mkdir(parents=True, exist_ok=True)
    started, rows, plans = time.time(), [], {}
    for method in args.methods.split(","):
        shares = [(float(r), "fixed") for r in args.replay.split(",")]
        if not args.no_plan:
            note(f"{method}: adapt plan (pilots of 100k tokens at six domain shares)")
            plan = run_plan(load(recipe(method, 0.75, args.work, args.tokens), args.work)).plan
            plans[method] = {k: plan[k] for k in ("ratio", "interval", "method", "quality", "epsilon")}
            shares.append((round(1.0 - plan["ratio"], 4), "planner"))
        for replay, source in shares:
            loaded = load(recipe(method, 1.0 - replay, args.work, args.tokens), args.work)
            note(f"{method}: CPT with {replay:.1%} replay ({source}), {args.tokens:,} tokens")
            outcome = train(loaded)
            rows.append(measured(method, replay, source, outcome.run_dir))
    planner_rows = [r for r in rows if r["chosen_by"] == "planner"]
    no_replay = [r for r in rows if r["replay"] == 0.0]
    summary = {
        "epsilon": EPSILON, "plans": plans,
        "planner_meets_target": all(r["domain_change"] <= -0.30 and r["within_epsilon"] for r in planner_rows)
        if planner_rows else None,
        "no_replay_exceeds_epsilon": all(not r["within_epsilon"] for r in no_replay) if no_replay else None,
        "hours": round((time.time() - started) / 3600, 2),
    }
    path = write_result("adaptation", "full", rows, summary, args.results, tokens_per_run=args.tokens)
    print_table(rows, [("method", "method", ""), ("replay", "replay", ".1%"), ("chosen_by", "chosen by", ""),
                       ("domain_change", "Δdomain", "+.1%"), ("general_rise", "Δgeneral (nats)", "+.3f"),
                       ("within_epsilon", f"≤ε={EPSILON}", ""), ("completion_token_accuracy", "compl. acc", ".3f"),
                       ("reference_domain_change", "ref Δdomain", "+.0%"),
                       ("reference_general_rise", "ref Δgeneral", "+.3f")])
    print(f"-> {path}")
    return summary


if __name__ == "__main__":
    main()
