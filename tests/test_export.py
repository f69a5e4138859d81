"""`adapt export`: the merged model loads with plain transformers and computes what the trained
model computed (LoRA, and QLoRA merged into its dequantised base); the adapter export loads with
peft; the model card tells the run's story; a run that is not finished is refused."""

from __future__ import annotations

import json

import pytest
import torch

from adapt.cli import main


def _trained_logits(run_dir, ids):
    from adapt.model import load_tokenizer, load_trained

    model = load_trained(run_dir, load_tokenizer(str(run_dir / "final"))).eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_merged_export_matches_the_trained_model(make_recipe, tmp_path, method):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = make_recipe(method, evaluation={"completion": {"enabled": False}})
    assert main(["train", str(recipe), f"adapter.method={method}", "train.lr=1e-2", "train.max_steps=6"]) == 0
    run = tmp_path / "runs" / method
    assert main(["export", str(run), "--merged"]) == 0
    exported = run / "export-merged"
    model = AutoModelForCausalLM.from_pretrained(exported).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    ids = torch.tensor([tokenizer("def parse(header):\n    return header.split(':')")["input_ids"]])
    with torch.no_grad():
        merged = model(input_ids=ids).logits
    trained = _trained_logits(run, ids)
    assert not any(p.name.startswith("adapter_") for p in exported.iterdir())
    # 4-bit layers compute in float32 here too; merging adds the LoRA product to the same weights.
    assert torch.allclose(merged, trained, atol=2e-4 if method == "lora" else 2e-3), (merged - trained).abs().max()

    card = (exported / "README.md").read_text()
    assert "base_model:" in card and "## Data" in card and "## Evaluation before and after" in card
    assert "forgetting:" in card and "## Recipe" in card and f"method: {method}" in card


def test_adapter_export_and_refusals(make_recipe, tmp_path, capsys):
    from peft import PeftConfig

    recipe = make_recipe("adapter")
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "not an adapt run directory" in capsys.readouterr().err
    assert main(["train", str(recipe), "train.max_steps=2"]) == 0
    run = tmp_path / "runs" / "adapter"
    assert main(["export", str(run), "--output", str(tmp_path / "out")]) == 0
    assert PeftConfig.from_pretrained(str(tmp_path / "out")).peft_type == "LORA"
    assert (tmp_path / "out" / "README.md").read_text().startswith("---\nbase_model:")

    state = json.loads((run / "run_state.json").read_text())
    (run / "run_state.json").write_text(json.dumps({**state, "status": "preempted"}))
    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err
    assert "preempted, not finished" in err and "Traceback" not in err
