"""engine.judging: answer probabilities read from next-token logits, independent of batching."""

from __future__ import annotations

import pytest
import torch

from engine.errors import EngineError
from engine.judging import LogitJudge


@pytest.fixture(scope="module")
def judge(tmp_path_factory) -> LogitJudge:
    from tests.tiny import make_tiny_model_dir

    return LogitJudge.load(make_tiny_model_dir(tmp_path_factory.mktemp("judge"), seed=3))


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_conversation_alone_and_in_a_padded_batch_get_the_same_probabilities(judge):
    target = _ask("Which is better, A or B? A: short. B: a somewhat longer reply.")
    others = [_ask("x"), _ask("a much longer question " * 12), _ask("mid-sized one " * 4)]
    alone = judge.answer_probabilities([target], ["A", "B"])[0]
    batched = judge.answer_probabilities([others[0], target, others[1], others[2]], ["A", "B"], batch_size=4)[1]
    assert alone == pytest.approx(batched, abs=1e-5)
    assert sum(alone) == pytest.approx(1.0, abs=1e-12)


def test_the_probabilities_are_the_softmax_of_the_answer_logits_at_the_next_position(judge):
    conversation = _ask("Rate it from 1 to 5.")
    labels = ["1", "2", "3", "4", "5"]
    ids = torch.tensor([judge.encode(conversation)])
    with torch.no_grad():
        logits = judge.model(input_ids=ids).logits[0, -1]  # an unbatched, unpadded plain forward pass
    expected = torch.softmax(logits[[t for t, in judge.label_tokens(labels)]].double(), -1).tolist()
    assert judge.answer_probabilities([conversation], labels)[0] == pytest.approx(expected, abs=1e-6)


def test_a_ten_point_scale_reads_10_as_1_then_0(judge):
    conversation = _ask("Rate it from 1 to 10.")
    labels = [str(i) for i in range(1, 11)]  # the byte-level tiny tokenizer reads "10" as "1", "0"
    probabilities = judge.answer_probabilities([conversation], labels)[0]
    one, zero = judge.label_tokens(["1", "0"])
    ids = torch.tensor([judge.encode(conversation)])
    with torch.no_grad():
        first = torch.softmax(judge.model(input_ids=ids).logits[0, -1][[t for t, in judge.label_tokens(labels[:9])]]
                              .double(), -1)
        after_one = torch.softmax(judge.model(input_ids=torch.cat([ids, torch.tensor([one])], 1)).logits[0, -1]
                                  .double(), -1)[zero[0]]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-12)
    assert probabilities[9] == pytest.approx(float(first[0] * after_one), abs=1e-6)
    assert probabilities[0] == pytest.approx(float(first[0] * (1 - after_one)), abs=1e-6)
    assert probabilities[1:9] == pytest.approx(first[1:].tolist(), abs=1e-6)


def test_answers_the_judge_cannot_read_as_tokens_are_refused(judge):
    with pytest.raises(EngineError, match="one or two tokens"):
        judge.label_tokens(["Yes", "No"])  # three and two bytes
    with pytest.raises(EngineError, match="not distinct single tokens"):
        judge.label_tokens(["1", "23"])  # "23" does not continue a one-token answer


def test_clip_keeps_the_start_or_the_end(judge):
    text = "".join(f"w{i} " for i in range(100))
    assert judge.clip(text, 1000) == text
    start, end = judge.clip(text, 30), judge.clip(text, 30, keep="end")
    assert start.startswith("w0 ") and start.endswith("[...]") and judge.count_tokens(start) <= 31
    assert end.startswith("[...]") and end.endswith("w99 ") and judge.count_tokens(end) <= 31
