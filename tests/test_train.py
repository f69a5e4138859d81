"""CPT end to end on a tiny local model: full, LoRA and QLoRA lower the loss; runs resume,
refuse a changed recipe, and stop cleanly on SIGTERM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapt.cli import main
from adapt.train.metrics import read_metrics


def train(recipe: Path, *overrides: str) -> Path:
    assert main(["train", str(recipe), *overrides]) == 0
    return recipe.parent / "runs" / recipe.stem


def series(run_dir: Path, name: str) -> dict[int, float]:
    return {row["step"]: row["metrics"][name] for row in read_metrics(run_dir / "metrics.jsonl")
            if name in row["metrics"]}


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_training_lowers_domain_loss(make_recipe, method):
    lr = 3e-3 if method == "full" else 1e-2  # adapters of a tiny model need a larger step
    run = train(make_recipe(f"run_{method}"), f"adapter.method={method}", f"train.lr={lr}",
                "train.max_steps=30", "train.eval_steps=15")
    domain = series(run, "eval/domain/loss")
    assert set(domain) == {0, 15, 30}, "evaluated at step 0 (the base model), then every eval_steps"
    assert domain[30] < domain[15] < domain[0], domain
    assert domain[30] < 0.99 * domain[0], domain
    assert set(series(run, "eval/general/loss")) == {0, 15, 30}
    final = run / "final"
    assert (final / ("config.json" if method == "full" else "adapter_config.json")).is_file()
    state = json.loads((run / "run_state.json").read_text())
    assert state["status"] == "finished" and state["final_step"] == 30


def test_qlora_lora_gradients_survive_an_eval_step(tiny_model_dir):
    """bitsandbytes 0.50.2 on AVX-512-bf16 CPUs zeroes LoRA grads after a no-grad forward
    unless adapt turns its fast path off (STACK-NOTES.md)."""
    import torch

    from adapt.adapters import apply_adapter
    from adapt.model import load_model
    from adapt.recipe.schema import AdapterSection, ModelSection

    adapter = AdapterSection(method="qlora", r=8)
    model = apply_adapter(load_model(str(tiny_model_dir), ModelSection(base_model=str(tiny_model_dir)), adapter), adapter)
    batch = torch.randint(0, 1000, (2, 32))
    model.eval()
    with torch.no_grad():
        model(input_ids=batch)
    model.train()
    model(input_ids=batch, labels=batch).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "lora_B" in n}
    assert len(grads) == 2 * 7, "all linear layers of both blocks carry LoRA"
    zero = [n for n, g in grads.items() if g is None or g.abs().sum() == 0]
    assert not zero, f"LoRA-B gradients are zero after an eval step: {zero}"


def test_rslora_rank_512_runs(make_recipe):
    run = train(make_recipe("rank512"), "adapter.r=512", "adapter.alpha=1024", "adapter.use_rslora=true",
                "train.max_steps=2", "train.eval_steps=2")
    config = json.loads((run / "final" / "adapter_config.json").read_text())
    assert config["r"] == 512 and config["use_rslora"] is True


def test_rerun_says_finished_and_refuses_a_changed_recipe(make_recipe, capsys):
    recipe = make_recipe("rerun")
    run = train(recipe, "train.max_steps=2", "train.eval_steps=2")
    capsys.readouterr()
    assert main(["train", str(recipe), "train.max_steps=2", "train.eval_steps=2"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert main(["train", str(recipe), "train.max_steps=2", "train.eval_steps=2", "train.lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert "train.lr" in err and "refusing to resume" in err and "Traceback" not in err
    assert json.loads((run / "run_state.json").read_text())["status"] == "finished"


def test_generate_from_a_run_directory(make_recipe, capsys):
    run = train(make_recipe("gen"), "train.max_steps=2", "train.eval_steps=2")
    capsys.readouterr()
    assert main(["generate", str(run), "--prompt", "def ", "--max-new-tokens", "8", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.strip()


def test_a_cpt_run_records_only_what_cpt_reads(make_recipe):
    """Runs and pilots begun before the post-training kinds existed must still resume: a CPT
    recipe's record has no sft/dpo/grpo sections and no chat template."""
    from adapt.recipe import load_recipe

    record = load_recipe(make_recipe("record")).recipe.record()
    assert not {"sft", "dpo", "grpo"} & set(record) and "chat_template" not in record["model"]
