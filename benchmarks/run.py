"""Run benchmarks 1-4 (trainer overhead, packing, data pipeline, planner) one after another, each
in its own process, then print one table of their headline numbers.

    python -m benchmarks.run --quick            # reduced sizes: under 10 minutes on 2 cores
    python -m benchmarks.run                    # the full runs RESULTS.md quotes
    python -m benchmarks.run --tiny --results DIR   # CI's smoke test: seconds, numbers not checked
    python -m benchmarks.run --quick --device cuda  # on a GPU machine (trainer and packing use it)

The end-to-end adaptation benchmark (``python -m benchmarks.adaptation``) takes an hour of CPU
and runs on its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from benchmarks.common import RESULTS, ROOT, print_table, write_result

BENCHMARKS = ("trainer", "packing", "data_pipeline", "planner")


def headline(name: str, summary: dict) -> str:
    """The number each benchmark is judged by, against its target."""
    if name == "trainer":
        return f"adapt/Trainer time per token {summary['worst_ratio']:.3f}x (target <= 1.05x)"
    if name == "packing":
        parts = [f"seq {n}: {v['packing_efficiency']:.1%} efficient, {v['effective_throughput_ratio']:.2f}x"
                 for n, v in summary["by_seq_len"].items()]
        return "; ".join(parts) + " effective tok/s vs padding (targets >= 99%, >= 2x)"
    if name == "data_pipeline":
        return f"slowest {summary['min_mb_per_s']:.2f} MB/s (target >= 5)"
    if name == "planner":
        return f"max CMR error {summary['max_abs_error']:.4f}; CMR fit {summary['seconds']['cmr_fit']:.2f} s on 100 points"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="size")
    size.add_argument("--tiny", action="store_const", const="tiny", dest="size")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args(argv)
    size = args.size or "full"
    rows, failed = [], []
    for name in args.only.split(",") if args.only else BENCHMARKS:
        command = [sys.executable, "-m", f"benchmarks.{name}", "--size", size, "--results", args.results]
        if name in ("trainer", "packing"):
            command += ["--device", args.device]
        print(f"\n$ {' '.join(command[1:])}", flush=True)
        started = time.time()
        code = subprocess.run(command, cwd=ROOT).returncode
        seconds = time.time() - started
        if code != 0:
            failed.append(name)
            rows.append({"benchmark": name, "seconds": seconds, "result": f"FAILED (exit {code})"})
            continue
        result_name = "trainer_cuda" if name == "trainer" and args.device == "cuda" else name
        summary = json.loads((ROOT / args.results / f"{result_name}.json").read_text())["summary"]
        rows.append({"benchmark": name, "seconds": seconds, "result": headline(name, summary)})
    print()
    print_table(rows, [("benchmark", "benchmark", ""), ("seconds", "seconds", ".0f"), ("result", "result", "")])
    write_result("run", size, rows, {"failed": failed, "total_seconds": sum(r["seconds"] for r in rows)}, args.results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
