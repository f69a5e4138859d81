"""Chat templates, and SFT examples tokenized with the mask of the tokens that carry the loss.

``model.chat_template`` is the model's own template by default, adapt's ChatML, or a Jinja file.
Loss on assistant tokens only needs ``{% generation %}`` markers in the template, through which
transformers' ``apply_chat_template(return_assistant_tokens_mask=True)`` marks assistant tokens.
ChatML as shipped has them; a model template without them is patched by trl's
``get_training_chat_template`` when trl knows the family, and is otherwise an error that offers
the alternatives.
"""

from __future__ import annotations

from adapt.recipe.load import LoadedRecipe

IM_END = "<|im_end|>"  # ChatML's end of turn
# ChatML (as Qwen and many others use it). The assistant's end-of-turn token sits inside the
# generation block, so the model is trained to stop; the prompt renders the same alone and
# followed by its answer (prefix-preserving), which prompt/completion masking relies on.
CHATML = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
_PROBE = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]  # no system: Gemma refuses one


def is_conversational(row: dict) -> bool:
    return "messages" in row or any(isinstance(row.get(f), list) for f in ("prompt", "completion", "chosen"))


def set_chat_template(loaded: LoadedRecipe, tokenizer, assistant_masks: bool = False) -> None:
    """Give ``tokenizer`` the recipe's chat template, checked to render (and, for assistant-only
    loss, to mark assistant tokens).

    ChatML on a tokenizer without ``<|im_start|>``/``<|im_end|>`` tokens (the built-in model's)
    renders them as ordinary text, a few tokens each. Adding them as new tokens would need
    trainable embedding rows under LoRA, and trl's fused LM head reads the head's weight directly,
    past peft's trainable-token wrapper, so those rows would not train in SFT.
    """
    choice, key = loaded.recipe.model.chat_template, "model.chat_template"
    if choice == "model" and not tokenizer.chat_template:
        if not loaded.recipe.model.builtin_family:
            raise loaded.error("the model has no chat template", key,
                               fix="set model.chat_template: chatml, or a .jinja file, or use prompt/completion "
                                   "text rows")
        choice = "chatml"  # the built-in model's template
    if choice == "chatml":
        tokenizer.chat_template = CHATML
    elif choice != "model":
        path = loaded.resolve_path(choice)
        if not path.is_file():
            raise loaded.error(f"chat template file {path} not found", key,
                               fix="give model, chatml, or a .jinja file relative to the recipe")
        tokenizer.chat_template = path.read_text()
    _check_renders(loaded, tokenizer)
    if assistant_masks:
        _ensure_generation_markers(loaded, tokenizer)


def _check_renders(loaded: LoadedRecipe, tokenizer) -> None:
    try:
        tokenizer.apply_chat_template(_PROBE, tokenize=False)
    except Exception as exc:  # jinja2 raises TemplateError subclasses, and templates may raise anything
        raise loaded.error(f"the chat template does not render a user/assistant conversation: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", "model.chat_template",
                           fix="fix the template, or use model.chat_template: chatml") from None


def _ensure_generation_markers(loaded: LoadedRecipe, tokenizer) -> None:
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError:
        patched = None
    if patched is None:
        raise loaded.error(
            "the chat template has no {% generation %} markers, so assistant tokens cannot be told apart "
            "for assistant-only loss", "model.chat_template",
            fix="use model.chat_template: chatml (adapt's, with markers) or a .jinja file with markers; or give "
                "prompt/completion rows; or set sft.assistant_only_loss: false")
    tokenizer.chat_template = patched


def tokenize_example(row: dict, tokenizer, assistant_only: bool) -> tuple[list[int], list[int]]:
    """``(input_ids, loss_mask)`` of one normalised SFT row (see ``adapt.data.rows``).

    Conversations: the template's assistant tokens. Prompt/completion: the tokens after the
    longest common prefix of the prompt alone and prompt + completion (as trl does, since a
    tokenizer may merge tokens across the boundary). Text rows end with EOS, conversations with
    whatever the template ends a turn with.
    """
    if "messages" in row:
        out = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=assistant_only)
        ids = list(out["input_ids"])
        return ids, list(out["assistant_masks"]) if assistant_only else [1] * len(ids)
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, list):
        prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                                   return_dict=True)["input_ids"]
        ids = list(tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"])
    else:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    shared = 0
    while shared < min(len(prompt_ids), len(ids)) and prompt_ids[shared] == ids[shared]:
        shared += 1
    mask = [0] * shared + [1] * (len(ids) - shared) if assistant_only else [1] * len(ids)
    return ids, mask


def stop_token_ids(tokenizer) -> list[int]:
    """Tokens that end a generated turn: EOS, and ChatML's end-of-turn where the tokenizer has it."""
    ids = [tokenizer.eos_token_id]
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id and im_end not in ids:
        ids.append(im_end)
    return ids
