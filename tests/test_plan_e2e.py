"""`adapt plan` end to end on the tiny model: real pilots, a valid plan file and plot, MLflow
child runs under the plan's run, and reuse of pilots on a second run."""

from __future__ import annotations

import json

import yaml

from adapt.cli import main
from adapt.recipe import load_recipe
from adapt.recipe.schema import MixtureFile

PLAN = {"ratios": [0.0, 0.5, 0.75, 1.0], "pilot_tokens": 12288, "target_tokens": 24576, "eval_steps": 4,
        "epsilon": 0.1, "bootstrap": 5, "refine": 0}


def _recipe(make_recipe, tmp_path, **plan):
    return make_recipe("planned", plan={**PLAN, "output": str(tmp_path / "mixtures" / "planned.plan.yaml"), **plan},
                       adapter={"method": "full"}, tracking={"enabled": True, "experiment": "plan-test"})


def test_plan_writes_a_plan_and_nests_pilots_under_the_plan_run(make_recipe, tmp_path, capsys, adapt_home):
    recipe = _recipe(make_recipe, tmp_path)
    assert main(["plan", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "4 pilot(s) trained, 0 reused" in out and "critical mixture ratio" in out

    plan_file = tmp_path / "mixtures" / "planned.plan.yaml"
    document = yaml.safe_load(plan_file.read_text())
    mixture = MixtureFile.model_validate(document).mixture
    assert set(mixture) == {"domain", "general"} and abs(sum(mixture.values()) - 1) < 1e-9
    plan = document["plan"]
    assert 0.0 <= plan["ratio"] <= 1.0 and plan["ratio"] == mixture["domain"]
    assert {p["ratio"] for p in plan["pilots"]} == {0.0, 0.5, 0.75, 1.0}
    assert all(p["points"] == 6 for p in plan["pilots"]), "evaluated every 4 of 24 steps"
    assert "nan" not in plan_file.read_text().lower()
    png = plan_file.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # The recipe can use the plan as its mixture.
    loaded = load_recipe(recipe, [f"data.mixture={plan_file}"])
    assert loaded.recipe.data.mixture == mixture

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{adapt_home / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("plan-test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("adapt.kind") == "plan"]
    pilots = [r for r in runs if r.data.tags.get("adapt.kind") == "pilot"]
    assert len(parents) == 1 and len(pilots) == 4
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in pilots)
    assert parents[0].data.metrics["plan/ratio"] == plan["ratio"]
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"planned.plan.yaml", "planned.plan.png"} <= artifacts

    # Second run: every pilot comes from the results file; then, without it, from MLflow.
    assert main(["plan", str(recipe)]) == 0
    assert "0 pilot(s) trained, 4 reused" in capsys.readouterr().out
    results = next((tmp_path / "runs").glob("*-plan")) / "pilots.json"
    results.unlink()
    assert main(["plan", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "0 pilot(s) trained, 4 reused" in out and "from MLflow run" in out
    assert len(json.loads(results.read_text())) == 4


def test_plan_errors_name_the_key(make_recipe, tmp_path, capsys):
    recipe = make_recipe("bad_plan", plan={**PLAN, "domain_eval": "domian"})
    assert main(["plan", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "plan.domain_eval" in err and "'domian'" in err and "fix:" in err and "Traceback" not in err

    recipe = make_recipe("short_plan", plan={**PLAN, "pilot_tokens": 2048})
    assert main(["plan", str(recipe)]) == 2
    assert "plan.pilot_tokens" in capsys.readouterr().err

    recipe = make_recipe("two_ratios", plan={**PLAN, "ratios": [0.5, 0.5, 1.0]})
    assert main(["plan", str(recipe)]) == 2
    assert "plan.ratios" in capsys.readouterr().err

    recipe = make_recipe("fit_only", plan={**PLAN, "output": str(tmp_path / "x.plan.yaml")})
    assert main(["plan", str(recipe), "--fit-only"]) == 2
    err = capsys.readouterr().err
    assert "without --fit-only" in err and not (tmp_path / "x.plan.yaml").exists()
