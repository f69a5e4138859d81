"""The masked-diffusion loss and the Trainer that optimises it.

    L = E_t[ -(1/t) · Σ_n 1[x_t^n = mask] · log p_θ(x_0^n | x_t) ]

estimated on a batch as Σ_rows (1/t_row) Σ_masked CE / Σ_rows maskable tokens: the sum is divided
by the number of tokens the rows could have masked (their lengths, as LLaDA divides by the
sequence length; S1's prefix and S2's padding excluded), not by how many they did mask, which
would cancel the 1/t weight. The Trainer's ``eval/<set>/loss`` is this objective; a report's
masked-token loss is the plain mean cross-entropy (``adapt.diffusion.evaluate``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback


def diffusion_loss(logits: torch.Tensor, labels: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``labels``: the original token where masked, else -100. Logits are shifted: position n-1
    predicts token n (see ``adapt.diffusion``)."""
    targets = labels[:, 1:]
    ce = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets.clamp(min=0), reduction="none")
    per_row = (ce * (targets != -100)).sum(dim=1) / t.to(ce.device)
    return per_row.sum() / tokens.to(ce.device).sum().clamp(min=1)


class DiffusionTrainer(Trainer):
    """A transformers Trainer whose loss is ``diffusion_loss`` on the collator's noised batches."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # the Trainer then averages over gradient accumulation

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        t, tokens, labels = inputs.pop("diffusion_t"), inputs.pop("diffusion_tokens"), inputs.pop("labels")
        outputs = model(**inputs)
        loss = diffusion_loss(outputs.logits, labels, t, tokens)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, dict(inputs))
        return loss.detach(), None, None


class EpochCallback(TrainerCallback):
    """Tells the collator how many passes over the training data it has made, so the strategies'
    probabilities rise on schedule. A budget in tokens is one Trainer epoch over the mixture's
    blocks, however often it repeats the data, so passes are counted in steps: ``steps_per_pass``."""

    def __init__(self, collator, steps_per_pass: float):
        self.collator, self.steps_per_pass = collator, max(steps_per_pass, 1e-9)

    def on_step_begin(self, args, state, control, **kwargs):
        self.collator.epoch = state.global_step / self.steps_per_pass
