"""Split a full chat-template text (OpenRLHF's `query`) back into prompt messages and a reply.

OpenRLHF's remote reward client posts, for every rollout, `query` = the decoded prompt tokens
followed by the generated tokens (special tokens kept), and `prompts` = the prompt text it
generated from. The reward model scores (prompt messages, reply) through its own chat template,
so the server has to recover both. The rule:

1. The role markers come from the reward model's template itself: a probe conversation with
   sentinel contents is rendered, and the text around each sentinel gives the header that opens
   a system/user turn, the end-of-turn footer, and the assistant header (the template's
   generation prompt).
2. The prompt is `prompts[i]` when it is sent and `query` starts with it; otherwise everything
   up to and including the *last* assistant header in `query`.
3. The reply is the rest of `query`, with a trailing end-of-turn footer (or EOS token, or the
   footer without its trailing whitespace) removed once: the policy's EOS is part of the query.
4. The prompt is cut into messages at the role headers (each message's content ends at the
   footer). Text before the first header (a BOS token) is dropped; a prompt without any header
   (a plain-text prompt) becomes one user message. Rendering those messages with the template
   gives the prompt back, so the score is the one `workbench score` gives the same conversation.

Templates whose turns are not "header, content, footer" (e.g. ones that inject dates) are not
recovered by this rule: use `/v1/score` with role/content messages instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.data import Message

_SENTINELS = {"system": "\x00SYS\x00", "user": "\x00USR\x00", "assistant": "\x00AST\x00"}


class TranscriptError(ValueError):
    """A full text that cannot be split into prompt and reply."""


@dataclass(frozen=True)
class TemplateMarkers:
    headers: dict[str, str]  # role -> text that opens its turn
    footer: str  # text that closes a turn
    bos: str

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "TemplateMarkers":
        """Read the markers off the tokenizer's chat template (see the module docstring)."""
        sys_, usr, ast = (_SENTINELS[r] for r in ("system", "user", "assistant"))
        probe = [{"role": "system", "content": sys_}, {"role": "user", "content": usr}]
        plain = tokenizer.apply_chat_template(probe, tokenize=False)
        prompted = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template([*probe, {"role": "assistant", "content": ast}], tokenize=False)
        if not prompted.startswith(plain) or ast not in full:
            raise TranscriptError("the chat template's generation prompt does not extend the conversation")
        assistant = prompted[len(plain):]
        footer = plain[plain.index(usr) + len(usr):]
        user = plain[plain.index(sys_) + len(sys_) + len(footer):plain.index(usr)]
        system = plain[:plain.index(sys_)]
        bos = tokenizer.bos_token or ""
        if bos and system.startswith(bos) and not user.startswith(bos):  # a BOS once, before any turn
            system = system[len(bos):]
        if not assistant or not user or not footer:
            raise TranscriptError("the chat template has no distinct turn markers")
        return cls({"system": system, "user": user, "assistant": assistant}, footer, bos)


def split_transcript(markers: TemplateMarkers, query: str, prompt: str | None = None,
                     eos: str | None = None) -> tuple[list[Message], str]:
    """(prompt messages, reply) of one full text; raises TranscriptError when it has no reply turn."""
    if prompt and query.startswith(prompt):
        prefix, reply = prompt, query[len(prompt):]
    else:
        at = query.rfind(markers.headers["assistant"])
        if at < 0:
            raise TranscriptError(f"no assistant turn marker {markers.headers['assistant']!r} in the text; "
                                  "send 'prompts' or use /v1/score")
        cut = at + len(markers.headers["assistant"])
        prefix, reply = query[:cut], query[cut:]
    return parse_prompt(markers, prefix), _strip_end(reply, markers.footer, eos)


def _strip_end(reply: str, footer: str, eos: str | None) -> str:
    for end in (footer, footer.rstrip(), eos or ""):
        if end and reply.endswith(end):
            return reply[:-len(end)]
    return reply


def parse_prompt(markers: TemplateMarkers, prefix: str) -> list[Message]:
    """The messages of a rendered prompt (ending with or without the assistant header)."""
    if prefix.endswith(markers.headers["assistant"]):
        prefix = prefix[:-len(markers.headers["assistant"])]
    by_header = {h: r for r, h in sorted(markers.headers.items(), key=lambda kv: -len(kv[1])) if h}
    pattern = re.compile("|".join(re.escape(h) for h in by_header))
    found = list(pattern.finditer(prefix))
    if not found:
        text = prefix[len(markers.bos):] if markers.bos and prefix.startswith(markers.bos) else prefix
        return [{"role": "user", "content": text}]
    messages = []
    for match, following in zip(found, [*found[1:], None]):
        content = prefix[match.end():following.start() if following else len(prefix)]
        for end in (markers.footer, markers.footer.rstrip()):
            if end and content.endswith(end):
                content = content[:-len(end)]
                break
        messages.append({"role": by_header[match.group(0)], "content": content})
    return messages
