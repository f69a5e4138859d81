"""Pack token streams into fixed ``seq_len`` blocks, EOS between documents, nothing dropped.

A document longer than a block continues in the next one. Only the very last block of a
stream is padded, and its padding is masked out of attention and loss.
"""

from __future__ import annotations

import numpy as np
import torch

PAD = -1  # marks padding inside a block array; never a real token id


def pack(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """(n_blocks, seq_len) int64 blocks; the last one padded with ``PAD``."""
    n_blocks = -(-tokens.size // seq_len)
    blocks = np.full(n_blocks * seq_len, PAD, dtype=np.int64)
    blocks[: tokens.size] = tokens
    return blocks.reshape(n_blocks, seq_len)


class BlockDataset(torch.utils.data.Dataset):
    """Causal-LM examples from packed blocks: labels are the inputs, padding gets label -100."""

    def __init__(self, blocks: np.ndarray, pad_token_id: int):
        self.blocks = blocks
        self.pad_token_id = pad_token_id

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        block = torch.from_numpy(np.asarray(self.blocks[i], dtype=np.int64))
        real = block != PAD
        return {
            "input_ids": torch.where(real, block, self.pad_token_id),
            "labels": torch.where(real, block, -100),
            "attention_mask": real.long(),
        }

    @property
    def num_tokens(self) -> int:
        return int((np.asarray(self.blocks) != PAD).sum())
