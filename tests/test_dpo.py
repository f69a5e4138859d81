"""DPO on the tiny model: the reward margin on the training pairs goes up; the reference model
is found for full fine-tuning and for chat pairs; bad pairs are clear errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from adapt.cli import main
from test_sft import series, write_jsonl


def pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        # A preference the tiny model can learn in a few steps: answer, rather than decline.
        rows.append({"prompt": f"# {a} + {b} =", "chosen": f" {a + b}\n", "rejected": " I do not know.\n"})
    return rows


@pytest.fixture
def dpo_recipe(make_recipe, tmp_path):
    def make(name: str, rows: list[dict], **overrides) -> Path:
        data = {"sources": [{"name": "prefs", "kind": "preferences", "path": str(write_jsonl(tmp_path / f"{name}.jsonl", rows)),
                             "heldout": {"fraction": 0.1}}],
                "eval": {"prefs": {"source": "prefs"}}}
        train = {"seq_len": 64, "batch_size": 4, "max_steps": 12, "lr": 5e-3, "eval_steps": 6, "save_steps": 6,
                 "logging_steps": 1, "precision": "fp32", "output_dir": str(tmp_path / "runs" / name)}
        return make_recipe(name, kind="dpo", data=data, train=train, **overrides)

    return make


def test_dpo_raises_the_reward_margin_on_training_pairs(dpo_recipe):
    recipe = dpo_recipe("dpo", pairs(60))
    assert main(["train", str(recipe), "dpo.beta=0.5"]) == 0
    run = recipe.parent / "runs" / "dpo"
    margins = list(series(run, "train/rewards/margins").values())
    assert len(margins) == 12
    assert sum(margins[-3:]) / 3 > max(0.05, margins[0]), margins
    assert set(series(run, "eval/prefs/loss")) == {0, 6, 12}
    assert set(series(run, "eval/prefs/rewards/margins")) == {0, 6, 12}, "trl's eval metrics carry the set's name"
    assert "train/rewards/margins" in (run / "summary.txt").read_text()


def test_dpo_full_fine_tuning_with_chat_pairs(dpo_recipe, tiny_model_dir):
    rows = [{"chosen": [{"role": "user", "content": q["prompt"]}, {"role": "assistant", "content": q["chosen"]}],
             "rejected": [{"role": "user", "content": q["prompt"]}, {"role": "assistant", "content": q["rejected"]}]}
            for q in pairs(20)]
    recipe = dpo_recipe("dpo_full", rows, model={"base_model": str(tiny_model_dir), "chat_template": "chatml"})
    assert main(["train", str(recipe), "adapter.method=full", "train.max_steps=2", "train.eval_steps=2"]) == 0
    assert (recipe.parent / "runs" / "dpo_full" / "final" / "config.json").is_file()


@pytest.mark.parametrize("bad,message", [({"rejected": ""}, "'rejected' is empty"),
                                         ({"chosen": "   "}, "'chosen' is empty")])
def test_empty_chosen_or_rejected_names_the_row(dpo_recipe, capsys, bad, message):
    rows = pairs(6)
    rows[3].update(bad)
    recipe = dpo_recipe("bad", rows)
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert message in err and "row 4" in err and "bad.jsonl" in err and "Traceback" not in err


def test_dpo_refuses_document_sources(dpo_recipe, corpora, capsys):
    recipe = dpo_recipe("docs", pairs(6))
    source = f"data.sources=[{{name: code, kind: files, root: {corpora['domain']}}}]"
    assert main(["validate", str(recipe), source, "data.eval={}"]) == 2
    assert "data.sources" in capsys.readouterr().err


def test_dpo_stops_on_sigterm_and_resumes(dpo_recipe):
    """The post-training kinds share CPT's run lifecycle: SIGTERM saves and exits 143; the same
    command resumes from the checkpoint to the end, in the same run directory."""
    import json
    import signal

    from test_resume import SETTINGS, losses, start

    recipe = dpo_recipe("resume", pairs(60))
    run_dir = recipe.parent / "runs" / "resume"
    overrides = ["train.max_steps=60", "train.eval_steps=100", "train.save_steps=1000"]
    proc = start(recipe, *overrides)
    while not losses(run_dir):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    stopped = max(losses(run_dir))
    assert stopped < 60 and json.loads((run_dir / "run_state.json").read_text())["status"] == "preempted"
    assert main(["train", str(recipe), *SETTINGS, *overrides]) == 0
    state = json.loads((run_dir / "run_state.json").read_text())
    assert state["status"] == "finished" and state["final_step"] == 60
    assert [e["event"] for e in state["history"]] == ["started", "resumed"]


def test_pairs_with_and_without_a_prompt_are_refused(dpo_recipe, capsys):
    rows = pairs(6)
    del rows[2]["prompt"]
    assert main(["train", str(dpo_recipe("mixed", rows))]) == 2
    err = capsys.readouterr().err
    assert "row 3 has no prompt" in err and "Traceback" not in err


def test_unknown_loss_type_is_refused_before_training(dpo_recipe, capsys):
    assert main(["validate", str(dpo_recipe("loss", pairs(6))), "dpo.loss_type=sigmod"]) == 2
    assert "dpo.loss_type" in capsys.readouterr().err
