"""Long-context extension: the RoPE base θ and scalings reach the saved model (its rotary
embedding's inv_freq, not only its config), through a full run and through a merged LoRA export;
settings the architecture does not have are refused before anything runs."""

from __future__ import annotations

import json

import pytest
import torch

from adapt.cli import main


def _inv_freq(model) -> torch.Tensor:
    return model.model.rotary_emb.inv_freq


def _expected(theta: float, head_dim: int) -> torch.Tensor:
    return 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim)


def test_a_full_run_saves_the_new_theta(make_recipe, tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    recipe = make_recipe("theta", evaluation={"completion": {"enabled": False}})
    assert main(["train", str(recipe), "adapter.method=full", "model.rope_theta=1000000",
                 "model.max_position_embeddings=1024", "train.seq_len=128", "train.max_steps=2"]) == 0
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "runs" / "theta" / "final")
    head_dim = trained.config.hidden_size // trained.config.num_attention_heads
    assert trained.config.rope_parameters["rope_theta"] == 1e6 and trained.config.max_position_embeddings == 1024
    assert torch.allclose(_inv_freq(trained), _expected(1e6, head_dim))
    assert torch.allclose(_inv_freq(base), _expected(10000.0, head_dim))


def test_a_merged_lora_export_keeps_the_scaling(make_recipe, tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    recipe = make_recipe("linear", evaluation={"completion": {"enabled": False}})
    assert main(["train", str(recipe), "model.rope_scaling={type: linear, factor: 2.0}", "train.max_steps=2"]) == 0
    assert main(["export", str(tmp_path / "runs" / "linear"), "--merged"]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "runs" / "linear" / "export-merged")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert exported.config.rope_parameters["rope_type"] == "linear"
    assert torch.allclose(_inv_freq(exported), _inv_freq(base) / 2)


@pytest.mark.parametrize("override, key, words", [
    ("model.rope_scaling={type: llama3, factor: 8.0}", "model.rope_scaling", "low_freq_factor"),
    ("model.rope_scaling={type: ntk, factor: 2.0}", "model.rope_scaling.type", "linear"),
    ("model.rope_scaling={type: linear, factor: 0.5}", "model.rope_scaling.factor", "greater than 1"),
])
def test_bad_rope_settings_name_their_key(make_recipe, capsys, override, key, words):
    assert main(["validate", str(make_recipe()), override]) == 2
    err = capsys.readouterr().err
    assert key in err and words in err and "Traceback" not in err


def test_a_model_without_rope_is_refused(make_recipe, tmp_path, capsys):
    from transformers import GPT2Config

    gpt2 = tmp_path / "gpt2"
    GPT2Config(n_layer=1, n_embd=64, n_head=2).save_pretrained(gpt2)
    assert json.loads((gpt2 / "config.json").read_text())["model_type"] == "gpt2"
    assert main(["validate", str(make_recipe()), f"model.base_model={gpt2}", "model.rope_theta=1000000"]) == 2
    err = capsys.readouterr().err
    assert "model.rope_theta" in err and "gpt2 has no single rotary position embedding" in err
