"""Curation flags on realistic replies: each rule is checked on examples that must and must not trip it."""

import pytest

from engine.data import Sample
from engine.signals import flag_samples, is_looping, near_duplicates, repetition_share, similarity

LOOPS = {
    "sentence": "The capital of France is Paris. The capital of France is Paris. The capital of France is Paris. "
    "The capital of France is Paris.",
    "line": "In the depths of the sea, where shadows play,\nThe sky above is blue.\nThe sky above is blue.\n"
    "The sky above is blue.\nThe sky above is blue.\nThe sky above is blue.",
    "numbered tail": "Sure! Here are some tips for sleeping better:\n1. Keep a regular schedule.\n"
    "2. Avoid caffeine late in the day.\n3. Avoid caffeine.\n4. Avoid caffeine.\n5. Avoid caffeine.\n"
    "6. Avoid caffeine.\n7. Avoid caffeine.\n8. Avoid caffeine.",
    "one word": "I think that the the the the the the the the the the the the the the",
}
NOT_LOOPS = {
    "prose": "Photosynthesis is the process by which green plants use sunlight to make food from carbon dioxide "
    "and water. It takes place in the chloroplasts, which contain chlorophyll. The process releases oxygen "
    "as a by-product, which is essential for most life on Earth.",
    "list": "Here are three ways to save money:\n1. Make a budget and track your spending each month.\n"
    "2. Cook at home instead of eating out.\n3. Cancel subscriptions you do not use.\n"
    "Each of these steps is small, but together they add up over a year.",
    "nursery rhyme": "Row, row, row your boat,\nGently down the stream.\nMerrily, merrily, merrily, merrily,\n"
    "Life is but a dream.\nRow, row, row your boat,\nGently down the stream.",
    "chorus between verses": "Verse one: the road is long and the night is cold.\n"
    "Chorus: Hold on, hold on, the morning is near.\nVerse two: my hands are tired and my boots are old.\n"
    "Chorus: Hold on, hold on, the morning is near.\nVerse three: but the stars still shine like gold.\n"
    "Chorus: Hold on, hold on, the morning is near.",
    "code": "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
    "def mul(a, b):\n    return a * b\n\ndef div(a, b):\n    return a / b",
    "counting": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15.",
    "said twice": "Paris is the capital of France. Paris is the capital of France. It has about two million "
    "inhabitants and many museums.",
}


@pytest.mark.parametrize("name", LOOPS)
def test_loops_are_flagged(name):
    assert is_looping(LOOPS[name]), repetition_share(LOOPS[name])


@pytest.mark.parametrize("name", NOT_LOOPS)
def test_ordinary_replies_are_not_loops(name):
    assert not is_looping(NOT_LOOPS[name]), repetition_share(NOT_LOOPS[name])


def test_repetition_share_counts_the_repeated_span():
    # 4 copies of a 6-word sentence after 6 other words: 24 of 30 words are in the loop.
    text = "Well, let me answer that now. " + "It is sunny in Paris today. " * 4
    assert repetition_share(text) == pytest.approx(24 / 30)
    assert repetition_share("") == 0.0
    assert not is_looping("no no no no no no no no")  # too short to judge


def test_similarity_ignores_case_whitespace_and_punctuation():
    assert similarity("The capital of France is Paris.", "the capital  of france is\nParis!") == 1.0
    assert similarity("Paris is big.", "Rome is old.") == pytest.approx(1 / 5)


def test_near_duplicates_point_to_the_earlier_sample():
    base = ("Paris is the capital of France. It is known for the Eiffel Tower, the Louvre museum, "
            "and its cafes along the Seine river.")
    texts = [
        base,
        "Rome is the capital of Italy, famous for the Colosseum.",
        base.upper(),  # same after normalisation
        base.replace("cafes", "restaurants"),  # one word of 22 changed: Jaccard 0.917
        "Paris is the capital of France.",  # a short prefix is not a duplicate
        "",
        "  ",  # empty after normalisation, like the one before
        "Rome is the capital of Italy, famous for the Colosseum!",
    ]
    assert near_duplicates(texts) == [None, None, 0, 0, None, None, 5, 1]
    assert near_duplicates(texts, threshold=0.95)[3] is None


def test_flag_samples_orders_by_sample_index_and_sets_every_flag():
    loop = LOOPS["sentence"]
    samples = [
        Sample(prompt_index=0, sample_index=2, text="Paris.", n_tokens=2, finish_reason="stop", seed=3),
        Sample(prompt_index=0, sample_index=0, text=loop, n_tokens=40, finish_reason="length", seed=1),
        Sample(prompt_index=0, sample_index=1, text="paris. ", n_tokens=3, finish_reason="stop", seed=2),
    ]
    flags = flag_samples(samples)
    assert [f.sample_index for f in flags] == [0, 1, 2]
    assert [f.duplicate_of for f in flags] == [None, None, 1]
    assert [f.truncated for f in flags] == [True, False, False]
    assert [f.looping for f in flags] == [True, False, False]
    assert flags[0].repetition == 1.0
