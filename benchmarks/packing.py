"""Packing: adapt's packed blocks against padding each file to the longest in its batch.

Input: real code files of varying length (the Python standard library and
``../shared/corpora/embedded``), tokenized with the built-in tokenizer, in a shuffled order.
Three layouts of the same files:

- adapt: ``pack`` into ``seq_len`` blocks, position ids restarting at each document (the default
  ``documents`` mode); nothing is dropped.
- the baseline: one file per row, truncated at ``seq_len``, each batch padded to its longest row
  with an attention mask, which is what a tokenizer with ``truncation=True, padding="longest"``
  gives a Trainer. The tail of every long file is dropped.
- a stronger baseline: files cut into pieces of at most ``seq_len`` tokens (nothing dropped),
  each batch padded to its longest piece.

Efficiency is real tokens over all tokens of a layout's batches. Each layout then trains the same
untrained built-in-size model (forward, backward, AdamW step, adapt's precision) on its first
batches; effective tokens/s counts real (non-pad) tokens only. Long files dominate real code (a
few device headers hold 100k tokens), so both 512 and 2048 tokens are measured.

    python -m benchmarks.packing [--size quick] [--seq-len 512] [--batch-size 8]

Reports packing efficiency (real tokens over all tokens) and effective tokens/s for each.
"""

from __future__ import annotations

import argparse
import random
import sysconfig
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED_CORPORA, add_common_arguments, builtin_dir, note, print_table, write_result

CODE_SUFFIXES = {".py", ".c", ".h", ".cpp", ".S", ".ino"}
FILES = {"tiny": 12, "quick": 200, "full": 500}
TIMED_BATCHES = {"tiny": 2, "quick": 6, "full": 16}


def code_files(seed: int = 0) -> list[Path]:
    """Stdlib Python (not its tests) and the embedded C corpus, in a fixed shuffled order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in stdlib.rglob("*.py") if not {"test", "tests", "site-packages", "dist-packages"}
             & set(p.relative_to(stdlib).parts)]
    embedded = SHARED_CORPORA / "embedded"
    if embedded.is_dir():
        files += [p for p in embedded.rglob("*") if p.suffix in CODE_SUFFIXES and p.is_file()]
    files.sort()
    random.Random(seed).shuffle(files)
    return files


def tokenized_files(tokenizer, files: list[Path]) -> list[np.ndarray]:
    """Each file's tokens plus EOS."""
    from adapt.data.sources import read_text_file

    texts = [text for path in files if (text := read_text_file(path)[0])]
    return [np.asarray(ids + [tokenizer.eos_token_id]) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def packed_batches(docs: list[np.ndarray], seq_len: int, batch_size: int, pad_id: int, eos_id: int):
    """adapt's layout: ``pack`` into blocks, items from ``BlockDataset`` in document mode."""
    from adapt.data.packing import BlockDataset, collate, pack

    dataset = BlockDataset(pack(np.concatenate(docs), seq_len), pad_id, eos_id)
    items = [dataset[i] for i in range(len(dataset))]
    return [collate(items[i: i + batch_size]) for i in range(0, len(items), batch_size)]


def padded_batches(docs: list[np.ndarray], seq_len: int, batch_size: int, pad_id: int, *, cut: bool):
    """Baselines, each batch padded to its longest row. ``cut=False``: one file per row, truncated
    at seq_len (what a tokenizer with ``truncation=True, padding="longest"`` feeds a Trainer).
    ``cut=True``: files cut into pieces of at most seq_len tokens, so nothing is dropped."""
    import torch

    rows = [doc[i: i + seq_len] for doc in docs for i in range(0, doc.size, seq_len if cut else doc.size)]
    rows = [row[:seq_len] for row in rows]
    batches = []
    for i in range(0, len(rows), batch_size):
        group = rows[i: i + batch_size]
        width = max(p.size for p in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, piece in enumerate(group):
            ids[row, : piece.size] = torch.from_numpy(piece.astype(np.int64))
            mask[row, : piece.size] = 1
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
    return batches


def real_tokens(batch) -> int:
    return int((batch["labels"] != -100).sum())


def train_seconds(model, batches: list[dict], bf16: bool) -> float:
    """Seconds to train on every batch: forward, backward, optimizer step."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    start = time.perf_counter()
    for batch in batches:
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**{k: v.to(model.device) for k, v in batch.items()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(model_dir: Path, docs: list[np.ndarray], seq_len: int, batch_size: int, timed_batches: int,
            tokenizer, bf16: bool, device: str) -> list[dict]:
    """One row per layout: efficiency over all its batches; tokens/s over its first timed batches
    (the order is shuffled, so they are a fair sample)."""
    import torch
    from transformers import AutoModelForCausalLM

    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    layouts = {"one file per row, truncated": padded_batches(docs, seq_len, batch_size, pad, cut=False),
               "files cut at seq_len, padded": padded_batches(docs, seq_len, batch_size, pad, cut=True),
               "adapt packing": packed_batches(docs, seq_len, batch_size, pad, eos)}
    rows = []
    for name, batches in layouts.items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(model_dir).to(device)
        model.config.use_cache = False
        train_seconds(model, batches[:1], bf16)  # warm-up
        timed = batches[:timed_batches]
        seconds = train_seconds(model, timed, bf16)
        real = sum(real_tokens(b) for b in batches)
        total = sum(b["input_ids"].numel() for b in batches)
        rows.append({"seq_len": seq_len, "layout": name, "batches": len(batches), "real_tokens": real,
                     "dropped_tokens": sum(d.size for d in docs) - real, "efficiency": real / total,
                     "timed_batches": len(timed), "seconds": seconds,
                     "effective_tokens_per_s": sum(real_tokens(b) for b in timed) / seconds})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--seq-len", type=int, action="append", help="repeat for several (default: 512 and 2048)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--files", type=int, help="files in the sample (default by size)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmark: --device cuda, but torch sees no GPU")
    from transformers import AutoTokenizer

    from adapt.device import resolve_precision

    tiny = args.size == "tiny"
    model_dir = builtin_dir(args.size)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    docs = tokenized_files(tokenizer, code_files()[: args.files or FILES[args.size]])
    lengths = np.array([d.size for d in docs])
    note(f"{len(docs)} files, {lengths.sum():,} tokens; per file: median {int(np.median(lengths)):,}, "
         f"90th percentile {int(np.percentile(lengths, 90)):,}, max {lengths.max():,}")
    bf16 = resolve_precision("auto") == "bf16"
    rows = []
    for seq_len in args.seq_len or ([128] if tiny else [512, 2048]):
        rows += measure(model_dir, docs, seq_len, args.batch_size, TIMED_BATCHES[args.size], tokenizer, bf16,
                        args.device)
    by_len: dict[int, dict] = {}
    for row in rows:
        by_len.setdefault(row["seq_len"], {})[row["layout"]] = row
    per_len = {
        str(n): {"packing_efficiency": r["adapt packing"]["efficiency"],
                 "baseline_efficiency": r["one file per row, truncated"]["efficiency"],
                 "effective_throughput_ratio": r["adapt packing"]["effective_tokens_per_s"]
                 / r["one file per row, truncated"]["effective_tokens_per_s"],
                 "ratio_to_cut_files": r["adapt packing"]["effective_tokens_per_s"]
                 / r["files cut at seq_len, padded"]["effective_tokens_per_s"],
                 "corpus_share_trained_by_baseline": r["one file per row, truncated"]["real_tokens"] / lengths.sum()}
        for n, r in by_len.items()}
    summary = {"by_seq_len": per_len, "targets": {"packing_efficiency": 0.99, "effective_throughput_ratio": 2.0},
               "meets_targets": all(v["packing_efficiency"] >= 0.99 and v["effective_throughput_ratio"] >= 2.0
                                    for v in per_len.values())}
    path = write_result("packing", args.size, rows, summary, args.results, batch_size=args.batch_size,
                        files=len(docs), corpus_tokens=int(lengths.sum()), precision="bf16" if bf16 else "fp32")
    print_table(rows, [("seq_len", "seq_len", "d"), ("layout", "layout", ""), ("batches", "batches", ",d"),
                       ("efficiency", "efficiency", ".1%"), ("dropped_tokens", "dropped tokens", ",d"),
                       ("effective_tokens_per_s", "effective tok/s", ",.0f")])
    for n, v in per_len.items():
        print(f"seq_len {n}: packing efficiency {v['packing_efficiency']:.2%} (target >= 99%); effective throughput "
              f"{v['effective_throughput_ratio']:.2f}x one truncated file per row (target >= 2x), "
              f"{v['ratio_to_cut_files']:.2f}x padded pieces")
    print(f"-> {path}")
    return summary


if __name__ == "__main__":
    main()
