"""Input formats: turn one raw record into a prompt, its responses and an optional label.

| format         | a record                                                                   |
|----------------|----------------------------------------------------------------------------|
| `trl`/`xtuner` | `prompt`, `chosen`, `rejected` as role/content message lists (TRL's        |
|                | conversational preference type, also XTuner's reward-model format; without |
|                | `prompt`, the shared leading messages of `chosen` and `rejected` are it)   |
| `trl-standard` | `prompt`, `chosen`, `rejected` as strings                                  |
| `hh-rlhf`      | `chosen`, `rejected` as "\\n\\nHuman: ...\\n\\nAssistant: ..." transcripts      |
| `bon`          | `prompt` (string or messages), `responses` (strings or {text, score}),     |
|                | optional `scores`                                                          |
| `prompts`      | `prompt` (string or messages) or `messages`; optional `tags`               |

Every parser raises `InputError` naming the field at fault; the importer adds file and line.
Messages are stored exactly as given (two assistant turns in a row are kept: the engine merges
same-role neighbours when it renders a chat template, see `engine.conversation`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import InputError
from workbench.generate.finite_scores import finite_score, first_non_finite

FORMATS = ("trl", "xtuner", "trl-standard", "hh-rlhf", "bon", "prompts")
ROLES = ("system", "user", "assistant")


@dataclass
class ParsedRecord:
    """A prompt with its responses; `pair` indexes (chosen, rejected) in `responses` when labelled."""

    prompt: list[dict]
    responses: list[str] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    pair: tuple[int, int] | None = None
    tags: list[str] = field(default_factory=list)


def detect_format(value: Any) -> str | None:
    """Guess the format of a record from its keys and value types (None when nothing fits)."""
    if not isinstance(value, dict):
        return None
    if "responses" in value:
        return "bon"
    if "chosen" in value or "rejected" in value:
        chosen = value.get("chosen", value.get("rejected"))
        if isinstance(chosen, list):
            return "trl"
        if isinstance(chosen, str):
            if "prompt" in value:
                return "trl-standard"
            if "Human:" in chosen and "Assistant:" in chosen:
                return "hh-rlhf"
        return None
    if "prompt" in value or "messages" in value:
        return "prompts"
    return None


def parse_record(value: Any, fmt: str) -> ParsedRecord:
    """One record of a format as a `ParsedRecord`; raises InputError naming the field."""
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, got {type(value).__name__}")
    parser = _PARSERS.get(fmt)
    if parser is None:
        raise InputError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    record = parser(value)
    record.tags = _tags(value)
    return record


def _text(value: Any, name: str) -> str:
    if value is None:
        raise InputError("missing", field=name)
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", field=name)
    if not value.strip():
        raise InputError("empty text", field=name)
    return value


def _messages(value: Any, name: str) -> list[dict]:
    if value is None:
        raise InputError("missing", field=name)
    if not isinstance(value, list):
        raise InputError(f"expected a list of messages, got {type(value).__name__}", field=name)
    if not value:
        raise InputError("empty message list", field=name)
    messages = []
    for i, message in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(message, dict):
            raise InputError(f"expected a message object, got {type(message).__name__}", field=where)
        role = message.get("role")
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}, got {role!r}", field=f"{where}.role")
        messages.append({"role": role, "content": _text(message.get("content"), f"{where}.content")})
    return messages


def _prompt(value: dict, name: str = "prompt") -> list[dict]:
    prompt = value.get(name)
    if isinstance(prompt, str) or prompt is None:
        return [{"role": "user", "content": _text(prompt, name)}]
    messages = _messages(prompt, name)
    if messages[-1]["role"] == "assistant":
        raise InputError("the prompt must not end with an assistant message", field=name)
    return messages


def _reply(messages: list[dict], name: str) -> str:
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise InputError("expected exactly one assistant message", field=name)
    return messages[0]["content"]


def _pair(prompt: list[dict], chosen: str, rejected: str) -> ParsedRecord:
    if chosen == rejected:
        raise InputError("chosen and rejected are the same text: no preference to learn", field="rejected")
    return ParsedRecord(prompt=prompt, responses=[chosen, rejected], scores=[None, None], pair=(0, 1))


def _parse_trl(value: dict) -> ParsedRecord:
    chosen = _messages(value.get("chosen"), "chosen")
    rejected = _messages(value.get("rejected"), "rejected")
    if "prompt" in value:
        return _pair(_prompt(value), _reply(chosen, "chosen"), _reply(rejected, "rejected"))
    # Implicit prompt: both conversations share every message but the final assistant reply.
    if chosen[:-1] != rejected[:-1] or len(chosen) < 2:
        raise InputError("without 'prompt', chosen and rejected must share all messages but the last",
                         field="rejected")
    prompt = chosen[:-1]
    return _pair(prompt, _reply(chosen[-1:], "chosen"), _reply(rejected[-1:], "rejected"))


def _parse_trl_standard(value: dict) -> ParsedRecord:
    return _pair(_prompt(value), _text(value.get("chosen"), "chosen"), _text(value.get("rejected"), "rejected"))


_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def parse_hh_transcript(transcript: str, name: str) -> list[dict]:
    """Split an hh-rlhf transcript into messages; it must end with an assistant turn."""
    if not transcript.startswith("\n\nHuman:"):
        raise InputError("transcript must start with '\\n\\nHuman:'", field=name)
    parts = _TURN.split(transcript)
    # parts: ["", "Human", text, "Assistant", text, ...]
    messages = [
        {"role": "user" if speaker == "Human" else "assistant", "content": text}
        for speaker, text in zip(parts[1::2], parts[2::2])
    ]
    if messages[-1]["role"] != "assistant":
        raise InputError("transcript must end with an assistant turn", field=name)
    return messages


def _parse_hh(value: dict) -> ParsedRecord:
    chosen = parse_hh_transcript(_text(value.get("chosen"), "chosen"), "chosen")
    rejected = parse_hh_transcript(_text(value.get("rejected"), "rejected"), "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise InputError("chosen and rejected transcripts diverge before the last turn, "
                         "so they do not share one prompt", field="rejected")
    for i, message in enumerate(chosen[:-1]):
        if not message["content"].strip():
            raise InputError(f"empty text in turn {i + 1} of the shared prompt", field="chosen")
    chosen_reply = chosen[-1]["content"].strip()
    rejected_reply = rejected[-1]["content"].strip()
    if not chosen_reply:
        raise InputError("empty text: the last assistant reply is empty", field="chosen")
    if not rejected_reply:
        raise InputError("empty text: the last assistant reply is empty", field="rejected")
    prompt = [dict(m, content=m["content"].strip()) for m in chosen[:-1]]
    return _pair(prompt, chosen_reply, rejected_reply)


def _score(value: Any, name: str) -> float | None:
    return finite_score(value, name)


def _all_text(items: list) -> bool:
    return all(type(t) is str and t and not t.isspace() for t in items)


def _all_finite(items: list) -> bool:
    return first_non_finite(items) is None


def _parse_bon(value: dict) -> ParsedRecord:
    prompt = _prompt(value)
    responses = value.get("responses")
    if not isinstance(responses, list) or not responses:
        raise InputError("expected a non-empty list of responses", field="responses")
    scores_field = value.get("scores")
    if scores_field is not None and (not isinstance(scores_field, list) or len(scores_field) != len(responses)):
        raise InputError("expected a list with one score per response", field="scores")
    # Fast path for the common shape (plain strings, numeric scores): checked in bulk.
    if _all_text(responses):
        if scores_field is None:
            return ParsedRecord(prompt=prompt, responses=responses, scores=[None] * len(responses))
        if _all_finite(scores_field):
            return ParsedRecord(prompt=prompt, responses=responses, scores=[float(x) for x in scores_field])
    texts, scores = [], []
    for i, item in enumerate(responses):
        if isinstance(item, dict):
            texts.append(_text(item.get("text"), f"responses[{i}].text"))
            scores.append(_score(item.get("score"), f"responses[{i}].score"))
        else:
            texts.append(_text(item, f"responses[{i}]"))
            scores.append(None)
        if scores_field is not None:
            scores[-1] = _score(scores_field[i], f"scores[{i}]")
    return ParsedRecord(prompt=prompt, responses=texts, scores=scores)


def _parse_prompts(value: dict) -> ParsedRecord:
    if "messages" in value and "prompt" not in value:
        return ParsedRecord(prompt=_prompt(value, "messages"))
    return ParsedRecord(prompt=_prompt(value))


def _tags(value: dict) -> list[str]:
    tags = value.get("tags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise InputError("expected a list of non-empty strings", field="tags")
    return tags


_PARSERS = {
    "trl": _parse_trl,
    "xtuner": _parse_trl,
    "trl-standard": _parse_trl_standard,
    "hh-rlhf": _parse_hh,
    "bon": _parse_bon,
    "prompts": _parse_prompts,
}
