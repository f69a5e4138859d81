"""Secret scrubbing: find credentials in a file's text and redact them (or drop the file) before
the text reaches the token cache, logs, reports or MLflow. A ``Finding`` never holds the value.

Library or own rules? detect-secrets 1.5.0 (default plugins and filters, text in memory) scans
the first 5.0 MB of the Python 3.11 stdlib (336 non-test modules) at 0.28 MB/s on one core with
4 findings, all false positives; it reports lines, not spans to redact. The pipeline needs
>= 5 MB/s on 2 cores. These rules scrub the same 5 MB at ~50 MB/s with 0 findings (recall
compared in tests/test_curation_secrets.py), so we keep our own, each named after the
detect-secrets plugin and gitleaks rule (gitleaks ``config/gitleaks.toml``) it follows.

Choices, each trading some recall for far fewer false positives on ordinary code:
- Assignments need a literal right after ``=``, ``:``, ``:=``, ``=>`` or a C ``#define`` name;
  comparisons (``==``), environment lookups and calls (even with a default) are ignored.
  Unquoted values (YAML, .env, ini) need a digit or symbol, or an env-style ``UPPER_KEY=value``
  line: ``password: str`` (an annotation) is no secret, so ``password: letmein`` is missed.
  Values with spaces are prose, so passphrases are missed too.
- High entropy (detect-secrets Base64/HexHighEntropyString, limits 4.5 and 3.0 bits/char):
  quoted literals of >= 20 base64 chars assigned to a name. Hex assigned to ``revision``,
  ``sha256``, ``digest``... is a commit or content hash, public by design (a pinned Hugging
  Face ``revision=``), so it stays; other hex is flagged, as hex API keys look the same.
- URL credentials redact the password only: ``https://user:<SECRET:url_credentials>@host``.
- Every pattern runs in time linear in the text, minified one-line files included.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Finding:
    """One secret found: its kind and 1-based line. Never the value, so findings are safe to log."""

    kind: str
    line: int


# (kind, literals the text must hold for the regex to be worth running, regex), by priority:
# where spans overlap they merge, and the earliest kind here names the result.
_TOKEN_RULES: list[tuple[str, tuple[str, ...], re.Pattern[str]]] = [
    # detect-secrets PrivateKeyDetector; gitleaks private-key. The whole block, or to the end
    # of the text when the END line is missing (a truncated key is still a key).
    ("private_key", ("PRIVATE KEY",), re.compile(
        r"-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"[\s\S]*?(?:-----END[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)")),
    # detect-secrets AWSKeyDetector (first regex); gitleaks aws-access-token.
    ("aws_access_key", ("AKIA", "ASIA"), re.compile(
        r"A[KS]IA(?<![0-9A-Z]....)[0-9A-Z]{16}(?![0-9A-Z])")),
    # detect-secrets GitHubTokenDetector; gitleaks github-pat, github-oauth, github-app-token,
    # github-refresh-token, github-fine-grained-pat (82 chars there; shorter ones count too).
    ("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), re.compile(
        r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{22,}")),
    # detect-secrets SlackDetector; gitleaks slack-bot-token, slack-user-token, slack-legacy-*.
    ("slack_token", ("xox",), re.compile(r"xox(?<![\w-]xox)[abprs]-[0-9A-Za-z-]{10,250}")),
    # gitleaks gcp-api-key (detect-secrets has no Google plugin).
    ("google_api_key", ("AIza",), re.compile(r"AIza[0-9A-Za-z_-]{35}")),
    # detect-secrets StripeDetector; gitleaks stripe-access-token (live keys only).
    ("stripe_key", ("k_live_",), re.compile(r"[rs]k_live_[0-9A-Za-z]{10,99}")),
    # detect-secrets JwtTokenDetector; gitleaks jwt. Header and payload are base64 JSON ("eyJ").
    ("jwt", ("eyJ",), re.compile(
        r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*")),
]
# detect-secrets AWSKeyDetector (second regex): a 40-char key near "aws" and a key word.
_AWS_SECRET = re.compile(
    r"aws[\w.-]{0,20}?(?:secret|key|pwd|pw|password|pass|token)[\w.-]{0,20}?[\"'`\]]{0,2}"
    r"[ \t]*(?::=|=>|=|:)[ \t]*[\"'`]?([0-9A-Za-z/+]{40})(?![0-9A-Za-z/+=])", re.IGNORECASE)
# detect-secrets BasicAuthDetector (gitleaks has no generic rule). Group 1 is the password.
_URL_CREDS = re.compile(r"://[^\s:/@\"'`]+:([^\s/@\"'`]+)@[\w.-]+")

# detect-secrets KeywordDetector's DENYLIST, trimmed; gitleaks generic-api-key. After the
# keyword: the rest of the name, a closing quote or bracket (dict keys, C arrays), a type
# annotation, the operator, then a quoted or unquoted literal. ``(?=(X))(?P=X)`` is an atomic
# group (Python 3.10 has no possessive quantifiers): no backtracking, so no quadratic time.
_KEYWORD = (r"(?P<kw>passw(?:or)?d|passphrase|pwd|secret|api[_-]?key|auth[_-]?key|"
            r"access[_-]?key|private[_-]?key|token)")
_KEYWORD_STEMS = ("pass", "pwd", "secret", "key", "token")  # each keyword holds one
_ASSIGN = re.compile(
    _KEYWORD + r"(?=(?P<rest>[\w.-]{0,40}))(?P=rest)(?:[\"'`]?\]|[\"'`]|\[\d*\])?"
    r"(?:[ \t]*:[ \t]*[\w.|\[\] ]{1,60}?(?==))?[ \t]*(?::=|=>|\?=|=(?!=)|:(?!:))[ \t]*"
    r"(?:(?P<q>[\"'`])(?P<qv>[^\"'`\n]*)(?P=q)"
    r"|(?=(?P<uv>[^\s\"'`]{1,200}))(?P=uv)(?:[ \t]+[#;].*)?[ \t]*$)",
    re.IGNORECASE | re.MULTILINE)
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+\"([^\"\n]*)\"", re.MULTILINE)
_DEFINE_PREFIX = re.compile(r"[ \t]*#[ \t]*define[ \t]+(\w+)$")
_KEYWORD_IN = re.compile(_KEYWORD, re.IGNORECASE)
# The last sub-word of a name that is about a secret rather than holding it: password_file.
_NOT_SECRET_SUFFIX = {"file", "path", "dir", "name", "names", "field", "env", "var", "prompt",
                      "label", "type", "len", "length", "size", "re", "regex", "pattern", "url",
                      "header", "hash", "id", "count", "index", "kind", "class", "attr", "param",
                      "policy", "state", "mode", "format", "fmt", "help", "msg", "message"}
# detect-secrets is_templated_secret, gitleaks' global allowlist, and common dummies.
_PLACEHOLDER = re.compile(
    r"^(?:|\$\w+|\$\{[^}]*\}|\{\{.*\}\}|<[^>]*>|%\(?\w*\)?s|\{\w*\}|\**|\.+|x+|your[_-].*|"
    r"changeme|change[_-]?me|dummy|example|placeholder|redacted|todo|fixme|none|null|nil|"
    r"true|false|undefined|test|pass|secret|password|passwd|\w+[_-]here)$", re.IGNORECASE)
_TEMPLATE = re.compile(r"%[-#0 +]?[sdr]|%\(\w+\)|\{\w*\}|\$\{")  # a format string, filled later
_CODE_VALUE = re.compile(r"[()\[\]{}$%<>]|^[\d.]+$|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")
_TYPE_NAMES = {"str", "string", "bytes", "int", "bool", "any", "object", "optional", "secretstr"}

# detect-secrets Base64HighEntropyString's charset, as one quoted literal.
_B64_LITERAL = re.compile(r"([\"'`])([A-Za-z0-9+/=_-]{20,})\1")
_HEX = frozenset("0123456789abcdefABCDEF")
_HASH_NAME = re.compile(r"sha|hash|digest|checksum|revision|commit|\brev|etag|md5|crc|fingerprint",
                        re.IGNORECASE)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

_PRIORITY = [r[0] for r in _TOKEN_RULES] + [
    "aws_secret_key", "url_credentials", "password_assignment", "high_entropy_assignment"]


def shannon_entropy(value: str) -> float:
    """Bits per character over the string's own characters, as detect-secrets computes it."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _high_entropy(value: str) -> bool:
    """detect-secrets' defaults: hex needs > 3.0 bits/char (all-digit strings lose 1.2/log2(len)
    first), other base64 > 4.5. Alphabets ('ABCDEF...') are not secrets (is_sequential_string)."""
    if sum(ord(b) - ord(a) == 1 for a, b in zip(value, value[1:])) >= len(value) // 2:
        return False
    entropy = shannon_entropy(value)
    if set(value) <= _HEX:
        if value.isdigit():
            entropy -= 1.2 / math.log2(len(value))
        return entropy > 3.0
    return entropy > 4.5


def _secret_name(name_rest: str, keyword: str) -> bool:
    """False when the keyword is not a whole sub-word of the name (``tokenizer``) or the name is
    about the secret rather than holding it (``password_file``, ``token_type``)."""
    if name_rest[:1].isalpha() and name_rest[0].islower() == keyword[-1].islower():
        return False
    last = re.split(r"[_.\-]|(?<=[a-z])(?=[A-Z])", name_rest)[-1].lower() if name_rest else ""
    return last not in _NOT_SECRET_SUFFIX


def _secret_value(value: str, keyword: str, quoted: bool, line: str) -> bool:
    """Whether a literal given to a secret-named key looks like a real secret."""
    low = value.lower()
    if (len(value) < 4 or _PLACEHOLDER.match(value) or _TEMPLATE.search(value)
            or any(c.isspace() for c in value) or _KEYWORD_IN.search(low)):
        return False
    if keyword.lower() == "token" and not (len(value) >= 8 and re.search(r"\d", value)):
        return False  # ordinary code names parser tokens "token"; want a key-like value
    if quoted:
        return True
    if _CODE_VALUE.search(value) or value.endswith((",", ";")) or low in _TYPE_NAMES:
        return False
    env_style = re.match(r"[ \t]*(?:export[ \t]+)?[A-Z0-9_]+=\S", line) is not None
    return env_style or re.search(r"[\d!@#^&*+/=~?-]", value) is not None


def _line_before(text: str, pos: int, limit: int = 200) -> str:
    """The line up to ``pos``, at most ``limit`` chars, so minified one-line files stay linear."""
    start = text.rfind("\n", max(0, pos - limit), pos) + 1
    return text[start or max(0, pos - limit):pos]


def _assigned_name(before: str) -> str | None:
    """The name a literal is assigned to, from the line before it (``name =``, ``"name":``,
    ``name[] =``, ``name :=``, ``name =>``, ``#define NAME``); None for call arguments, ``==``."""
    before = before.rstrip()
    define = _DEFINE_PREFIX.match(before)
    if define:
        return define.group(1)
    op = next((op for op in (":=", "=>", "=", ":") if before.endswith(op)), None)
    if op is None or (op == "=" and before[-2:-1] in ("=", "!", "<", ">")):
        return None
    before = before[: -len(op)].rstrip().rstrip("[]\"'`")
    i = len(before)
    while i and (before[i - 1].isalnum() or before[i - 1] in "_-"):
        i -= 1
    return before[i:] or None


def _keyword_lines(text: str, low: str) -> list[tuple[int, int]]:
    """(start, end) of each line holding a keyword stem. ``_ASSIGN`` on these lines only is ~5x
    faster than on the whole text, where its case-blind alternation is tried at every char."""
    if len(low) != len(text):  # lower() changed some lengths (rare non-ASCII): scan it all
        return [(0, len(text))]
    spans = set()
    for stem in _KEYWORD_STEMS:
        i = low.find(stem)
        while i != -1:
            start, end = low.rfind("\n", 0, i) + 1, low.find("\n", i)
            end = len(low) if end == -1 else end
            spans.add((start, end))
            i = low.find(stem, end)
    return sorted(spans)


def _candidates(text: str) -> list[tuple[str, int, int]]:
    """Every (kind, start, end) match, before overlaps are resolved."""
    found = [(kind, m.start(), m.end()) for kind, needles, regex in _TOKEN_RULES
             if any(n in text for n in needles) for m in regex.finditer(text)]
    low = text.lower()
    if "aws" in low:
        found += [("aws_secret_key", m.start(1), m.end(1)) for m in _AWS_SECRET.finditer(text)]
    if "://" in text:
        found += [("url_credentials", m.start(1), m.end(1)) for m in _URL_CREDS.finditer(text)
                  if not _PLACEHOLDER.match(m.group(1))]
    for a, b in _keyword_lines(text, low):
        for m in _ASSIGN.finditer(text, a, b):
            group = "qv" if m.group("q") else "uv"
            if _secret_name(m.group("rest"), m.group("kw")) and _secret_value(
                    m.group(group), m.group("kw"), group == "qv", _line_before(text, m.end())):
                found.append(("password_assignment", m.start(group), m.end(group)))
    for m in _DEFINE.finditer(text) if "define" in text else ():
        kw = _KEYWORD_IN.search(m.group(1))
        if kw and _secret_name(m.group(1)[kw.end():], kw.group()) and _secret_value(
                m.group(2), kw.group(), True, ""):
            found.append(("password_assignment", m.start(2), m.end(2)))
    for m in _B64_LITERAL.finditer(text):
        value = m.group(2)
        if not _high_entropy(value) or _UUID.match(value) or value.startswith(("/", "./", "~/")):
            continue  # low entropy, a UUID or a path
        name = _assigned_name(_line_before(text, m.start()))
        if name and not (set(value) <= _HEX and _HASH_NAME.search(name)):
            found.append(("high_entropy_assignment", m.start(2), m.end(2)))
    return found


def find_secrets(text: str) -> list[tuple[Finding, int, int]]:
    """Non-overlapping (finding, start, end) char spans, in text order. Where detectors overlap
    (a GitHub token assigned to ``password``), the spans merge, so no part of either value is
    left out, and the more specific kind (earlier in ``_PRIORITY``) names the result."""
    rank = {k: i for i, k in enumerate(_PRIORITY)}
    merged: list[list] = []  # [kind, start, end]
    for kind, start, end in sorted(_candidates(text), key=lambda c: c[1]):
        if merged and start < merged[-1][2]:
            last = merged[-1]
            last[2] = max(last[2], end)
            if rank[kind] < rank[last[0]]:
                last[0] = kind
        else:
            merged.append([kind, start, end])
    out, line, pos = [], 1, 0
    for kind, start, end in merged:
        line += text.count("\n", pos, start)
        pos = start
        out.append((Finding(kind, line), start, end))
    return out


def scrub(
    text: str, policy: Literal["redact", "drop"] = "redact"
) -> tuple[str | None, list[Finding]]:
    """Redact each secret as ``<SECRET:kind>``, or with ``policy="drop"`` return None for a file
    that holds any. The findings say what was removed and where, never the values."""
    if policy not in ("redact", "drop"):
        raise ValueError(f"unknown secrets policy {policy!r}: use 'redact' or 'drop'")
    spans = find_secrets(text)
    findings = [f for f, _, _ in spans]
    if policy == "drop" and spans:
        return None, findings
    parts, pos = [], 0
    for finding, start, end in spans:
        parts += [text[pos:start], f"<SECRET:{finding.kind}>"]
        pos = end
    parts.append(text[pos:])
    return "".join(parts), findings
