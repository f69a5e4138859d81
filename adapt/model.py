"""Load the base model and tokenizer: a hub id, a local directory, or the built-in model.

One code path serves all three: the built-in model is built into a local directory first, and
hub ids and local directories both go through ``from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

from adapt.device import cuda_available
from adapt.errors import AdaptError
from adapt.recipe.schema import AdapterSection, ModelSection

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_model_path(model: ModelSection) -> str:
    """A path or hub id for ``from_pretrained``; builds the built-in model on first use."""
    if model.is_builtin:
        from adapt.builtin import ensure_builtin

        return str(ensure_builtin(model.builtin))
    path = Path(model.base_model).expanduser()
    return str(path) if path.exists() else model.base_model


def local_max_positions(model: ModelSection) -> int | None:
    """The longest sequence the model allows, read without loading it (None for hub ids)."""
    if model.is_builtin:
        return model.builtin.max_position_embeddings
    config = Path(model.base_model).expanduser() / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("max_position_embeddings")
    except (OSError, json.JSONDecodeError):
        return None


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:  # packing pads only the last block; EOS is a safe pad there
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, model: ModelSection, adapter: AdapterSection):
    """Load weights for training; QLoRA loads the base in 4-bit NF4 through bitsandbytes."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"trust_remote_code": model.trust_remote_code}
    if model.attn_implementation:
        kwargs["attn_implementation"] = model.attn_implementation
    kwargs["dtype"] = getattr(torch, _model_dtype(model, adapter))
    if adapter.method == "qlora":
        kwargs["quantization_config"] = quantization_config(adapter)
    try:
        loaded = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise AdaptError(f"cannot load base model {path!r}: {exc}".splitlines()[0], key="model.base_model",
                         fix="give a local directory written by save_pretrained, or a hub id "
                             "(hub ids need network access to the model hub)") from None
    if adapter.method == "qlora":
        from adapt.adapters import disable_bnb_cpu_fast_path

        disable_bnb_cpu_fast_path(loaded)
    return loaded


def load_run_base(path: str, model: ModelSection, adapter: AdapterSection, tokenizer):
    """A run's base model as it trained on it: loaded as the recipe says (QLoRA in 4-bit), with
    the embedding rows the run added to the tokenizer (FIM sentinels, at the mean as it set them)."""
    loaded = load_model(path, model, adapter)
    if loaded.get_input_embeddings().num_embeddings < len(tokenizer):
        from adapt.data.fim import add_sentinels, find_sentinels

        if find_sentinels(tokenizer):
            add_sentinels(tokenizer, loaded)
        else:
            loaded.resize_token_embeddings(len(tokenizer))
    return loaded


def quantization_config(adapter: AdapterSection):
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=adapter.quant_type,
        bnb_4bit_use_double_quant=adapter.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, _compute_dtype(adapter)),
    )


def _model_dtype(model: ModelSection, adapter: AdapterSection) -> str:
    """Weights stay fp32 for full fine-tuning (mixed precision autocasts); frozen bases on GPU use bf16."""
    if model.dtype != "auto":
        return _DTYPES[model.dtype]
    if adapter.method != "full" and cuda_available():
        return "bfloat16"
    return "float32"


def _compute_dtype(adapter: AdapterSection) -> str:
    if adapter.compute_dtype != "auto":
        return adapter.compute_dtype
    return "bfloat16" if cuda_available() else "float32"
