"""``adapt plan``, top to bottom: pilots -> fits -> plan file and plot, all tracked in MLflow.

Each pilot is the recipe itself, trained by ``adapt.train.stages.train`` for ``plan.pilot_tokens``
at one domain share R, with its own run directory under ``<run dir>-plan/`` and an MLflow child
run under the plan's parent run. A pilot is identified by a key: the hash of its resolved recipe.
A pilot whose key is in the results file (``pilots.json``), or in a finished MLflow run tagged with
that key, is reused, not re-run; an interrupted pilot resumes from its last checkpoint, so a
killed ``adapt plan`` continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from adapt.errors import AdaptError
from adapt.fileio import write_json
from adapt.data.mixture import budget_steps
from adapt.planner.cmr import MIN_POINTS, Pilot, PlannerError
from adapt.planner.plan import PilotSet, PlanSpec, make_plan
from adapt.recipe.load import LoadedRecipe, validate_data
from adapt.recipe.schema import Recipe

RESULTS_FILE = "pilots.json"
PILOT_KEY_TAG = "adapt.pilot_key"


@dataclass
class PlanOutcome:
    plan_file: Path | None
    plot_file: Path | None
    plan: dict
    reused: int
    ran: int
    tracking_run_id: str | None
    preempted: bool = False


def plan_sources(loaded: LoadedRecipe) -> tuple[str, str]:
    """The domain and general sources: those of the plan's two eval sets."""
    recipe, plan = loaded.recipe, loaded.recipe.plan
    names = {}
    for role, eval_name in (("domain", plan.domain_eval), ("general", plan.general_eval)):
        if eval_name not in recipe.data.eval:
            raise loaded.error(f"eval set {eval_name!r} is not in data.eval", f"plan.{role}_eval",
                               fix=f"name one of: {', '.join(recipe.data.eval) or '(none: add data.eval)'}")
        names[role] = recipe.data.eval[eval_name].source
    if names["domain"] == names["general"]:
        raise loaded.error("the domain and general eval sets read the same source", "plan.general_eval",
                           fix="evaluate general loss on the replay source's held-out files")
    others = [n for n, share in recipe.data.mixture.items() if share > 0 and n not in names.values()]
    if others:
        raise loaded.error(f"the planner mixes two sources, but the mixture also gives {', '.join(others)} a share",
                           "data.mixture", fix=f"keep only {names['domain']} and {names['general']} in the mixture")
    return names["domain"], names["general"]


def budgets(loaded: LoadedRecipe) -> tuple[int, int]:
    """(pilot tokens, target tokens)."""
    recipe, plan = loaded.recipe, loaded.recipe.plan
    target = plan.target_tokens or recipe.train.max_tokens or (
        recipe.train.max_steps * recipe.train.tokens_per_step if recipe.train.max_steps else None)
    if target is None:
        raise loaded.error("the plan needs a target budget in tokens", "plan.target_tokens",
                           fix="set plan.target_tokens, or train.max_tokens / train.max_steps")
    pilot = plan.pilot_tokens or target // 4
    pilot_train = recipe.train.model_copy(update={"max_tokens": pilot, "max_steps": None, "epochs": None})
    steps = budget_steps(pilot_train, {}, {}, int(os.environ.get("WORLD_SIZE", "1")))
    if steps < MIN_POINTS * plan.eval_steps:
        raise loaded.error(f"pilots of {pilot:,} tokens make {steps} steps: fewer than 4 evaluations "
                           f"every {plan.eval_steps} steps", "plan.pilot_tokens",
                           fix=f"raise plan.pilot_tokens to at least {MIN_POINTS * plan.eval_steps * recipe.train.tokens_per_step:,} "
                               f"or lower plan.eval_steps")
    return pilot, target


def pilot_recipe(loaded: LoadedRecipe, ratio: float, tokens: int, plan_dir: Path,
                 target_tokens: int | None = None) -> tuple[LoadedRecipe, str]:
    """The recipe of one pilot, and its key: the hash of what the pilot trains (the resolved recipe
    but its run directory, tracking and plan), so that a changed recipe (lr, data, model) gets a new
    pilot in a new directory, never a refused resume."""
    domain, general = plan_sources(loaded)
    plan = loaded.recipe.plan
    data = loaded.recipe.record()
    data["data"]["mixture"] = {domain: ratio, general: round(1.0 - ratio, 6)}
    data["train"].update(max_tokens=tokens, max_steps=None, epochs=None, eval_steps=plan.eval_steps)
    if target_tokens:
        # Warm up for as many steps as the planned run will: a warmup_ratio of a short pilot is a
        # much sharper lr rise, and forgets more early on than the planned run does.
        per_step = loaded.recipe.train.tokens_per_step
        warmup_steps = loaded.recipe.train.warmup_ratio * math.ceil(target_tokens / per_step)
        data["train"]["warmup_ratio"] = min(1.0, warmup_steps / math.ceil(tokens / per_step))
    if plan.schedule != "recipe":
        data["train"]["schedule"] = plan.schedule
    data["tracking"]["run_name"] = f"{loaded.recipe.name}-pilot-R{ratio:.3f}"
    data.pop("plan")  # a pilot trains the same whatever epsilon or lambda the plan uses
    data["evaluation"]["enabled"] = False  # the plan reads a pilot's eval trace, not its report
    data["train"]["keep_best"] = False  # and the pilot's last step
    trained = validate_data(data, Recipe, loaded.path, {}).record()
    for volatile in ("tracking", "plan", "evaluation"):
        trained.pop(volatile)
    trained["train"].pop("output_dir")
    key = hashlib.sha256(json.dumps(trained, sort_keys=True).encode()).hexdigest()[:16]
    data["train"]["output_dir"] = str(plan_dir / f"pilot-R{ratio:.4f}-{key[:8]}")
    return LoadedRecipe(validate_data(data, Recipe, loaded.path, {}), loaded.path, loaded.lines), key


def run_plan(loaded: LoadedRecipe, fit_only: bool = False) -> PlanOutcome:
    from adapt.checks import check_recipe
    from adapt.tracking import open_tracker
    from adapt.train.runner import run_dir_of

    recipe = loaded.recipe
    if recipe.kind != "cpt":
        raise loaded.error(f"adapt plan plans the replay ratio of continual pretraining, not of kind {recipe.kind}",
                           "kind", fix="run adapt plan on the CPT recipe; SFT rehearsal takes a share in data.mixture")
    domain, general = plan_sources(loaded)
    pilot_tokens, target_tokens = budgets(loaded)
    check_recipe(loaded)
    plan_dir = Path(str(run_dir_of(loaded)) + "-plan")
    results_path = plan_dir / RESULTS_FILE
    results = _read_results(results_path)
    tracking = recipe.tracking
    tracker = open_tracker(enabled=tracking.enabled, uri=tracking.uri, experiment=tracking.experiment,
                           run_dir=plan_dir / "tracking", run_name=f"{tracking.run_name or recipe.name}-plan",
                           flush_timeout_s=tracking.flush_timeout_s)
    tracker.set_tags({"adapt.kind": "plan"})
    tracker.log_params({"plan": recipe.plan.model_dump(mode="json"), "pilot_tokens": pilot_tokens,
                        "target_tokens": target_tokens})
    parent = tracker.wait_for_run_id(timeout_s=10.0)
    ran = reused = 0
    ratios = sorted(set(recipe.plan.ratios))
    keys: dict[float, str] = {}
    spec = PlanSpec(target_tokens=target_tokens, epsilon=recipe.plan.epsilon, tolerance=recipe.plan.tolerance,
                    lam=recipe.plan.lagrange_lambda, constraint=recipe.plan.constraint,
                    bootstrap=recipe.plan.bootstrap, seed=recipe.data.seed)
    try:
        for round_ in range(recipe.plan.refine + 1):
            for ratio in ratios:
                if ratio in keys:
                    continue
                pilot, key = pilot_recipe(loaded, ratio, pilot_tokens, plan_dir, target_tokens)
                keys[ratio] = key
                eval_sets = [recipe.plan.domain_eval, recipe.plan.general_eval]
                if key in results and results[key].get("eval_sets", eval_sets) == eval_sets:
                    reused += 1
                    continue
                found = _from_mlflow(tracking, key, recipe.plan)
                if found is None and fit_only:
                    raise AdaptError(f"no results for the pilot at R={ratio:g} in {results_path}", key="plan.ratios",
                                     fix="run `adapt plan` without --fit-only to train the missing pilots")
                if found is None:
                    print(f"adapt plan: pilot {len(keys)}/{len(ratios)} at domain share R={ratio:g}, {pilot_tokens:,} tokens")
                    found = _train_pilot(pilot, key, parent, recipe.plan)
                    if found is None:
                        tracker.finish("KILLED")
                        return PlanOutcome(None, None, {}, reused, ran, tracker.run_id, preempted=True)
                    ran += 1
                else:
                    reused += 1
                results[key] = {"ratio": ratio, "eval_sets": eval_sets, **found}
                write_json(results_path, results)  # after each pilot: a kill loses at most one
            data = pilot_set([results[keys[r]] for r in ratios])
            extra = None if round_ == recipe.plan.refine else _refinement(data, spec, ratios, recipe.plan.refine_gap)
            if extra is None or (fit_only and pilot_recipe(loaded, extra, pilot_tokens, plan_dir, target_tokens)[1] not in results):
                break
            print(f"adapt plan: the CMR lies between pilots more than {recipe.plan.refine_gap:g} apart; "
                  f"adding a pilot at R={extra:g}")
            ratios = sorted(ratios + [extra])
        try:
            plan = make_plan(data, spec)
        except PlannerError as exc:
            raise AdaptError(exc.what, file=str(results_path), key="plan", fix=exc.fix) from None
        plan_file, plot_file = _write(loaded, plan, data, domain, general, tracker)
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")
    return PlanOutcome(plan_file, plot_file, plan, reused, ran, tracker.run_id)


def _refinement(data: PilotSet, spec: PlanSpec, ratios: list[float], gap: float) -> float | None:
    """A ratio for one more pilot: the CMR so far, when the pilots on either side of it are more
    than ``gap`` apart (the ratio curve is least certain there); None when no pilot is needed."""
    try:
        cmr = make_plan(data, replace(spec, bootstrap=0))["ratio"]
    except PlannerError:
        return None  # the final fit reports it
    below = max((r for r in ratios if r <= cmr), default=None)
    above = min((r for r in ratios if r >= cmr), default=None)
    candidate = round(cmr, 2)
    if below is None or above is None or above - below <= gap or candidate in ratios:
        return None
    return candidate


def _read_results(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise AdaptError("the pilots' results file is not valid JSON", file=str(path),
                         fix="delete it: finished pilots are read back from their run directories or MLflow") from None


def _train_pilot(pilot: LoadedRecipe, key: str, parent: str | None, plan) -> dict | None:
    """Train (or resume, or read back a finished) pilot; None if SIGTERM stopped it."""
    from adapt.train.stages import train
    from adapt.train.metrics import read_metrics

    tags = {PILOT_KEY_TAG: key, "adapt.kind": "pilot", **({"mlflow.parentRunId": parent} if parent else {})}
    outcome = train(pilot, tags=tags)
    if outcome.status == "preempted":
        return None
    return trajectory(read_metrics(outcome.run_dir / "metrics.jsonl"), plan.domain_eval, plan.general_eval)


def trajectory(rows: list[dict], domain_eval: str, general_eval: str) -> dict:
    """Eval losses of one pilot against its tokens, from its metrics rows (each eval set logs
    its own row at a step)."""
    names = {"domain": f"eval/{domain_eval}/loss", "general": f"eval/{general_eval}/loss"}
    by_step: dict[int, dict] = {}
    for row in rows:
        by_step.setdefault(row["step"], {}).update(row["metrics"])
    ordered = [{"tokens": m.get("train/tokens", 0.0), "domain": m[names["domain"]], "general": m[names["general"]]}
               for _, m in sorted(by_step.items()) if names["domain"] in m and names["general"] in m]
    return {key: [p[key] for p in ordered] for key in ("tokens", "domain", "general")}


def pilot_set(results: list[dict]) -> PilotSet:
    """Pilots as loss changes against their own step-0 evaluation (the base model)."""
    pilots, bases = [], []
    for r in results:
        tokens, domain, general = (np.asarray(r[k], dtype=float) for k in ("tokens", "domain", "general"))
        if len(tokens) == 0 or tokens[0] != 0:
            raise AdaptError(f"the pilot at R={r['ratio']:g} has no evaluation at step 0 (the base model)",
                             key="plan", fix="delete its run directory and run adapt plan again")
        bases.append((domain[0], general[0]))
        pilots.append(Pilot(r["ratio"], tokens[1:], domain[1:] - domain[0], general[1:] - general[0]))
    base_domain, base_general = np.mean(bases, axis=0)
    return PilotSet(pilots, float(base_domain), float(base_general))


def _from_mlflow(tracking, key: str, plan) -> dict | None:
    """A finished pilot run with this key in the tracking store, e.g. from another machine."""
    if not tracking.enabled:
        return None
    from mlflow import MlflowClient

    from adapt.tracking import default_tracking_uri

    try:
        client = MlflowClient(tracking_uri=tracking.uri or default_tracking_uri())
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            return None
        runs = client.search_runs([experiment.experiment_id], max_results=1,
                                  filter_string=f"tags.`{PILOT_KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'")
        if not runs:
            return None
        run_id = runs[0].info.run_id
        rows: dict[int, dict] = {}
        for name in ("train/tokens", f"eval/{plan.domain_eval}/loss", f"eval/{plan.general_eval}/loss"):
            for m in client.get_metric_history(run_id, name):
                rows.setdefault(m.step, {"step": m.step, "metrics": {}})["metrics"][name] = m.value
    except Exception as exc:  # an unreachable server only means the pilot is trained here
        print(f"adapt plan: could not look for pilot {key} in MLflow ({type(exc).__name__}); training it")
        return None
    found = trajectory(list(rows.values()), plan.domain_eval, plan.general_eval)
    if len(found["tokens"]) <= MIN_POINTS or found["tokens"][0] != 0:
        print(f"adapt plan: MLflow run {run_id} of pilot {key} is incomplete; training it")
        return None
    print(f"adapt plan: reusing pilot {key} from MLflow run {run_id}")
    return found


def _write(loaded: LoadedRecipe, plan: dict, data: PilotSet, domain: str, general: str, tracker) -> tuple[Path, Path]:
    from adapt.planner.plan_file import write_plan
    from adapt.planner.plot import plot_plan

    recipe = loaded.recipe
    plan_file = Path(recipe.plan.output or Path("mixtures") / f"{recipe.name}.plan.yaml")
    description = (f"Planned by adapt plan from {len(data.pilots)} pilots of {loaded.path}: the critical mixture "
                   f"ratio at {plan['target_tokens']:,.0f} tokens with ε = {plan['epsilon']:.3g}.")
    try:
        write_plan(plan_file, plan, domain, general, description)
    except ValueError as exc:
        raise AdaptError(str(exc), file=str(plan_file), key="plan",
                         fix="the pilots' curves could not be fitted: add pilots or raise plan.pilot_tokens") from None
    plot_file = plot_plan(plan_file.with_suffix(".png"), data, plan)
    tracker.log_metrics({"plan/ratio": plan["ratio"], "plan/fit_seconds": plan["fit_seconds"],
                         **({"plan/interval_low": plan["interval"]["low"], "plan/interval_high": plan["interval"]["high"]}
                            if plan["interval"]["low"] is not None else {})}, step=0)
    tracker.log_artifact(plan_file)
    tracker.log_artifact(plot_file)
    return plan_file, plot_file
