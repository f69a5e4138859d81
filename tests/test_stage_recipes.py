"""The shipped sft, dpo and grpo recipes run on the built-in base model, with tiny budgets: CI
checks the path (data files, chat template, reference model, rewards, sandbox), not the quality.
One test, so the built-in model is built once."""

from __future__ import annotations

import json
from pathlib import Path

from adapt.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_BASE = "model.builtin.pretrain_tokens=16384"


def test_stage_recipes_run_on_the_builtin_model(tmp_path, capsys):
    budgets = {"sft": ["train.max_steps=2", "train.eval_steps=2"],
               "dpo": ["train.max_steps=2", "train.eval_steps=2"],
               "grpo": ["train.max_steps=1", "grpo.max_new_tokens=16"]}
    for kind, overrides in budgets.items():
        out = tmp_path / kind
        args = [str(ROOT / "recipes" / f"{kind}.yaml"), TINY_BASE, "tracking.enabled=false",
                f"train.output_dir={out}", *overrides]
        assert main(["train", *args]) == 0, capsys.readouterr().err[-2000:]
        assert (out / "final" / "adapter_config.json").is_file(), kind
        state = json.loads((out / "run_state.json").read_text())
        assert state["status"] == "finished", kind
    summary = (tmp_path / "grpo" / "summary.txt").read_text()
    assert "train/rewards/execution/mean" in summary and "train/rewards/format/mean" in summary
    assert "instructions" in (tmp_path / "sft" / "summary.txt").read_text()


def test_each_stage_trains_with_full_lora_and_qlora(make_recipe, tmp_path, capsys):
    """A couple of steps of every kind with every adapter method on the tiny model."""
    from test_dpo import pairs
    from test_grpo import TASKS
    from test_sft import arithmetic_chats, write_jsonl

    write_jsonl(tmp_path / "chat.jsonl", arithmetic_chats(24))
    write_jsonl(tmp_path / "prefs.jsonl", pairs(24))
    write_jsonl(tmp_path / "tasks.jsonl", TASKS)
    data = {"sft": {"sources": [{"name": "chat", "kind": "instructions", "path": "chat.jsonl"}]},
            "dpo": {"sources": [{"name": "prefs", "kind": "preferences", "path": "prefs.jsonl"}]},
            "grpo": {"sources": [{"name": "tasks", "kind": "code_tasks", "path": "tasks.jsonl"}]}}
    for kind, sources in data.items():
        for method in ("full", "lora", "qlora"):
            name = f"{kind}_{method}"
            recipe = make_recipe(name, kind=kind, data=sources, grpo={"num_generations": 2, "max_new_tokens": 8},
                                 train={"seq_len": 64, "batch_size": 2, "max_steps": 2, "logging_steps": 1,
                                        "precision": "fp32", "output_dir": str(tmp_path / "runs" / name)})
            template = ["model.chat_template=chatml"] if kind == "sft" else []  # the tiny model has none
            assert main(["train", str(recipe), f"adapter.method={method}", *template]) == 0, \
                (name, capsys.readouterr().err[-2000:])
            final = tmp_path / "runs" / name / "final"
            assert (final / ("config.json" if method == "full" else "adapter_config.json")).is_file(), name


def test_adapt_data_reports_every_kind(tmp_path, capsys):
    """`adapt data` prepares each kind's data as `adapt train` would, without training."""
    for kind, expected in {"sft": "packing efficiency", "dpo": "Training rows", "grpo": "Training rows"}.items():
        out = tmp_path / kind
        assert main(["data", str(ROOT / "recipes" / f"{kind}.yaml"), TINY_BASE, f"train.output_dir={out}"]) == 0, \
            capsys.readouterr().err[-2000:]
        assert expected in (out / "data_report.md").read_text(), kind
