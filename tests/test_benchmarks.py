"""The benchmarks' smoke test: `python -m benchmarks.run --tiny` runs all four and writes JSON of
the agreed shape. Their numbers are not checked here: timings belong in benchmarks/, not tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_tiny_writes_every_result(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--tiny", "--results", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("trainer", "packing", "data_pipeline", "planner", "run"):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["benchmark"] == name and result["schema"] == 1 and result["size"] == "tiny"
        assert {"date", "machine", "commit"} <= set(result) and result["machine"]["cpus"] >= 1
        assert result["rows"] and all(isinstance(row, dict) for row in result["rows"])
        assert isinstance(result["summary"], dict)
    trainer = json.loads((tmp_path / "trainer.json").read_text())
    assert {"baseline_tokens_per_s", "adapt_tokens_per_s", "ratio"} <= set(trainer["rows"][0])
    packing = json.loads((tmp_path / "packing.json").read_text())
    assert {row["layout"] for row in packing["rows"]} == {"one file per row, truncated",
                                                          "files cut at seq_len, padded", "adapt packing"}


def test_model_flops_count_every_weight_but_the_input_embedding():
    from transformers import LlamaConfig, LlamaForCausalLM

    from benchmarks.trainer import model_flops_per_token

    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    matmul = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in name)
    assert model_flops_per_token(config, seq_len=0) == 6 * matmul
    assert model_flops_per_token(config, seq_len=100) - 6 * matmul == 12 * 2 * 64 * 100
    assert model_flops_per_token(config, seq_len=0, frozen_base=True) == 4 * matmul
