"""Build the small instruction and preference sets the sft and dpo recipes train on, from
functions of this Python's standard library that have a docstring and a short body.

    python recipes/data/build.py     # writes stdlib_instructions.jsonl and stdlib_preferences.jsonl

SFT rows ask for a function by its docstring and answer with its source. DPO rows prefer the real
body over `pass` (the failure a code model should unlearn first) and over another function's body.
"""

from __future__ import annotations

import ast
import json
import random
import sysconfig
from pathlib import Path

MODULES = ["textwrap", "shlex", "heapq", "bisect", "fractions", "statistics", "calendar", "colorsys",
           "string", "fnmatch", "posixpath", "glob", "difflib", "json/encoder", "csv", "base64", "quopri",
           "operator", "copy", "reprlib", "locale", "gettext", "urllib/parse", "email/utils", "html/__init__",
           "ntpath", "genericpath", "tokenize", "pprint", "functools", "random"]


def functions(limit: int = 400):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in MODULES:
        source = (stdlib / f"{name}.py").read_text()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            body = ast.get_source_segment(source, node)
            if doc and body and len(body) < 1200 and node.col_offset == 0:
                yield name, node, doc, body
                limit -= 1
                if limit == 0:
                    return


def main() -> None:
    here = Path(__file__).parent
    rng = random.Random(0)
    found = list(functions())
    with open(here / "stdlib_instructions.jsonl", "w") as f:
        for module, node, doc, body in found:
            ask = f"Write the function `{node.name}` of Python's `{module.replace('/', '.')}` module. " \
                  f"{doc.splitlines()[0]}"
            f.write(json.dumps({"messages": [{"role": "user", "content": ask},
                                             {"role": "assistant", "content": body}]}) + "\n")
    with open(here / "stdlib_preferences.jsonl", "w") as f:
        for module, node, doc, body in found:
            header = body[: body.index(":\n", body.index(")")) + 2] if ":\n" in body else None
            if header is None:
                continue
            other = rng.choice(found)[3]
            rejected = "    pass\n" if rng.random() < 0.5 else other[other.find(":\n") + 2:]
            f.write(json.dumps({"prompt": header, "chosen": body[len(header):] + "\n", "rejected": rejected}) + "\n")
    print(f"{len(found)} functions")


if __name__ == "__main__":
    main()
