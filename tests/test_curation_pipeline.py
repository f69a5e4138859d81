"""Curation end to end on a git repository made in the test: planted secrets never reach anything
adapt writes, every file is in the manifest with its fate, and FIM runs with added sentinels."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import yaml

from adapt.cli import main

AWS_KEY = "AKIAQ3EGRTZ7X2MPL4WB"
GITHUB_TOKEN = "ghp_" + "Zx9Kq2Lm7Np4Rs8Tv3Wy6Ab1Cd5Ef0Gh2Ij4"
PASSWORD = "Tr0ub4dor&3xQ!zzPl"
PRIVATE_KEY_BODY = "MIIEowIBAAKCAQEAu7Q9dGk2hV3Jm8pXq1rT5yZ0bWc4nE6fH2sL9aK3dR7uV1xY"
SECRETS = [AWS_KEY, GITHUB_TOKEN, PASSWORD, PRIVATE_KEY_BODY]

MIT = "MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\n" \
      "of this software and associated documentation files (the \"Software\"), to deal\n"


def make_repo(root: Path, corpora: dict[str, Path]) -> str:
    files = {p.relative_to(corpora["domain"]).as_posix(): p.read_text() for p in sorted(corpora["domain"].rglob("*.py"))}
    files["settings.py"] = (f'AWS_ACCESS_KEY_ID = "{AWS_KEY}"\npassword = "{PASSWORD}"\n'
                            f'def connect():\n    return {{"user": "admin"}}\n')
    files["deploy/ci.yaml"] = f"steps:\n  - run: make\n    env:\n      GITHUB_TOKEN: {GITHUB_TOKEN}\n"
    files["deploy/keys.py"] = (f'KEY = """-----BEGIN RSA PRIVATE KEY-----\n{PRIVATE_KEY_BODY}\n'
                               f'{PRIVATE_KEY_BODY[::-1]}\n-----END RSA PRIVATE KEY-----"""\n')
    files["node_modules/left-pad/index.js"] = "module.exports = function leftPad(s) { return s; };\n"
    files["package-lock.json"] = '{"lockfileVersion": 3}\n'
    files["copy_of_parser.py"] = files["parser.py"]
    files["gpl_tool.py"] = "# SPDX-License-Identifier: GPL-3.0-only\ndef tool():\n    return 42\n"
    files["LICENSE"] = MIT
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "init"], check=True)
    return subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def test_secrets_never_leave_the_repo_and_every_file_is_accounted_for(tmp_path, corpora, tiny_model_dir,
                                                                        adapt_home, capsys):
    repo = tmp_path / "repo"
    commit = make_repo(repo, corpora)
    run_dir = tmp_path / "runs" / "curated"
    recipe = tmp_path / "curated.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"base_model": str(tiny_model_dir)},
        "adapter": {"method": "lora", "r": 8},
        "data": {
            "sources": [{"name": "code", "kind": "git", "repo": str(repo), "fim": {"rate": 0.5},
                         "heldout": {"fraction": 0.1, "max_files": 2, "seed": 3}}],
            "curation": {"licences": {"deny": ["GPL-3.0-only"]}},
            "eval": {"domain": {"source": "code", "max_tokens": 1024}},
        },
        "train": {"seq_len": 64, "batch_size": 4, "max_steps": 3, "eval_steps": 3, "save_steps": 3,
                  "precision": "fp32", "output_dir": str(run_dir)},
        "tracking": {"enabled": True},
    }))
    assert main(["train", str(recipe)]) == 0
    logs = capsys.readouterr()

    manifest = [json.loads(line) for line in (run_dir / "data_manifest.jsonl").read_text().splitlines()]
    fate = {row["path"]: row["reason"] for row in manifest}
    assert set(fate) == {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert fate["node_modules/left-pad/index.js"] == "vendored"
    assert fate["package-lock.json"] == "generated_name"
    assert fate["gpl_tool.py"] == "licence"
    # One copy goes: as a duplicate, or (if the other was held out) as overlapping the eval set.
    assert {fate["copy_of_parser.py"], fate["parser.py"]} & {"exact_duplicate", "eval_overlap"}
    assert fate["settings.py"] is None, "a file with secrets is kept, redacted"
    kept = [row for row in manifest if row["kept"]]
    assert all(row["revision"] == commit and row["licence"] == "MIT" and len(row["sha256"]) == 64 for row in kept)

    report = json.loads((run_dir / "data_report.json").read_text())
    kinds = report["curation"]["secrets"]["by_kind"]
    assert {"aws_access_key", "github_token", "private_key"} <= set(kinds) and sum(kinds.values()) >= 4
    assert 0.2 < report["fim"]["realised_rate"] < 0.8
    assert report["packing"]["truncated_tokens"] == 0

    # Nothing adapt wrote may hold a secret: run directory, token cache (decoded), MLflow store, logs.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "final")
    decoded = [tokenizer.decode(np.load(p)["tokens"].astype(np.int64)) for p in (adapt_home / "cache" / "tokens").glob("*.npz")]
    assert decoded and any("<SECRET:aws_access_key>" in text for text in decoded)
    written = [p.read_bytes() for p in [*run_dir.rglob("*"), *(adapt_home / "mlflow").rglob("*")] if p.is_file()]
    assert any(b"<SECRET:" in blob or b"secrets" in blob for blob in written)
    for secret in SECRETS:
        assert not any(secret in text for text in decoded), secret
        assert not any(secret.encode() in blob for blob in written), secret
        assert secret not in logs.out + logs.err


def test_adapt_data_writes_the_report_without_training(make_recipe, capsys):
    recipe = make_recipe("data_only")
    assert main(["data", str(recipe)]) == 0
    out = capsys.readouterr().out
    run_dir = recipe.parent / "runs" / "data_only"
    assert "# Data report" in out and (run_dir / "data_report.md").is_file()
    assert not (run_dir / "checkpoints").exists()
    # Training afterwards uses the same directory.
    assert main(["train", str(recipe), "train.max_steps=2", "train.eval_steps=2"]) == 0
