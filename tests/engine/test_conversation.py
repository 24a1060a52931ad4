"""Conversation encoding: chat template, same-role merging, left truncation, reward token last."""

from __future__ import annotations

import jinja2
import pytest

from engine.conversation import ConversationEncoder, normalize_messages
from engine.data import ScoringItem
from engine.errors import EngineError
from tests.tiny import STRICT_CHAT_TEMPLATE, make_tiny_tokenizer

REWARD_ID = 7  # any id works for the encoder; the reward model adds a real token


def test_normalize_merges_runs_of_the_same_role():
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
    ]
    assert normalize_messages(messages) == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b\n\nc"},
        {"role": "user", "content": "d"},
    ]
    assert messages[1] == {"role": "assistant", "content": "b"}  # the input is not modified


@pytest.mark.parametrize("bad, word", [
    ({"role": "robot", "content": "x"}, "role"),
    ({"role": "user", "content": 3}, "string"),
    ({"role": "user"}, "content"),
])
def test_normalize_rejects_bad_messages(bad, word):
    with pytest.raises(EngineError, match=word):
        normalize_messages([{"role": "user", "content": "ok"}, bad])


def test_strict_template_renders_after_merging():
    tokenizer = make_tiny_tokenizer(STRICT_CHAT_TEMPLATE)
    prompt = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"},
              {"role": "assistant", "content": "a2"}, {"role": "user", "content": "q2"}]
    with pytest.raises(jinja2.TemplateError, match="alternate"):  # the raw messages are refused ...
        tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": "r"}], tokenize=False)
    encoder = ConversationEncoder(tokenizer, REWARD_ID, max_length=512)
    text = encoder.render(prompt, "r")  # ... the merged ones are not
    assert text == ("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na1\n\na2<|im_end|>\n"
                    "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\nr<|im_end|>\n")
    # a reply that follows an assistant turn merges into it, as the template would otherwise refuse
    assert encoder.render(prompt[:3], "r").count("assistant") == 1


def test_encode_is_template_tokens_plus_reward_token():
    tokenizer = make_tiny_tokenizer()
    encoder = ConversationEncoder(tokenizer, REWARD_ID, max_length=512)
    prompt = [{"role": "user", "content": "Hello there"}]
    ids = encoder.encode(prompt, "General Kenobi")
    expected = tokenizer(encoder.render(prompt, "General Kenobi"), add_special_tokens=False)["input_ids"]
    assert ids == expected + [REWARD_ID]


def test_left_truncation_keeps_reply_end_and_reward_token():
    tokenizer = make_tiny_tokenizer()
    encoder = ConversationEncoder(tokenizer, REWARD_ID, max_length=20)
    prompt = [{"role": "user", "content": "a long question " * 10}]
    ids = encoder.encode(prompt, "the reply ends HERE")
    full = ConversationEncoder(tokenizer, REWARD_ID, max_length=10_000).encode(prompt, "the reply ends HERE")
    assert len(ids) == 20 and ids[-1] == REWARD_ID
    assert ids == full[-20:]
    tail = tokenizer.decode(ids[:-1])
    assert tail == "e reply ends HERE<|im_end|>\n"  # 19 tokens: one per byte, one for <|im_end|>
    assert encoder.render(prompt, "the reply ends HERE").endswith(tail)  # what was cut is the start


def test_encode_many_matches_encode_and_accepts_scoring_items():
    encoder = ConversationEncoder(make_tiny_tokenizer(), REWARD_ID, max_length=30)
    items = [ScoringItem([{"role": "user", "content": "q" * n}], "r" * (3 * n)) for n in (1, 5, 40)]
    assert encoder.encode_many(items) == [encoder.encode(i.prompt, i.response) for i in items]
    assert encoder.encode_many([]) == []


def test_tokenizer_without_chat_template_is_refused():
    tokenizer = make_tiny_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(EngineError, match="chat template"):
        ConversationEncoder(tokenizer, REWARD_ID, max_length=64)
