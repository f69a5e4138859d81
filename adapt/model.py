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


def tokenizer_path(model: ModelSection) -> str:
    """Where the base's tokenizer is: with stacked adapters, the last one's (it may have grown)."""
    return model.adapters[-1] if model.adapters else resolve_model_path(model)


def local_max_positions(model: ModelSection) -> int | None:
    """The longest sequence the model allows, read without loading it (None for hub ids)."""
    if model.max_position_embeddings:
        return model.max_position_embeddings
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
    if model.rope_theta or model.rope_scaling or model.max_position_embeddings:
        from transformers import AutoConfig

        kwargs["config"] = AutoConfig.from_pretrained(path, trust_remote_code=model.trust_remote_code)
        apply_rope(kwargs["config"], model)
    if model.attn_implementation:
        kwargs["attn_implementation"] = model.attn_implementation
    kwargs["dtype"] = getattr(torch, model_dtype(model, adapter))
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
    if model.adapters:
        from peft import PeftModel

        grow_embeddings(loaded, load_tokenizer(model.adapters[-1], model.trust_remote_code))
        for path in model.adapters:  # W + ΔW1 + ΔW2 ...: each earlier stage's adapter, merged in
            loaded = PeftModel.from_pretrained(loaded, path).merge_and_unload()
    return loaded


def grow_embeddings(model, tokenizer) -> None:
    """Give the model rows for the tokens a run added to its tokenizer: FIM sentinels at the
    mean of the existing rows, as the run set them before training."""
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        from adapt.data.fim import add_sentinels, find_sentinels

        if find_sentinels(tokenizer):
            add_sentinels(tokenizer, model)
        else:
            model.resize_token_embeddings(len(tokenizer))


def add_special_tokens(tokenizer, model, names: list[str]) -> list[int]:
    """Add ``names`` as special tokens and grow the embeddings; return their ids. New rows (input
    and, if untied, output) start at the mean of the existing rows (see ``adapt.data.fim.add_sentinels``
    for why). Idempotent: names the tokenizer already has keep their rows. Without a model, only
    the tokenizer changes (data preparation needs no weights)."""
    import torch
    from tokenizers import AddedToken

    known = len(tokenizer)  # rows past this (padded vocabularies) are not real tokens
    tokenizer.add_tokens([AddedToken(n, special=True, normalized=False) for n in names], special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(names)
    if model is None:
        return ids
    if max(ids) >= model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # rows set below
    layers = [model.get_input_embeddings(), model.get_output_embeddings()]
    weights = {id(layer.weight): layer.weight for layer in layers if layer is not None}  # tied: once
    new = [i for i in ids if i >= known]
    with torch.no_grad():
        for weight in weights.values():
            weight[new] = weight[:known].float().mean(dim=0).to(weight.dtype)
    return ids


def apply_rope(config, model: ModelSection) -> None:
    """Set the recipe's RoPE base θ, scaling and position limit in a transformers config, and
    refuse what the architecture does not have. Other RoPE keys (e.g. a partial rotary factor)
    stay; a new scaling replaces the model's own."""
    if model.max_position_embeddings:
        config.max_position_embeddings = model.max_position_embeddings
    if model.rope_theta is None and model.rope_scaling is None:
        return
    key = "model.rope_scaling" if model.rope_scaling else "model.rope_theta"
    params = getattr(config, "rope_parameters", None)
    if not isinstance(params, dict) or "rope_theta" not in params:
        raise AdaptError(f"{config.model_type} has no single rotary position embedding to change", key=key,
                         fix="remove the RoPE settings; they apply to RoPE models such as Llama, Qwen or Mistral")
    if model.rope_scaling:
        params = {k: v for k, v in params.items() if k in ("rope_theta", "partial_rotary_factor")}
        params.update(model.rope_scaling.parameters())
    config.rope_parameters = {**params, "rope_theta": model.rope_theta or params["rope_theta"]}
    try:
        config.validate_rope()
    except (KeyError, ValueError, TypeError) as exc:
        raise AdaptError(f"{config.model_type} refuses these RoPE settings: {exc}", key=key,
                         fix="give the keys transformers needs for this rope type (see the README)") from None


def load_run_base(path: str, model: ModelSection, adapter: AdapterSection, tokenizer):
    """A run's base model as it trained on it: loaded as the recipe says (QLoRA in 4-bit), with
    the embedding rows the run added to the tokenizer (FIM sentinels, at the mean as it set them)."""
    loaded = load_model(path, model, adapter)
    grow_embeddings(loaded, tokenizer)
    return loaded


def load_trained(run_dir: Path, tokenizer, dequantized: bool = False):
    """A run's final model as it trained: the adapter over its base, loaded with the run's own
    recipe (its RoPE settings, its 4-bit base; ``dequantized`` turns that base into plain float
    weights, e.g. to merge into), or the whole saved model."""
    from adapt.recipe.schema import Recipe
    from adapt.train.run_state import load_state

    recipe = Recipe.model_validate(load_state(run_dir).recipe)
    final = run_dir / "final"
    if not (final / "adapter_config.json").is_file():  # stacked adapters are in its weights already
        whole = recipe.model.model_copy(update={"adapters": []})
        model = load_model(str(final), whole, recipe.adapter.model_copy(update={"method": "full"}))
    else:
        from peft import PeftModel

        base = load_run_base(resolve_model_path(recipe.model), recipe.model, recipe.adapter, tokenizer)
        if dequantized and recipe.adapter.method == "qlora":
            base = base.dequantize()
        model = PeftModel.from_pretrained(base, str(final))
    if recipe.train.objective == "diffusion":  # loading restores the layers' causal flags
        from adapt.diffusion.attention import make_bidirectional

        make_bidirectional(model)
    return model


def quantization_config(adapter: AdapterSection):
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=adapter.quant_type,
        bnb_4bit_use_double_quant=adapter.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, _compute_dtype(adapter)),
    )


def model_dtype(model: ModelSection, adapter: AdapterSection) -> str:
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
