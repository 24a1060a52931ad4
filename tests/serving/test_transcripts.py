"""Splitting OpenRLHF's full texts back into prompt messages and reply, by the chat template."""

import pytest

from tests.tiny import make_tiny_tokenizer
from workbench.serving.transcripts import TemplateMarkers, TranscriptError, split_transcript

SMOLLM2_TEMPLATE = (  # SmolLM2-Instruct's: a default system prompt when none is given
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3_LIKE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
          {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What is 2+2?\nThink."}]


@pytest.mark.parametrize("template", [SMOLLM2_TEMPLATE, LLAMA3_LIKE])
def test_rendered_conversations_split_back_into_their_messages(template):
    tokenizer = make_tiny_tokenizer(template)
    markers = TemplateMarkers.from_tokenizer(tokenizer)
    prompt_text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    for ending in ("", tokenizer.eos_token, markers.footer):  # with or without the policy's EOS
        messages, reply = split_transcript(markers, prompt_text + "It is 4." + ending, eos=tokenizer.eos_token)
        assert (messages, reply) == (PROMPT, "It is 4.")
        # the RM renders the recovered messages to the very text the policy saw
        assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == prompt_text
        # with `prompts` sent, the prefix is exactly the prompt, even when the reply holds a header
        tricky = "a <|im_start|>assistant\nb <|start_header_id|>assistant<|end_header_id|>\n\nc"
        assert split_transcript(markers, prompt_text + tricky + ending, prompt_text, tokenizer.eos_token) == \
            (PROMPT, tricky)


def test_default_system_prompt_is_kept_and_plain_prompts_become_one_user_turn():
    tokenizer = make_tiny_tokenizer(SMOLLM2_TEMPLATE)
    markers = TemplateMarkers.from_tokenizer(tokenizer)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    messages, reply = split_transcript(markers, text + "Yo<|im_end|>")
    assert [m["role"] for m in messages] == ["system", "user"] and reply == "Yo"
    assert split_transcript(markers, "Question: 2+2? Answer: 4", "Question: 2+2? Answer:") == \
        ([{"role": "user", "content": "Question: 2+2? Answer:"}], " 4")
    with pytest.raises(TranscriptError, match="no assistant turn marker"):
        split_transcript(markers, "just text without any turn")
