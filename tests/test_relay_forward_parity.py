"""The compiled forwarding rewrite behaves exactly like the pure-Python reference.

``pyim.msrp._speedups.rewrite_head`` must return the same tuple as
``pyim.relay.forward.rewrite_head``, or raise the same exception (type and message),
for hand-written heads and for random ones (hypothesis) built from a small alphabet
that includes ASCII and Unicode whitespace (which ``str.split()`` splits on).  Without
the native module the tests fail: CI builds it (PYIM_REQUIRE_NATIVE=1).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyim.msrp.errors import PathError
from pyim.relay import forward
from pyim.relay.forward import rewrite_head as pure_rewrite_head

try:
    from pyim.msrp._speedups import rewrite_head as _native_rewrite_head
except ImportError as exc:  # the test must fail, not skip, without the native module
    _native_rewrite_head = None
    _NATIVE_IMPORT_ERROR: ImportError | None = exc
else:
    _NATIVE_IMPORT_ERROR = None

Rewrite = Callable[[Any, Any, Any], tuple[str, str, int, bytes, str]]

R1 = "msrp://relay.example.com:2855/r1;tcp"
R2 = "msrp://relay2.example.net:2855/r2;tcp"
BOB = "msrp://bob.example.com:8888/9di4eae923wzd;tcp"
ALICE = "msrp://alicepc.example.com:7777/iau39soe2843z;tcp"


def native() -> Rewrite:
    if _native_rewrite_head is None:
        pytest.fail(
            "pyim.msrp._speedups is not built "
            f"({_NATIVE_IMPORT_ERROR}); run `pip install -e .` "
            "(or `python setup.py build_ext --inplace`)",
            pytrace=False,
        )
    return _native_rewrite_head  # type: ignore[no-any-return]


def outcome(fn: Rewrite, tid: Any, method: Any, headers: Any) -> tuple[Any, ...]:
    """The result (with the type of every field) or the error (type and message)."""
    try:
        result = fn(tid, method, headers)
    except Exception as exc:
        return ("error", type(exc), str(exc))
    return ("ok", result, tuple(type(x) for x in result))


def assert_same(tid: Any, method: Any, headers: Any) -> tuple[Any, ...]:
    expected = outcome(pure_rewrite_head, tid, method, headers)
    got = outcome(native(), tid, method, headers)
    assert got == expected, (tid, method, headers)
    return expected


def std(*extra: tuple[str, str], to: str = f"{R1} {BOB}", frm: str = ALICE) -> list[Any]:
    return [("To-Path", to), ("From-Path", frm), *extra]


COMMON = (
    ("Message-ID", "87652491"),
    ("Byte-Range", "1-25/25"),
    ("Content-Type", "text/plain"),
    ("Success-Report", "yes"),
)

CASES: dict[str, tuple[Any, Any, Any]] = {
    "normal": ("a786hjs2", "SEND", std(*COMMON)),
    "report": ("dkei38sd", "REPORT", std(("Status", "000 200 OK"), *COMMON)),
    "no_other_headers": ("t1", "SEND", std()),
    "paths_last": ("t1", "SEND", [*COMMON, ("To-Path", f"{R1} {BOB}"), ("From-Path", ALICE)]),
    "from_before_to": ("t1", "SEND", [("From-Path", ALICE), ("To-Path", f"{R1} {BOB}")]),
    "lower_case_names": ("t1", "SEND", [("to-path", f"{R1} {BOB}"), ("from-path", ALICE)]),
    "upper_case_names": ("t1", "SEND", [("TO-PATH", f"{R1} {BOB}"), ("FROM-PATH", ALICE)]),
    "mixed_case_names": ("t1", "SEND", [("tO-pAtH", f"{R1} {BOB}"), ("From-path", ALICE)]),
    "duplicate_to": ("t1", "SEND", [*std(), ("To-Path", BOB)]),
    "duplicate_to_case": ("t1", "SEND", [*std(), ("to-path", BOB)]),
    "duplicate_from": ("t1", "SEND", [*std(), ("FROM-PATH", BOB)]),
    "duplicate_to_before_missing_from": ("t1", "SEND", [("To-Path", R1), ("To-Path", BOB)]),
    "missing_from": ("t1", "SEND", [("To-Path", f"{R1} {BOB}"), *COMMON]),
    "missing_to": ("t1", "SEND", [("From-Path", ALICE), *COMMON]),
    "missing_both": ("t1", "SEND", list(COMMON)),
    "no_headers": ("t1", "SEND", []),
    "empty_to": ("t1", "SEND", std(to="")),
    "empty_from": ("t1", "SEND", std(frm="")),
    "blank_to": ("t1", "SEND", std(to=" \t ")),
    "blank_from": ("t1", "SEND", std(frm="\u00a0\u2003")),
    "empty_other_value": ("t1", "SEND", std(("Subject", ""), ("", ""))),
    "one_uri_to": ("t1", "SEND", std(*COMMON, to=R1)),
    "one_uri_to_padded": ("t1", "SEND", std(*COMMON, to=f"  {R1}\t", frm=f" {ALICE}  {BOB} ")),
    "three_uris": ("t1", "SEND", std(*COMMON, to=f"{R1} {R2} {BOB}")),
    "many_uris": (
        "t1",
        "SEND",
        std(*COMMON, to=" ".join(f"msrp://h{i}.example:1/s{i};tcp" for i in range(40))),
    ),
    "many_from_uris": ("t1", "SEND", std(frm=" ".join(f"msrp://f{i}:2/x;tcp" for i in range(9)))),
    "tabs": ("t1", "SEND", std(to=f"{R1}\t{BOB}", frm=f"\t{ALICE}\t{R2}\t")),
    "three_spaces": ("t1", "SEND", std(to=f"{R1}   {R2}    {BOB}", frm=f"{ALICE}   {R2}")),
    "crlf_vt_ff": ("t1", "SEND", std(to=f"{R1}\r\n{BOB}\x0b{R2}\x0c", frm=f"\r{ALICE}\n")),
    "ascii_separators": ("t1", "SEND", std(to=f"{R1}\x1c{BOB}\x1f{R2}", frm=f"{ALICE}\x1d")),
    "nbsp": ("t1", "SEND", std(to=f"{R1}\u00a0{BOB}", frm=f"{ALICE}\u00a0{R2}")),
    "em_space": ("t1", "SEND", std(to=f"{R1}\u2003{BOB}", frm=f"\u2003{ALICE}")),
    "unicode_spaces": (
        "t1",
        "SEND",
        std(to=f"\u3000{R1}\u0085{R2}\u2028{BOB}\u205f", frm=f"{ALICE}\u1680"),
    ),
    "zero_width_not_space": ("t1", "SEND", std(to=f"{R1}\u200b{BOB}", frm=f"{ALICE}\ufeff")),
    "unicode_other_headers": (
        "t1",
        "SEND",
        std(
            ("Subject", "héllo wörld"),
            ("X-Emoji", "\U0001f600 ok"),
            ("X-Cjk", "\u4e2d\u6587"),
            ("Nämé", "v"),
        ),
    ),
    "unicode_in_paths": (
        "t1",
        "SEND",
        std(to=f"msrp://ré.example/é;tcp {BOB}", frm="msrp://ü/\u4e2d"),
    ),
    "unicode_path_tokens_only_ascii": ("t1", "SEND", std(*COMMON, to=f"{R1}\u3000{BOB}")),
    "latin1_and_astral": ("t1", "SEND", std(("A", "\xe9"), ("B", "\U0001f600"), ("C", "\u4e2d"))),
    "unicode_tid_method": ("tïd", "SÉND", std(*COMMON)),
    "surrogate_in_other": ("t1", "SEND", std(("X-Bad", "a\ud800b"))),
    "surrogate_in_other_one_hop": ("t1", "SEND", std(("X-Bad", "\udfff"), to=R1)),
    "surrogate_in_path": ("t1", "SEND", std(to=f"{R1} \ud83d{BOB}")),
    "kelvin_name": ("t1", "SEND", std(("\u212a-Path", "x"), ("To-Pat\u0130", "y"))),
    "dotted_i_name": ("t1", "SEND", [("To-Path", R1), ("From-Path", ALICE), ("\u0130", "z")]),
    "name_like_paths": ("t1", "SEND", std(("To-Paths", "x"), ("From-Pat", "y"), ("To_Path", "z"))),
    "cr_in_name_not_dash": ("t1", "SEND", std(("To\rPath", "x"), ("tO\x0dpath", "y"))),
    # outside the typed fast path: the native goes to the reference
    "tuple_headers": ("t1", "SEND", tuple(std(*COMMON))),
    "list_items": ("t1", "SEND", [list(h) for h in std(*COMMON)]),
    "triple_item": ("t1", "SEND", [*std(), ("A", "b", "c")]),
    "single_item": ("t1", "SEND", [*std(), ("A",)]),
    "bytes_value": ("t1", "SEND", [*std(), ("A", b"b")]),
    "none_name": ("t1", "SEND", [*std(), (None, "b")]),
    "int_tid": (7, "SEND", std()),
    "none_tid_one_hop": (None, None, std(to=R1)),
    "generator": ("t1", "SEND", (h for h in std())),
    "not_iterable": ("t1", "SEND", 5),
}


class Name(str):
    """A str subclass (its lower() is not str.lower())."""

    def lower(self) -> str:
        return "to-path"


CASES["str_subclass_name"] = ("t1", "SEND", [("X", "a b"), (Name("Y"), "c d"), ("From-Path", "e")])
CASES["str_subclass_value"] = ("t1", "SEND", std(to=Name(f"{R1} {BOB}")))


@pytest.mark.parametrize("case", sorted(CASES))
def test_native_matches_reference(case: str) -> None:
    tid, method, headers = CASES[case]
    if hasattr(headers, "__next__"):  # a generator: each implementation gets its own
        expected = outcome(pure_rewrite_head, tid, method, iter(std()))
        assert outcome(native(), tid, method, iter(std())) == expected
        return
    assert_same(tid, method, headers)


def test_cases_cover_results_and_errors() -> None:
    """The corpus exercises every result shape and every error."""
    seen = set()
    for tid, method, headers in CASES.values():
        if hasattr(headers, "__next__"):
            continue
        out = outcome(pure_rewrite_head, tid, method, headers)
        seen.add(out[2] if out[0] == "error" else ("ok", out[1][2] > 0))
    for msg in (
        "more than one To-Path",
        "more than one From-Path",
        "missing To-Path or From-Path",
        "empty To-Path or From-Path",
    ):
        assert msg in seen
    assert ("ok", True) in seen and ("ok", False) in seen


def test_reference_exact_bytes() -> None:
    headers = [
        ("Message-ID", "87652491"),
        ("To-Path", f"{R1}  {BOB}"),
        ("Byte-Range", "1-25/25"),
        ("from-path", f" {ALICE}"),
        ("Content-Type", "text/plain"),
    ]
    assert pure_rewrite_head("a786hjs2", "SEND", headers) == (
        R1,
        BOB,
        1,
        b"MSRP a786hjs2 SEND\r\n"
        b"To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n"
        b"From-Path: msrp://relay.example.com:2855/r1;tcp "
        b"msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n"
        b"Message-ID: 87652491\r\n"
        b"Byte-Range: 1-25/25\r\n"
        b"Content-Type: text/plain\r\n",
        ALICE,
    )
    assert native()("a786hjs2", "SEND", headers) == pure_rewrite_head("a786hjs2", "SEND", headers)


def test_last_hop_and_errors() -> None:
    assert native()("t", "SEND", std(to=R1)) == (R1, "", 0, b"", ALICE)
    with pytest.raises(PathError, match=r"^more than one To-Path$"):
        native()("t", "SEND", [*std(), ("to-path", R1)])
    assert issubclass(PathError, ValueError)
    assert forward.PathError is PathError


def test_imports_have_no_cycle() -> None:
    """Either module may be imported first (the native one imports PathError)."""
    for first in ("pyim.msrp._speedups", "pyim.relay.forward", "pyim.relay", "pyim.msrp"):
        code = (
            f"import {first}\n"
            "import pyim.relay.server as s\n"
            "import pyim.msrp._speedups as n\n"
            "from pyim.relay.forward import PathError\n"
            "assert n.PathError is PathError\n"
            "print(s.forward_impl)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=False,
            env={"PYTHONPATH": ":".join(sys.path)},
        )
        assert proc.returncode == 0, (first, proc.stderr)
        assert proc.stdout.strip() == "native", first


# -- random heads ---------------------------------------------------------------------

WHITESPACE = " \t\r\n\x0b\x0c\x1c\x1f\x85\xa0\u2003\u3000"
CHARS = "ab:/;." + "\xe9\u4e2d\U0001f600\u200b" + WHITESPACE
NAMES = [
    "To-Path",
    "to-path",
    "TO-PATH",
    "tO-PaTh",
    "From-Path",
    "from-path",
    "FROM-PATH",
    "Message-ID",
    "Byte-Range",
    "Content-Type",
    "X-\xe9",
    "\u212a",
    "\u0130",
    "To-Pat",
    "",
    "To-Path ",
]

values = st.text(alphabet=CHARS, max_size=24)
spaces = st.text(alphabet=WHITESPACE, min_size=1, max_size=3)


def _path(uris: list[str], seps: list[str], lead: str, trail: str) -> str:
    return (
        lead
        + "".join(uri + (seps[i] if i < len(uris) - 1 else "") for i, uri in enumerate(uris))
        + trail
    )


# Path values: URIs from a small alphabet, mostly separated by one space (the normal
# form), sometimes by other whitespace, sometimes with leading or trailing whitespace.
paths = st.builds(
    _path,
    uris=st.lists(st.text(alphabet="ab:/\xe9\u4e2d", min_size=1, max_size=6), max_size=5),
    seps=st.lists(st.one_of(st.just(" "), spaces), min_size=5, max_size=5),
    lead=st.one_of(st.just(""), spaces),
    trail=st.one_of(st.just(""), spaces),
)
header = st.tuples(st.sampled_from(NAMES), st.one_of(values, paths))
tids = st.sampled_from(["a1", "x" * 32, "t\xe9", "t\ud800"])
methods = st.sampled_from(["SEND", "REPORT", "AUTH", "N\xc9W"])


@settings(max_examples=2000, deadline=None)
@given(tid=tids, method=methods, headers=st.lists(header, max_size=8))
def test_random_heads(tid: str, method: str, headers: list[tuple[str, str]]) -> None:
    assert_same(tid, method, headers)


@settings(max_examples=1000, deadline=None)
@given(
    tid=tids,
    method=methods,
    to=paths,
    frm=paths,
    before=st.lists(header, max_size=3),
    after=st.lists(header, max_size=3),
    to_name=st.sampled_from(["To-Path", "to-path", "TO-PATH"]),
    from_name=st.sampled_from(["From-Path", "from-path", "FROM-PATH"]),
)
def test_random_routable_heads(
    tid: str,
    method: str,
    to: str,
    frm: str,
    before: list[tuple[str, str]],
    after: list[tuple[str, str]],
    to_name: str,
    from_name: str,
) -> None:
    """Heads with one To-Path and one From-Path (mostly routable), among others."""
    assert_same(tid, method, [*before, (to_name, to), *after, (from_name, frm)])
