"""The built-in base model: adapt's embedded default, like SQLite is for a database.

It needs no download. On first use adapt trains a byte-level BPE tokenizer and pretrains a small
Llama-style model on the Python standard library of this machine (plus any directories the
recipe names), then caches it under ``$ADAPT_HOME/cache/builtin/<fingerprint>``. The general
held-out set is a fixed list of stdlib files, so forgetting is comparable across runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from adapt.paths import cache_dir
from adapt.recipe.schema import BuiltinModel

# Held out of pretraining and used as the general eval set. Fixed by name so results compare
# across runs; each exists in CPython 3.9 to 3.13 (a missing one is skipped).
HELDOUT_STDLIB = (
    "json/decoder.py", "json/encoder.py", "email/feedparser.py", "email/header.py", "http/cookies.py",
    "urllib/parse.py", "csv.py", "difflib.py", "fractions.py", "heapq.py", "textwrap.py", "shlex.py",
    "statistics.py", "calendar.py", "configparser.py", "ftplib.py", "gettext.py", "graphlib.py",
    "ipaddress.py", "pprint.py", "queue.py", "sched.py", "selectors.py", "timeit.py", "tokenize.py",
    "uuid.py", "wave.py", "zipapp.py", "xml/dom/minidom.py", "logging/handlers.py",
    "concurrent/futures/thread.py", "asyncio/queues.py",
)
_SKIP_STDLIB_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages",
                     "__pycache__", "ensurepip", "pydoc_data"}
_TEXT_SUFFIXES = {".py", ".txt", ".rst", ".md", ".c", ".h", ".cpp", ".hpp", ".S", ".s", ".ino"}
EOS, PAD = "<|endoftext|>", "<|pad|>"


def corpus_split(spec: BuiltinModel) -> tuple[list[Path], list[Path]]:
    """The pretraining corpus as (train files, held-out files), both sorted."""
    train, heldout = [], []
    for entry in spec.corpus:
        if entry == "stdlib":
            root = Path(sysconfig.get_paths()["stdlib"])
            files = [p for p in root.rglob("*.py") if not _SKIP_STDLIB_DIRS & set(p.relative_to(root).parts[:-1])
                     and not p.relative_to(root).parts[0].startswith("config-")]
            held = {root / name for name in HELDOUT_STDLIB}
        else:
            root = Path(entry).expanduser()
            files = [p for p in root.rglob("*") if p.suffix in _TEXT_SUFFIXES and p.is_file()]
            # 1 file in 40, by a hash of its path: stable across machines and runs.
            held = {p for p in files if int(hashlib.sha1(str(p.relative_to(root)).encode()).hexdigest(), 16) % 40 == 0}
        train += [p for p in files if p not in held]
        heldout += [p for p in files if p in held]
    return sorted(train), sorted(heldout)


def builtin_dir(spec: BuiltinModel) -> Path:
    """Where this spec's model is cached; the key includes the Python version (its stdlib differs)."""
    key = json.dumps({"spec": spec.model_dump(), "python": sys.version_info[:2]}, sort_keys=True)
    return cache_dir() / "builtin" / hashlib.sha256(key.encode()).hexdigest()[:16]


def ensure_builtin(spec: BuiltinModel) -> Path:
    """Return the built model's directory, building it once (under a lock) if it is missing."""
    target = builtin_dir(spec)
    if (target / "builtin.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same model
        if not (target / "builtin.json").is_file():
            _build(spec, target)
    return target


def _build(spec: BuiltinModel, target: Path) -> None:
    print(f"adapt: building the built-in base model once ({spec.pretrain_tokens:,} tokens of pretraining) "
          f"into {target}", file=sys.stderr)
    started = time.time()
    train_files, heldout_files = corpus_split(spec)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
    try:
        tokenizer = train_tokenizer(train_files, spec.vocab_size)
        model, final_loss = _pretrain(spec, tokenizer, train_files, work)
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        info = {"spec": spec.model_dump(), "final_train_loss": final_loss,
                "train_files": len(train_files), "heldout_files": [str(p) for p in heldout_files],
                "seconds": round(time.time() - started, 1)}
        (work / "builtin.json").write_text(json.dumps(info, indent=2))
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)  # atomic: a killed build leaves only a .build- directory behind
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"adapt: built-in base model ready in {time.time() - started:.0f}s "
          f"(final train loss {final_loss:.3f})", file=sys.stderr)


def train_tokenizer(files: list[Path], vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2 style: every byte is representable, nothing is unknown)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from adapt.data.sources import read_text_file

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator((t for p in files if (t := read_text_file(p)[0])), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, bos_token=EOS, pad_token=PAD)


def tiny_llama_config(spec: BuiltinModel, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads, max_position_embeddings=spec.max_position_embeddings,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )


def _pretrain(spec: BuiltinModel, tokenizer, files: list[Path], work: Path):
    """Plain transformers Trainer on packed stdlib blocks: the base model needs no adapt features."""
    import torch
    from transformers import LlamaForCausalLM, Trainer, TrainingArguments

    from adapt.data.packing import BlockDataset, pack
    from adapt.data.sources import read_text_file
    from adapt.data.tokens import tokenize_documents
    from adapt.device import cuda_available, resolve_precision

    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(tiny_llama_config(spec, tokenizer))
    if spec.pretrain_tokens == 0:
        return model, float("nan")
    docs = tokenize_documents(((p, t) for p in files if (t := read_text_file(p)[0])), tokenizer,
                              desc="builtin corpus", total=len(files))
    per_step = spec.pretrain_seq_len * spec.pretrain_batch_size
    steps = max(1, spec.pretrain_tokens // per_step)
    blocks = pack(docs.tokens, spec.pretrain_seq_len)
    blocks = blocks[torch.randperm(len(blocks), generator=torch.Generator().manual_seed(spec.seed)).numpy()]
    args = TrainingArguments(
        output_dir=str(work / "trainer"), max_steps=steps, per_device_train_batch_size=spec.pretrain_batch_size,
        learning_rate=spec.pretrain_lr, lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.1,
        bf16=resolve_precision("auto") == "bf16", use_cpu=not cuda_available(), report_to="none",
        save_strategy="no", logging_steps=max(1, steps // 10), seed=spec.seed, disable_tqdm=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=BlockDataset(blocks, tokenizer.pad_token_id))
    result = trainer.train()
    shutil.rmtree(work / "trainer", ignore_errors=True)
    return model, float(result.training_loss)
