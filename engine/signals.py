"""Cheap quality flags on generated samples, used by curation to drop or down-rank candidates.

Pure Python (no torch), one prompt's N samples at a time:
- near-duplicates: identical after case/whitespace normalisation, or word Jaccard similarity
  (multiset: shared word counts / all word counts) >= 0.9 with an earlier sample (the flag names
  that earlier sample); one changed word in a 20-word reply still counts as a duplicate;
- truncation: generation hit max_new_tokens (finish_reason == "length");
- repetition loops: at least 30% of the words sit inside back-to-back repeats, i.e. a unit of
  1-50 words said 3+ times in a row over 8+ words (list numbering is ignored, so "3. Avoid
  caffeine. 4. Avoid caffeine. 5. Avoid caffeine. 6. Avoid caffeine." repeats). A model stuck
  in a loop scores 0.4-1.0; prose, lists, a chorus between verses and code with a repeated
  shape score near 0, since only consecutive copies count. Texts under 12 words are never loops.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from engine.data import Sample

DUPLICATE_THRESHOLD = 0.9
LOOP_MAX_UNIT = 50
LOOP_MIN_SPAN = 8  # shorter repeats are style, not loops: "row, row, row your boat"
LOOP_MIN_REPEATS = 3
LOOP_THRESHOLD = 0.3
LOOP_MIN_WORDS = 12

_WORD = re.compile(r"\w+")
_ENUMERATOR = re.compile(r"\b\d+[.)](?=\s|$)")  # "3." or "3)" numbering a list item


def normalize(text: str) -> str:
    """Lower-case with runs of whitespace collapsed to one space."""
    return " ".join(text.lower().split())


def words(text: str) -> list[str]:
    """Lower-case word tokens without list numbering ("3." / "3)"), which is layout, not content."""
    return _WORD.findall(_ENUMERATOR.sub(" ", text.lower()))


def _jaccard(a: Counter, b: Counter) -> float:
    union = sum((a | b).values())
    return sum((a & b).values()) / union if union else 1.0


def similarity(a: str, b: str) -> float:
    """Multiset Jaccard similarity of the words of two texts (1.0 = same words, same counts)."""
    return _jaccard(Counter(words(a)), Counter(words(b)))


def near_duplicates(texts: list[str], threshold: float = DUPLICATE_THRESHOLD) -> list[int | None]:
    """For each text, the index of the first earlier text it nearly duplicates, else None.

    Compared with every earlier text (not only the first of a group), so a chain of small edits
    is caught link by link. O(N^2) in the number of samples, fine for one prompt's N.
    """
    normal = [normalize(t) for t in texts]
    bags = [Counter(words(t)) for t in texts]
    result: list[int | None] = []
    for i in range(len(texts)):
        match = None
        for j in range(i):
            # Texts without words ("", "!!!") only match when equal.
            if normal[i] == normal[j] or (bags[i] and bags[j] and _jaccard(bags[i], bags[j]) >= threshold):
                match = j
                break
        result.append(match)
    return result


def repetition_share(text: str, min_repeats: int = LOOP_MIN_REPEATS, max_unit: int = LOOP_MAX_UNIT) -> float:
    """Share of the words inside back-to-back repeats of a unit of 1..max_unit words.

    A repeat counts when the unit is said min_repeats+ times in a row over at least 8 words.
    Only consecutive copies count, so a chorus between verses or code with a repeated shape
    (`def add(a, b)`, `def sub(a, b)`) is not a loop, while "It is Paris. It is Paris. It is
    Paris." is; short emphatic repeats ("row, row, row your boat") are not.
    """
    tokens = words(text)
    covered = [False] * len(tokens)
    for unit in range(1, min(max_unit, len(tokens) // min_repeats) + 1):
        run = 0  # how many tokens in a row equal the token `unit` places later
        for i in range(len(tokens) - unit + 1):
            if i + unit < len(tokens) and tokens[i] == tokens[i + unit]:
                run += 1
                continue
            # The span i-run .. i+unit holds run/unit + 1 copies of the unit.
            if run >= (min_repeats - 1) * unit and run + unit >= LOOP_MIN_SPAN:
                covered[i - run : i + unit] = [True] * (run + unit)
            run = 0
    return sum(covered) / len(tokens) if tokens else 0.0


def is_looping(text: str, threshold: float = LOOP_THRESHOLD) -> bool:
    """True when the text is stuck repeating itself (see the module docstring for the rule)."""
    return len(words(text)) >= LOOP_MIN_WORDS and repetition_share(text) >= threshold


def is_truncated(sample: Sample) -> bool:
    """True when generation stopped at max_new_tokens instead of ending the reply itself."""
    return sample.finish_reason == "length"


@dataclass(frozen=True)
class SampleFlags:
    """The flags of one sample; `duplicate_of` is the sample_index of the earlier near-duplicate."""

    sample_index: int
    duplicate_of: int | None
    truncated: bool
    repetition: float
    looping: bool


def flag_samples(samples: list[Sample], duplicate_threshold: float = DUPLICATE_THRESHOLD) -> list[SampleFlags]:
    """Flags for one prompt's samples, in sample_index order (earlier index = the original)."""
    ordered = sorted(samples, key=lambda s: s.sample_index)
    duplicates = near_duplicates([s.text for s in ordered], duplicate_threshold)
    return [
        SampleFlags(
            sample_index=s.sample_index,
            duplicate_of=None if d is None else ordered[d].sample_index,
            truncated=is_truncated(s),
            repetition=round(repetition_share(s.text), 4),
            looping=is_looping(s.text),
        )
        for s, d in zip(ordered, duplicates)
    ]
