"""CLI start-up time: `adapt --help` and `adapt validate` against bare `python -c pass`.

Writes benchmarks/results/startup.json and prints a table. The goal is about 2 s for commands
that touch no model; the ratio against the bare interpreter is what to compare across machines.

    python -m benchmarks.startup [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def timed(cmd: list[str], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    commands = {
        "python -c pass (baseline)": [py, "-c", "pass"],
        "adapt --help": [py, "-m", "adapt", "--help"],
        "adapt validate --help": [py, "-m", "adapt", "validate", "--help"],
        "adapt validate recipes/quickstart.yaml": [py, "-m", "adapt", "validate", "recipes/quickstart.yaml"],
    }
    seconds = {name: timed(cmd, args.repeats) for name, cmd in commands.items()}
    base = seconds["python -c pass (baseline)"]
    rows = [{"command": name, "seconds": round(s, 3), "ratio_to_bare_python": round(s / base, 1)}
            for name, s in seconds.items()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps({"time": time.time(), "rows": rows}, indent=2))
    print(f"{'command':<42}{'seconds':>9}{'x bare':>8}")
    for row in rows:
        print(f"{row['command']:<42}{row['seconds']:>9.3f}{row['ratio_to_bare_python']:>8.1f}")


if __name__ == "__main__":
    main()
