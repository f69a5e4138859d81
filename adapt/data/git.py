"""Read a local git repository's tracked files at a revision, without a checkout or the network.

``git ls-tree`` lists the blobs (with sizes, so big files are skipped unread) and one
``git cat-file --batch`` process streams their contents.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, Iterator


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=True, timeout=120).stdout


def list_files(root: Path, revision: str, error: Callable, key: str) -> tuple[str, list[tuple[str, int]]]:
    """(commit sha, [(path, size)]) of the regular files tracked at ``revision``, sorted by path."""
    if not root.is_dir():
        raise error(f"directory {root} does not exist", key, fix="give the path of a local git repository")
    try:
        commit = _git(root, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").decode().strip()
    except (subprocess.CalledProcessError, OSError):
        raise error(f"{root} is not a git repository with a revision {revision!r}", key,
                    fix="check the path and the revision (a branch, tag or commit)") from None
    files = []
    for entry in _git(root, "ls-tree", "-r", "-l", "-z", commit).split(b"\0"):
        if not entry:
            continue
        meta, path = entry.split(b"\t", 1)
        mode, kind, _, size = meta.split()
        if kind == b"blob" and mode != b"120000":  # symlinks are skipped: their target is a path, not code
            files.append((path.decode("utf-8", "replace"), int(size)))
    return commit, sorted(files)


def read_blobs(root: Path, commit: str, paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """Stream (path, contents) for ``paths`` at ``commit`` through one ``git cat-file --batch``."""
    proc = subprocess.Popen(["git", "-C", str(root), "cat-file", "--batch"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        for path in paths:
            proc.stdin.write(f"{commit}:{path}\n".encode())
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) < 3 or header[1] != b"blob":
                continue  # "missing": nothing else follows
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)  # the newline after each object
            yield path, data
    finally:
        proc.stdin.close()
        proc.stdout.close()
        proc.wait(timeout=30)


def licence_at(root: Path, commit: str) -> str | None:
    """The licence of the repository's LICENSE/COPYING file at ``commit``, if it has one."""
    from adapt.data.curation.licences import LICENCE_FILES, licence_file_id

    for name in LICENCE_FILES:
        try:
            text = _git(root, "show", f"{commit}:{name}").decode("utf-8", "replace")
        except subprocess.CalledProcessError:
            continue
        return licence_file_id(text)
    return None
