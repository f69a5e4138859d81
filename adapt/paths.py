"""Where adapt keeps its own files: the built-in model, the token cache and the default MLflow store.

Everything lives under ``$ADAPT_HOME`` (default ``~/.adapt``), so that one variable moves or isolates
all of it, which is what the tests do with a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def adapt_home() -> Path:
    return Path(os.environ.get("ADAPT_HOME") or Path.home() / ".adapt").expanduser()


def cache_dir() -> Path:
    return adapt_home() / "cache"


def mlflow_dir() -> Path:
    return adapt_home() / "mlflow"
