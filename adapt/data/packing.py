"""Pack token streams into fixed ``seq_len`` blocks, EOS between documents, nothing dropped.

A document longer than a block continues in the next one. Only the very last block of a
stream is padded, and its padding is masked out of the loss.

Two modes. ``blocks``: classic pretraining blocks, where a token may attend to the documents
before it in its block. ``documents`` (the default): ``position_ids`` restart after every EOS
and no attention mask is passed, so transformers builds a block-diagonal causal mask from the
position ids (``masking_utils.find_packed_sequence_indices``) and no token attends across a
document boundary. transformers only does this without a KV cache, hence ``configure_model``.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import default_data_collator

PAD = -1  # marks padding inside a block array; never a real token id


def pack(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """(n_blocks, seq_len) int64 blocks; the last one padded with ``PAD``."""
    n_blocks = -(-tokens.size // seq_len)
    blocks = np.full(n_blocks * seq_len, PAD, dtype=np.int64)
    blocks[: tokens.size] = tokens
    return blocks.reshape(n_blocks, seq_len)


def document_positions(block: np.ndarray, eos_token_id: int) -> np.ndarray:
    """Position ids that restart at 0 after every EOS (and at the block's start)."""
    index = np.arange(block.size)
    starts = np.zeros(block.size, dtype=bool)
    starts[0] = True
    starts[1:] = block[:-1] == eos_token_id
    return index - np.maximum.accumulate(np.where(starts, index, 0))


def configure_model(model, mode: str) -> None:
    """Document packing needs the KV cache off in training, or transformers ignores the positions."""
    if mode == "documents":
        model.config.use_cache = False


collate = default_data_collator  # blocks all have seq_len tokens: stacking is all collation needs


class BlockDataset(torch.utils.data.Dataset):
    """Causal-LM examples from packed blocks: labels are the inputs, padding gets label -100.
    With ``eos_token_id`` (document mode) they carry restarting ``position_ids`` instead of a mask."""

    def __init__(self, blocks: np.ndarray, pad_token_id: int, eos_token_id: int | None = None):
        self.blocks = blocks
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        raw = np.asarray(self.blocks[i], dtype=np.int64)
        block = torch.from_numpy(raw)
        real = block != PAD
        item = {"input_ids": torch.where(real, block, self.pad_token_id), "labels": torch.where(real, block, -100)}
        if self.eos_token_id is None:
            item["attention_mask"] = real.long()
        else:
            item["position_ids"] = torch.from_numpy(document_positions(raw, self.eos_token_id))
        return item

    @property
    def num_tokens(self) -> int:
        return int((np.asarray(self.blocks) != PAD).sum())
