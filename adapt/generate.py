"""``adapt generate``: sample from a base model or a run's adapted model, for a quick look."""

from __future__ import annotations

from pathlib import Path

import yaml

from adapt.errors import AdaptError


def resolve_generation_model(target: str) -> tuple[str, bool]:
    """(path or hub id, is_adapter) for ``builtin``, a run directory, a model directory or a hub id."""
    from adapt.model import resolve_model_path
    from adapt.recipe.schema import ModelSection

    if target == "builtin":
        return resolve_model_path(ModelSection()), False
    path = Path(target).expanduser()
    if (path / "run_state.json").is_file():
        final = path / "final"
        if not final.is_dir():
            raise AdaptError(f"run {path} has no final model yet", file=str(path),
                             fix="finish it with `adapt train` first, or point at a checkpoint directory")
        if not (final / "adapter_config.json").is_file():
            return str(final), False
        recipe = yaml.safe_load((path / "recipe.yaml").read_text())
        resolve_model_path(ModelSection(**recipe["model"]))  # builds the built-in base if it was deleted
        return str(final), True
    if path.exists():
        return str(path), (path / "adapter_config.json").is_file()
    if target.startswith(("/", ".", "~")) or target.count("/") > 1:  # a path, not a hub id (owner/name)
        raise AdaptError(f"{target} does not exist", file=target,
                         fix="give a run directory, a model directory, `builtin` or a hub id")
    return target, False


def generate(target: str, prompt: str, max_new_tokens: int = 64, temperature: float = 0.8,
             top_p: float = 0.95, seed: int = 0, chat: bool = False) -> str:
    """A completion of ``prompt``; with ``chat``, the reply to ``prompt`` as a user message, through
    the model's chat template, stopping at the end of the assistant's turn."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adapt.data.chat import IM_END

    path, is_adapter = resolve_generation_model(target)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if (Path(target) / "run_state.json").is_file():
        from adapt.model import load_trained

        model = load_trained(Path(target), tokenizer)  # with the run's RoPE settings and base
    elif is_adapter:
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path)
    else:
        model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    torch.manual_seed(seed)
    if getattr(model.config, "is_causal", True) is False:  # a diffusion model (a run's, or exported)
        if chat:
            raise AdaptError(f"{target} is a diffusion model; --chat generates autoregressively",
                             fix="drop --chat: the prompt is completed by unmasking")
        return _diffusion_completion(model, tokenizer, prompt, max_new_tokens)
    stop = {}
    if chat:
        if not tokenizer.chat_template:
            raise AdaptError(f"{target} has no chat template", fix="drop --chat, or point at an SFT run's directory")
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                               add_generation_prompt=True)
        # ChatML's end of turn may be plain text (the built-in tokenizer has no token for it).
        stop = {"stop_strings": [IM_END], "tokenizer": tokenizer} if IM_END in prompt else {}
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=not chat)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                             temperature=temperature if temperature > 0 else None, top_p=top_p,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **stop)
    text = tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return text.split(IM_END)[0] if chat else text


def _diffusion_completion(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """A diffusion-trained model completes by unmasking ``max_new_tokens`` masks after the prompt,
    four per step, greedily (temperature and top-p do not apply)."""
    from adapt.diffusion.attention import make_bidirectional
    from adapt.diffusion.sample import infill

    if tokenizer.mask_token_id is None:
        raise AdaptError("this diffusion model's tokenizer names no mask token", fix="export it again with adapt export")
    make_bidirectional(model)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    middle = infill(model, tokenizer, [ids], [[]], [max_new_tokens], tokenizer.mask_token_id,
                    steps=max(1, max_new_tokens // 4))[0]
    return tokenizer.decode(middle, skip_special_tokens=True)
