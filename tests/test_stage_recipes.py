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
