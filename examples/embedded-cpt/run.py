"""The embedded-cpt example: CPT on embedded C, then the per-vendor evaluation report.
`python run.py --corpus DIR` trains on another folder; `--quick` is CI's smoke test."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from steps import QUICK, adapt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", help="a folder of C sources, one subfolder per vendor or domain")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("overrides", nargs="*", help="more key.path=value overrides of recipe.yaml")
    args = parser.parse_args()
    os.chdir(HERE)
    extra = [f"data.sources.0.root={Path(args.corpus).resolve()}"] if args.corpus else []
    extra += (QUICK if args.quick else []) + args.overrides
    adapt("train", "recipe.yaml", *extra)
    print(Path("runs/embedded-cpt/eval/report.md").read_text())


if __name__ == "__main__":
    main()
