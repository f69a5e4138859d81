"""``adapt train --nproc N``: start N processes through ``accelerate launch``, each running the
same ``adapt`` command; the Trainer shards the data and accelerate wraps the model (DDP by
default, FSDP or DeepSpeed through an accelerate config file).

On a machine without CUDA the processes are CPU ranks on gloo. ``accelerate launch --cpu
--num_processes 2`` silently starts one process there; ``ACCELERATE_USE_CPU=1`` with
``--multi_gpu`` starts two (see STACK-NOTES.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from adapt.device import cuda_available


def accelerate_command(nproc: int, config_file: str | None = None) -> list[str]:
    """``accelerate launch`` with its options, to be followed by a script or ``-m module``."""
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file:
        command += ["--config_file", config_file]
        return command + (["--num_processes", str(nproc)] if nproc > 1 else [])
    return command + ["--multi_gpu", "--num_processes", str(nproc), "--num_machines", "1",
                      "--mixed_precision", "no", "--dynamo_backend", "no"]  # the recipe sets the precision


def launch_env() -> dict[str, str]:
    env = dict(os.environ)
    if not cuda_available():
        env["ACCELERATE_USE_CPU"] = "1"
    return env


def prepare_base(recipe: str, overrides: list[str]) -> None:
    """Build the built-in base model (once) before the processes start: built inside them, the
    rank that holds the build lock would wait for the others in its Trainer while they wait for
    the lock."""
    from adapt.model import resolve_model_path
    from adapt.recipe import load_recipe
    from adapt.recipe.pipeline import load_pipeline

    pipeline = load_pipeline(recipe, overrides)
    loaded = pipeline.loaded(0) if pipeline is not None else load_recipe(recipe, overrides)
    resolve_model_path(loaded.recipe.model)


def launch(adapt_args: list[str], nproc: int, config_file: str | None = None) -> int:
    """Run the processes; a SIGTERM to this one (a scheduler's preemption) goes on to them, and a
    run they stopped for it exits 143 here too."""
    from adapt.train.runner import EXIT_PREEMPTED

    command = accelerate_command(nproc, config_file) + ["-m", "adapt", *adapt_args]
    process = subprocess.Popen(command, env=launch_env())
    forwarded = []

    def forward(signum, frame):
        forwarded.append(signum)
        process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        code = process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_PREEMPTED if forwarded and code != 0 else code
