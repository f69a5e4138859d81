"""The ``adapt`` command: subcommands only. Heavy libraries are imported inside each command,
so ``adapt --help`` and ``adapt validate`` start fast."""

from __future__ import annotations

import argparse
import json
import os
import sys

from adapt.errors import AdaptError

OVERRIDES_HELP = "overrides as key.path=value, e.g. train.max_steps=100 adapter.r=64"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may also follow an option (`adapt train r.yaml --nproc 2 train.max_steps=4`).
    if extra and isinstance(getattr(args, "overrides", None), list) and all("=" in e for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except AdaptError as exc:
        print(exc.format(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("adapt: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adapt", description="Adapt open base language models to a domain, from one YAML recipe.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = _recipe_command(commands, "validate", _validate, "check a recipe and show what the run will cost",
                               "Check a recipe without loading a model: print the resolved recipe, tokens per "
                               "source, steps, and estimated time and memory.")
    validate.add_argument("--json", action="store_true", help="print the cost report as JSON")
    _recipe_command(commands, "data", _data, "prepare the data and write the data report, without training",
                    "Read, curate, FIM-transform, tokenize (cached) and mix the recipe's data, then write "
                    "data_report.json/.md and data_manifest.jsonl into the run directory.")
    plan = _recipe_command(commands, "plan", _plan, "choose the replay ratio from pilot runs and scaling laws",
                           "Train short pilots at a ladder of domain shares (plan.ratios), fit the CMR and D-CPT "
                           "scaling laws to their eval traces, and write mixtures/<name>.plan.yaml and a plot. "
                           "Pilots already done (in the plan directory or in MLflow) are reused.")
    plan.add_argument("--fit-only", action="store_true", help="refit from the pilots already run; train none")
    train = _recipe_command(commands, "train", _train, "run a recipe (resumes if its run directory exists)",
                            "Run a recipe. Running it again on the same output directory resumes from the "
                            "last complete checkpoint in the same MLflow run.")
    train.add_argument("--nproc", type=int, default=1,
                       help="processes (GPUs, or CPU ranks on gloo) to launch through accelerate")
    train.add_argument("--accelerate-config", help="an accelerate config file, e.g. recipes/accelerate/fsdp.yaml")

    evaluate = commands.add_parser(
        "eval", help="measure a run or model against its base: forgetting, domain gain, completion, pass@k",
        description="Evaluate TARGET (a run directory, a model directory, builtin or a hub id) and the "
                    "recipe's base model (cached) on the recipe's eval sets; write report.json, report.md "
                    "and, for a run, trace.png.")
    evaluate.add_argument("target", help="RUN_DIR | MODEL_DIR | builtin | hub id")
    evaluate.add_argument("recipe")
    evaluate.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    evaluate.add_argument("--output", help="report directory (default: RUN_DIR/eval, or runs/eval/<target>)")
    evaluate.set_defaults(run=_eval)
    compare = commands.add_parser("compare", help="side-by-side table of several runs' evaluations",
                                  description="Print the evaluation reports of several runs side by side, "
                                              "e.g. one recipe at replay 0%, 10% and the planned ratio.")
    compare.add_argument("runs", nargs="+", help="run directories (or adapt eval output directories)")
    compare.add_argument("--json", action="store_true", help="print the reports' key numbers as JSON")
    compare.set_defaults(run=_compare)

    export = commands.add_parser("export", help="write a run's adapter, or the merged model, with a model card",
                                 description="Export a finished run: its adapter alone (PEFT format), or with "
                                             "--merged the base model with the adapter merged in "
                                             "(save_pretrained format, with tokenizer and chat template). "
                                             "Both carry a model card (README.md) written from the run.")
    export.add_argument("run_dir")
    export.add_argument("--merged", action="store_true", help="merge the adapter into the base model")
    export.add_argument("--output", help="target directory (default: RUN_DIR/export-adapter or export-merged)")
    export.set_defaults(run=_export)

    generate = commands.add_parser("generate", help="sample from a base or adapted model",
                                   description="Sample text from `builtin`, a run directory, a model "
                                               "directory or a hub id.")
    generate.add_argument("model", help="builtin | RUN_DIR | MODEL_DIR | hub id")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--temperature", type=float, default=0.8, help="0 for greedy decoding")
    generate.add_argument("--top-p", type=float, default=0.95)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--chat", action="store_true",
                          help="send the prompt as a user message through the model's chat template (SFT runs)")
    generate.set_defaults(run=_generate)
    return parser


def _recipe_command(commands, name: str, run, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand that takes a recipe and ``key.path=value`` overrides."""
    command = commands.add_parser(name, help=help, description=description)
    command.add_argument("recipe")
    command.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    command.set_defaults(run=run)
    return command


def _validate(args) -> int:
    import yaml

    from adapt.checks import check_recipe, cost_report
    from adapt.recipe import load_recipe

    from adapt.recipe.pipeline import load_pipeline

    pipeline = load_pipeline(args.recipe, args.overrides)
    if pipeline is not None:  # every stage, checked against the pipeline's base
        for index, stage in enumerate(pipeline.stages):
            loaded = pipeline.loaded(index)
            print(f"# stage {index} {stage.name} ({loaded.recipe.kind}, carry: {stage.carry}): valid; "
                  f"what the run will cost")
            print(_cost_table(cost_report(loaded, check_recipe(loaded))) + "\n")
        return 0
    loaded = load_recipe(args.recipe, args.overrides)
    sources = check_recipe(loaded)
    cost = cost_report(loaded, sources)
    if args.json:
        print(json.dumps({"recipe": loaded.recipe.model_dump(mode="json"), "cost": cost}, indent=2))
        return 0
    print(f"# {loaded.path}: valid\n")
    print(yaml.safe_dump(loaded.recipe.model_dump(mode="json"), sort_keys=False).rstrip())
    print("\n# what the run will cost (estimates; exact token counts come from the data stage)")
    print(_cost_table(cost))
    return 0


def _cost_table(cost: dict) -> str:
    lines = [f"{'source':<16}{'share':>7}{'train files':>13}{'held out':>10}{'≈tokens':>12}"]
    for name, src in cost["sources"].items():
        share = cost["mixture"].get(name, 0.0)
        lines.append(f"{name:<16}{share:>7.2f}{src['train_files']:>13}{src['heldout_files']:>10}"
                     f"{src['approx_tokens']:>12,}")
    if cost["train_tokens"] is None:
        steps = f"steps {cost['steps']:,}" if cost["steps"] else "steps: counted from the rows (see adapt data)"
        lines.append(steps)
    else:
        lines.append(f"steps {cost['steps']:,}   train tokens {cost['train_tokens']:,}   "
                     f"eval tokens ≈{cost['eval_tokens']:,}")
    if cost["seconds"] is not None:
        lines.append(f"parameters {cost['params']:,} ({cost['trainable_params']:,} trainable)   "
                     f"time ≈{_duration(cost['seconds'])} on {cost['estimate_device']}   "
                     f"peak memory ≈{cost['peak_memory_bytes'] / 2**30:.1f} GiB")
    else:
        lines.append(cost.get("no_estimate", "time and memory: unknown until the model's config is local"))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _data(args) -> int:
    from adapt.checks import check_recipe
    from adapt.data.report import REPORT_MD, markdown, write_data_outputs
    from adapt.recipe import load_recipe
    from adapt.train.runner import run_dir_of
    from adapt.train.stages import prepare_data_report

    loaded = load_recipe(args.recipe, args.overrides)
    check_recipe(loaded)
    report, manifest = prepare_data_report(loaded)
    run_dir = run_dir_of(loaded)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_data_outputs(run_dir, report, manifest)
    print(markdown(report))
    print(f"adapt: data report in {run_dir / REPORT_MD}")
    return 0


def _train(args) -> int:
    if (args.nproc > 1 or args.accelerate_config) and "WORLD_SIZE" not in os.environ:
        from adapt.launch import launch, prepare_base

        prepare_base(args.recipe, args.overrides)
        return launch(["train", args.recipe, *args.overrides], args.nproc, args.accelerate_config)
    from adapt.recipe import load_recipe
    from adapt.recipe.pipeline import load_pipeline
    from adapt.train.runner import EXIT_PREEMPTED
    from adapt.train.stages import train

    pipeline = load_pipeline(args.recipe, args.overrides)
    if pipeline is not None:
        return _train_pipeline(pipeline)
    loaded = load_recipe(args.recipe, args.overrides)
    outcome = train(loaded)
    if outcome.status == "already_finished":
        print(f"adapt: the run in {outcome.run_dir} is already finished; nothing to do "
              f"(set train.output_dir to start a new run)")
        return 0
    if outcome.status == "preempted":
        print(f"adapt: stopped by SIGTERM after saving a checkpoint in {outcome.run_dir}; "
              f"run the same command again to resume", file=sys.stderr)
        return EXIT_PREEMPTED
    print(f"\nadapt: run finished in {outcome.run_dir}\n\n{outcome.summary}\n")
    _print_tracking(outcome.tracking_run_id, outcome.tracking_uri)
    return 0


def _train_pipeline(pipeline) -> int:
    from adapt.train.pipeline import run_pipeline
    from adapt.train.runner import EXIT_PREEMPTED

    outcome = run_pipeline(pipeline)
    for name, stage in outcome.stages:
        said = "already finished, skipped" if stage.status == "already_finished" else stage.status
        print(f"\n## stage {name}: {said} ({stage.run_dir})\n{stage.summary}".rstrip())
    if outcome.preempted:
        print(f"adapt: stopped by SIGTERM in stage {outcome.stages[-1][0]}; run the same command again to "
              f"resume the pipeline", file=sys.stderr)
        return EXIT_PREEMPTED
    print(f"\nadapt: pipeline finished in {outcome.run_dir}")
    _print_tracking(outcome.tracking_run_id, outcome.tracking_uri)
    return 0


def _print_tracking(run_id: str | None, uri: str | None) -> None:
    if run_id:
        print(f"MLflow run {run_id} in {uri}")
        if uri and uri.startswith("sqlite"):
            print(f"  see it with: mlflow ui --backend-store-uri {uri}")


def _plan(args) -> int:
    from adapt.planner.sweep import run_plan
    from adapt.recipe import load_recipe

    outcome = run_plan(load_recipe(args.recipe, args.overrides), fit_only=args.fit_only)
    if outcome.preempted:
        from adapt.train.runner import EXIT_PREEMPTED

        print("adapt plan: stopped by SIGTERM after saving the pilot's checkpoint; run the same command "
              "again to continue the sweep", file=sys.stderr)
        return EXIT_PREEMPTED
    plan = outcome.plan
    interval = plan["interval"]
    ci = f"[{interval['low']:.3f}, {interval['high']:.3f}]" if interval["low"] is not None else "(no interval)"
    print(f"\nadapt plan: {outcome.ran} pilot(s) trained, {outcome.reused} reused\n")
    print(f"{'ratio R':>8}{'Δdomain':>10}{'Δgeneral':>10}   (pilot losses at {plan['t_ref']:,.0f} tokens)")
    for fit in plan["fits"]["tokens"]:
        print(f"{fit['ratio']:>8.3f}{fit['domain']['y_last']:>+10.3f}{fit['general']['y_last']:>+10.3f}")
    print(f"\ncritical mixture ratio at {plan['target_tokens']:,.0f} tokens: R = {plan['ratio']:.3f} "
          f"(90% bootstrap {ci}; {plan['method']}; ε = {plan['epsilon']:.3g}, λ = {plan['lambda']:g})")
    print(f"predicted change at R: domain {plan['predicted_change']['domain']:+.3f}, "
          f"general {plan['predicted_change']['general']:+.3f} nats; D-CPT law's choice: "
          f"{plan['dcpt']['ratio'] if plan['dcpt']['ratio'] is None else format(plan['dcpt']['ratio'], '.3f')}")
    print(f"fit quality: {plan['quality']['verdict']}")
    for warning in plan["warnings"]:
        print(f"  warning: {warning}")
    print(f"\nplan: {outcome.plan_file}  (use it with data.mixture: {outcome.plan_file})\nplot: {outcome.plot_file}")
    return 0


def _eval(args) -> int:
    from adapt.evaluate import evaluate_target
    from adapt.evaluate.report import REPORT_MD, markdown
    from adapt.recipe import load_recipe

    report, out_dir = evaluate_target(args.target, load_recipe(args.recipe, args.overrides), args.output)
    print(markdown(report))
    print(f"adapt: report in {out_dir / REPORT_MD}")
    return 0 if report["forgetting"]["pass"] is not False else 1


def _compare(args) -> int:
    from adapt.evaluate.report import compare_table, read_report

    reports = [read_report(run) for run in args.runs]
    if args.json:
        print(json.dumps({run: {"mixture": r.get("mixture"), "changes": r["changes"], "forgetting": r["forgetting"]}
                          for run, r in zip(args.runs, reports)}, indent=2))
    else:
        names = [run.rstrip("/").split("/")[-1] for run in args.runs]
        print(compare_table(names, reports))
    return 0


def _export(args) -> int:
    from adapt.export import export_run

    print(f"adapt: exported to {export_run(args.run_dir, args.output, args.merged)}")
    return 0


def _generate(args) -> int:
    from adapt.generate import generate

    print(generate(args.model, args.prompt, args.max_new_tokens, args.temperature, args.top_p, args.seed,
                   args.chat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
