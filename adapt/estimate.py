"""What a run will cost, before any compute is spent: tokens, steps, time and peak memory.

Pure arithmetic over the model config and file sizes (no torch), so ``adapt validate`` stays
fast. Time uses the usual 6·N·T training FLOPs (Kaplan et al. 2020, eq. 2.1) plus attention,
over a throughput measured on the reference CPU; memory adds weights, gradients, AdamW state,
activations and logits. Both are estimates, labelled as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from adapt.recipe.schema import Recipe

BYTES_PER_TOKEN = 3.5  # code and prose with an 8k-50k BPE vocabulary; exact counts come from `adapt data`
# Effective training FLOP/s: measured on a 2-core AVX-512 CPU (STACK-NOTES: 5.3M params at ~3,000
# tokens/s in fp32, twice that in bf16); on GPUs a typical 35% of an H100's dense bf16 peak.
FLOPS_PER_S = {"cpu-fp32": 1.0e11, "cpu-bf16": 2.0e11, "cuda": 0.35 * 989e12}
PROCESS_OVERHEAD_BYTES = 700e6  # torch + transformers loaded, measured RSS before the model


@dataclass
class ModelShape:
    vocab: int
    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool

    @property
    def params(self) -> int:
        head_dim = self.hidden // self.heads
        attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head_dim
        per_layer = attn + 3 * self.hidden * self.ffn + 2 * self.hidden
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * per_layer + embeddings + self.hidden

    def lora_params(self, r: int) -> int:
        """Trainable LoRA parameters with all linear layers targeted: r·(in+out) per layer."""
        head_dim = self.hidden // self.heads
        kv = self.kv_heads * head_dim
        dims = [(self.hidden, self.hidden), (self.hidden, kv), (self.hidden, kv), (self.hidden, self.hidden),
                (self.hidden, self.ffn), (self.hidden, self.ffn), (self.ffn, self.hidden)]
        return self.layers * sum(r * (i + o) for i, o in dims)


def model_shape(recipe: Recipe) -> ModelShape | None:
    if recipe.model.is_builtin:
        b = recipe.model.builtin
        return ModelShape(b.vocab_size, b.hidden_size, b.intermediate_size, b.num_layers,
                          b.num_heads, b.num_heads, True)
    path = Path(recipe.model.base_model).expanduser() / "config.json"
    try:
        c = json.loads(path.read_text())
        return ModelShape(c["vocab_size"], c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"],
                          c["num_attention_heads"], c.get("num_key_value_heads") or c["num_attention_heads"],
                          bool(c.get("tie_word_embeddings", False)))
    except (OSError, KeyError, ValueError):
        return None  # a hub id, or an architecture without these fields


def estimate(recipe: Recipe, steps: int, eval_tokens: int, device: str) -> dict:
    """Time (seconds) and peak memory (bytes) for ``steps`` optimizer steps; None where unknown."""
    shape = model_shape(recipe)
    train_tokens = steps * recipe.train.tokens_per_step
    if shape is None:
        return {"params": None, "trainable_params": None, "seconds": None, "peak_memory_bytes": None}
    method = recipe.adapter.method
    trainable = shape.params if method == "full" else shape.lora_params(recipe.adapter.r)
    attention = 12 * shape.layers * shape.hidden * recipe.train.seq_len  # per token, fwd+bwd
    # A frozen base skips its weight gradients: about 4·N per token instead of 6·N.
    per_token = (6 if method == "full" else 4) * shape.params + attention
    evals = steps // recipe.train.eval_steps + 2
    flops = per_token * train_tokens + 2 * shape.params * eval_tokens * evals
    seconds = flops / FLOPS_PER_S[device]

    weight_bytes = shape.params * (0.55 if method == "qlora" else 4)
    optimizer_bytes = trainable * 16  # fp32 master grads + AdamW's two moments + the update
    batch_tokens = recipe.train.batch_size * recipe.train.seq_len
    activations = batch_tokens * shape.hidden * shape.layers * 34 * (0.3 if recipe.train.gradient_checkpointing else 1)
    logits = batch_tokens * shape.vocab * 4 * 3  # logits, their softmax and gradient in fp32
    peak = PROCESS_OVERHEAD_BYTES + weight_bytes + optimizer_bytes + activations + logits
    return {"params": shape.params, "trainable_params": trainable, "seconds": seconds, "peak_memory_bytes": peak}
