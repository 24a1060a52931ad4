"""Which prompts a command works on: `--source`, `--tag`, `--search`, `--limit`, or explicit ids."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class PromptSelection:
    """A filter over prompts; every field is a bound SQL parameter, never SQL text."""

    source: str | None = None
    tag: str | None = None
    search: str | None = None
    limit: int | None = None
    prompt_ids: list[str] | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}
