"""The compiled frame parser behaves exactly like the pure-Python reference.

Both parsers get every stream of ``msrp_corpus`` whole, split in two at every byte
boundary, one byte at a time, and split at random (hypothesis); the traces (events,
errors with the events they carry, ``buffered`` after every feed, what a dead parser
says next) must be identical.  The reference itself must be split-invariant: once
adjacent body pieces are merged, the outcome does not depend on the split (except the
body pieces handed out before a 413 "chunk too large", which depend on how much had
arrived).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msrp_corpus import CORPUS, LIMITS, WELL_FORMED, limits_for
from pyim.msrp.errors import ParseError
from pyim.msrp.events import BodyData, FrameEnd
from pyim.msrp.parser import FrameParser as PureFrameParser
from pyim.msrp.parser import ParserLimits

try:
    from pyim.msrp._speedups import FrameParser as _NativeFrameParser
except ImportError as exc:  # the test must fail, not skip, without the native module
    _NativeFrameParser = None
    _NATIVE_IMPORT_ERROR: ImportError | None = exc
else:
    _NATIVE_IMPORT_ERROR = None

Parser = Callable[[ParserLimits], Any]
Trace = list[tuple[Any, ...]]


def native() -> Parser:
    if _NativeFrameParser is None:
        pytest.fail(
            "pyim.msrp._speedups is not built "
            f"({_NATIVE_IMPORT_ERROR}); run `pip install -e .` (or scripts/build_pjsip.sh, "
            "or `python setup.py build_ext --inplace`)",
            pytrace=False,
        )
    return _NativeFrameParser  # type: ignore[no-any-return]


def trace(parser_cls: Parser, pieces: Iterable[bytes], limits: ParserLimits) -> Trace:
    """Feed ``pieces`` and record everything observable.

    After a recoverable error, ``feed(b"")`` goes on with what the parser holds; after
    a fatal one, the parser is fed once more and must refuse.
    """
    parser = parser_cls(limits)
    out: Trace = []
    for piece in pieces:
        data = piece
        while True:
            try:
                events = parser.feed(data)
            except ParseError as err:
                out.extend(("event", ev) for ev in err.events)
                out.append(("error", err.key(), parser.buffered))
                if err.close:
                    try:
                        parser.feed(b"more")
                    except ParseError as again:
                        out.append(("dead", again.key(), again.events))
                    else:
                        out.append(("dead", "did not raise"))
                    return out
                data = b""
                continue
            out.extend(("event", ev) for ev in events)
            out.append(("fed", parser.buffered))
            break
    return out


def outcome(tr: Trace) -> list[Any]:
    """A trace without the per-feed records, adjacent body pieces merged, and the body
    pieces just before a 413 error dropped (how much of it had been handed out depends
    on the split)."""
    out: list[Any] = []
    for item in tr:
        kind = item[0]
        if kind == "fed":
            continue
        if kind == "error":
            if item[1][1] == 413:
                while out and isinstance(out[-1], BodyData):
                    out.pop()
            out.append(item[1])
            continue
        if kind == "dead":
            out.append(item)
            continue
        ev = item[1]
        if isinstance(ev, BodyData) and out and isinstance(out[-1], BodyData):
            prev = out[-1]
            assert prev.tid == ev.tid
            out[-1] = BodyData(prev.tid, prev.data + ev.data)
        else:
            out.append(ev)
    return out


def check_parity(
    data: bytes, limits: ParserLimits, pieces: Sequence[bytes], whole: list[Any]
) -> None:
    ref = trace(PureFrameParser, pieces, limits)
    nat = trace(native(), pieces, limits)
    if ref != nat:
        cuts = [len(p) for p in pieces]
        first = next(i for i, (a, b) in enumerate(itertools.zip_longest(ref, nat)) if a != b)
        pytest.fail(
            f"native differs from the reference for piece sizes {cuts[:20]}... "
            f"at trace item {first}:\n  pure:   {ref[first : first + 3]}\n"
            f"  native: {nat[first : first + 3]}"
        )
    got = outcome(ref)
    assert got == whole, f"the reference is not split-invariant for piece sizes {cuts_of(pieces)}"


def cuts_of(pieces: Sequence[bytes]) -> list[int]:
    return [len(p) for p in pieces]


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


CASE_IDS = [name for name, _ in CORPUS]


@pytest.fixture(params=CORPUS, ids=CASE_IDS)
def case(request: pytest.FixtureRequest) -> tuple[str, bytes, ParserLimits, list[Any]]:
    name, data = request.param
    limits = limits_for(name)
    whole = outcome(trace(PureFrameParser, [data], limits))
    return name, data, limits, whole


def test_native_module_is_built() -> None:
    parser_cls = native()
    from pyim.msrp import _speedups

    assert _speedups.IMPLEMENTATION == "native"
    assert parser_cls is _speedups.FrameParser


def test_whole(case: tuple[str, bytes, ParserLimits, list[Any]]) -> None:
    name, data, limits, whole = case
    check_parity(data, limits, [data], whole)
    if name in WELL_FORMED:
        # a well-formed stream parses without error and leaves nothing behind
        tr = trace(PureFrameParser, [data], limits)
        assert all(item[0] in ("event", "fed") for item in tr), tr
        assert tr[-1] == ("fed", 0)
        assert isinstance(whole[-1], FrameEnd)
    else:
        # a broken stream ends in an error, or in the middle of a frame
        errors = [x for x in whole if isinstance(x, tuple)]
        assert errors or not whole or not isinstance(whole[-1], FrameEnd), whole[-3:]


def test_every_two_piece_split(case: tuple[str, bytes, ParserLimits, list[Any]]) -> None:
    _name, data, limits, whole = case
    for i in range(len(data) + 1):
        check_parity(data, limits, [data[:i], data[i:]], whole)


def test_one_byte_at_a_time(case: tuple[str, bytes, ParserLimits, list[Any]]) -> None:
    _name, data, limits, whole = case
    pieces = [data[i : i + 1] for i in range(len(data))]
    check_parity(data, limits, pieces, whole)


@pytest.mark.parametrize("size", [2, 3, 7, 13, 64, 1000, 4096])
def test_fixed_size_pieces(case: tuple[str, bytes, ParserLimits, list[Any]], size: int) -> None:
    _name, data, limits, whole = case
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    check_parity(data, limits, pieces, whole)


def test_concatenated_corpus_of_well_formed_streams() -> None:
    data = b"".join(d for name, d in CORPUS if name in WELL_FORMED)
    limits = ParserLimits()
    whole = outcome(trace(PureFrameParser, [data], limits))
    for size in (1, 5, 17, 100, 1499, 65536):
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        check_parity(data, limits, pieces, whole)


@pytest.mark.parametrize("kind", ["bytearray", "memoryview"])
def test_buffer_types(kind: str) -> None:
    data = b"".join(d for name, d in CORPUS if name in WELL_FORMED)
    convert = bytearray if kind == "bytearray" else memoryview
    pieces = [convert(data[i : i + 999]) for i in range(0, len(data), 999)]
    ref = trace(PureFrameParser, pieces, ParserLimits())
    nat = trace(native(), pieces, ParserLimits())
    assert ref == nat


@pytest.mark.parametrize(
    "data",
    ["MSRP abcd SEND\r\n", memoryview(b"MSRP abcd SEND\r\n")[::2], 5, [77, 83]],
    ids=["str", "non-contiguous", "int", "list"],
)
def test_what_is_not_contiguous_bytes_is_refused_by_both(data: object) -> None:
    for parser_cls in (PureFrameParser, native()):
        parser = parser_cls()
        with pytest.raises(TypeError):
            parser.feed(data)
        assert parser.buffered == 0
        assert parser.feed(b"MSRP abcd SEND\r\n-------abcd$\r\n")[-1] == FrameEnd("abcd", "$")


def test_limits_attribute() -> None:
    limits = ParserLimits(max_line_length=77)
    assert native()(limits).limits is limits
    assert native()().limits == ParserLimits()
    parser = native()()
    parser.limits = limits
    assert parser.limits is limits


TIGHT = ParserLimits(max_line_length=70, max_header_bytes=400, max_headers=6, max_chunk_size=120)


@pytest.mark.parametrize("name", CASE_IDS)
def test_tight_limits(name: str) -> None:
    """Every stream again with small limits: more of the error paths are taken."""
    data = dict(CORPUS)[name]
    whole = outcome(trace(PureFrameParser, [data], TIGHT))
    check_parity(data, TIGHT, [data], whole)
    check_parity(data, TIGHT, [data[i : i + 1] for i in range(len(data))], whole)
    for size in (2, 9, 31, 130):
        check_parity(data, TIGHT, [data[i : i + size] for i in range(0, len(data), size)], whole)


@st.composite
def split_case(draw: st.DrawFn) -> tuple[bytes, ParserLimits, list[bytes]]:
    name, data = draw(st.sampled_from(CORPUS))
    limits = draw(st.sampled_from([limits_for(name), TIGHT]))
    if len(data) > 4096 and draw(st.booleans()):
        # cut near the interesting places of a big stream: its head and its tail
        edge = st.one_of(st.integers(0, 400), st.integers(len(data) - 400, len(data)))
        cuts = draw(st.lists(edge, max_size=30))
    else:
        cuts = draw(st.lists(st.integers(0, len(data)), max_size=40))
    return data, limits, split_at(data, cuts)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_case())
def test_random_splits(arg: tuple[bytes, ParserLimits, list[bytes]]) -> None:
    data, limits, pieces = arg
    whole = outcome(trace(PureFrameParser, [data], limits))
    check_parity(data, limits, pieces, whole)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(CORPUS), min_size=1, max_size=6),
    st.lists(st.integers(1, 300), min_size=1, max_size=20),
)
def test_random_streams_of_cases(cases: list[tuple[str, bytes]], sizes: list[int]) -> None:
    """Streams made of several corpus cases back to back, cut in pieces of random sizes."""
    data = b"".join(d for _name, d in cases)
    limits = LIMITS.get(cases[0][0], TIGHT)
    pieces, i, k = [], 0, 0
    while i < len(data):
        pieces.append(data[i : i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    whole = outcome(trace(PureFrameParser, [data], limits))
    check_parity(data, limits, pieces, whole)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_random_garbage_after_a_frame(junk: bytes, cuts: list[int]) -> None:
    """Arbitrary bytes (inside a body, or as the next frame) behave the same."""
    head = dict(CORPUS)["response_without_comment"]
    for data in (
        head + junk,
        head + b"MSRP junk0001 SEND\r\nContent-Type: x\r\n\r\n" + junk,
        head + b"MSRP junk0002 SEND\r\n" + junk,
    ):
        whole = outcome(trace(PureFrameParser, [data], TIGHT))
        check_parity(data, TIGHT, split_at(data, [c for c in cuts if c <= len(data)]), whole)


def test_native_restores_the_garbage_collector_state() -> None:
    """The compiled parser holds the cyclic GC back inside feed() only."""
    import gc

    parser_cls = native()
    data = b"".join(d for name, d in CORPUS if name in WELL_FORMED)
    was = gc.isenabled()
    try:
        gc.enable()
        parser_cls().feed(data)
        assert gc.isenabled()
        with pytest.raises(ParseError):
            parser_cls().feed(data + b"GET / HTTP/1.1\r\n")
        assert gc.isenabled()
        gc.disable()
        parser_cls().feed(data)
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()
