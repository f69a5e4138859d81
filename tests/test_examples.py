"""Smoke tests of the three examples: each driver runs end to end with a tiny built-in model and
budget (`--quick`), in a copy of its folder; the numbers are not checked, the outputs are."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory) -> Path:
    """One $ADAPT_HOME for the three examples, so the tiny built-in model is built once."""
    return tmp_path_factory.mktemp("examples_home")


def _run(tmp_path: Path, home: Path, example: str, script: str, *args: str) -> tuple[Path, str]:
    work = tmp_path / "examples"
    shutil.copytree(EXAMPLES / example, work / example, ignore=shutil.ignore_patterns("runs", "repos", "mixtures"))
    shutil.copy(EXAMPLES / "steps.py", work / "steps.py")
    env = {**os.environ, "ADAPT_HOME": str(home)}
    done = subprocess.run([sys.executable, str(work / example / script), "--quick", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return work / example, done.stdout


def test_org_code(tmp_path, shared_home):
    folder, out = _run(tmp_path, shared_home, "org-code", "run.py")
    report = json.loads((folder / "runs" / "org-code" / "data_report.json").read_text())
    assert report["curation"]["secrets"]["by_kind"], "the settings files' keys are found"
    assert (folder / "runs" / "org-code-plan" / "pilots.json").is_file(), "the pilots ran"
    assert (folder / "runs" / "org-code" / "export-merged" / "README.md").is_file()
    assert "$ adapt plan recipe.yaml" in out and "forgetting:" in out


def test_embedded_cpt(tmp_path, shared_home):
    import random

    corpus, rng = tmp_path / "firmware", random.Random(0)
    for vendor in ("acme", "globex"):
        (corpus / vendor).mkdir(parents=True)
        for i in range(4):
            lines = [f"    {vendor}_{rng.choice(['ctrl', 'stat', 'data', 'mode'])}{rng.randrange(99)} = "
                     f"0x{rng.randrange(256):02x};  /* {rng.choice(['enable', 'reset', 'clock', 'irq'])} */\n"
                     for _ in range(150)]
            (corpus / vendor / f"driver{i}.c").write_text(
                f"#include <stdint.h>\n\nvoid {vendor}_init_{i}(void) {{\n" + "".join(lines) + "}\n")
    folder, out = _run(tmp_path, shared_home, "embedded-cpt", "run.py", "--corpus", str(corpus),
                       "data.sources.0.heldout.min_files=6")
    report = json.loads((folder / "runs" / "embedded-cpt" / "eval" / "report.json").read_text())
    assert set(report["after"]["sets"]["embedded"]["categories"]) == {"acme", "globex"}
    assert "embedded: category" in out


def test_recipe_sweep(tmp_path, shared_home):
    folder, out = _run(tmp_path, shared_home, "recipe-sweep", "sweep.py")
    assert (folder / "runs" / "general_traces.png").is_file()
    assert "replay0-r8" in out and "replay0.1-r8" in out and "forgetting" in out
