"""The adapter section -> a peft ``LoraConfig``, applied to the loaded model."""

from __future__ import annotations

from adapt.recipe.schema import AdapterSection


def lora_config(adapter: AdapterSection, **extra):
    from peft import LoraConfig

    return LoraConfig(
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=adapter.target_modules,
        use_rslora=adapter.use_rslora,
        use_dora=adapter.use_dora,
        modules_to_save=adapter.modules_to_save,
        task_type="CAUSAL_LM",
        **extra,
    )


def apply_adapter(model, adapter: AdapterSection, gradient_checkpointing: bool = False,
                  new_token_ids: list[int] | None = None):
    """Wrap ``model`` for training: unchanged for full fine-tuning, a peft model otherwise.
    ``new_token_ids`` (e.g. added FIM sentinels) get trainable embedding rows under LoRA."""
    if adapter.method == "full":
        return model
    from peft import get_peft_model

    extra = {}
    if new_token_ids:
        from adapt.data.fim import lora_trainable_token_kwargs

        extra = lora_trainable_token_kwargs(new_token_ids, model)
    return get_peft_model(prepare_base(model, adapter, gradient_checkpointing), lora_config(adapter, **extra))


def prepare_base(model, adapter: AdapterSection, gradient_checkpointing: bool = False):
    """Ready a 4-bit base for LoRA (peft's kbit preparation); other bases are returned as they are."""
    if adapter.method != "qlora":
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)


def disable_bnb_cpu_fast_path(model) -> int:
    """Keep bitsandbytes' 4-bit layers on the autograd path on CPUs with AVX-512 bf16.

    bitsandbytes 0.50.2 switches a ``Linear4bit`` to ``gemv_4bit`` after any no-grad forward on
    such CPUs; that kernel has no autograd, so LoRA gradients through the layer silently become
    zero after the first evaluation (see STACK-NOTES.md). Returns how many layers were changed.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def trainable_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
