"""Curation of a source's documents, in order: read -> content filters -> licence -> eval
decontamination -> dedup -> secrets. Every file gets a manifest row saying kept, or why not.

Held-out documents go through first: they become the eval sets, and training documents that
copy them are then dropped, by dedup (whole-file copies) and by decontamination (long shared
n-grams). The built-in corpus is adapt's own, fixed for comparable evals, and is not curated.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np

from adapt.data.curation.dedup import Deduplicator
from adapt.data.curation.filters import FilterSpec, language_of, text_verdict
from adapt.data.curation.licences import LicencePolicy, file_licence
from adapt.data.curation.secrets import scrub
from adapt.recipe.schema import CurationSection

_WORD = re.compile(r"\w+")


class Curator:
    """One per run: dedup and decontamination span all sources, and so do the counts."""

    def __init__(self, section: CurationSection, filters: FilterSpec):
        self.section, self.filters = section, filters
        dedup = section.dedup
        self.dedup = Deduplicator(exact=dedup.exact, near=dedup.near, threshold=dedup.threshold,
                                  ngram=dedup.ngram, num_perm=dedup.num_perm) if dedup.exact or dedup.near else None
        licences = section.licences
        self.licence_policy = LicencePolicy(allow=licences.allow, deny=licences.deny, unknown=licences.unknown)
        self._eval_grams: list[np.ndarray] = []  # each held-out document's distinct n-gram hashes
        self._eval_unique: np.ndarray | None = None  # sorted hashes held by exactly one of them
        self.manifest: list[dict] = []
        self.dropped: dict[str, Counter] = {}
        self.secrets: Counter = Counter()
        self.secret_files: dict[str, list[str]] = {}
        self.licences: Counter = Counter()
        self.languages: Counter = Counter()

    def documents(self, source, refs, split: str) -> Iterator[tuple[str, str]]:
        """Yield ``(name, text)`` of the kept documents; record every document in the manifest."""
        drops = self.dropped.setdefault(source.name, Counter())
        if split == "train":  # what the listing dropped by path, recorded once per source
            for path, reason in source.dropped:
                drops[reason] += 1
                self._row(source, split, path, None, None, reason)
        for ref, text, unread in source.read(refs):
            name = f"{source.name}:{ref}"
            if text is None:
                drops[unread] += 1
                self._row(source, split, str(ref), None, None, unread)
                continue
            if not source.curated:
                yield name, text
                continue
            digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
            licence = file_licence(text) or source.licence
            text, reason = self._curate(name, text, licence, split)
            self._row(source, split, str(ref), licence, digest, reason)
            if reason:
                drops[reason] += 1
                continue
            self.licences[licence or "unknown"] += 1
            self.languages[language_of(Path(ref.path)) or "unknown"] += 1
            yield name, text

    def _curate(self, name: str, text: str, licence: str | None, split: str) -> tuple[str, str | None]:
        """(text to train on, reason to drop or None)."""
        reason = text_verdict(Path(name), text, self.filters)
        if reason:
            return text, reason
        keep, _ = self.licence_policy.decide(licence)
        if not keep:
            return text, "licence"
        if split == "train" and self._overlaps_eval(text):
            return text, "eval_overlap"
        if self.dedup is not None and (duplicate := self.dedup.check(name, text)):
            return text, duplicate[0]
        if self.section.secrets != "off":
            scrubbed, findings = scrub(text, self.section.secrets)
            for finding in findings:
                self.secrets[finding.kind] += 1
            if findings:
                self.secret_files[name] = sorted({f.kind for f in findings})
            if scrubbed is None:
                return text, "secrets"
            text = scrubbed
        if split == "heldout" and self.section.decontamination.enabled:
            self._eval_grams.append(self._grams(text))
            self._eval_unique = None
        return text, None

    def _grams(self, text: str) -> np.ndarray:
        """The document's distinct word n-grams, as hashes (numpy: a Python set of tuples cost
        half of curation's time)."""
        n = self.section.decontamination.ngram
        words = _WORD.findall(text)
        if len(words) < n:
            return np.zeros(0, dtype=np.uint64)
        hashes = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
        count = len(words) - n + 1
        mix = _multipliers(n)
        mixed = hashes[:count] * mix[0]
        for i in range(1, n):
            mixed ^= hashes[i: i + count] * mix[i]
        return np.unique(mixed)

    def _overlaps_eval(self, text: str) -> bool:
        """True when a large share of the document's long n-grams come from one eval document.
        N-grams held by several eval documents are boilerplate (licence headers, register
        tables common to a family of chips), not a leak of any one of them, and do not count."""
        if not self._eval_grams or not self.section.decontamination.enabled:
            return False
        if self._eval_unique is None:
            grams, counts = np.unique(np.concatenate(self._eval_grams), return_counts=True)
            self._eval_unique = grams[counts == 1]
        grams = self._grams(text)
        if grams.size == 0:
            return False
        shared = np.isin(grams, self._eval_unique, assume_unique=True).sum()
        return shared / grams.size > self.section.decontamination.max_overlap

    def _row(self, source, split, path, licence, digest, reason) -> None:
        self.manifest.append({
            "source": source.name, "split": split, "path": path, "repo": str(source.root) if source.kind in ("files", "git") else None,
            "revision": source.revision, "licence": licence, "sha256": digest,
            "kept": reason is None, "reason": reason,
        })

    def report(self) -> dict:
        return {
            "dropped": {name: dict(c) for name, c in self.dropped.items()},
            "secrets": {"by_kind": dict(self.secrets), "files": self.secret_files},
            "licences": dict(self.licences.most_common()),
            "languages": dict(self.languages.most_common()),
        }


@functools.lru_cache(maxsize=None)
def _multipliers(n: int) -> np.ndarray:
    """Odd multipliers that mix n word hashes into one n-gram hash (uint64 arithmetic wraps)."""
    return np.random.RandomState(7).randint(1, 2**62, size=n, dtype=np.int64).astype(np.uint64) * 2 + 1
