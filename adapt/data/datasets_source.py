"""Sources backed by the `datasets` library: parquet, arrow and json files, ``save_to_disk``
directories, and hub datasets by name. `datasets` reads and caches them (under
``$ADAPT_HOME/cache/datasets``); adapt only picks the text column and the held-out rows."""

from __future__ import annotations

import logging
from pathlib import Path

from adapt.data.sources import json_lines
from adapt.errors import AdaptError
from adapt.recipe.load import find_paths

_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def load_rows(source, base_dir: Path, error, key: str):
    """The dataset's split with a ``text_field`` column; errors name the recipe key and the fix."""
    table = load_table(source, base_dir, error, key)
    if source.text_field not in table.column_names:
        raise error(f"dataset has no column {source.text_field!r} (columns: {', '.join(table.column_names)})",
                    f"{key}.text_field", fix="set text_field to the column that holds the text")
    return table


def load_table(source, base_dir: Path, error, key: str):
    """The split named by a source's ``path`` or ``hub`` and ``split``, whatever its columns."""
    import datasets

    from adapt.paths import cache_dir

    cache = str(cache_dir() / "datasets")
    # datasets logs a traceback for a corrupt file before raising; adapt reports it in one line.
    quiet = logging.getLogger("datasets")
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        if source.hub:
            table = datasets.load_dataset(source.hub, split=source.split, cache_dir=cache)
        else:
            table = _load_local(source, base_dir, cache, error, key)
    except AdaptError:
        raise
    except Exception as exc:  # datasets raises many types for unreadable or corrupt files
        raise error(f"cannot read dataset: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                    f"{key}.{'hub' if source.hub else 'path'}",
                    fix="check that the files are valid parquet/arrow/json (or the name and split)") from None
    finally:
        quiet.setLevel(level)
    return table


def _load_local(source, base_dir: Path, cache: str, error, key: str):
    import datasets

    found = find_paths(base_dir, source.path)
    if len(found) == 1 and found[0].is_dir():
        loaded = datasets.load_from_disk(str(found[0]))
        return loaded[source.split] if isinstance(loaded, datasets.DatasetDict) else loaded
    files = [p for p in found if p.is_file()]
    if not files:
        raise error(f"{source.path!r} matches no file or directory (looked in {base_dir})", f"{key}.path",
                    fix="give parquet/arrow/json files, a glob, or a save_to_disk directory")
    builder = _BUILDERS.get(files[0].suffix)
    if builder is None:
        raise error(f"cannot tell the format of {files[0].name}", f"{key}.path",
                    fix=f"use files ending in {', '.join(_BUILDERS)}")
    for file in files:
        if file.suffix == ".jsonl":
            for _ in json_lines(file):  # a bad line gets its file and number, which `datasets` omits
                pass
    return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train", cache_dir=cache)

