"""Dedup: exact and near duplicates of real stdlib files are dropped, different files are kept."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from adapt.data.curation.dedup import Deduplicator, lsh_bands

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _read(name: str) -> str:
    return (STDLIB / name).read_text()


def test_exact_duplicates_are_dropped_even_with_other_line_ends_and_trailing_spaces():
    text = _read("shlex.py")
    dedup = Deduplicator(near=False)
    assert dedup.check("a/shlex.py", text) is None
    assert dedup.check("b/shlex.py", text) == ("exact_duplicate", "a/shlex.py")
    windows = text.replace("\n", "  \r\n") + "\r\n\r\n"
    assert dedup.check("c/shlex.py", windows) == ("exact_duplicate", "a/shlex.py")
    reindented = text.replace("\n    ", "\n  ")  # indentation is content, not noise
    assert dedup.check("d/shlex.py", reindented) is None


def test_an_edited_copy_is_a_near_duplicate_of_the_original():
    text = _read("textwrap.py")
    edited = text
    for old, new in {"_munge_whitespace": "_normalise_spaces", "drop_whitespace": "strip_spaces",
                     "placeholder": "ellipsis"}.items():
        edited = re.sub(rf"\b{old}\b", new, edited)
    edited = edited.replace("        self.max_lines = max_lines\n", "        self.max_lines = max_lines or None\n")
    assert edited.count("max_lines or None") == 1 and edited.count("strip_spaces") == 7
    dedup = Deduplicator()
    assert dedup.check("textwrap.py", text) is None
    assert dedup.check("fork/textwrap.py", edited) == ("near_duplicate", "textwrap.py")
    # Without near dedup the copy is new text.
    assert Deduplicator(near=False).check("fork/textwrap.py", edited) is None


def test_different_stdlib_files_are_all_kept():
    names = ["json/decoder.py", "json/encoder.py", "csv.py", "heapq.py", "queue.py", "shlex.py",
             "email/charset.py", "email/header.py"]
    dedup = Deduplicator()
    assert [dedup.check(n, _read(n)) for n in names] == [None] * len(names)
    # Files shorter than one shingle are left to exact dedup: punctuation does not count there.
    assert dedup.check("unclosed-basic.toml", 'a = """\n') is None
    assert dedup.check("unclosed-literal.toml", "a = '''\n") is None
    assert dedup.check("blank.py", "\n\n") is None
    assert dedup.check("blank2.py", "  \n") == ("exact_duplicate", "blank.py")


def test_exact_off_still_catches_identical_text_as_near_duplicate():
    text = _read("queue.py")
    dedup = Deduplicator(exact=False)
    assert dedup.check("q1", text) is None
    assert dedup.check("q2", text) == ("near_duplicate", "q1")


def test_lsh_bands_favour_recall_at_the_threshold():
    bands, rows = lsh_bands(0.85, 256)
    assert (bands, rows) == (25, 10) and 1 - (1 - 0.85**rows) ** bands >= 0.99
    assert bands * rows <= 256 and lsh_bands(1.0, 128)[0] >= 2


_SIGNATURE = ("import sys, sysconfig; from pathlib import Path; from adapt.data.curation.dedup import Deduplicator;"
              "text = (Path(sysconfig.get_paths()['stdlib']) / 'heapq.py').read_text();"
              "print(Deduplicator(seed=7).minhash(text).hashvalues.tobytes().hex())")


def test_signatures_are_deterministic_across_processes():
    """No str hash() anywhere: another process with another hash seed gets the same signature."""
    ours = Deduplicator(seed=7).minhash(_read("heapq.py")).hashvalues.tobytes().hex()
    theirs = subprocess.run([sys.executable, "-c", _SIGNATURE], capture_output=True, text=True, check=True,
                            env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
                            cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert theirs == ours
    assert Deduplicator(seed=8).minhash(_read("heapq.py")).hashvalues.tobytes().hex() != ours
