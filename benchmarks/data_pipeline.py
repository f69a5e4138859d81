"""Data pipeline throughput: ingest -> filters -> licences -> dedup -> secrets -> tokenize -> mixture
-> pack, adapt's own data stage (``prepare_data``), over growing amounts of real code.

The corpus is the Python standard library and ``../shared/corpora/embedded``. Sizes beyond it
repeat it with small edits to each copy: one identifier renamed throughout, and about one line
in 30 changed. Exact dedup cannot see these copies; the table shows how many near dedup caught.
Each size runs in a fresh process with a cold token cache, so its peak RSS is its own.

    python -m benchmarks.data_pipeline [--size quick] [--sizes-mb 10,30,100]

Reports MB/s, peak RSS, and how both grow with size (the slope of a line through the sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.common import add_common_arguments, builtin_dir, note, peak_rss_mb, print_table, write_result

SIZES_MB = {"tiny": [0.3], "quick": [5, 15], "full": [10, 30, 100]}
_IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]{3,}\b")


def edited(text: str, copy: int, rng: random.Random) -> str:
    """A near copy: one identifier renamed everywhere, and about one line in 30 changed."""
    names = _IDENTIFIER.findall(text)
    if names:
        old = rng.choice(names)
        text = re.sub(rf"\b{re.escape(old)}\b", f"{old}_{copy}", text)
    lines = text.split("\n")
    for i in rng.sample(range(len(lines)), k=max(1, len(lines) // 30)):
        lines[i] = lines[i] + f"  /* v{copy} */" if lines[i].strip() else f"/* changed in copy {copy} */"
    return "\n".join(lines)


def build_corpus(root: Path, megabytes: float, files: list[Path]) -> dict:
    """Write ``megabytes`` of code under ``root``: the originals first, then edited copies."""
    from adapt.data.sources import read_text_file

    texts = [(p, t) for p in files if (t := read_text_file(p)[0])]
    target, written, copies, edited_files = megabytes * 1e6, 0, 0, 0
    rng = random.Random(0)
    while written < target:
        for i, (path, text) in enumerate(texts):
            if written >= target:
                break
            body = text if copies == 0 else edited(text, copies, rng)
            out = root / f"copy{copies}" / f"{i:05d}{path.suffix}"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(body)
            written += len(body.encode())
            edited_files += copies > 0
        copies += 1
    return {"bytes": written, "passes": copies, "edited_copies": edited_files}


def worker(root: Path, model_dir: str, home: Path) -> dict:
    """In a fresh process: adapt's data stage over ``root``, timed, with its peak RSS."""
    os.environ["ADAPT_HOME"] = str(home)  # a cold token cache
    from adapt.data.prepare import prepare_data
    from adapt.model import load_tokenizer
    from adapt.recipe import load_recipe

    recipe = {"name": "bench-data", "kind": "cpt", "model": {"base_model": model_dir},
              "adapter": {"method": "lora"},
              "data": {"sources": [{"name": "code", "kind": "files", "root": str(root),
                                    "include": ["**/*.py", "**/*.c", "**/*.h", "**/*.cpp", "**/*.S", "**/*.ino"],
                                    "heldout": {"fraction": 0.01, "min_files": 3, "max_files": 10}}],
                       "mixture": {"code": 1.0}},
              "train": {"seq_len": 512, "epochs": 1}, "tracking": {"enabled": False}}
    path = home / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    loaded = load_recipe(path)
    tokenizer = load_tokenizer(model_dir)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    data = prepare_data(loaded, tokenizer)
    seconds = time.perf_counter() - start
    dropped = data.report["curation"]["dropped"].get("code", {})
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before,
            "tokens": data.report["sources"]["code"]["tokens"], "blocks": len(data.train),
            "exact_duplicates": dropped.get("exact_duplicate", 0), "near_duplicates": dropped.get("near_duplicate", 0),
            "dropped": dropped, "secrets": sum(data.report["curation"]["secrets"]["by_kind"].values())}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--sizes-mb", help="comma-separated corpus sizes in MB (default by --size)")
    parser.add_argument("--worker", nargs=3, metavar=("ROOT", "MODEL", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(Path(args.worker[0]), args.worker[1], Path(args.worker[2]))))
        return {}
    from benchmarks.packing import code_files

    model_dir = str(builtin_dir(args.size))
    sizes = [float(x) for x in args.sizes_mb.split(",")] if args.sizes_mb else SIZES_MB[args.size]
    files = code_files()
    rows = []
    for megabytes in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
            corpus = build_corpus(Path(tmp) / "corpus", megabytes, files)
            (Path(tmp) / "home").mkdir()
            note(f"{corpus['bytes'] / 1e6:.1f} MB in {corpus['passes']} pass(es), {corpus['edited_copies']} edited copies")
            done = subprocess.run([sys.executable, "-m", "benchmarks.data_pipeline", "--worker", f"{tmp}/corpus",
                                   model_dir, f"{tmp}/home"], capture_output=True, text=True,
                                  cwd=Path(__file__).resolve().parents[1])
            if done.returncode != 0:
                sys.exit(f"benchmark: the data stage failed on {megabytes} MB:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
        mb = corpus["bytes"] / 1e6
        rows.append({"megabytes": mb, **corpus, **result, "mb_per_s": mb / result["seconds"],
                     "near_caught_share": result["near_duplicates"] / corpus["edited_copies"] if corpus["edited_copies"] else None})
    summary = {"mb_per_s": {f"{r['megabytes']:.0f}MB": r["mb_per_s"] for r in rows}, "target_mb_per_s": 5.0,
               "min_mb_per_s": min(r["mb_per_s"] for r in rows)}
    if len(rows) > 1:
        mb = np.array([r["megabytes"] for r in rows])
        summary["seconds_per_mb_slope"] = float(np.polyfit(mb, [r["seconds"] for r in rows], 1)[0])
        summary["rss_mb_per_input_mb_slope"] = float(np.polyfit(mb, [r["peak_rss_mb"] for r in rows], 1)[0])
    summary["meets_target"] = summary["min_mb_per_s"] >= 5.0
    path = write_result("data_pipeline", args.size, rows, summary, args.results)
    print_table(rows, [("megabytes", "MB", ".1f"), ("seconds", "seconds", ".1f"), ("mb_per_s", "MB/s", ".2f"),
                       ("peak_rss_mb", "peak RSS MB", ",.0f"), ("tokens", "tokens", ",d"),
                       ("exact_duplicates", "exact dups", ",d"), ("edited_copies", "edited copies", ",d"),
                       ("near_duplicates", "near dups", ",d")])
    growth = (f"; {summary['seconds_per_mb_slope']:.2f} s and {summary['rss_mb_per_input_mb_slope']:.1f} MB of RSS "
              f"per extra MB" if "seconds_per_mb_slope" in summary else "")
    print(f"slowest {summary['min_mb_per_s']:.2f} MB/s (target >= 5 MB/s on 2 cores){growth}  -> {path}")
    return summary


if __name__ == "__main__":
    main()
