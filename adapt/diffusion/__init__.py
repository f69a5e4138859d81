"""Masked-diffusion adaptation of an autoregressive model (``train.objective: diffusion``), after
CoDA (arXiv 2510.03270), LLaDA and Dream.

- ``attention``: full, non-causal attention through transformers' own mask path.
- ``masking``: the collator that noises batches (t ~ U(t_min, 1], CoDA's strategies S1-S3).
- ``loss``: the 1/t-weighted masked cross-entropy, and the Trainer that optimises it.
- ``sample``: confidence-based iterative unmasking, and infilling with it.
- ``evaluate``: masked-token loss and infill exact match for ``adapt eval`` and run reports.

Predictions are shifted as in Dream: the logits at position n-1 predict token n, so the
autoregressive model's next-token head is reused rather than relearnt. Position 0 is therefore
never masked; the sampler starts every sequence with the EOS token.
"""
