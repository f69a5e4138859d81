"""Run by tests/test_distributed.py under two processes: each rank writes the batches its
Trainer's dataloader gives it, built by adapt's CPT stage from a recipe."""

import hashlib
import json
import os
import sys

from adapt.recipe import load_recipe
from adapt.train.arguments import training_kwargs
from adapt.train.cpt import setup

recipe, out = sys.argv[1], sys.argv[2]
loaded = load_recipe(recipe, [])
stage = setup(loaded)
args = training_kwargs(loaded.recipe.train, os.path.join(out, "checkpoints"), stage.report["steps"], False, False)
trainer = stage.make_trainer(args, [])
batches = [hashlib.sha1(batch["input_ids"].cpu().numpy().tobytes()).hexdigest()
           for batch in trainer.get_train_dataloader()]
with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump({"world_size": trainer.args.world_size, "steps": stage.report["steps"], "batches": batches}, f)
