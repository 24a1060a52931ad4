"""Judge templates: text files the user can edit, with placeholders for the texts a judge sees.

    pairwise  {prompt}, {response_a}, {response_b}   (required)
    rubric    {prompt}, {response}                    (required); {scale} (optional: the top of the scale)

The defaults ship in `workbench/data/judge_templates/` (`pairwise.txt`, `rubric.txt`); copy one, edit
it, pass it with `--template FILE`. A template is read whole and its SHA-256 is part of the judge's
identity (`workbench.judges.labeler`): an edited template is a new labeler. Filling is one pass over
the placeholders, so braces and placeholder-like text inside a reply stay as they are.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError

PAIRWISE, RUBRIC = "pairwise", "rubric"
MODES = (PAIRWISE, RUBRIC)
REQUIRED = {PAIRWISE: ("prompt", "response_a", "response_b"), RUBRIC: ("prompt", "response")}
OPTIONAL = {PAIRWISE: (), RUBRIC: ("scale",)}
DEFAULTS_DIR = Path(__file__).resolve().parent.parent / "data" / "judge_templates"
ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}


class JudgeTemplateError(WorkbenchError):
    """A judge template that cannot be used (unreadable, or without a required placeholder)."""


@dataclass(frozen=True)
class JudgeTemplate:
    """A judge's instructions, with placeholders for the texts it judges."""

    mode: str
    text: str
    path: str  # where it was read from, for the record; its identity is `sha256`

    @classmethod
    def read(cls, mode: str, path: str | Path | None = None) -> JudgeTemplate:
        """The template at `path` (default: the shipped one for `mode`), refused without its placeholders."""
        if mode not in MODES:
            raise JudgeTemplateError(f"unknown judge mode '{mode}': use one of {', '.join(MODES)}")
        where = Path(path) if path is not None else DEFAULTS_DIR / f"{mode}.txt"
        try:
            text = where.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise JudgeTemplateError(f"{where}: cannot read the judge template ({error.__class__.__name__}: "
                                     f"{error}): give a UTF-8 text file") from None
        found = set(cls._pattern(mode).findall(text))
        missing = [name for name in REQUIRED[mode] if name not in found]
        if missing:
            need = ", ".join("{" + name + "}" for name in REQUIRED[mode])
            raise JudgeTemplateError(f"{where}: the {mode} judge template lacks "
                                     f"{', '.join('{' + m + '}' for m in missing)}: a {mode} template needs {need} "
                                     f"(see {DEFAULTS_DIR / (mode + '.txt')})")
        return cls(mode, text, str(where))

    @staticmethod
    def _pattern(mode: str) -> re.Pattern:
        names = REQUIRED[mode] + OPTIONAL[mode]
        return re.compile(r"\{(" + "|".join(names) + r")\}")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def fill(self, **fields: str) -> str:
        """The template with each placeholder replaced by its field, in one pass."""
        return self._pattern(self.mode).sub(lambda m: fields[m.group(1)], self.text)

    def as_record(self) -> dict:
        """What a judge's config keeps of its template: where it came from, its hash and its text."""
        return {"path": self.path, "sha256": self.sha256, "text": self.text}


def prompt_text(messages: list[dict]) -> str:
    """A prompt as the judge reads it: a lone user turn as it is, a longer conversation as
    `User: ...` / `Assistant: ...` turns separated by blank lines."""
    if len(messages) == 1 and messages[0].get("role") == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{ROLE_NAMES.get(m['role'], m['role'])}: {m['content']}" for m in messages)


def as_conversation(filled: str) -> list[dict]:
    """The messages a judge is sent: the filled template as one user turn."""
    return [{"role": "user", "content": filled}]
