"""Strict, bounded CBOR decoding on top of `cbor2`.

`cbor2.loads` is lenient in ways that matter for attestation documents
(``../shared/spec/attestation.md`` section 0, point 3): it ignores trailing bytes,
keeps the last of duplicate map keys and accepts non-minimal integers. Base's
nitro-validator accepted duplicate payload keys until its PR #36 and trailing
bytes until PR #34.

So every input first goes through `_Walker`, a structural pass that allocates
nothing in proportion to declared lengths and rejects:

- input over `max_size` (checked before anything is read);
- any length that points past the end of the input (a 4 GiB length header costs nothing);
- nesting deeper than `max_depth`;
- more than `max_items` items in all, when given (a request of a million empty arrays
  passes every other rule, then costs `cbor2` a Python object each: the count stops it
  early, so decoding costs time in proportion to a benign input's);
- trailing bytes after the top-level item;
- duplicate map keys at any level (keys must be integers or definite strings, and
  integers must be minimally encoded, so equal keys have equal encodings);
- tags other than those the caller allows at the top level;
- chunked (indefinite-length) strings, `undefined`, simple values and, unless allowed,
  floats.

Indefinite-length arrays and maps are accepted: the NSM switched its payload map to
the indefinite form in 2025.

Only after the walk succeeds does `cbor2` build the Python objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cbor2

from nitroguard.errors import DecodeError, Reason

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "dumps",
    "dumps_indefinite_map",
    "loads",
    "validate",
]

#: Deep enough for COSE (depth 1) and attestation payloads (depth 3).
DEFAULT_MAX_DEPTH = 16

_BREAK = 0xFF


class _Walker:
    """One structural pass over a CBOR item. Raises `DecodeError` on anything unsafe."""

    __slots__ = (
        "allow_floats",
        "data",
        "end",
        "items_left",
        "max_depth",
        "max_items",
        "top_level_tags",
    )

    def __init__(
        self,
        data: bytes,
        max_depth: int,
        top_level_tags: frozenset[int],
        allow_floats: bool,
        max_items: int | None = None,
    ) -> None:
        self.max_items = max_items
        # Items still allowed (a huge number when unlimited: one comparison per item).
        self.items_left = (1 << 62) if max_items is None else max_items
        self.data = data
        self.end = len(data)
        self.max_depth = max_depth
        self.top_level_tags = top_level_tags
        self.allow_floats = allow_floats

    def _fail(self, message: str, pos: int, reason: Reason = Reason.MALFORMED_CBOR) -> DecodeError:
        return DecodeError(f"{message} at offset {pos}", reason, offset=pos)

    def _head(self, pos: int) -> tuple[int, int, int | None, int]:
        """Read an initial byte and its argument.

        Returns (major, additional info, argument or None if indefinite, new pos).
        """
        if pos >= self.end:
            raise self._fail("unexpected end of input", pos)
        ib = self.data[pos]
        major, ai = ib >> 5, ib & 0x1F
        pos += 1
        if ai < 24:
            return major, ai, ai, pos
        if ai == 31:
            return major, ai, None, pos
        if ai > 27:
            raise self._fail(f"reserved additional information {ai}", pos - 1)
        if major == 7:
            # Floats and simple values carry raw bits, not a length; minimality does not apply.
            width = 1 << (ai - 24)
            if pos + width > self.end:
                raise self._fail("unexpected end of input", pos)
            return major, ai, int.from_bytes(self.data[pos : pos + width], "big"), pos + width
        width = 1 << (ai - 24)
        if pos + width > self.end:
            raise self._fail("unexpected end of input", pos)
        value = int.from_bytes(self.data[pos : pos + width], "big")
        # Minimal encoding: equal values must have equal bytes (duplicate-key detection
        # compares encodings), and non-minimal forms are a known parser-differential vector.
        if value < (24 if ai == 24 else 1 << (8 * (width >> 1))):
            raise self._fail("non-minimal integer or length encoding", pos - 1)
        return major, ai, value, pos + width

    def _too_many(self, pos: int) -> DecodeError:
        return self._fail(f"more than {self.max_items} items", pos, Reason.TOO_MANY_ITEMS)

    def item(self, pos: int, depth: int) -> int:
        """Validate one item starting at `pos`; return the position after it."""
        start = pos
        self.items_left -= 1
        if self.items_left < 0:
            raise self._too_many(pos)
        major, ai, arg, pos = self._head(pos)
        if major in (0, 1):
            if arg is None:
                raise self._fail("indefinite-length integer", start)
            return pos
        if major in (2, 3):
            if arg is None:
                raise self._fail("chunked (indefinite-length) strings are not accepted", start)
            if arg > self.end - pos:
                raise self._fail(f"string length {arg} exceeds the input", start)
            return pos + arg
        if major == 6:
            if arg is None:
                raise self._fail("indefinite-length tag", start)
            if depth != 0 or arg not in self.top_level_tags:
                raise self._fail(f"tag {arg} is not accepted here", start, Reason.UNEXPECTED_TAG)
            # The tagged item counts as one level deeper, so a second tag inside is refused.
            return self.item(pos, depth + 1)
        if major == 7:
            if ai in (20, 21, 22):
                return pos
            if ai in (25, 26, 27) and self.allow_floats:
                return pos
            if ai == 31:
                raise self._fail("unexpected break", start)
            raise self._fail(f"simple value or float (additional info {ai})", start)
        # Arrays and maps.
        if depth + 1 > self.max_depth:
            raise self._fail(f"nesting deeper than {self.max_depth}", start, Reason.TOO_DEEP)
        if major == 4:
            if arg is None:
                while True:
                    if pos >= self.end:
                        raise self._fail("unterminated indefinite-length array", start)
                    if self.data[pos] == _BREAK:
                        return pos + 1
                    pos = self.item(pos, depth + 1)
            # Each item takes at least one byte: bound the count by the input left.
            if arg > self.end - pos:
                raise self._fail(f"array of {arg} items exceeds the input", start)
            for _ in range(arg):
                pos = self.item(pos, depth + 1)
            return pos
        # major == 5: maps
        seen: set[bytes] = set()
        if arg is None:
            while True:
                if pos >= self.end:
                    raise self._fail("unterminated indefinite-length map", start)
                if self.data[pos] == _BREAK:
                    return pos + 1
                pos = self._pair(pos, depth, seen)
        if arg > (self.end - pos) // 2:
            raise self._fail(f"map of {arg} pairs exceeds the input", start)
        for _ in range(arg):
            pos = self._pair(pos, depth, seen)
        return pos

    def walk(self) -> int:
        """Validate the top-level item iteratively; return the position after it.

        Same rules, reasons and messages as `item` (the recursive reference walk, kept
        for differential tests), without a Python call per item: attestation payloads
        have ~60 items and this walk is on every verification's hot path.
        """
        # Long on purpose (issue 15's size rule allows it with a reason): the point of
        # this walk is one loop with no Python call per item; cutting it into helpers
        # puts a call back on every item of every verification (bench/attestation.py).
        data, end, max_depth, fail = self.data, self.end, self.max_depth, self._fail
        items_left = self.items_left
        pos = 0
        base = 0  # 1 inside an accepted top-level tag
        # Open containers: [items left (-1: indefinite), is map, seen keys,
        #                   key start, next is a key, container start]
        stack: list[list[Any]] = []
        while True:
            closed = False  # an indefinite container just ended with a break
            if stack:
                frame = stack[-1]
                # An indefinite container may end here unless a map value is due.
                if frame[0] < 0 and (not frame[1] or frame[4]):
                    if pos >= end:
                        kind = "map" if frame[1] else "array"
                        raise fail(f"unterminated indefinite-length {kind}", frame[5])
                    if data[pos] == _BREAK:
                        pos += 1
                        stack.pop()
                        closed = True
                if not closed and frame[1] and frame[4] and frame[0] > 0:
                    before = frame[0]
                    pos = self._simple_pairs(frame, pos)
                    items_left -= before - frame[0]
                    if items_left < 0:
                        raise self._too_many(pos)
                    if frame[0] == 0:
                        stack.pop()
                        closed = True
                if not closed and frame[1] and frame[4]:
                    if pos >= end:
                        raise fail("unexpected end of input", pos)
                    if data[pos] >> 5 > 3:
                        raise fail("map keys must be integers or strings", pos)
                    frame[3] = pos
            if not closed:
                start = pos
                items_left -= 1
                if items_left < 0:
                    raise self._too_many(pos)
                if pos >= end:
                    raise fail("unexpected end of input", pos)
                ib = data[pos]
                major, ai = ib >> 5, ib & 0x1F
                pos += 1
                arg: int | None
                if ai < 24:
                    arg = ai
                elif ai == 31:
                    arg = None
                elif ai > 27:
                    raise fail(f"reserved additional information {ai}", start)
                else:
                    width = 1 << (ai - 24)
                    if pos + width > end:
                        raise fail("unexpected end of input", pos)
                    arg = int.from_bytes(data[pos : pos + width], "big")
                    if major != 7 and arg < (24 if ai == 24 else 1 << (8 * (width >> 1))):
                        raise fail("non-minimal integer or length encoding", start)
                    pos += width
                if major == 2 or major == 3:  # noqa: PLR1714 - hot path, cheapest test
                    if arg is None:
                        raise fail("chunked (indefinite-length) strings are not accepted", start)
                    if arg > end - pos:
                        raise fail(f"string length {arg} exceeds the input", start)
                    pos += arg
                elif major < 2:
                    if arg is None:
                        raise fail("indefinite-length integer", start)
                elif major == 6:
                    if arg is None:
                        raise fail("indefinite-length tag", start)
                    if stack or base or arg not in self.top_level_tags:
                        raise fail(f"tag {arg} is not accepted here", start, Reason.UNEXPECTED_TAG)
                    # The tagged item counts as one level deeper, so a second tag is refused.
                    base = 1
                    continue
                elif major == 7:
                    if ai == 31:
                        raise fail("unexpected break", start)
                    if not (ai in (20, 21, 22) or (ai in (25, 26, 27) and self.allow_floats)):
                        raise fail(f"simple value or float (additional info {ai})", start)
                else:
                    if len(stack) + base + 1 > max_depth:
                        raise fail(f"nesting deeper than {max_depth}", start, Reason.TOO_DEEP)
                    is_map = major == 5
                    if arg is None:
                        stack.append([-1, is_map, set() if is_map else None, 0, True, start])
                        continue
                    if is_map:
                        if arg > (end - pos) // 2:
                            raise fail(f"map of {arg} pairs exceeds the input", start)
                        count = 2 * arg
                    else:
                        # Each item takes at least one byte: bound the count by the input left.
                        if arg > end - pos:
                            raise fail(f"array of {arg} items exceeds the input", start)
                        count = arg
                    if count:
                        stack.append([count, is_map, set() if is_map else None, 0, True, start])
                        continue
            # An item (or a whole container) ended at `pos`: account for it upwards.
            while stack:
                frame = stack[-1]
                if frame[1]:
                    if frame[4]:
                        key = data[frame[3] : pos]
                        if key in frame[2]:
                            raise fail(
                                f"duplicate map key {key.hex()}", frame[3], Reason.DUPLICATE_KEY
                            )
                        frame[2].add(key)
                        frame[4] = False
                    else:
                        frame[4] = True
                left = frame[0]
                if left > 0:
                    if left == 1:
                        stack.pop()
                        continue
                    frame[0] = left - 1
                break
            if not stack:
                return pos

    def _simple_pairs(self, frame: list[Any], pos: int) -> int:
        """Consume leading pairs of a definite map whose key is a small unsigned integer
        or a short text string and whose value is a small unsigned integer, a simple
        value (false/true/null) or a definite byte/text string: the shape of almost
        every attestation pair (PCRs, certificate, user_data, ...).

        Anything else, or anything that would fail, is left to the general loop, which
        raises the same errors as `item`. Returns the new position.
        """
        data, end, seen = self.data, self.end, frame[2]
        while pos + 1 < end:
            kb = data[pos]
            if kb < 0x18:
                kend = pos + 1
            elif 0x60 <= kb < 0x78:
                kend = pos + 1 + (kb - 0x60)
            else:
                break
            if kend >= end:
                break
            vb = data[kend]
            if vb < 0x18 or 0xF4 <= vb <= 0xF6:
                vend = kend + 1
            elif 0x40 <= vb < 0x58 or 0x60 <= vb < 0x78:
                vend = kend + 1 + (vb & 0x1F)
            elif vb in (0x58, 0x78):
                if kend + 1 >= end or data[kend + 1] < 24:
                    break
                vend = kend + 2 + data[kend + 1]
            elif vb in (0x59, 0x79):
                if kend + 2 >= end:
                    break
                length = (data[kend + 1] << 8) | data[kend + 2]
                if length < 256:
                    break
                vend = kend + 3 + length
            else:
                break
            if vend > end:
                break
            key = data[pos:kend]
            if key in seen:
                raise self._fail(f"duplicate map key {key.hex()}", pos, Reason.DUPLICATE_KEY)
            seen.add(key)
            pos = vend
            frame[0] -= 2
            if frame[0] == 0:
                break
        return pos

    def _pair(self, pos: int, depth: int, seen: set[bytes]) -> int:
        key_start = pos
        if pos >= self.end:
            raise self._fail("unexpected end of input", pos)
        key_major = self.data[pos] >> 5
        if key_major not in (0, 1, 2, 3):
            raise self._fail("map keys must be integers or strings", pos)
        pos = self.item(pos, depth + 1)
        key = self.data[key_start:pos]
        if key in seen:
            raise self._fail(f"duplicate map key {key.hex()}", key_start, Reason.DUPLICATE_KEY)
        seen.add(key)
        return self.item(pos, depth + 1)


def validate(
    data: bytes,
    *,
    max_size: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    top_level_tags: Iterable[int] = (),
    allow_floats: bool = False,
    max_items: int | None = None,
) -> None:
    """Check that `data` is exactly one well-formed, strict CBOR item.

    Args:
        data: the encoded item.
        max_size: inputs longer than this are rejected before any parsing.
        max_depth: the deepest array/map nesting accepted.
        top_level_tags: tags accepted around the top-level item only.
        allow_floats: accept floating-point values.
        max_items: the most items (of any kind, map keys and values each counting,
            containers included) accepted; None: bounded by the size only.

    Raises:
        DecodeError: with reason `too_large`, `malformed_cbor`, `trailing_bytes`,
            `duplicate_key`, `unexpected_tag`, `too_deep` or `too_many_items`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}", Reason.INVALID_ARGUMENT)
    data = bytes(data)
    if len(data) > max_size:
        raise DecodeError(
            f"input of {len(data)} bytes exceeds the limit of {max_size}", Reason.TOO_LARGE
        )
    if not data:
        raise DecodeError("empty input", Reason.MALFORMED_CBOR)
    if max_items is not None and max_items < 1:
        raise DecodeError("max_items must be >= 1", Reason.INVALID_ARGUMENT)
    walker = _Walker(data, max_depth, frozenset(top_level_tags), allow_floats, max_items)
    end = walker.walk()
    if end != len(data):
        raise DecodeError(
            f"{len(data) - end} trailing byte(s) after the top-level item",
            Reason.TRAILING_BYTES,
            offset=end,
        )


def loads(
    data: bytes,
    *,
    max_size: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    top_level_tags: Iterable[int] = (),
    allow_floats: bool = False,
    max_items: int | None = None,
) -> Any:
    """Strictly decode exactly one CBOR item (see `validate` for the rules).

    A tagged top-level item is returned as a `cbor2.CBORTag`.

    Raises:
        DecodeError: as `validate`, plus `malformed_cbor` for invalid UTF-8.
    """
    validate(
        data,
        max_size=max_size,
        max_depth=max_depth,
        top_level_tags=top_level_tags,
        allow_floats=allow_floats,
        max_items=max_items,
    )
    try:
        return cbor2.loads(bytes(data))
    except (cbor2.CBORDecodeError, UnicodeDecodeError, ValueError, TypeError) as exc:
        # NOTE: reachable for invalid UTF-8 in text strings, which the walk does not check.
        raise DecodeError(f"CBOR decoding failed: {exc}", Reason.MALFORMED_CBOR) from exc


def dumps(obj: Any) -> bytes:
    """Encode with definite lengths and minimal integers (cbor2's default)."""
    return bytes(cbor2.dumps(obj))


def dumps_indefinite_map(items: Iterable[tuple[Any, Any]]) -> bytes:
    """Encode an indefinite-length map (``bf ... ff``) in the given key order.

    The NSM emits attestation payloads this way since 2025.
    """
    return b"\xbf" + b"".join(dumps(k) + dumps(v) for k, v in items) + b"\xff"
