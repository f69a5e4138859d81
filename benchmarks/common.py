"""What every benchmark shares: where results go, what a result file holds, and the table it prints.

A result file is ``benchmarks/results/<name>.json`` (or under ``--results DIR``):

    {"benchmark": name, "schema": 1, "date": ISO time, "machine": {...}, "commit": git sha,
     "size": "tiny" | "quick" | "full", "rows": [{...}, ...], "summary": {...}}

``rows`` are the table's rows; ``summary`` holds the ratios and targets the README quotes.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED_CORPORA = ROOT.parent / "shared" / "corpora"
SCHEMA = 1
SIZES = ("tiny", "quick", "full")


def machine() -> dict:
    """The machine a result was measured on; the GPU's name where one is used."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "cpu": _cpu_name()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def commit() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def write_result(name: str, size: str, rows: list[dict], summary: dict, results: Path | None = None,
                 **extra) -> Path:
    """Write ``<results>/<name>.json`` atomically and return its path."""
    results = Path(results or RESULTS)
    results.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "schema": SCHEMA, "date": datetime.datetime.now().astimezone().isoformat(),
               "machine": machine(), "commit": commit(), "size": size, "rows": rows, "summary": summary, **extra}
    path = results / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """``columns``: (key, header, format spec). A missing or None value prints as '-'."""
    widths = [max(len(header), 10) for _, header, _ in columns]
    cells = [[_cell(row.get(key), fmt) for key, _, fmt in columns] for row in rows]
    widths = [max([w] + [len(c[i]) for c in cells]) for i, w in enumerate(widths)]
    print("  ".join(header.rjust(w) for (_, header, _), w in zip(columns, widths)))
    for line in cells:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), in MB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KB


def builtin_spec(size: str) -> dict:
    """The built-in model for throughput: its usual size untrained (speed needs no trained
    weights, and skips minutes of pretraining), or a tiny one for the smoke test."""
    if size == "tiny":
        return {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128, "vocab_size": 1024,
                "pretrain_tokens": 0}
    return {"pretrain_tokens": 0}


def builtin_dir(size: str) -> Path:
    """The directory of ``builtin_spec(size)``, built on first use."""
    from adapt.builtin import ensure_builtin
    from adapt.recipe.schema import BuiltinModel

    return ensure_builtin(BuiltinModel(**builtin_spec(size)))


def add_common_arguments(parser) -> None:
    parser.add_argument("--size", choices=SIZES, default="full",
                        help="tiny: CI's smoke test (seconds); quick: minutes; full: the documented runs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")


def note(message: str) -> None:
    print(f"benchmark: {message}", file=sys.stderr, flush=True)
