"""The bounded readers split exactly where a whole-file parse does, at any chunk size."""

import io
import random

import orjson
import pytest

from workbench.ingest.json_stream import JsonScanner, OverLimit, Truncated, bounded_lines

PIECES = ['"', "\\", "\\\"", "[", "]", "{", "}", ",", ":", " ", "\n", "é", "\U0001f600", "a", "\\u00e9", "\\\\"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12)))


def _value(rng: random.Random, depth: int = 0):
    kind = rng.choice(["str", "num", "lit", "list", "dict"] if depth < 4 else ["str", "num", "lit"])
    if kind == "str":
        return _text(rng)
    if kind == "num":
        return rng.choice([0, -1, 3.5e-7, 12345678901234, 1e300])
    if kind == "lit":
        return rng.choice([True, False, None])
    if kind == "list":
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _split(document: bytes, chunk: int, limit: int = 1 << 20) -> list:
    scanner = JsonScanner(io.BytesIO(document), chunk=chunk)
    assert scanner.peek() == ord("[")
    scanner.take()
    values = []
    while scanner.peek() != ord("]"):
        data, size = scanner.value(limit)
        values.append(orjson.loads(data) if data is not None else ("over", size))
        if scanner.peek() == ord(","):
            scanner.take()
    return values


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_the_scanner_splits_random_arrays_like_orjson(chunk):
    rng = random.Random(chunk)
    for _ in range(60):
        values = [_value(rng) for _ in range(rng.randint(1, 6))]
        document = orjson.dumps(values, option=orjson.OPT_INDENT_2 if rng.random() < 0.5 else 0)
        assert _split(document, chunk) == values


def test_values_over_the_limit_are_counted_not_kept():
    values = ["x" * 100, {"a": ["y" * 50, "z"]}, 1]
    document = orjson.dumps(values)
    sizes = [len(orjson.dumps(v)) for v in values]
    assert _split(document, 3, limit=40) == [("over", sizes[0]), ("over", sizes[1]), 1]


def test_a_document_cut_short_is_truncated():
    with pytest.raises(Truncated):
        _split(b'[{"a": "b\\"', 2)


@pytest.mark.parametrize("chunk", [1, 2, 5, 1 << 20])
def test_bounded_lines_match_splitlines_and_measure_dropped_lines(chunk):
    rng = random.Random(chunk)
    lines = [rng.choice(["", "short", "x" * 30, "a\rb", "é" * 5]) for _ in range(200)]
    data = "\n".join(lines).encode()  # no newline after the last line
    got = list(bounded_lines(io.BytesIO(data), max_bytes=20, chunk=chunk))
    expected = [(i + 1, line.encode(), len(line.encode()) + (i < len(lines) - 1)) for i, line in enumerate(lines)]
    expected = [(n, raw if size <= 20 else None, size) for n, raw, size in expected if size]
    assert got == expected


class Endless(io.RawIOBase):
    """A stream that never ends (like /dev/zero), counting the bytes read from it."""

    def __init__(self, head: bytes, byte: bytes = b"a"):
        self.head, self.byte, self.served = head, byte, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = (self.head + self.byte * n)[:n]
        self.head = self.head[len(data):]
        self.served += len(data)
        return data


def test_bounded_lines_can_stop_at_the_limit_of_an_endless_line():
    """Issue 20.5: an over-limit line was read to its end to count its size, which never comes."""
    stream = Endless(b"short\n")
    got = list(bounded_lines(stream, max_bytes=100, chunk=64, stop_when_over=True))
    assert got[0] == (1, b"short", 6)
    assert got[1][:2] == (2, None) and 100 < got[1][2] <= 100 + 64
    assert stream.served <= 6 + 100 + 64


@pytest.mark.parametrize("head", [b'["', b"[", b'{"a": [1, "', b'"'])
def test_the_scanner_can_stop_at_the_limit_of_an_endless_value(head):
    stream = Endless(head, b"1" if head == b"[" else b"a")
    scanner = JsonScanner(stream, chunk=64)
    with pytest.raises(OverLimit):
        scanner.value(100, stop_when_over=True)
    assert stream.served <= 100 + 2 * 64
