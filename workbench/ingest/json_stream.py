"""Read JSON Lines and JSON documents in bounded memory, whatever the file holds.

A hostile or broken file (one 100 MB line, a gzip bomb that expands to gigabytes of one line, a
JSON array of a million records) must not be read whole: `bounded_lines` reads fixed-size chunks
and drops a line as soon as it passes the record limit (then either stops there, or counts the rest
of its bytes without keeping them to go on with the next line), and `JsonScanner` finds where
each value of a JSON document ends by scanning its brackets and strings chunk by chunk, keeping
only the value being read, up to the limit (or stopping there too). Memory
then stays near the record limit plus one chunk. Values are parsed by orjson afterwards; the
scanner only splits, so nesting depth costs nothing here (orjson refuses beyond 1024 levels).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 1 << 20

# A complete string, or a lone quote when the string runs past the bytes read so far.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[][{}"]', re.DOTALL)
_STRING_END = re.compile(rb'["\\]')
_SCALAR_END = re.compile(rb'[ \t\r\n,\]}]')
_NOT_SPACE = re.compile(rb'[^ \t\r\n]')
_QUOTE, _OPEN = ord('"'), (ord("["), ord("{"))


def bounded_lines(f: BinaryIO, max_bytes: int, chunk: int = CHUNK,
                  stop_when_over: bool = False) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, the line without its newline or None when over `max_bytes`, its size in bytes).

    The size counts the newline, so the limit means the same as for a line read whole. With
    `stop_when_over`, the first line over the limit ends the reading as soon as it passes the limit
    (its size is then the bytes read so far): a line from an endless source has no end to count to.
    """
    number, head, size, over = 0, [], 0, False
    while block := f.read(chunk):
        parts = block.split(b"\n")
        last = len(parts) - 1
        for i, part in enumerate(parts):
            size += len(part) + (i < last)
            if not over:
                if size > max_bytes:
                    if stop_when_over:
                        yield number + 1, None, size
                        return
                    over, head = True, []
                else:
                    head.append(part)
            if i == last:
                break
            number += 1
            yield number, None if over else (head[0] if len(head) == 1 else b"".join(head)), size
            head, size, over = [], 0, False
    if size:
        yield number + 1, None if over else b"".join(head), size


class Truncated(Exception):
    """The stream ended inside a value."""


class OverLimit(Exception):
    """A value passed the limit and the scan was asked to stop there."""


class JsonScanner:
    """Walk a JSON document's values chunk by chunk; `value()` returns one value's bytes."""

    def __init__(self, f: BinaryIO, chunk: int = CHUNK):
        self.f, self.chunk = f, chunk
        self.buf = bytearray()
        self.pos = 0        # next byte to look at, in buf
        self.offset = 0     # position of buf[0] in the stream
        self.mark = None    # start of the value being kept, in buf (None: not keeping)
        self.eof = False
        self.stop_when_over = False

    def _more(self) -> bool:
        if self.eof:
            return False
        data = self.f.read(self.chunk)
        if not data:
            self.eof = True
            return False
        keep = self.pos if self.mark is None else self.mark
        if keep:
            del self.buf[:keep]
            self.offset += keep
            self.pos -= keep
            if self.mark is not None:
                self.mark -= keep
        self.buf += data
        return True

    def peek(self) -> int | None:
        """The next byte that is not whitespace (left unread), or None at the end of the stream."""
        while True:
            found = _NOT_SPACE.search(self.buf, self.pos)
            if found:
                self.pos = found.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if not self._more():
                return None

    def take(self) -> None:
        """Step over the byte `peek` returned."""
        self.pos += 1

    def value(self, limit: int, stop_when_over: bool = False) -> tuple[bytes | None, int]:
        """Scan the next value: (its bytes, or None when it is over `limit` bytes; its size).

        With `stop_when_over`, raise OverLimit as soon as the value passes the limit instead of
        scanning on to its end (which an endless stream never reaches).
        """
        first = self.peek()
        if first is None:
            raise Truncated
        start = self.offset + self.pos
        self.mark = self.pos
        self.stop_when_over = stop_when_over
        try:
            if first in _OPEN:
                self._container(limit, start)
            elif first == _QUOTE:
                self.pos += 1
                self._string(limit, start)
            else:
                self._scalar(limit, start)
            size = self.offset + self.pos - start
            kept = self.mark is not None and size <= limit
            return (bytes(self.buf[self.mark:self.pos]) if kept else None), size
        finally:
            self.mark = None

    def _refill(self, limit: int, start: int) -> bool:
        if self.offset + len(self.buf) - start > limit:
            if self.stop_when_over:
                raise OverLimit
            self.mark = None  # over the limit: keep counting, stop keeping
        return self._more()

    def _container(self, limit: int, start: int) -> None:
        depth, buf, search, pos = 0, self.buf, _TOKEN.search, self.pos  # buf changes in place only
        while True:
            found = search(buf, pos)
            if found is None:
                self.pos = len(buf)
                if not self._refill(limit, start):
                    raise Truncated
                pos = self.pos
                continue
            first, pos = found.span()
            byte = buf[first]
            if byte == _QUOTE:
                if pos - first == 1:  # the string goes on past the bytes read so far
                    self.pos = pos
                    self._string(limit, start)
                    pos = self.pos
                continue
            depth += 1 if byte in _OPEN else -1
            if depth == 0:
                self.pos = pos
                return

    def _string(self, limit: int, start: int) -> None:
        while True:
            found = _STRING_END.search(self.buf, self.pos)
            if found is None or (self.buf[found.start()] != _QUOTE and found.end() >= len(self.buf)):
                self.pos = len(self.buf) if found is None else found.start()  # a backslash needs its next byte
                if not self._refill(limit, start):
                    raise Truncated
                continue
            if self.buf[found.start()] == _QUOTE:
                self.pos = found.end()
                return
            self.pos = found.end() + 1

    def _scalar(self, limit: int, start: int) -> None:
        while True:
            found = _SCALAR_END.search(self.buf, self.pos)
            if found is not None:
                self.pos = found.start()
                return
            self.pos = len(self.buf)
            if not self._refill(limit, start):
                return  # a number or literal may end the stream
