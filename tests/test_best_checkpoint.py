"""train.keep_best: the final model is the checkpoint with the lowest domain loss among those
within the forgetting tolerance, kept through checkpoint rotation."""

from __future__ import annotations

import json

from safetensors.torch import load_file

from adapt.cli import main
from adapt.train.best import best_step


def _rows(trace):
    return [{"step": step, "metrics": {f"eval/{k}/loss": v for k, v in losses.items()}} for step, losses in trace.items()]


def test_best_step_by_hand():
    rows = _rows({0: {"d": 5.0, "g": 4.0}, 5: {"d": 4.5, "g": 4.02}, 10: {"d": 4.2, "g": 4.04},
                  15: {"d": 4.0, "g": 4.2}})
    assert best_step(rows, [5, 10, 15], ["d"], ["g"], epsilon=0.05) == 10
    assert best_step(rows, [5, 10, 15], ["d"], ["g"], epsilon=0.5) == 15
    assert best_step(rows, [5, 15], ["d"], ["g"], epsilon=0.05) == 5, "only saved steps count"
    assert best_step(rows, [5, 10, 15], ["d"], ["g"], epsilon=0.001) is None
    assert best_step(rows, [5, 10, 15], ["d"], ["g"], epsilon=0.006, tolerance="relative") == 5


def test_a_run_keeps_its_best_checkpoint(make_recipe, tmp_path):
    overrides = ["adapter.method=full", "train.lr=1e-2", "train.max_steps=20", "train.eval_steps=5",
                 "train.save_steps=5", "train.save_total_limit=1", "data.mixture.domain=1.0",
                 "data.mixture.general=0.0", "evaluation.completion.enabled=false"]
    assert main(["train", str(make_recipe("plain")), *overrides]) == 0
    trace = {}
    for row in map(json.loads, (tmp_path / "runs" / "plain" / "metrics.jsonl").read_text().splitlines()):
        if "eval/general/loss" in row["metrics"]:
            trace[row["step"]] = row["metrics"]["eval/general/loss"]
    rises = {step: trace[step] - trace[0] for step in (5, 10, 15, 20)}
    lowest, second = sorted(rises.values())[:2]
    assert lowest < second, rises
    expected = min(rises, key=rises.get)
    epsilon = (lowest + second) / 2  # only the checkpoint that forgot least is within it

    assert main(["train", str(make_recipe("best")), *overrides, "train.keep_best=true",
                 f"evaluation.epsilon={epsilon}"]) == 0
    run = tmp_path / "runs" / "best"
    assert json.loads((run / "run_state.json").read_text())["best_step"] == expected
    kept_dir = run / "checkpoints" / f"checkpoint-{expected}"
    assert kept_dir.is_dir(), "the best checkpoint survives rotation"
    kept, final = load_file(kept_dir / "model.safetensors"), load_file(run / "final" / "model.safetensors")
    assert all((kept[name] == final[name]).all() for name in final)
    assert f"kept checkpoint-{expected}" in (run / "summary.txt").read_text()


def test_keep_best_needs_an_eval_at_every_checkpoint(make_recipe, capsys):
    assert main(["validate", str(make_recipe()), "train.keep_best=true", "train.save_steps=7"]) == 2
    err = capsys.readouterr().err
    assert "train.keep_best" in err and "multiple of eval_steps" in err
