"""Filters: drop files that teach a code model nothing or the wrong thing, and say why.

Two cheap stages, so most drops cost no read: ``path_verdict`` judges the path alone (vendored
trees, lock files and other generated names, languages), ``text_verdict`` the contents (long
lines, minified code, generated headers, data blobs). Each returns a reason or None; the
sources (listing) and the curation pipeline (contents) count every drop by reason.

The thresholds follow Codex (Chen et al. 2021, §3.1: average line length over 100, longest line
over 1000, few alphanumeric characters) and BigCode's StarCoder filters (alphanumeric fraction
under 0.25). We cap the average line at 200, not 100, a margin for hand-aligned register tables
(the SDCC 8051 headers reach 75); on the stdlib and the embedded corpora, 100 would drop only
three more files, all test data (an HTML diff, an XML and a CJK text fixture).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path


# Suffix -> language. Suffixes are matched as written first (".S" is preprocessed assembly, ".C"
# is C++), then lower-cased. Headers ".h" count as C, since most are; a C++ project that selects
# languages should list both "c" and "cpp", or its headers go.
_BY_SUFFIX = {
    ".py": "python", ".pyi": "python", ".pyw": "python", ".pyx": "cython", ".pxd": "cython",
    ".c": "c", ".h": "c", ".C": "cpp",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hh": "cpp", ".hpp": "cpp",
    ".hxx": "cpp", ".ipp": "cpp", ".inl": "cpp", ".ino": "cpp",
    ".rs": "rust", ".go": "go", ".java": "java", ".kt": "kotlin", ".kts": "kotlin", ".scala": "scala",
    ".cs": "csharp", ".swift": "swift", ".m": "objective-c", ".mm": "objective-c",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".rb": "ruby", ".php": "php", ".pl": "perl", ".pm": "perl", ".lua": "lua", ".r": "r",
    ".jl": "julia", ".hs": "haskell", ".ml": "ocaml", ".ex": "elixir", ".exs": "elixir",
    ".erl": "erlang", ".clj": "clojure", ".dart": "dart", ".zig": "zig", ".nim": "nim",
    ".f": "fortran", ".f90": "fortran", ".f95": "fortran", ".vhd": "vhdl", ".vhdl": "vhdl",
    ".v": "verilog", ".sv": "systemverilog", ".svh": "systemverilog",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ps1": "powershell", ".bat": "batch",
    ".s": "assembly", ".S": "assembly", ".asm": "assembly", ".inc": "assembly",
    ".ld": "linker-script", ".lds": "linker-script",
    ".mk": "makefile", ".cmake": "cmake", ".sql": "sql", ".proto": "protobuf",
    ".html": "html", ".htm": "html", ".css": "css", ".scss": "css", ".xml": "xml",
    ".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".txt": "text", ".tex": "tex",
    ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml", ".ini": "ini", ".cfg": "ini",
}
_BY_NAME = {
    "Makefile": "makefile", "makefile": "makefile", "GNUmakefile": "makefile",
    "Dockerfile": "dockerfile", "Containerfile": "dockerfile", "CMakeLists.txt": "cmake",
    "Kconfig": "kconfig", "SConstruct": "python", "SConscript": "python", "BUILD": "starlark",
    "BUILD.bazel": "starlark", "WORKSPACE": "starlark", "Jenkinsfile": "groovy",
}
KNOWN_LANGUAGES = frozenset(_BY_SUFFIX.values()) | frozenset(_BY_NAME.values())

# Directories whose contents are someone else's code or build output. Only directory parts of
# the path *relative to the source root* are checked (a root under ~/build/ must not drop all).
# Left out on purpose: "lib", "libs", "deps", "packages" (often the project's own code), "target"
# and "out" (build output for Cargo, Maven, Android, but "target" also holds board support code in
# embedded trees; binary output is dropped by the reader anyway) and "venv" (a stdlib package is
# called venv; ".venv" is the usual virtualenv name).
VENDORED_DIRS = frozenset({
    "node_modules", "bower_components", "jspm_packages", "vendor", "_vendor", "vendored",
    "third_party", "third-party", "thirdparty", "3rdparty", "external", "extern",
    "site-packages", "dist-packages", ".venv", ".tox", ".nox", ".eggs",
    "dist", "build", "_build", "__pycache__", ".mypy_cache", ".pytest_cache",
    ".git", ".hg", ".svn", ".idea", ".vscode", "Pods", "Carthage",
})

# Files written by tools, by exact name or by ending.
GENERATED_NAMES = frozenset({
    "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb",
    "poetry.lock", "Pipfile.lock", "uv.lock", "pdm.lock", "Cargo.lock", "go.sum", "composer.lock",
    "Gemfile.lock", "mix.lock", "pubspec.lock", "flake.lock", "packages.lock.json", "gradle.lockfile",
    "configure", "config.guess", "config.sub", "ltmain.sh", "aclocal.m4",
})
GENERATED_ENDINGS = (
    ".min.js", ".min.css", ".min.mjs", "-min.js", ".bundle.js", ".map", ".lock",
    ".pb.go", ".pb.cc", ".pb.h", "_pb2.py", "_pb2.pyi", "_pb2_grpc.py", ".pb.rs",
    "_generated.go", ".generated.ts", ".g.dart", ".freezed.dart", ".designer.cs", ".g.cs",
)

# Markers tools write at the top of their output, searched in the first lines only. "Generated
# by/from" alone is also prose ("CRC algorithm generated by pycrc", "tables generated by pgen"
# in hand-written files), so it counts only where a line starts with it, or where it names a
# script ("generated from X with gencodec.py", the stdlib's codec tables).
_GENERATED_HEADER = re.compile(
    r"auto-?generated|automatically generated|generated automatically|@generated"
    r"|this file (?:is|was|has been) generated|do not (?:edit|modify)|don't (?:edit|modify)"
    r"|^[^\w\n]*generated (?:by|from)\b"
    r"|\bgenerated (?:by|from|with)\b[^\n]*?\w\.(?:py|pl|sh|rb|js|awk|tcl)\b",
    re.IGNORECASE | re.MULTILINE,
)
_HEADER_LINES = 5

# Bytes counted as alphanumeric: ASCII letters, digits, and every byte of a non-ASCII UTF-8
# sequence (letters of other scripts). Counting bytes with translate() runs at memory speed,
# where a per-character str.isalnum() loop costs ~40 ns a character.
_NOT_ALNUM = bytes(b for b in range(128) if not chr(b).isalnum())


@dataclass
class FilterSpec:
    """What to drop. Every rule is on by default; set a threshold to 0 (or a flag to False) to
    switch it off. Counts of drops by reason go into the data report."""

    max_file_bytes: int = 1_000_000
    max_line_length: int = 1000           # any longer line: generated data or minified code
    max_avg_line_length: float = 200.0    # minified or generated
    min_alnum_fraction: float = 0.25      # data blobs, base64 dumps, ASCII art
    drop_generated: bool = True           # lock files by name, "generated by" headers
    drop_vendored: bool = True            # files under VENDORED_DIRS
    languages: list[str] | None = None    # keep only these; None keeps every known language
    exclude_languages: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in [*(self.languages or []), *self.exclude_languages]:
            if name not in KNOWN_LANGUAGES:
                close = difflib.get_close_matches(name, KNOWN_LANGUAGES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {sorted(KNOWN_LANGUAGES)}"
                raise ValueError(f"unknown language {name!r}{hint}")


def language_of(path: Path) -> str | None:
    """The language of a file from its name or suffix; None when unknown."""
    name = path.name
    if name in _BY_NAME:
        return _BY_NAME[name]
    suffix = path.suffix
    return _BY_SUFFIX.get(suffix) or _BY_SUFFIX.get(suffix.lower())


def path_verdict(path: Path, spec: FilterSpec) -> str | None:
    """Why to drop a file, judged from its path relative to the source root; None to keep.

    Reasons: "vendored", "generated_name", "unknown_language" (no known language and no
    include-list), "language" (not in ``spec.languages`` or in ``spec.exclude_languages``).
    """
    if spec.drop_vendored and any(part in VENDORED_DIRS for part in path.parts[:-1]):
        return "vendored"
    name = path.name
    if spec.drop_generated and (name in GENERATED_NAMES or name.endswith(GENERATED_ENDINGS)):
        return "generated_name"
    language = language_of(path)
    if language is None:
        return "unknown_language"
    if (spec.languages is not None and language not in spec.languages) or language in spec.exclude_languages:
        return "language"
    return None


def text_verdict(path: Path, text: str, spec: FilterSpec) -> str | None:
    """Why to drop a file, judged from its text; None to keep.

    Reasons, checked cheapest first: "too_large", "minified" (average line length),
    "max_line_length", "generated_header", "low_alnum". ``path`` is unused today; it is here
    so that rules can depend on the language (JSON and CSV have other norms than code).
    """
    # Bytes are needed for the size and the alphanumeric count. "surrogatepass": jsonl records
    # can carry lone surrogates ("\ud800"), which plain UTF-8 encoding refuses.
    data = text.encode("utf-8", "surrogatepass")
    if spec.max_file_bytes and len(data) > spec.max_file_bytes:
        return "too_large"
    lines = text.count("\n") + (not text.endswith("\n"))
    if spec.max_avg_line_length and len(text) / max(lines, 1) > spec.max_avg_line_length:
        return "minified"
    if spec.max_line_length and _longest_line(text) > spec.max_line_length:
        return "max_line_length"
    if spec.drop_generated and _GENERATED_HEADER.search(_head(text, _HEADER_LINES)):
        return "generated_header"
    if spec.min_alnum_fraction and data:
        if len(data.translate(None, _NOT_ALNUM)) / len(data) < spec.min_alnum_fraction:
            return "low_alnum"
    return None


def _longest_line(text: str) -> int:
    # split() and map(len) run in C: ~1 GB/s, faster than a regex search for a long run.
    return max(map(len, text.split("\n")))


def _head(text: str, lines: int) -> str:
    end = -1
    for _ in range(lines):
        end = text.find("\n", end + 1)
        if end < 0:
            return text
    return text[:end]
