"""Full (bidirectional) attention for a decoder-only transformers model, without touching its code.

transformers 5 builds a bidirectional mask when ``config.is_causal`` is False
(``masking_utils.create_causal_mask``). Each attention module also carries ``is_causal``, which
SDPA and flash attention fall back on when the mask is skipped (no padding), so it is cleared
too. ``is_causal`` is saved in the config, but the modules' flags are reset when a model is
loaded: call ``make_bidirectional`` after every load of a diffusion-trained model.
"""

from __future__ import annotations


def make_bidirectional(model) -> None:
    configs = {id(m.config): m.config for m in model.modules() if getattr(m, "config", None) is not None}
    for config in configs.values():
        config.is_causal = False
        config.use_cache = False  # a KV cache assumes earlier tokens never see later ones
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False


def add_mask_token(tokenizer, model, name: str) -> tuple[int, list[int]]:
    """(the mask token's id, ids added to the tokenizer), its embedding row at the mean of the others."""
    from adapt.model import add_special_tokens

    before = len(tokenizer)
    mask_id = add_special_tokens(tokenizer, model, [name])[0]
    tokenizer.mask_token = name  # saved with the tokenizer: generation finds it by role
    return mask_id, [mask_id] if mask_id >= before else []
