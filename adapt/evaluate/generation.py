"""Batched generation from token prompts, left-padded, with transformers ``generate``."""

from __future__ import annotations

from tqdm.auto import tqdm


def generate_batched(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
                     desc: str, sample: dict | None = None, num_return_sequences: int = 1) -> list[list[int]]:
    """New token ids per prompt (``num_return_sequences`` rows per prompt, in order), cut after the
    first EOS. Greedy unless ``sample`` gives ``temperature``/``top_p``."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    device = next(model.parameters()).device
    outputs: list[list[int]] = []
    per_batch = max(1, batch_size // num_return_sequences)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths pad less
    by_prompt: dict[int, list[list[int]]] = {}
    for start in tqdm(range(0, len(order), per_batch), desc=desc, unit="batch", leave=False):
        chosen = order[start: start + per_batch]
        width = max(len(prompts[i]) for i in chosen)
        ids = torch.full((len(chosen), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        for row, i in enumerate(chosen):
            ids[row, width - len(prompts[i]):] = torch.as_tensor(prompts[i], dtype=torch.long)
            mask[row, width - len(prompts[i]):] = 1
        options = {"do_sample": True, **sample} if sample else {"do_sample": False, "temperature": None,
                                                                "top_p": None, "top_k": None}
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos,
                                 num_return_sequences=num_return_sequences, **options)
        new = out[:, width:].tolist()
        for row, i in enumerate(chosen):
            rows = new[row * num_return_sequences: (row + 1) * num_return_sequences]
            by_prompt[i] = [r[: r.index(eos) + 1] if eos in r else r for r in rows]
    for i in range(len(prompts)):
        outputs.extend(by_prompt[i])
    return outputs
