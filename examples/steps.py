"""What the examples' drivers share: run an `adapt` command as a user would type it, showing it
first, and the `--quick` overrides CI's smoke tests add (a tiny built-in model and budget)."""

from __future__ import annotations

import shlex
import subprocess
import sys

QUICK = ["model.builtin.pretrain_tokens=16384", "train.max_steps=2", "train.eval_steps=1", "train.save_steps=2",
         "evaluation.completion.max_samples=4"]


def adapt(*args: str, check: bool = True) -> int:
    """Run ``adapt ARGS`` (with this Python), echoing the command line."""
    print(f"\n$ adapt {shlex.join(args)}", flush=True)
    code = subprocess.run([sys.executable, "-m", "adapt", *args]).returncode
    if check and code != 0:
        sys.exit(code)
    return code
