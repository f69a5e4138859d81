"""Make two local git repositories that stand in for an organisation's code, from Python packages
installed beside adapt (tqdm and PyYAML), so that this example runs on any machine.

Each gets a little of what real repositories hold and curation must deal with: a settings file
with a cloud key in it (redacted), a vendored copy of a library (dropped), and a file copied
from one repository into the other (deduplicated).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = {"progress-ui": "tqdm", "config-loader": "yaml"}
SETTINGS = '''"""Deployment settings."""
import os

REGION = os.environ.get("REGION", "eu-west-1")
AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
'''


def make(root: Path) -> list[Path]:
    repos = []
    for name, package in PACKAGES.items():
        source = Path(importlib.util.find_spec(package).origin).parent
        repo = root / name
        shutil.rmtree(repo, ignore_errors=True)
        shutil.copytree(source, repo / "src" / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
        for licence in _licence_files(package):  # the package's own licence, at the repository's root
            shutil.copy(licence, repo / "LICENSE")
        (repo / "deploy").mkdir()
        (repo / "deploy" / "settings.py").write_text(SETTINGS)
        repos.append(repo)
    # A vendored library and a file copied between the two repositories.
    vendored = repos[0] / "third_party" / "yaml"
    shutil.copytree(repos[1] / "src" / "yaml", vendored)
    shutil.copy(repos[0] / "src" / "tqdm" / "utils.py", repos[1] / "src" / "tqdm_utils.py")
    for repo in repos:
        git = ["git", "-C", str(repo), "-c", "user.name=adapt", "-c", "user.email=adapt@example.com"]
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "import", "--date", "2026-01-01T00:00:00"], check=True)
    return repos


def _licence_files(package: str) -> list[Path]:
    from importlib.metadata import PackageNotFoundError, files

    name = {"yaml": "PyYAML"}.get(package, package)
    try:
        return [Path(f.locate()) for f in files(name) or [] if "licen" in str(f).lower()][:1]
    except PackageNotFoundError:
        return []


if __name__ == "__main__":
    for path in make(Path(sys.argv[1] if len(sys.argv) > 1 else "repos")):
        print(f"made {path}")
