"""Trainer overhead: adapt's CPT against a plain transformers ``Trainer`` on the same model, data,
batch and steps, in the same process.

adapt's side is a whole ``adapt train`` run (MLflow tracking, its callbacks, checkpoints marked
complete, the run directory). The baseline builds the same model and the same packed blocks with
adapt's own stage setup, then trains them with a bare ``Trainer``: plain ``TrainingArguments``,
no callbacks. Both evaluate the same two one-block eval sets at the start and the end, and save
one checkpoint at the end, so what differs is what adapt adds around the training loop. Both
times are the Trainer's own ``train_runtime``; pairs alternate their order (baseline first, then
adapt first, ...), the MLflow store exists before the first timed run (as a user's does), and the
medians are compared.

    python -m benchmarks.trainer [--size quick] [--adapter lora] [--device cpu|cuda]
                                 [--model builtin | builtin-1b | PATH] [--no-tracking]

On a GPU, ``--model builtin-1b`` is the built-in architecture at about 1B parameters with random
weights (throughput needs no trained weights), and the table adds MFU: model FLOPs per token
(6N plus attention, as in PaLM; 4N for the frozen base of LoRA and QLoRA) times tokens/s, over
the device's bf16 peak.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import add_common_arguments, builtin_spec, note, print_table, write_result

STEPS = {"tiny": 2, "quick": 20, "full": 40}
BUILTIN_1B = {"hidden_size": 2048, "num_layers": 18, "num_heads": 16, "intermediate_size": 5632,
              "vocab_size": 32000, "pretrain_tokens": 0, "max_position_embeddings": 4096}
STDLIB_CODE = ["asyncio/*.py", "email/*.py", "json/*.py", "http/*.py", "logging/*.py", "concurrent/**/*.py",
               "xml/**/*.py", "importlib/**/*.py", "unittest/*.py", "multiprocessing/*.py"]
# bf16 dense peak TFLOPS by device name; pass --peak-tflops for others.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
               "RTX 4090": 165.0}


def recipe(work: Path, args, steps: int) -> dict:
    import sysconfig

    if args.model == "builtin-1b":
        model = {"base_model": "builtin", "builtin": BUILTIN_1B}
    elif args.model == "builtin":
        model = {"base_model": "builtin", "builtin": builtin_spec(args.size)}
    else:
        model = {"base_model": args.model}
    seq_len = 128 if args.size == "tiny" else args.seq_len
    sources = [{"name": "code", "kind": "files", "root": sysconfig.get_paths()["stdlib"], "include": STDLIB_CODE,
                "heldout": {"fraction": 0.05, "max_files": 4}}]
    mixture = {"code": 1.0}
    evals = {"domain": {"source": "code", "max_tokens": seq_len, "max_tokens_per_file": seq_len}}
    if model["base_model"] == "builtin":  # replay its own corpus, as the quickstart does
        sources.append({"name": "general", "kind": "builtin_corpus"})
        mixture = {"code": 0.75, "general": 0.25}
        evals["general"] = {"source": "general", "max_tokens": seq_len, "max_tokens_per_file": seq_len}
    adapter = {"method": args.adapter}
    if args.adapter != "full":
        adapter.update(r=args.lora_r, alpha=2 * args.lora_r, target_modules="all-linear")
    return {
        "name": "bench-trainer", "kind": "cpt", "model": model, "adapter": adapter,
        "data": {"sources": sources, "mixture": mixture, "eval": evals},
        "train": {"seq_len": seq_len, "batch_size": args.batch_size if args.size != "tiny" else 2,
                  "max_steps": steps, "lr": 2e-4 if args.adapter == "full" else 2e-3, "eval_steps": steps,
                  "save_steps": steps, "logging_steps": max(1, steps // 10),
                  "gradient_checkpointing": args.gradient_checkpointing, "output_dir": str(work / "run")},
        "evaluation": {"enabled": False},  # the run's report is measured after training, not in it
        "tracking": {"enabled": not args.no_tracking, "uri": f"sqlite:///{work / 'mlflow.db'}",
                     "experiment": "bench-trainer", "log_model": False},
    }


def adapt_run(recipe_path: Path, run_dir: Path) -> float:
    """A whole ``adapt train`` run; the Trainer's train_runtime in seconds."""
    import shutil

    from adapt.recipe import load_recipe
    from adapt.train.metrics import read_metrics
    from adapt.train.stages import train

    shutil.rmtree(run_dir, ignore_errors=True)
    outcome = train(load_recipe(recipe_path))
    runtimes = [row["metrics"]["train/runtime_s"] for row in read_metrics(outcome.run_dir / "metrics.jsonl")
                if "train/runtime_s" in row["metrics"]]
    return runtimes[-1]


def baseline_run(recipe_path: Path, work: Path) -> float:
    """The same model and blocks through a bare Trainer; its train_runtime in seconds."""
    from adapt.device import cuda_available, resolve_precision
    from adapt.recipe import load_recipe
    from adapt.train.cpt import setup

    loaded = load_recipe(recipe_path)
    train = loaded.recipe.train
    built = setup(loaded)
    plain = dict(
        output_dir=str(work / "baseline"), max_steps=train.max_steps, per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size, gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.lr, lr_scheduler_type=train.schedule, warmup_steps=train.warmup_ratio,
        optim=train.optimizer, weight_decay=train.weight_decay, bf16=resolve_precision(train.precision) == "bf16",
        use_cpu=not cuda_available(), seed=train.seed, logging_steps=train.logging_steps,
        eval_strategy="steps", eval_steps=train.eval_steps, eval_on_start=True, save_strategy="steps",
        save_steps=train.save_steps, gradient_checkpointing=train.gradient_checkpointing, report_to="none",
    )
    trainer = built.make_trainer(plain, [])
    return float(trainer.train().metrics["train_runtime"])


def _create_store(uri: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def model_flops_per_token(config, seq_len: int, frozen_base: bool = False) -> float:
    """6N (forward, and backward to inputs and weights, through every weight but the input
    embedding) plus attention, as in PaLM. With a frozen base (LoRA, QLoRA) the weights get no
    gradient: 4N."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    heads, kv = config.num_attention_heads, getattr(config, "num_key_value_heads", config.num_attention_heads)
    head_dim = hidden // heads
    per_layer = hidden * head_dim * (heads * 2 + kv * 2) + 3 * hidden * config.intermediate_size
    n = layers * per_layer + hidden * config.vocab_size  # the LM head
    return (4.0 if frozen_base else 6.0) * n + 12.0 * layers * hidden * seq_len


def peak_flops(args) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    # The longest matching key: "L40S" before "L4".
    return next((PEAK_TFLOPS[key] * 1e12 for key in sorted(PEAK_TFLOPS, key=len, reverse=True) if key in name), None)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--adapter", choices=["full", "lora", "qlora"], action="append",
                        help="repeat to measure several (default: lora; full size: lora and full)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model", default="builtin", help="builtin, builtin-1b, or a local model directory")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-r", type=int, default=32)
    parser.add_argument("--steps", type=int, help="override the size's step count")
    parser.add_argument("--repeats", type=int, help="alternating pairs (default: 1 tiny/quick, 3 full)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--no-tracking", action="store_true", help="for machines without mlflow")
    parser.add_argument("--peak-tflops", type=float, help="the device's bf16 peak, where the name is not known")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmark: --device cuda, but torch sees no GPU")
    adapters = args.adapter or (["lora", "full"] if args.size == "full" else ["lora"])
    steps = args.steps or STEPS[args.size]
    repeats = args.repeats or (3 if args.size == "full" else 1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        for method in adapters:
            args.adapter = method
            work = Path(tmp) / method
            work.mkdir()
            spec = recipe(work, args, steps)
            recipe_path = work / "recipe.yaml"
            recipe_path.write_text(yaml.safe_dump(spec, sort_keys=False))
            tokens = steps * spec["train"]["batch_size"] * spec["train"]["seq_len"]
            note(f"{method}: warm-up, then {repeats} alternating baseline/adapt pairs of {steps} steps")
            baseline_run(recipe_path, work)  # warm-up: first-use costs (kernels, caches) land here
            if not args.no_tracking:
                _create_store(spec["tracking"]["uri"])  # a user's store exists before their runs
            seconds = {"baseline": [], "adapt": []}
            for repeat in range(repeats):
                order = ("baseline", "adapt") if repeat % 2 == 0 else ("adapt", "baseline")
                for side in order:
                    if side == "baseline":
                        seconds["baseline"].append(baseline_run(recipe_path, work))
                        continue
                    if args.device == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    seconds["adapt"].append(adapt_run(recipe_path, work / "run"))
            rows.append(_row(method, tokens, seconds, recipe_path, args))
    summary = {"worst_ratio": max(r["ratio"] for r in rows), "target_ratio": 1.05,
               "meets_target": all(r["ratio"] <= 1.05 for r in rows)}
    path = write_result("trainer" if args.device == "cpu" else "trainer_cuda", args.size, rows, summary, args.results,
                        device=args.device, model=args.model, steps=steps, repeats=repeats)
    print_table(rows, [("adapter", "adapter", ""), ("baseline_tokens_per_s", "Trainer tok/s", ",.0f"),
                       ("adapt_tokens_per_s", "adapt tok/s", ",.0f"), ("ratio", "adapt/Trainer s/token", ".3f"),
                       ("mfu", "MFU", ".1%"), ("peak_gpu_gb", "peak GPU GB", ".1f")])
    print(f"(target: adapt costs <= 1.05x per token; worst {summary['worst_ratio']:.3f}x)  -> {path}")
    return summary


def _row(method: str, tokens: int, seconds: dict, recipe_path: Path, args) -> dict:
    import torch

    base, ours = statistics.median(seconds["baseline"]), statistics.median(seconds["adapt"])
    row = {"adapter": method, "tokens": tokens, "baseline_seconds": seconds["baseline"], "adapt_seconds": seconds["adapt"],
           "baseline_tokens_per_s": tokens / base, "adapt_tokens_per_s": tokens / ours, "ratio": ours / base,
           "mfu": None, "peak_gpu_gb": None}
    if args.device == "cuda":
        from transformers import AutoConfig

        from adapt.recipe import load_recipe
        from adapt.train.runner import base_tokenizer

        loaded = load_recipe(recipe_path)
        model_path, _ = base_tokenizer(loaded)
        peak = peak_flops(args)
        flops = model_flops_per_token(AutoConfig.from_pretrained(model_path), loaded.recipe.train.seq_len,
                                      frozen_base=method != "full")
        row["mfu"] = flops * row["adapt_tokens_per_s"] / peak if peak else None
        row["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return row


if __name__ == "__main__":
    started = time.time()
    main()
    note(f"done in {time.time() - started:.0f} s")
