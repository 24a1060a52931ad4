"""Turn a prompt plus one reply into the token ids a reward model scores.

A conversation is rendered with the tokenizer's own chat template, truncated from the left to
`max_length` tokens, and closed with the reward token, whose final hidden state the value head
reads. Truncation drops the *start* of the conversation: the reply at the end is what is judged.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.data import Message, PreferencePair, ScoringItem
from engine.errors import EngineError

ROLES = ("system", "user", "assistant")
MERGE_SEPARATOR = "\n\n"


def normalize_messages(messages: Sequence[Message]) -> list[Message]:
    """Validate chat messages and merge consecutive messages of the same role.

    Decision: the store keeps messages exactly as imported; the engine always merges runs of the
    same role (contents joined by a blank line) before templating. Strict chat templates that
    refuse non-alternating roles and lenient ones then see the same text, so a score never
    depends on which kind of template a backbone ships. (A few hh-rlhf records have two
    assistant turns in a row.)
    """
    merged: list[Message] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise EngineError(f"message {i} must be a dict with 'role' and 'content', got {message!r}")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise EngineError(f"message {i} has role {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise EngineError(f"message {i} content must be a string, got {type(content).__name__}")
        if merged and merged[-1]["role"] == role:
            merged[-1] = {"role": role, "content": merged[-1]["content"] + MERGE_SEPARATOR + content}
        else:
            merged.append({"role": role, "content": content})
    return merged


class ConversationEncoder:
    """Encodes (prompt, reply) into at most `max_length` token ids ending in the reward token."""

    def __init__(self, tokenizer, reward_token_id: int, max_length: int):
        if not getattr(tokenizer, "chat_template", None):
            raise EngineError(
                "the tokenizer has no chat template; use an instruct/chat backbone or set "
                "tokenizer.chat_template before building a reward model"
            )
        if max_length < 2:
            raise EngineError(f"max_length must be at least 2 (one text token and the reward token), got {max_length}")
        self.tokenizer = tokenizer
        self.reward_token_id = int(reward_token_id)
        self.max_length = int(max_length)

    def render(self, prompt: Sequence[Message], response: str) -> str:
        """The chat-template text of the prompt followed by the reply (without the reward token)."""
        if not isinstance(response, str):
            raise EngineError(f"a response must be a string, got {type(response).__name__}")
        messages = normalize_messages([*prompt, {"role": "assistant", "content": response}])
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception as error:
            from jinja2.exceptions import SecurityError

            if not isinstance(error, SecurityError):  # a template's own refusal (raise_exception) keeps its type
                raise
            raise EngineError(f"the model's chat template does something the Jinja sandbox forbids "
                              f"({' '.join(str(error).split())[:200]}): fix its template") from None

    def encode(self, prompt: Sequence[Message], response: str) -> list[int]:
        """Token ids of one conversation; the last id is always the reward token."""
        return self.encode_many([(prompt, response)])[0]

    def encode_many(self, items: Sequence[ScoringItem | tuple[Sequence[Message], str]]) -> list[list[int]]:
        """Encode many conversations with one batched tokenizer call."""
        return self.encode_many_reporting(items)[0]

    def encode_many_reporting(self, items) -> tuple[list[list[int]], list[bool]]:
        """`encode_many`, and for each conversation whether its start was cut to fit `max_length`."""
        texts = [self.render(*_prompt_response(item)) for item in items]
        if not texts:
            return [], []
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        keep = self.max_length - 1
        return [row[-keep:] + [self.reward_token_id] for row in ids], [len(row) > keep for row in ids]

    def encode_pairs(self, pairs: Sequence[PreferencePair]) -> list[tuple[list[int], list[int]]]:
        """(chosen ids, rejected ids) for each preference pair."""
        flat = self.encode_many([item for p in pairs for item in ((p.prompt, p.chosen), (p.prompt, p.rejected))])
        return list(zip(flat[0::2], flat[1::2]))


def _prompt_response(item) -> tuple[Sequence[Message], str]:
    if isinstance(item, ScoringItem):
        return item.prompt, item.response
    prompt, response = item
    return prompt, response
