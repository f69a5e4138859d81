"""Pipelines: stages chain (each starts where the previous ended: its base loss is the previous
stage's final loss), merge or stack the previous adapter, nest under one MLflow parent run, skip
finished stages and resume an interrupted one; bad stages are named."""

from __future__ import annotations

import json

import pytest
import yaml

from adapt.cli import main


def _pipeline(make_recipe, tmp_path, carry="merge", **defaults):
    recipe = yaml.safe_load(make_recipe("base", **defaults).read_text())
    recipe["train"].pop("output_dir")
    recipe["train"]["output_dir"] = str(tmp_path / "runs" / "pipe")
    recipe["evaluation"] = {"completion": {"enabled": False}}
    recipe["stages"] = [
        {"name": "domain", "data": {"mixture": {"domain": 1.0}}, "train": {"max_steps": 6, "lr": 1e-2}},
        {"name": "mixed", "carry": carry, "train": {"max_steps": 4, "lr": 5e-3}},
    ]
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _report(stage_dir):
    return json.loads((stage_dir / "eval" / "report.json").read_text())


@pytest.mark.parametrize("carry", ["merge", "stack"])
def test_stages_chain_each_from_the_last(make_recipe, tmp_path, carry):
    assert main(["train", str(_pipeline(make_recipe, tmp_path, carry))]) == 0
    first, second = tmp_path / "runs" / "pipe" / "0-domain", tmp_path / "runs" / "pipe" / "1-mixed"
    recipe = yaml.safe_load((second / "recipe.yaml").read_text())
    if carry == "merge":
        assert recipe["model"]["base_model"] == str((first / "export-merged").resolve())
        assert (first / "export-merged" / "config.json").is_file()
    else:
        assert recipe["model"]["adapters"] == [str((first / "final").resolve())]
        assert not (first / "export-merged").exists()
    assert recipe["data"]["mixture"] == {"domain": 0.75, "general": 0.25} and recipe["train"]["max_steps"] == 4
    for name in ("domain", "general"):  # the second stage starts where the first ended
        assert _report(second)["changes"][name]["loss_before"] == pytest.approx(
            _report(first)["changes"][name]["loss_after"], abs=2e-4)


def test_a_pipeline_nests_its_stages_and_skips_or_resumes_them(make_recipe, tmp_path, capsys):
    import mlflow

    from adapt.tracking import default_tracking_uri

    path = _pipeline(make_recipe, tmp_path, tracking={"enabled": True})
    assert main(["train", str(path)]) == 0
    client = mlflow.tracking.MlflowClient(default_tracking_uri())
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = sorted(r.data.tags["adapt.stage"] for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert len(runs) == 3 and children == ["domain", "mixed"]
    assert "stage/domain/domain/delta" in parent.data.metrics

    # Finished stages are skipped; an interrupted one resumes from its last complete checkpoint.
    second = tmp_path / "runs" / "pipe" / "1-mixed"
    state = json.loads((second / "run_state.json").read_text())
    (second / "run_state.json").write_text(json.dumps({**state, "status": "running"}))
    capsys.readouterr()
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stage domain: already finished, skipped" in out and "stage mixed: finished" in out
    events = [e["event"] for e in json.loads((second / "run_state.json").read_text())["history"]]
    assert events == ["started", "resumed"]
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == 3


@pytest.mark.parametrize("stages, key, words", [
    ([{"name": "a", "carry": "glue"}], "stages.0.carry", "merge or stack"),
    ([{"name": "a"}, {"name": "a"}], "stages.1.name", "used twice"),
    ([{"name": "a", "train": {"lr": -1}}], "train.lr", "stage 'a'"),
    ([{"nom": "a"}], "stages.0", "with a name"),
])
def test_bad_stages_are_named(make_recipe, tmp_path, capsys, stages, key, words):
    recipe = yaml.safe_load(make_recipe().read_text())
    recipe["stages"] = stages
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err and words in err and "Traceback" not in err


def test_overrides_reach_every_stage_or_the_one_named(make_recipe, tmp_path):
    from adapt.recipe.pipeline import load_pipeline

    path = _pipeline(make_recipe, tmp_path)
    pipeline = load_pipeline(path, ["train.max_tokens=4096", "stages.1.train.lr=0.001", "stages.0.carry=stack"])
    first, second = (pipeline.loaded(i).recipe.train for i in (0, 1))
    assert first.max_tokens == second.max_tokens == 4096 and first.max_steps is None, "over the stage's own budget"
    assert (first.lr, second.lr) == (1e-2, 1e-3)
    assert pipeline.stages[0].carry == "stack"
