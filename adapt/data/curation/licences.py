"""Licences: name each file's licence as an SPDX id (or expression), and decide from a policy
whether the file may be trained on.

A file's licence comes from its ``SPDX-License-Identifier:`` line, else from the wording of its
header; a repository's from its LICENSE/COPYING file. We recognise the families an
organisation's code and its vendored dependencies mostly carry, by phrases every copy of the
text keeps (SPDX licence list, https://spdx.org/licenses/). Anything else is None ("unknown"),
and the policy's ``unknown`` setting decides. GPL linking exceptions (SDCC's, libgcc's) are
ignored: they relax linking terms, not the terms on copying the source we train on.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

LICENCE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "LICENCE.md", "LICENCE.txt",
                 "COPYING", "COPYING.txt")
_SPDX_LINE = re.compile(r"SPDX-License-Identifier:[ \t]*([^\n]*)")
_COMMENT_END = re.compile(r"\*/|-->|\"\"\"|'''|\*\)|#\}")
_HEADER_LINES = 100  # licence headers sit in the first comment block

# Published versions per GNU family, to turn "version 2.1 or any later version" of the *GPL*
# (a real header: sdcc include/mcs51/ax8052.h) into the versions that exist: GPL-3.0-or-later.
_GNU_VERSIONS = {"GPL": ("1.0", "2.0", "3.0"), "LGPL": ("2.0", "2.1", "3.0"), "AGPL": ("3.0",)}
_GNU = re.compile(r"gnu (lesser |library |affero )?general public license")
_GRANT_LEAD = ("terms of the ", "under the ", "under ", "license ", "licence ")
_GNU_FAMILY = {None: "GPL", "lesser ": "LGPL", "library ": "LGPL", "affero ": "AGPL"}
# Arduino's SPI/Wire/EEPROM headers: "either the GNU General Public License version 2 or the
# GNU Lesser General Public License version 2.1".
_GNU_DUAL = re.compile(r"either the gnu general public license version (\d(?:\.\d)?) or the "
                       r"gnu lesser general public license version (\d(?:\.\d)?)")
# Phrases that every copy of a licence keeps (normalised: lower case, punctuation as spaces).
_PHRASES: list[tuple[str, str]] = [
    ("Apache-2.0", "apache license version 2.0"),
    ("MPL-2.0", "mozilla public license version 2.0"),
    ("MPL-2.0", "mozilla public license v 2.0"),
    ("PSF-2.0", "python software foundation license"),
    ("MIT", "permission is hereby granted free of charge to any person obtaining a copy"),
    # ISC keeps the notice condition that 0BSD drops (SPDX ISC and 0BSD texts).
    ("ISC", "for any purpose with or without fee is hereby granted provided that the above "
            "copyright notice and this permission notice appear in all copies"),
    ("0BSD", "for any purpose with or without fee is hereby granted "
             "the software is provided as is"),
]
_BSD = ("redistribution and use in source and binary forms with or without modification "
        "are permitted")


def _normalise(text: str) -> str:
    """Lower case, comment marks and punctuation as single spaces; dots kept only in versions."""
    text = re.sub(r"[^a-z0-9.]+", " ", text.lower())
    return " ".join(re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text).split())


def _gnu_id(family: str, version: str | None, later: bool) -> str | None:
    versions = _GNU_VERSIONS[family]
    if version is None:  # GPL-2.0 section 9: no version given means any version ever published
        return f"{family}-{versions[0]}-or-later"
    version = version if "." in version else version + ".0"
    if version in versions:
        return f"{family}-{version}-{'or-later' if later else 'only'}"
    newer = [v for v in versions if float(v) > float(version)]
    return f"{family}-{newer[0]}-or-later" if later and newer else None


def _from_gnu_header(norm: str) -> tuple[int, str | None] | None:
    """(position, id) of the first GNU grant, or None."""
    dual = _GNU_DUAL.search(norm)
    if dual:
        gpl, lgpl = _gnu_id("GPL", dual.group(1), False), _gnu_id("LGPL", dual.group(2), False)
        return dual.start(), f"{gpl} OR {lgpl}"
    # A grant names the licence right after "under (the terms of) the" or a "License:" label;
    # other mentions ("such as the GNU General Public License" in the GFDL) grant nothing.
    grants = (m for m in _GNU.finditer(norm) if norm[:m.start()].endswith(_GRANT_LEAD))
    m = next(grants, None)
    if m is None:
        return None
    window = norm[m.start():m.start() + 400]  # the grant sentence that follows the name
    version = re.search(r"\b(?:version |v ?)(\d(?:\.\d)?)\b", window)  # "version 2", "v3"
    later = re.search(r"any later version|or later", window) is not None
    return m.start(), _gnu_id(_GNU_FAMILY[m.group(1)], version and version.group(1), later)


def _licences_in(norm: str) -> list[str]:
    """Every licence a header's or licence file's normalised words name, in order of appearance."""
    found = [(norm.find(phrase), spdx) for spdx, phrase in _PHRASES if phrase in norm]
    at = norm.find(_BSD)
    if at >= 0:
        # BSD-3-Clause adds the no-endorsement clause to BSD-2-Clause; BSD-4-Clause adds the
        # advertising clause (SPDX texts of BSD-2/3/4-Clause).
        clauses = norm[at:at + 1500]
        if "all advertising materials mentioning" in clauses:
            found.append((at, "BSD-4-Clause"))
        elif "neither the name" in clauses or "may not be used to endorse or promote" in clauses:
            found.append((at, "BSD-3-Clause"))
        else:
            found.append((at, "BSD-2-Clause"))
    gnu = _from_gnu_header(norm)
    if gnu and gnu[1]:
        found.append(gnu)
    return list(dict.fromkeys(spdx for _, spdx in sorted(found)))


# SPDX license expressions: ids (letters, digits, ".", "-", "+") joined by AND/OR/WITH, with parentheses.
_SPDX_EXPRESSION = re.compile(r"^\(*[A-Za-z0-9.+-]+\)*(?:\s+(?:AND|OR|WITH|and|or|with)\s+\(*[A-Za-z0-9.+-]+\)*)*$")


def file_licence(text: str) -> str | None:
    """The file's licence: its SPDX-License-Identifier expression as written (within the first
    40 lines), else the licences its header's wording names (first 100 lines), else None."""
    head = text.split("\n", _HEADER_LINES)[:_HEADER_LINES]
    for line in head[:40]:
        m = _SPDX_LINE.search(line)
        if m:
            expr = _COMMENT_END.split(m.group(1), maxsplit=1)[0].strip().rstrip(";,")
            if _SPDX_EXPRESSION.match(expr):  # not prose that merely mentions the tag
                return expr
    # Two notices (sdcc's ds400rom.c: a GPL header, then MIT for code taken from Dallas) mean
    # both apply: "GPL-2.0-or-later AND MIT".
    found = _licences_in(_normalise("\n".join(head)))
    return " AND ".join(f"({x})" if " OR " in x and len(found) > 1 else x for x in found) or None


def repo_licence(root: Path) -> str | None:
    """The licence in a repository's LICENSE/COPYING file, or None."""
    for name in LICENCE_FILES:
        path = root / name
        if path.is_file():
            return licence_file_id(path.read_text(encoding="utf-8", errors="replace"))
    return None


def licence_file_id(text: str) -> str | None:
    """The licence a LICENSE/COPYING file's text gives. A full GNU licence text is read as
    "-only": the file names a text, not an "or any later version" grant; that grant, when there
    is one, is in the files' headers, which ``file_licence`` reads."""
    spdx = _SPDX_LINE.search(text[:4000])
    if spdx:
        return _COMMENT_END.split(spdx.group(1), maxsplit=1)[0].strip()
    norm = _normalise(text)
    title = re.match(r"(?:\S+ ){0,12}?gnu (lesser |library |affero )?general public license "
                     r"version (\d(?:\.\d)?)", norm)
    if title:
        return _gnu_id(_GNU_FAMILY[title.group(1)], title.group(2), later=False)
    found = _licences_in(norm)  # the first: later ones are usually vendored parts' licences
    return found[0] if found else None


def _parse(expr: str) -> tuple:
    """SPDX expression -> nested ("OR"|"AND", [...]) tuples or ("ID", id). ``X WITH exception``
    counts as X: an exception only adds permissions (SPDX spec, Annex D)."""
    tokens = re.findall(r"\(|\)|[^\s()]+", expr)
    pos = 0

    def peek() -> str | None:
        return tokens[pos].upper() if pos < len(tokens) else None

    def parse_op(op: str, sub) -> tuple:
        nonlocal pos
        items = [sub()]
        while peek() == op:
            pos += 1
            items.append(sub())
        return items[0] if len(items) == 1 else (op, items)

    def atom() -> tuple:
        nonlocal pos
        if peek() == "(":
            pos += 1
            node = parse_op("OR", lambda: parse_op("AND", atom))
            if peek() != ")":
                raise ValueError(f"unbalanced parentheses in {expr!r}")
            pos += 1
            return node
        if peek() in (None, ")", "AND", "OR", "WITH"):
            raise ValueError(f"expected a licence id in {expr!r}")
        node = ("ID", tokens[pos])
        pos += 1
        if peek() == "WITH":
            if pos + 1 >= len(tokens) or tokens[pos + 1] in "()":
                raise ValueError(f"WITH needs an exception id in {expr!r}")
            pos += 2
        return node

    tree = parse_op("OR", lambda: parse_op("AND", atom))
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos]!r} in {expr!r}")
    return tree


def _matches(licence: str, patterns: list[str]) -> bool:
    """Case-blind SPDX match; a pattern may use ``*`` (``GPL-*``), and one without a version
    suffix covers both suffixes (``GPL-2.0`` matches GPL-2.0-only, -or-later and GPL-2.0+)."""
    lic = licence.upper()
    base = re.sub(r"(-ONLY|-OR-LATER|\+)$", "", lic)
    return any(fnmatch.fnmatchcase(lic, p.upper()) or base == p.upper() for p in patterns)


@dataclass
class LicencePolicy:
    """Which licences may be trained on. ``deny`` wins over ``allow``; ``allow=None`` allows
    every licence not denied; ``unknown`` decides files with no recognisable licence.

    Expressions: ``A OR B`` is kept if any alternative is acceptable, since OR lets the
    recipient choose (SPDX spec, Annex D), so "MIT OR GPL-3.0-only" is kept under a GPL ban,
    used under MIT. ``A AND B`` needs every part acceptable. An unparseable expression counts
    as unknown."""

    allow: list[str] | None = None
    deny: list[str] = field(default_factory=list)
    unknown: Literal["keep", "drop"] = "keep"

    def decide(self, licence: str | None) -> tuple[bool, str]:
        """(keep, reason); the reason names the licence that decided."""
        if licence is None or not licence.strip():
            return self.unknown == "keep", f"no licence found (unknown={self.unknown})"
        try:
            tree = _parse(licence)
        except ValueError as err:
            return self.unknown == "keep", f"{err} (unknown={self.unknown})"
        return self._decide(tree)

    def _decide(self, node: tuple) -> tuple[bool, str]:
        kind, value = node
        if kind == "ID":
            if _matches(value, self.deny):
                return False, f"{value} is denied"
            if self.allow is not None and not _matches(value, self.allow):
                return False, f"{value} is not in the allow list"
            return True, f"{value} is allowed"
        results = [self._decide(child) for child in value]
        if kind == "OR":
            return next((r for r in results if r[0]), (False, "; ".join(r[1] for r in results)))
        return next((r for r in results if not r[0]), (True, "; ".join(r[1] for r in results)))
