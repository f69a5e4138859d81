"""User-facing errors: one message that names the file, the key and the fix, and exit code 2.

The CLI prints an ``AdaptError`` as plain text without a traceback; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class AdaptError(Exception):
    """An error caused by the user's input (recipe, data, run directory), not by adapt itself."""

    exit_code = 2

    def __init__(self, what: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None, fix: str | None = None):
        self.what, self.file, self.key, self.line, self.fix = what, file, key, line, fix
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"{self.key}: " if self.key else ""
        text = f"error: {where}{key}{self.what}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text
