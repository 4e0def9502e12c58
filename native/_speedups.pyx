# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, embedsignature=True
"""pyim.msrp._speedups: the compiled fast paths of pyim.msrp and pyim.relay.

``rewrite_head`` is the relay's forwarding rewrite of ``pyim.relay.forward``
compiled: same results, same ``PathError`` (see its docstring and the section at
the end of this file; tests/test_relay_forward_parity.py holds it to that).
``local_hop_head``, ``ok_response`` and ``relay_fields`` are the relay's other
per-frame helpers of that module, compiled the same way (tests/test_relay_fastpath.py).

``FrameParser`` is the incremental MSRP frame parser of ``pyim.msrp.parser``
compiled with Cython.  It has the same API and, by design, exactly the same
behaviour: for any input, split in any way, it returns the same events (instances
of the classes of ``pyim.msrp.events``) and raises the same
``pyim.msrp.errors.ParseError`` (reason, status, tid, close, events) at the same
point, and ``buffered`` has the same value after every ``feed()``.
tests/test_msrp_parser_parity.py holds it to that.  The rules it follows are the
ones in the module docstring of ``pyim/msrp/parser.py``; change both together.

How it is fast:

* the input is read through the buffer protocol and parsed where it lies; only
  what a later ``feed()`` needs (a partial line, or the body tail that may start an
  end-line: at most ``len(end-line) - 1`` bytes) is copied into the parser's own C
  buffer.  A body piece costs one ``memcpy`` (into the ``bytes`` of its
  ``BodyData``), whatever the read size;
* lines and end-lines are found with ``memchr``;
* header names that MSRP defines are shared ``str`` objects; other names, values
  and the transaction id are built straight from the bytes;
* events are created without running the dataclass ``__init__``: the instance is
  allocated by its type and its slots are filled in place (checked at import
  against the classes' slot layout; anything unexpected falls back to calling the
  class);
* a header field equal to the same field of the previous frame (To-Path, From-Path,
  Content-Type... repeat all along a session) reuses that frame's (immutable)
  ``(name, value)`` tuple;
* the cyclic garbage collector is held back during ``feed()`` (``PyGC_Disable`` /
  ``PyGC_Enable``, restored before ``feed()`` returns or raises): a feed that yields
  thousands of events would otherwise trigger dozens of collections, each walking
  young objects that are all alive, promoting them, and eventually full collections
  of the whole heap.  This is safe because no Python code runs inside (so no other
  thread runs either: the GIL is held) and the parser creates no reference cycles.
  It is not done on free-threaded builds, nor when events are built by calling
  their classes (Python code would run).  The headers' tuples are untracked at
  birth, as CPython would do at their first collection.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport (
    Py_UNICODE_ISSPACE,
    PyUnicode_AsUTF8String,
    PyUnicode_DATA,
    PyUnicode_DecodeUTF8,
    PyUnicode_1BYTE_KIND,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_New,
    PyUnicode_READ,
    PyUnicode_Substring,
)
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove

import types

from pyim.msrp.errors import ParseError, PathError
from pyim.msrp.events import BodyData, FrameEnd, FrameHead
from pyim.msrp.parser import ParserLimits

IMPLEMENTATION = "native"

__all__ = [
    "IMPLEMENTATION",
    "FrameParser",
    "local_hop_head",
    "ok_response",
    "relay_fields",
    "rewrite_head",
]


cdef extern from "Python.h":
    ctypedef PyObject* (*allocfunc)(PyTypeObject*, Py_ssize_t)
    ctypedef struct _TypeAlloc "PyTypeObject":
        allocfunc tp_alloc
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    int T_OBJECT_EX
    void PyObject_GC_UnTrack(void* op)
    int PyGC_Disable()
    int PyGC_Enable()


cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define PYIM_CAN_DEFER_GC 0
    #else
    #define PYIM_CAN_DEFER_GC 1
    #endif
    """
    int PYIM_CAN_DEFER_GC


cdef enum:
    # parser states (the same numbers as the reference)
    S_START = 0
    S_HEADERS = 1
    S_BODY = 2
    S_SKIP = 3
    S_DEAD = 4
    # what one step of the state machine returns
    R_CONTINUE = 0
    R_NEED = 1
    R_ERROR = 2
    MAX_TID = 32
    MAX_END = 9 + MAX_TID  # len("\r\n-------" + tid)
    SHRINK_ABOVE = 1 << 20  # a buffer larger than this is given back when mostly unused

# Limits are clamped to this so that "limit + 2" and sums of lengths never overflow.
cdef Py_ssize_t LIMIT_CAP = (<Py_ssize_t>1) << 60


# -- character classes ------------------------------------------------------------------
cdef unsigned char _TID_FIRST[256]
cdef unsigned char _TID_CHAR[256]
cdef unsigned char _UPALPHA[256]
cdef unsigned char _DIGIT[256]
cdef unsigned char _TOKEN[256]
cdef unsigned char _FLAG[256]


cdef void _fill(unsigned char* table, bytes chars) noexcept:
    cdef unsigned char c
    for c in chars:
        table[c] = 1


_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_fill(_TID_FIRST, _ALNUM)
_fill(_TID_CHAR, _ALNUM + b".-+%=")
_fill(_UPALPHA, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_fill(_DIGIT, b"0123456789")
_fill(_TOKEN, _ALNUM + b"-_.!%*+`'~")
_fill(_FLAG, b"$+#")

# Error reasons: the same strings as the reference.
cdef str E_BAD_START = "bad start line"
cdef str E_BAD_TID = "bad transaction id"
cdef str E_BAD_COMMENT = "bad status comment"
cdef str E_BAD_METHOD = "bad method"
cdef str E_LINE_TOO_LONG = "line too long"
cdef str E_BARE_LF = "bare LF"
cdef str E_HEADER_BLOCK = "header block too large"
cdef str E_MALFORMED = "malformed header"
cdef str E_TOO_MANY = "too many headers"
cdef str E_NOT_UTF8 = "header is not UTF-8"
cdef str E_CHUNK = "chunk too large"
cdef str E_FRAME = "frame too large"

cdef str FLAG_DOLLAR = "$"
cdef str FLAG_PLUS = "+"
cdef str FLAG_HASH = "#"

cdef inline str _flag_str(unsigned char flag):
    if flag == b"$":
        return FLAG_DOLLAR
    if flag == b"+":
        return FLAG_PLUS
    return FLAG_HASH


# -- shared strings for the names MSRP defines (RFC 4975, RFC 4976) --------------------
cdef tuple _KNOWN_METHODS = ("SEND", "REPORT", "AUTH")
cdef tuple _KNOWN_NAMES = (
    "To-Path", "From-Path", "Message-ID", "Byte-Range", "Content-Type", "Success-Report",
    "Failure-Report", "Status", "Use-Path", "Expires", "Min-Expires", "Max-Expires",
    "WWW-Authenticate", "Authorization", "Authentication-Info", "Content-ID",
    "Content-Description", "Content-Disposition",
)


cdef inline str _ascii_str(const unsigned char* s, Py_ssize_t n):
    """A str of the n ASCII bytes at s (the caller knows they are ASCII)."""
    cdef str out = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(out), s, n)
    return out


cdef inline str _lookup(tuple known, const unsigned char* s, Py_ssize_t n):
    """The shared str among ``known`` equal to the ASCII bytes s[:n], or None."""
    cdef str name
    for name in known:
        # Every entry is ASCII, so its length in characters is its length in bytes.
        if len(name) == n and memcmp(PyUnicode_DATA(name), s, n) == 0:
            return name
    return None


# The known names as C data, for _name_index.
cdef Py_ssize_t _N_KNOWN = len(_KNOWN_NAMES)
cdef Py_ssize_t _KN_LEN[32]
cdef const unsigned char* _KN_PTR[32]


cdef void _init_known() noexcept:
    cdef Py_ssize_t i
    cdef str name
    for i in range(_N_KNOWN):
        name = _KNOWN_NAMES[i]
        _KN_LEN[i] = len(name)  # ASCII: characters are bytes
        _KN_PTR[i] = <const unsigned char*>PyUnicode_DATA(name)


assert _N_KNOWN <= 32 and all(name.isascii() for name in _KNOWN_NAMES)
_init_known()


cdef inline Py_ssize_t _name_index(const unsigned char* s, Py_ssize_t n) noexcept:
    """Index in _KNOWN_NAMES of the name s[:n], or -1."""
    cdef Py_ssize_t i
    for i in range(_N_KNOWN):
        if _KN_LEN[i] == n and memcmp(_KN_PTR[i], s, n) == 0:
            return i
    return -1


cdef inline str _method_str(const unsigned char* s, Py_ssize_t n):
    cdef str name = _lookup(_KNOWN_METHODS, s, n)
    return name if name is not None else _ascii_str(s, n)


# -- fast event construction -------------------------------------------------------------
cdef bint _fast_events = False
cdef PyTypeObject* _HEAD_T = NULL
cdef PyTypeObject* _BODY_T = NULL
cdef PyTypeObject* _END_T = NULL
cdef Py_ssize_t _HEAD_OFF[6]
cdef Py_ssize_t _BODY_OFF[2]
cdef Py_ssize_t _END_OFF[2]


cdef bint _layout(cls, tuple fields, Py_ssize_t* offsets) except -1:
    """Fill ``offsets`` with the slot offsets of ``fields``; False if cls is not a plain
    slots class whose __init__ only stores its arguments (a dataclass(slots=True))."""
    cdef Py_ssize_t i
    if getattr(cls, "__slots__", None) is None or tuple(cls.__slots__) != fields:
        return False
    if getattr(cls, "__post_init__", None) is not None:
        return False
    if cls.__new__ is not object.__new__ or type(cls) is not type:
        return False
    params = getattr(cls, "__dataclass_fields__", None)
    if params is None or tuple(params) != fields:
        return False
    for i, name in enumerate(fields):
        descr = cls.__dict__.get(name)
        if type(descr) is not types.MemberDescriptorType:
            return False
        if (<PyMemberDescrObject*>descr).d_member.type != T_OBJECT_EX:
            return False
        offsets[i] = (<PyMemberDescrObject*>descr).d_member.offset
    return True


cdef inline object _alloc(PyTypeObject* t):
    cdef PyObject* raw = (<_TypeAlloc*>t).tp_alloc(t, 0)
    if raw == NULL:
        raise MemoryError()
    cdef object obj = <object>raw  # takes a second reference...
    Py_DECREF(obj)  # ...so drop the one tp_alloc returned
    return obj


cdef inline void _put(object obj, Py_ssize_t offset, object value) noexcept:
    """Store ``value`` in the (empty) slot at ``offset`` of a fresh ``obj``."""
    Py_INCREF(value)
    (<PyObject**>((<char*><PyObject*>obj) + offset))[0] = <PyObject*>value


cdef inline object _new_head(str tid, object method, object code, object comment,
                             list headers, bint has_body):
    cdef object obj
    if not _fast_events:
        return FrameHead(tid, method, code, comment, headers, has_body)
    obj = _alloc(_HEAD_T)
    _put(obj, _HEAD_OFF[0], tid)
    _put(obj, _HEAD_OFF[1], method)
    _put(obj, _HEAD_OFF[2], code)
    _put(obj, _HEAD_OFF[3], comment)
    _put(obj, _HEAD_OFF[4], headers)
    _put(obj, _HEAD_OFF[5], True if has_body else False)
    return obj


cdef inline object _new_body(str tid, bytes data):
    cdef object obj
    if not _fast_events:
        return BodyData(tid, data)
    obj = _alloc(_BODY_T)
    _put(obj, _BODY_OFF[0], tid)
    _put(obj, _BODY_OFF[1], data)
    return obj


cdef inline object _new_end(str tid, str flag):
    cdef object obj
    if not _fast_events:
        return FrameEnd(tid, flag)
    obj = _alloc(_END_T)
    _put(obj, _END_OFF[0], tid)
    _put(obj, _END_OFF[1], flag)
    return obj


cdef bint _defer_gc = PYIM_CAN_DEFER_GC


def _use_gc_deferral(bint enable=True):
    """Hold the cyclic garbage collector back during ``feed()`` (default) or not.

    For measurements; the output is the same either way.  See the module docstring.
    """
    global _defer_gc
    _defer_gc = enable and PYIM_CAN_DEFER_GC
    return _defer_gc


def _use_fast_events(bint enable=True):
    """Create events by filling their slots (default) or by calling their classes.

    Returns whether the fast way is in use: it is refused (False) when the event
    classes are not the plain ``dataclass(slots=True)`` classes it was written for.
    For measurements and tests; the output is the same either way.
    """
    global _fast_events, _HEAD_T, _BODY_T, _END_T
    _fast_events = False
    if not enable:
        return False
    if not (
        _layout(FrameHead, ("tid", "method", "code", "comment", "headers", "has_body"),
                _HEAD_OFF)
        and _layout(BodyData, ("tid", "data"), _BODY_OFF)
        and _layout(FrameEnd, ("tid", "flag"), _END_OFF)
    ):
        return False
    _HEAD_T = <PyTypeObject*>FrameHead
    _BODY_T = <PyTypeObject*>BodyData
    _END_T = <PyTypeObject*>FrameEnd
    _fast_events = True
    # Self-check: the fast way must build what the classes build.
    if (
        _new_head("abcd", "SEND", None, None, [("a", "b")], True)
        != FrameHead("abcd", "SEND", None, None, [("a", "b")], True)
        or _new_body("abcd", b"x") != BodyData("abcd", b"x")
        or _new_end("abcd", "$") != FrameEnd("abcd", "$")
    ):
        _fast_events = False
    return _fast_events


_use_fast_events(True)


cdef inline Py_ssize_t _clamp(object value) except -1:
    cdef object v = int(value)
    if v > LIMIT_CAP:
        return LIMIT_CAP
    if v < 0:
        return 0
    return v


cdef object _DEFAULT_LIMITS = ParserLimits()


cdef class FrameParser:
    """Turns a byte stream into :mod:`pyim.msrp.events` (compiled; see
    ``pyim.msrp.parser.FrameParser`` for the contract).

    ``feed(data)`` accepts bytes, bytearray, memoryview or any contiguous buffer and
    returns the events completed by ``data``; on bad input it raises
    :class:`~pyim.msrp.errors.ParseError`.
    """

    # configuration
    cdef object _limits
    cdef Py_ssize_t _max_line
    cdef Py_ssize_t _max_header_bytes
    cdef Py_ssize_t _max_headers
    cdef Py_ssize_t _max_chunk
    # held-back bytes: _buf[_start:_end]
    cdef unsigned char* _buf
    cdef Py_ssize_t _start
    cdef Py_ssize_t _end
    cdef Py_ssize_t _cap
    # the frame being parsed
    cdef int _state
    cdef str _tid
    cdef unsigned char _endline[MAX_END]  # "\r\n-------" + tid
    cdef Py_ssize_t _elen  # len(_endline)
    cdef Py_ssize_t _full  # _elen + flag + CRLF
    cdef object _method
    cdef object _code
    cdef object _comment
    cdef list _headers
    cdef list _recent  # per known header name: the last (name, value) handed out
    cdef Py_ssize_t _header_bytes
    cdef Py_ssize_t _body_len
    cdef Py_ssize_t _skipped
    cdef object _fatal
    # result of the last step
    cdef Py_ssize_t _used  # bytes consumed by the last step (or run)
    cdef unsigned char _flag  # flag byte found by _find_end
    cdef str _err_reason
    cdef object _err_status
    cdef object _err_tid
    cdef bint _err_close
    cdef bint _err_prefix

    def __cinit__(self, *args, **kwargs):
        # Everything the C code relies on is set here, which runs even for a subclass
        # whose __init__ does not call this one.
        self._buf = NULL
        self._start = self._end = self._cap = 0
        self.limits = _DEFAULT_LIMITS
        self._reset()

    def __init__(self, limits=None):
        self.limits = limits or ParserLimits()
        self._reset()

    cdef int _reset(self) except -1:
        self._start = self._end = 0
        self._state = S_START
        self._tid = ""
        self._elen = 0
        self._full = 0
        self._method = None
        self._code = None
        self._comment = None
        self._headers = []
        self._recent = [None] * _N_KNOWN
        self._header_bytes = 0
        self._body_len = 0
        self._skipped = 0
        self._fatal = None
        return 0

    def __dealloc__(self):
        free(self._buf)
        self._buf = NULL

    @property
    def limits(self):
        """The :class:`~pyim.msrp.parser.ParserLimits` in force."""
        return self._limits

    @limits.setter
    def limits(self, value):
        self._max_line = _clamp(value.max_line_length)
        self._max_header_bytes = _clamp(value.max_header_bytes)
        self._max_headers = _clamp(value.max_headers)
        self._max_chunk = _clamp(value.max_chunk_size)
        self._limits = value

    @property
    def buffered(self):
        """Bytes held back, waiting for more input."""
        return self._end - self._start

    def feed(self, data):
        """Parse ``data``; return the events it completes (see the reference)."""
        cdef Py_buffer view
        cdef int err
        cdef bint gc_held
        cdef list events
        if self._fatal is not None:
            raise ParseError(self._fatal.reason, status=self._fatal.status, close=True)
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except BufferError:  # e.g. a non-contiguous memoryview: the reference says
            raise TypeError(  # TypeError for those (bytearray += data)
                f"a contiguous bytes-like object is required, not {type(data).__name__!r}"
            ) from None
        events = []
        # No Python code runs in _feed when events are built in place (and the GIL is
        # held throughout), and nothing it creates can form a cycle: a collection in
        # there could not free anything of ours.  Hold it back until the end.
        gc_held = _defer_gc and _fast_events and PyGC_Disable()
        try:
            if view.len == 0:
                err = self._feed(<const unsigned char*>b"", 0, events)
            else:
                err = self._feed(<const unsigned char*>view.buf, view.len, events)
        finally:
            if gc_held:
                PyGC_Enable()
            PyBuffer_Release(&view)
        if err:
            exc = ParseError(self._err_reason, status=self._err_status, tid=self._err_tid,
                             close=self._err_close)
            if self._err_close:
                self._state = S_DEAD
                self._fatal = exc
                self._start = self._end = 0
                self._shrink()
            exc.events = events
            raise exc
        return events

    # -- the held-back bytes -----------------------------------------------------------

    cdef int _reserve(self, Py_ssize_t extra) except -1:
        """Make room for ``extra`` more bytes after _end."""
        cdef Py_ssize_t held = self._end - self._start
        cdef Py_ssize_t cap
        cdef unsigned char* new
        if self._end + extra <= self._cap:
            return 0
        if self._start > 0:
            memmove(self._buf, self._buf + self._start, held)
            self._start = 0
            self._end = held
            if held + extra <= self._cap:
                return 0
        cap = self._cap * 2
        if cap < held + extra:
            cap = held + extra
        if cap < 256:
            cap = 256
        new = <unsigned char*>realloc(self._buf, cap)
        if new == NULL:
            raise MemoryError()
        self._buf = new
        self._cap = cap
        return 0

    cdef int _append(self, const unsigned char* src, Py_ssize_t n) except -1:
        if n <= 0:
            return 0
        self._reserve(n)
        memcpy(self._buf + self._end, src, n)
        self._end += n
        return 0

    cdef int _prepend_crlf(self) except -1:
        """Put back the CRLF of the line just consumed (see the reference's
        ``_recoverable``)."""
        cdef Py_ssize_t held
        if self._start < 2:
            held = self._end - self._start
            self._reserve(2)
            memmove(self._buf + 2, self._buf + self._start, held)
            self._start = 0
            self._end = held + 2
        else:
            self._start -= 2
        self._buf[self._start] = b"\r"
        self._buf[self._start + 1] = b"\n"
        return 0

    cdef void _shrink(self) noexcept:
        """Give back a large buffer that is mostly unused."""
        cdef Py_ssize_t held = self._end - self._start
        cdef Py_ssize_t cap
        cdef unsigned char* new
        if self._cap <= SHRINK_ABOVE or held * 4 > self._cap:
            return
        if held:
            memmove(self._buf, self._buf + self._start, held)
        self._start = 0
        self._end = held
        cap = held * 2 if held * 2 > 65536 else 65536
        new = <unsigned char*>realloc(self._buf, cap)
        if new != NULL:
            self._buf = new
            self._cap = cap

    # -- feeding -----------------------------------------------------------------------

    cdef int _feed(self, const unsigned char* p, Py_ssize_t n, list events) except -1:
        """Parse the held-back bytes followed by p[:n]; 1 if an error was recorded.

        The result is as if p[:n] were appended to the held-back bytes and all were
        parsed from there (what the reference does), but the input is parsed where it
        lies whenever possible.
        """
        cdef Py_ssize_t held = self._end - self._start
        cdef const unsigned char* lf
        cdef Py_ssize_t window, i
        cdef int err
        if held == 0:
            return self._run_inplace(p, n, events)
        if n == 0:
            return self._run_buffer(events)
        if (self._state == S_BODY or self._state == S_SKIP) and held < self._full <= n:
            return self._straddle(p, n, events)
        if (self._state == S_START or self._state == S_HEADERS) and held <= self._max_line + 1:
            # The held-back bytes are a line without its LF: complete that line from p,
            # parse it from the buffer, then go on in place.
            window = self._max_line + 2 - held
            if window > n:
                window = n
            lf = <const unsigned char*>memchr(p, b"\n", window)
            if lf != NULL:
                i = lf - p + 1
                self._append(p, i)
                err = self._run_buffer(events)
                if err or self._end != self._start:
                    self._append(p + i, n - i)
                    if err:
                        return err
                    return self._run_buffer(events)
                return self._run_inplace(p + i, n - i, events)
        self._append(p, n)
        return self._run_buffer(events)

    cdef int _run_inplace(self, const unsigned char* p, Py_ssize_t n, list events) except -1:
        """Parse p[:n] with nothing held back; keep what is left over."""
        cdef int err = self._process(p, n, events)
        cdef Py_ssize_t used = self._used
        # (nothing is held back here: _start == _end)
        self._start = self._end = 0
        if err:
            if self._err_close:
                return err
            if self._err_prefix:
                self._append(<const unsigned char*>b"\r\n", 2)
        self._append(p + used, n - used)
        self._shrink()
        return err

    cdef int _run_buffer(self, list events) except -1:
        """Parse the held-back bytes."""
        cdef int err = self._process(self._buf + self._start, self._end - self._start, events)
        self._start += self._used
        if self._start == self._end:
            self._start = self._end = 0
        if err and not self._err_close and self._err_prefix:
            self._prepend_crlf()
        self._shrink()
        return err

    cdef int _straddle(self, const unsigned char* p, Py_ssize_t n, list events) except -1:
        """One body (or skip) step over held + p[:n], with 0 < held < full <= n.

        An end-line may start in the held-back tail and end in p; one that starts in p
        is found in place.  The body piece is one bytes object, as in the reference.
        """
        cdef Py_ssize_t held = self._end - self._start
        cdef Py_ssize_t full = self._full
        cdef Py_ssize_t elen = self._elen
        cdef Py_ssize_t i, j, pos, vpos
        cdef const unsigned char* t
        cdef const unsigned char* cr
        cdef unsigned char flag = 0
        cdef bint body = self._state == S_BODY
        cdef bytes piece
        # 1. an end-line starting in the held-back bytes (it ends within p[:full - 1])
        self._append(p, full - 1)
        t = self._buf + self._start
        pos = -1
        i = 0
        while i < held:
            cr = <const unsigned char*>memchr(t + i, b"\r", held - i)
            if cr == NULL:
                break
            j = cr - t
            if (
                memcmp(t + j, self._endline, elen) == 0
                and _FLAG[t[j + elen]]
                and t[j + elen + 1] == b"\r"
                and t[j + elen + 2] == b"\n"
            ):
                pos = j
                flag = t[j + elen]
                break
            i = j + 1
        if pos >= 0:
            if body:
                if pos > 0:
                    if self._body_len + pos > self._max_chunk:
                        self._end = self._start + held
                        self._append(p, n)
                        return self._chunk_too_large()
                    self._body_len += pos
                    events.append(_new_body(self._tid, PyBytes_FromStringAndSize(<char*>t, pos)))
                events.append(_new_end(self._tid, _flag_str(flag)))
            else:
                self._skipped += pos
                if self._skipped > self._max_chunk:
                    return self._fail(E_FRAME)
            self._state = S_START
            self._start = self._end = 0
            i = pos + full - held
            return self._run_inplace(p + i, n - i, events)
        self._end = self._start + held
        # 2. otherwise the first end-line in p (or p's hold-back point)
        pos = self._find_end(p, n)
        flag = self._flag
        vpos = held + pos
        if body:
            if self._body_len + vpos > self._max_chunk:
                self._append(p, n)
                return self._chunk_too_large()
            self._body_len += vpos
            piece = PyBytes_FromStringAndSize(NULL, vpos)
            memcpy(PyBytes_AS_STRING(piece), self._buf + self._start, held)
            memcpy(PyBytes_AS_STRING(piece) + held, p, pos)
            events.append(_new_body(self._tid, piece))
        else:
            self._skipped += vpos
            if self._skipped > self._max_chunk:
                return self._fail(E_FRAME)
        self._start = self._end = 0
        if not flag:
            self._append(p + pos, n - pos)
            self._shrink()
            return 0
        if body:
            events.append(_new_end(self._tid, _flag_str(flag)))
        self._state = S_START
        i = pos + full
        return self._run_inplace(p + i, n - i, events)

    # -- the state machine over one contiguous view ------------------------------------

    cdef int _process(self, const unsigned char* p, Py_ssize_t n, list events) except -1:
        """Run steps over p[:n] until one needs more input or fails.

        Returns 1 if an error was recorded, else 0; ``_used`` is what was consumed.
        """
        cdef Py_ssize_t off = 0
        cdef int r
        cdef int state
        while True:
            state = self._state
            if state == S_BODY:
                r = self._body(p + off, n - off, events)
            elif state == S_HEADERS:
                r = self._header_line(p + off, n - off, events)
            elif state == S_START:
                r = self._start_line(p + off, n - off)
            else:
                r = self._skip(p + off, n - off)
            off += self._used
            if r != R_CONTINUE:
                break
        self._used = off
        return r == R_ERROR

    cdef Py_ssize_t _line(self, const unsigned char* p, Py_ssize_t n) noexcept:
        """Length of the CRLF-terminated line at p (without CRLF); -1: incomplete;
        -2: error recorded."""
        cdef Py_ssize_t limit = self._max_line
        cdef Py_ssize_t window = limit + 2
        cdef const unsigned char* lf
        cdef Py_ssize_t i
        if window > n:
            window = n
        lf = <const unsigned char*>memchr(p, b"\n", window)
        if lf == NULL:
            if n > limit + 1:
                self._fail(E_LINE_TOO_LONG)
                return -2
            return -1
        i = lf - p
        if i == 0 or p[i - 1] != b"\r":
            self._fail(E_BARE_LF)
            return -2
        if i - 1 > limit:
            self._fail(E_LINE_TOO_LONG)
            return -2
        return i - 1

    cdef int _start_line(self, const unsigned char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t m, size, tlen, rlen, i
        cdef const unsigned char* tid
        cdef const unsigned char* sp
        cdef const unsigned char* rest
        self._used = 0
        if n == 0:
            return R_NEED
        m = n if n < 5 else 5
        if memcmp(p, b"MSRP ", m) != 0:
            return self._fail(E_BAD_START)
        size = self._line(p, n)
        if size < 0:
            return R_NEED if size == -1 else R_ERROR
        # A complete line passed the check above, so it starts with "MSRP ".
        tid = p + 5
        sp = <const unsigned char*>memchr(tid, b" ", size - 5)
        if sp == NULL:
            return self._fail(E_BAD_START)
        tlen = sp - tid
        if tlen < 4 or tlen > MAX_TID or not _TID_FIRST[tid[0]]:
            return self._fail(E_BAD_TID)
        for i in range(1, tlen):
            if not _TID_CHAR[tid[i]]:
                return self._fail(E_BAD_TID)
        self._used = size + 2
        self._tid = _ascii_str(tid, tlen)
        memcpy(self._endline, b"\r\n-------", 9)
        memcpy(self._endline + 9, tid, tlen)
        self._elen = 9 + tlen
        self._full = self._elen + 3
        self._headers = []
        self._header_bytes = size + 2
        self._body_len = 0
        self._method = self._comment = self._code = None
        self._state = S_HEADERS
        rest = sp + 1
        rlen = size - (rest - p)
        if (
            rlen >= 3
            and _DIGIT[rest[0]] and _DIGIT[rest[1]] and _DIGIT[rest[2]]
            and (rlen == 3 or rest[3] == b" ")
        ):
            self._code = (rest[0] - 48) * 100 + (rest[1] - 48) * 10 + (rest[2] - 48)
            if rlen > 4:
                try:
                    self._comment = PyUnicode_DecodeUTF8(<char*>rest + 4, rlen - 4, NULL)
                except UnicodeDecodeError:
                    return self._recover(E_BAD_COMMENT, 400, True)
            return R_CONTINUE
        if rlen == 0:
            return self._recover(E_BAD_METHOD, 400, True)
        for i in range(rlen):
            if not _UPALPHA[rest[i]]:
                return self._recover(E_BAD_METHOD, 400, True)
        self._method = _method_str(rest, rlen)
        return R_CONTINUE

    cdef int _header_line(self, const unsigned char* p, Py_ssize_t n, list events) except -1:
        cdef Py_ssize_t size, nlen, vlen, i, known
        cdef const unsigned char* colon
        cdef const unsigned char* v
        cdef const unsigned char* ve
        cdef unsigned char bits = 0
        cdef object value
        cdef str name
        cdef tuple item
        cdef object recent
        self._used = 0
        size = self._line(p, n)
        if size < 0:
            return R_NEED if size == -1 else R_ERROR
        self._used = size + 2
        self._header_bytes += size + 2
        if self._header_bytes > self._max_header_bytes:
            return self._fail(E_HEADER_BLOCK)
        if size == 0:
            events.append(_new_head(self._tid, self._method, self._code, self._comment,
                                    self._headers, True))
            self._state = S_BODY
            return R_CONTINUE
        if (
            size == self._elen - 1
            and memcmp(p, self._endline + 2, self._elen - 2) == 0
            and _FLAG[p[size - 1]]
        ):
            events.append(_new_head(self._tid, self._method, self._code, self._comment,
                                    self._headers, False))
            events.append(_new_end(self._tid, _flag_str(p[size - 1])))
            self._state = S_START
            return R_CONTINUE
        colon = <const unsigned char*>memchr(p, b":", size)
        if colon == NULL or colon == p:
            return self._recover(E_MALFORMED, 400, True)
        nlen = colon - p
        known = _name_index(p, nlen)
        if known < 0:
            for i in range(nlen):
                if not _TOKEN[p[i]]:
                    return self._recover(E_MALFORMED, 400, True)
        if len(self._headers) >= self._max_headers:
            return self._fail(E_TOO_MANY)
        v = colon + 1
        ve = p + size
        while v < ve and (v[0] == b" " or v[0] == b"\t"):
            v += 1
        while ve > v and ((ve - 1)[0] == b" " or (ve - 1)[0] == b"\t"):
            ve -= 1
        vlen = ve - v
        for i in range(vlen):
            bits |= v[i]
        if bits < 0x80:
            if known >= 0:
                # Within a session most header fields repeat (To-Path, From-Path,
                # Content-Type...): hand out the same (immutable) tuple again.
                recent = self._recent[known]
                if recent is not None:
                    value = (<tuple>recent)[1]
                    if len(<str>value) == vlen and memcmp(PyUnicode_DATA(value), v, vlen) == 0:
                        self._headers.append(recent)
                        return R_CONTINUE
            value = _ascii_str(v, vlen)
        else:
            try:
                value = PyUnicode_DecodeUTF8(<char*>v, vlen, NULL)
            except UnicodeDecodeError:
                return self._recover(E_NOT_UTF8, 400, True)
        if memchr(v, b"\r", vlen) != NULL:
            return self._recover(E_MALFORMED, 400, True)
        name = <str>_KNOWN_NAMES[known] if known >= 0 else _ascii_str(p, nlen)
        item = PyTuple_New(2)
        Py_INCREF(name)
        PyTuple_SET_ITEM(item, 0, name)
        Py_INCREF(value)
        PyTuple_SET_ITEM(item, 1, value)
        # A tuple of two str can never be part of a cycle: CPython would untrack it at
        # its first collection anyway; doing it now spares the collector the work.
        PyObject_GC_UnTrack(<void*>item)
        if known >= 0 and bits < 0x80:
            self._recent[known] = item
        self._headers.append(item)
        return R_CONTINUE

    cdef Py_ssize_t _find_end(self, const unsigned char* p, Py_ssize_t n) noexcept:
        """Position of the first complete end-line of this frame in p[:n] (its leading
        CRLF), with ``_flag`` set to its flag byte; or, with ``_flag`` 0, the hold-back
        point: the first CR in the last ``full - 1`` bytes, else n."""
        cdef Py_ssize_t full = self._full
        cdef Py_ssize_t elen = self._elen
        cdef Py_ssize_t i = 0, j
        cdef const unsigned char* cr
        cdef unsigned char flag
        while True:
            cr = <const unsigned char*>memchr(p + i, b"\r", n - i)
            if cr == NULL:
                self._flag = 0
                return n
            j = cr - p
            if j + full > n:
                # No complete end-line can start here or later, and j is the first CR
                # in the last full - 1 bytes (every CR before it was looked at).
                self._flag = 0
                return j
            if p[j + 1] == b"\n" and memcmp(p + j, self._endline, elen) == 0:
                flag = p[j + elen]
                if _FLAG[flag] and p[j + elen + 1] == b"\r" and p[j + elen + 2] == b"\n":
                    self._flag = flag
                    return j
            i = j + 1

    cdef int _body(self, const unsigned char* p, Py_ssize_t n, list events) except -1:
        cdef Py_ssize_t pos = self._find_end(p, n)
        cdef unsigned char flag = self._flag
        self._used = 0
        if pos:
            if self._body_len + pos > self._max_chunk:
                return self._chunk_too_large()
            self._body_len += pos
            events.append(_new_body(self._tid, PyBytes_FromStringAndSize(<char*>p, pos)))
        if not flag:
            self._used = pos
            return R_NEED
        self._used = pos + self._full
        events.append(_new_end(self._tid, _flag_str(flag)))
        self._state = S_START
        return R_CONTINUE

    cdef int _skip(self, const unsigned char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t pos = self._find_end(p, n)
        self._used = 0
        self._skipped += pos
        if self._skipped > self._max_chunk:
            return self._fail(E_FRAME)
        if not self._flag:
            self._used = pos
            return R_NEED
        self._used = pos + self._full
        self._state = S_START
        return R_CONTINUE

    # -- errors ------------------------------------------------------------------------

    cdef int _fail(self, str reason) noexcept:
        """Record a fatal error (the reference's ``_error(..., close=True)``)."""
        self._err_reason = reason
        self._err_status = None
        self._err_tid = self._tid if self._state != S_START else None
        self._err_close = True
        self._err_prefix = False
        return R_ERROR

    cdef int _recover(self, str reason, int status, bint prefix) noexcept:
        """Record a recoverable error and skip to the frame's end-line (the reference's
        ``_recoverable``); ``prefix``: put back the CRLF of the line just consumed."""
        self._err_reason = reason
        self._err_status = status
        self._err_tid = self._tid
        self._err_close = False
        self._err_prefix = prefix
        self._state = S_SKIP
        self._skipped = 0
        return R_ERROR

    cdef int _chunk_too_large(self) noexcept:
        """The 413 of the reference's ``_body``: the skip counts from the limit on."""
        cdef Py_ssize_t skipped = self._body_len - self._max_chunk
        self._body_len = 0
        self._used = 0
        self._recover(E_CHUNK, 413, False)
        self._skipped = skipped
        return R_ERROR


# -- the relay's forwarding rewrite -----------------------------------------------------
#
# rewrite_head() is pyim.relay.forward.rewrite_head (read its docstring: it is the spec)
# in C.  For the inputs it is typed for (an exact list of exact (str, str) tuples, str
# tid and method) it works on the strings in place:
#
# * To-Path and From-Path are recognised without lowering the name (an ASCII name is
#   compared byte by byte, case-insensitively; only a non-ASCII name is lowered, as
#   the reference does, since str.lower() is Unicode-aware);
# * the path values are split with a C loop using Py_UNICODE_ISSPACE, which is the
#   predicate str.split() uses (ASCII whitespace, \x1c-\x1f, and Unicode whitespace
#   such as U+0085, U+00A0, U+2003, U+3000); a value already in normal form (its URIs
#   joined by single spaces) is used as it is, or sliced once;
# * the head is written into one preallocated bytes object with memcpy when every
#   piece is ASCII (the usual case: its UTF-8 encoding is its data); otherwise it is
#   written into one str of the right width and encoded to UTF-8, so the result, or
#   the UnicodeEncodeError (lone surrogates), is exactly the reference's.
#
# No GC-tracked object is allocated between reading the headers and writing the head
# (only str and bytes), so no Python code (a finalizer run by a collection) can change
# the list in between.  Any other input (a list subclass, a str subclass, a tuple that
# is not a pair...) goes to the reference itself, which gives the reference's result or
# error by definition.

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    Py_UCS4 PyUnicode_MAX_CHAR_VALUE(object o)
    void PyUnicode_WRITE(int kind, void* data, Py_ssize_t index, Py_UCS4 value)

cdef extern from *:
    """
    #if PY_VERSION_HEX < 0x030C0000
    #define PYIM_UNICODE_READY(o) PyUnicode_READY(o)
    #else
    #define PYIM_UNICODE_READY(o) 0
    #endif
    """
    int PYIM_UNICODE_READY(object o) except -1

cdef str S_MSRP = "MSRP "
cdef str S_SP = " "
cdef str S_TO_PATH = "\r\nTo-Path: "
cdef str S_FROM_PATH = "\r\nFrom-Path: "
cdef str S_COLON = ": "
cdef str S_CRLF = "\r\n"
cdef str E_TWO_TO = "more than one To-Path"
cdef str E_TWO_FROM = "more than one From-Path"
cdef str E_MISSING = "missing To-Path or From-Path"
cdef str E_EMPTY = "empty To-Path or From-Path"
cdef str S_EMPTY = ""
cdef bytes B_EMPTY = b""


cdef struct _Tokens:
    Py_ssize_t count         # how many whitespace-separated tokens (URIs)
    Py_ssize_t first_start   # the first token: [first_start, first_end)
    Py_ssize_t first_end
    Py_ssize_t second_start  # the second one, when count > 1
    Py_ssize_t second_end
    bint normal              # the value is its tokens joined by single " "


cdef unsigned char _SPACE1[256]  # Py_UNICODE_ISSPACE for the one-byte kinds


cdef void _init_space1() noexcept:
    cdef int c
    for c in range(256):
        _SPACE1[c] = Py_UNICODE_ISSPACE(<Py_UCS4>c)


_init_space1()


cdef inline bint _is_space(int kind, const void* data, Py_ssize_t i) noexcept:
    if kind == PyUnicode_1BYTE_KIND:
        return _SPACE1[(<const unsigned char*>data)[i]]
    return Py_UNICODE_ISSPACE(PyUnicode_READ(kind, <void*>data, i))


cdef void _scan(str s, _Tokens* t) noexcept:
    """Find the tokens of ``s`` as ``s.split()`` does (only the first two are kept)."""
    cdef int kind = PyUnicode_KIND(s)
    cdef const void* data = PyUnicode_DATA(s)
    cdef const unsigned char* b = <const unsigned char*>data
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    cdef Py_ssize_t i = 0, gap
    t.count = 0
    t.first_start = t.first_end = t.second_start = t.second_end = 0
    t.normal = True
    while True:
        gap = i
        while i < n and _is_space(kind, data, i):
            i += 1
        if i >= n:
            if i != gap:  # trailing whitespace (or nothing but whitespace)
                t.normal = False
            return
        if t.count == 0:
            if i != gap:  # leading whitespace
                t.normal = False
        elif i - gap != 1 or PyUnicode_READ(kind, <void*>data, gap) != 0x20:
            t.normal = False
        gap = i  # now the token's start
        if kind == PyUnicode_1BYTE_KIND:  # the usual case: a tight loop over bytes
            while i < n and not _SPACE1[b[i]]:
                i += 1
        else:
            while i < n and not Py_UNICODE_ISSPACE(PyUnicode_READ(kind, <void*>data, i)):
                i += 1
        if t.count == 0:
            t.first_start = gap
            t.first_end = i
        elif t.count == 1:
            t.second_start = gap
            t.second_end = i
        t.count += 1


cdef str _joined(str s, Py_ssize_t pos):
    """``" ".join(s[pos:].split())`` (there is at least one token from ``pos``)."""
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    cdef Py_ssize_t i = pos, total = 0, count = 0
    cdef Py_UCS4 ch, maxchar = 0x20
    while True:  # the length and the widest character of the result
        while i < n and Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)):
            i += 1
        if i >= n:
            break
        if count:
            total += 1
        count += 1
        while i < n:
            ch = PyUnicode_READ(kind, data, i)
            if Py_UNICODE_ISSPACE(ch):
                break
            if ch > maxchar:
                maxchar = ch
            total += 1
            i += 1
    cdef str out = <str>PyUnicode_New(total, maxchar)
    cdef int okind = PyUnicode_KIND(out)
    cdef void* odata = PyUnicode_DATA(out)
    cdef Py_ssize_t w = 0
    i = pos
    count = 0
    while True:
        while i < n and Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)):
            i += 1
        if i >= n:
            break
        if count:
            PyUnicode_WRITE(okind, odata, w, 0x20)
            w += 1
        count += 1
        while i < n:
            ch = PyUnicode_READ(kind, data, i)
            if Py_UNICODE_ISSPACE(ch):
                break
            PyUnicode_WRITE(okind, odata, w, ch)
            w += 1
            i += 1
    return out


cdef inline bint _ieq_ascii(const unsigned char* p, const char* lower, Py_ssize_t n) noexcept:
    """``p[:n].lower() == lower`` for ASCII ``p`` and lowercase ASCII ``lower``."""
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = p[i]
        if 0x41 <= c <= 0x5A:
            c += 0x20
        if c != <unsigned char>lower[i]:
            return False
    return True


cdef inline int _path_name(str name) except -1:
    """1 for To-Path, 2 for From-Path, 0 for any other name (by ``name.lower()``)."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(name)
    if PyUnicode_IS_ASCII(name):
        if n == 7:
            return 1 if _ieq_ascii(<const unsigned char*>PyUnicode_DATA(name), "to-path", 7) else 0
        if n == 9:
            return (2 if _ieq_ascii(<const unsigned char*>PyUnicode_DATA(name), "from-path", 9)
                    else 0)
        return 0
    lname = name.lower()  # str.lower() may map a non-ASCII character to ASCII
    if lname == "to-path":
        return 1
    if lname == "from-path":
        return 2
    return 0


cdef struct _Out:
    char* buf        # where to write: the data of a bytes, or of a str (then kind > 0)
    int kind         # 0: bytes (every piece is ASCII); else the str's kind
    Py_ssize_t pos   # in characters


cdef inline void _emit(_Out* out, str s) noexcept:
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    cdef Py_ssize_t i
    cdef int kind
    cdef void* data
    if out.kind == 0:  # every piece is ASCII: its data is its UTF-8
        memcpy(out.buf + out.pos, PyUnicode_DATA(s), n)
    else:
        kind = PyUnicode_KIND(s)
        data = PyUnicode_DATA(s)
        if kind == out.kind:
            memcpy(out.buf + out.pos * kind, data, n * kind)
        else:  # a narrower piece (the str is as wide as the widest piece)
            for i in range(n):
                PyUnicode_WRITE(out.kind, out.buf, out.pos + i, PyUnicode_READ(kind, data, i))
    out.pos += n


cdef inline Py_UCS4 _widest(Py_UCS4 maxchar, str s) noexcept:
    cdef Py_UCS4 m = PyUnicode_MAX_CHAR_VALUE(s)
    return m if m > maxchar else maxchar


cdef object _pure_rewrite_head = None


cdef object _reference(object tid, object method, object headers):
    """The reference itself, for inputs outside the typed fast path."""
    global _pure_rewrite_head
    if _pure_rewrite_head is None:  # imported late: pyim.relay imports this module
        from pyim.relay.forward import rewrite_head as pure
        _pure_rewrite_head = pure
    return _pure_rewrite_head(tid, method, headers)


def rewrite_head(tid, method, headers):
    """Route a request one hop: ``(first, next_hop, hops_left, head, from_path)``.

    The compiled ``pyim.relay.forward.rewrite_head``: same results, same errors
    (``PathError``).  ``first`` is the To-Path URI addressed to this relay, ``next_hop``
    the URI after it (``""`` when none), ``hops_left`` how many URIs remain after
    ``first``, ``head`` the start line and header lines to forward (``b""`` when
    nothing is left to forward) and ``from_path`` the received From-Path value.
    """
    if type(headers) is not list or type(tid) is not str or type(method) is not str:
        return _reference(tid, method, headers)
    cdef list hlist = <list>headers
    cdef Py_ssize_t nh = len(hlist)
    cdef Py_ssize_t i, idx_to = -1, idx_from = -1, others_len = 0
    cdef Py_UCS4 maxchar = 0x7F
    cdef object item, name, value
    cdef str to_path = None, from_path = None
    cdef int which
    for i in range(nh):
        item = hlist[i]
        if type(item) is not tuple or PyTuple_GET_SIZE(item) != 2:
            return _reference(tid, method, headers)
        name = (<tuple>item)[0]
        value = (<tuple>item)[1]
        if type(name) is not str or type(value) is not str:
            return _reference(tid, method, headers)
        PYIM_UNICODE_READY(name)
        PYIM_UNICODE_READY(value)
        which = _path_name(<str>name)
        if which == 1:
            if to_path is not None:
                raise PathError(E_TWO_TO)
            to_path = <str>value
            idx_to = i
        elif which == 2:
            if from_path is not None:
                raise PathError(E_TWO_FROM)
            from_path = <str>value
            idx_from = i
        else:
            others_len += PyUnicode_GET_LENGTH(name) + PyUnicode_GET_LENGTH(value) + 4
            maxchar = _widest(_widest(maxchar, <str>name), <str>value)
    if to_path is None or from_path is None:
        raise PathError(E_MISSING)

    cdef _Tokens to_t, from_t
    _scan(to_path, &to_t)
    _scan(from_path, &from_t)
    if to_t.count == 0 or from_t.count == 0:
        raise PathError(E_EMPTY)
    cdef Py_ssize_t to_len = PyUnicode_GET_LENGTH(to_path)
    cdef str first, next_hop, to_rest, from_joined
    if to_t.first_start == 0 and to_t.first_end == to_len:
        first = to_path
    else:
        first = <str>PyUnicode_Substring(to_path, to_t.first_start, to_t.first_end)
    from_joined = from_path if from_t.normal else _joined(from_path, 0)
    cdef Py_ssize_t hops_left = to_t.count - 1
    if hops_left == 0:
        return first, S_EMPTY, 0, B_EMPTY, from_joined
    next_hop = <str>PyUnicode_Substring(to_path, to_t.second_start, to_t.second_end)
    if to_t.normal and to_t.second_end == to_len:  # two URIs: the rest is next_hop
        to_rest = next_hop
    elif to_t.normal:
        to_rest = <str>PyUnicode_Substring(to_path, to_t.second_start, to_len)
    else:
        to_rest = _joined(to_path, to_t.second_start)

    # "MSRP tid method\r\nTo-Path: rest\r\nFrom-Path: first from\r\n" + other headers
    PYIM_UNICODE_READY(tid)
    PYIM_UNICODE_READY(method)
    cdef Py_ssize_t total = (
        others_len + 5 + PyUnicode_GET_LENGTH(tid) + 1 + PyUnicode_GET_LENGTH(method)
        + 11 + PyUnicode_GET_LENGTH(to_rest) + 13 + PyUnicode_GET_LENGTH(first) + 1
        + PyUnicode_GET_LENGTH(from_joined) + 2
    )
    maxchar = _widest(_widest(_widest(_widest(_widest(
        maxchar, <str>tid), <str>method), to_rest), first), from_joined)
    cdef _Out out
    cdef bytes head
    cdef str text = None
    out.pos = 0
    if maxchar <= 0x7F:
        head = PyBytes_FromStringAndSize(NULL, total)
        out.buf = PyBytes_AS_STRING(head)
        out.kind = 0
    else:
        text = <str>PyUnicode_New(total, maxchar)
        out.buf = <char*>PyUnicode_DATA(text)
        out.kind = PyUnicode_KIND(text)
    _emit(&out, S_MSRP)
    _emit(&out, <str>tid)
    _emit(&out, S_SP)
    _emit(&out, <str>method)
    _emit(&out, S_TO_PATH)
    _emit(&out, to_rest)
    _emit(&out, S_FROM_PATH)
    _emit(&out, first)
    _emit(&out, S_SP)
    _emit(&out, from_joined)
    _emit(&out, S_CRLF)
    for i in range(nh):
        if i == idx_to or i == idx_from:
            continue
        item = hlist[i]
        _emit(&out, <str>(<tuple>item)[0])
        _emit(&out, S_COLON)
        _emit(&out, <str>(<tuple>item)[1])
        _emit(&out, S_CRLF)
    if out.pos != total:  # cannot happen (see above); never hand out a torn head
        raise SystemError("rewrite_head: the header list changed while it was read")
    if text is not None:
        head = PyUnicode_AsUTF8String(text)  # what str.encode("utf-8") gives or raises
    return first, next_hop, hops_left, head, from_joined


# -- the relay's other per-frame helpers --------------------------------------------------
#
# local_hop_head(), ok_response() and relay_fields() are the functions of the same name
# in pyim.relay.forward (their docstrings are the spec), in C for the usual input: ASCII
# text in exact str, bytes, list and tuple objects.  Anything else goes to the reference
# itself, which gives its result or its error by definition.

cdef object _pure_forward = None


cdef object _forward_ref(str name):
    """A function of the pure reference, pyim.relay.forward (imported late, as above)."""
    global _pure_forward
    if _pure_forward is None:
        import pyim.relay.forward as pure
        _pure_forward = pure
    return getattr(_pure_forward, name)


cdef inline bint _is_ascii_str(object s) noexcept:
    return type(s) is str and PyUnicode_IS_ASCII(s)


cdef inline bint _bytes_space(unsigned char c) noexcept:
    """``bytes.isspace()`` for one byte: what ``bytes.split()`` splits on."""
    return c == 0x20 or 0x09 <= c <= 0x0D


cdef inline char* _put_bytes(char* w, const void* src, Py_ssize_t n) noexcept:
    memcpy(w, src, n)
    return w + n


cdef inline Py_ssize_t _find_crlf(const char* s, Py_ssize_t start, Py_ssize_t n) noexcept:
    """Where the first CRLF at or after ``start`` is, or -1."""
    cdef const char* p
    while start + 1 < n:
        p = <const char*>memchr(s + start, 0x0D, n - start - 1)
        if p == NULL:
            return -1
        if p[1] == 0x0A:
            return p - s
        start = p - s + 1
    return -1


def local_hop_head(head, next_hop):
    """The head from ``rewrite_head`` when ``next_hop`` is a path of this relay too:
    ``To-Path: <client>``, ``From-Path: <next_hop> <first> ...``.

    The compiled ``pyim.relay.forward.local_hop_head``: same results, same errors.
    """
    if type(head) is not bytes or not _is_ascii_str(next_hop):
        return _forward_ref("local_hop_head")(head, next_hop)
    cdef const char* s = PyBytes_AS_STRING(head)
    cdef Py_ssize_t n = len(<bytes>head)
    cdef Py_ssize_t e1 = _find_crlf(s, 0, n)
    cdef Py_ssize_t e2 = -1 if e1 < 0 else _find_crlf(s, e1 + 2, n)
    cdef Py_ssize_t e3 = -1 if e2 < 0 else _find_crlf(s, e2 + 2, n)
    if e3 < 0:  # fewer than four lines: the reference's ValueError
        return _forward_ref("local_hop_head")(head, next_hop)
    # the last whitespace-separated token of the To-Path line, [t0, t1)
    cdef Py_ssize_t t1 = e2, t0
    while t1 > e1 + 2 and _bytes_space(<unsigned char>s[t1 - 1]):
        t1 -= 1
    t0 = t1
    while t0 > e1 + 2 and not _bytes_space(<unsigned char>s[t0 - 1]):
        t0 -= 1
    if t0 == t1:  # a blank line: the reference's IndexError
        return _forward_ref("local_hop_head")(head, next_hop)
    cdef Py_ssize_t f0 = e2 + 2 + 11  # the From-Path line without its first 11 bytes
    if f0 > e3:
        f0 = e3
    cdef Py_ssize_t hop_len = PyUnicode_GET_LENGTH(next_hop)
    cdef Py_ssize_t total = (
        e1 + 2 + 9 + (t1 - t0) + 2 + 11 + hop_len + 1 + (e3 - f0) + (n - e3)
    )
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* w = PyBytes_AS_STRING(out)
    w = _put_bytes(w, s, e1 + 2)                      # the start line and its CRLF
    w = _put_bytes(w, b"To-Path: ", 9)
    w = _put_bytes(w, s + t0, t1 - t0)
    w = _put_bytes(w, b"\r\nFrom-Path: ", 13)
    w = _put_bytes(w, PyUnicode_DATA(next_hop), hop_len)
    w = _put_bytes(w, b" ", 1)
    w = _put_bytes(w, s + f0, e3 - f0)
    w = _put_bytes(w, s + e3, n - e3)                 # CRLF and the other headers
    return out


def ok_response(tid, from_path, first):
    """The relay's 200 to a request it handed on (``pyim.relay.forward.ok_response``
    compiled: same results, same errors)."""
    if not (_is_ascii_str(tid) and _is_ascii_str(from_path) and _is_ascii_str(first)):
        return _forward_ref("ok_response")(tid, from_path, first)
    cdef Py_ssize_t nt = PyUnicode_GET_LENGTH(tid)
    cdef Py_ssize_t nf = PyUnicode_GET_LENGTH(from_path)
    cdef Py_ssize_t n1 = PyUnicode_GET_LENGTH(first)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 5 + nt + 18 + nf + 13 + n1 + 9 + nt + 3)
    cdef char* w = PyBytes_AS_STRING(out)
    w = _put_bytes(w, b"MSRP ", 5)
    w = _put_bytes(w, PyUnicode_DATA(tid), nt)
    w = _put_bytes(w, b" 200 OK\r\nTo-Path: ", 18)
    w = _put_bytes(w, PyUnicode_DATA(from_path), nf)
    w = _put_bytes(w, b"\r\nFrom-Path: ", 13)
    w = _put_bytes(w, PyUnicode_DATA(first), n1)
    w = _put_bytes(w, b"\r\n-------", 9)
    w = _put_bytes(w, PyUnicode_DATA(tid), nt)
    w = _put_bytes(w, b"$\r\n", 3)
    return out


cdef enum:
    F_OTHER = 0
    F_MESSAGE_ID = 1
    F_BYTE_RANGE = 2
    F_FAILURE_REPORT = 3


cdef inline int _field_name(str name) except -1:
    """Which of the three fields ``name`` is, by ``name.lower()`` (see _path_name)."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(name)
    cdef const unsigned char* p
    if PyUnicode_IS_ASCII(name):
        p = <const unsigned char*>PyUnicode_DATA(name)
        if n == 10:
            if _ieq_ascii(p, "message-id", 10):
                return F_MESSAGE_ID
            if _ieq_ascii(p, "byte-range", 10):
                return F_BYTE_RANGE
        elif n == 14 and _ieq_ascii(p, "failure-report", 14):
            return F_FAILURE_REPORT
        return F_OTHER
    lname = name.lower()  # str.lower() may map a non-ASCII character to ASCII
    if lname == "message-id":
        return F_MESSAGE_ID
    if lname == "byte-range":
        return F_BYTE_RANGE
    if lname == "failure-report":
        return F_FAILURE_REPORT
    return F_OTHER


cdef str S_YES = "yes"


def relay_fields(headers):
    """``(message_id, byte_range, failure_report)`` of a request's headers
    (``pyim.relay.forward.relay_fields`` compiled: same results, same errors)."""
    if type(headers) is not list:
        return _forward_ref("relay_fields")(headers)
    cdef list hlist = <list>headers
    cdef Py_ssize_t i
    cdef object item, name, value
    cdef int which
    for i in range(len(hlist)):  # checked first: then nothing below can fail or run code
        item = hlist[i]
        if (type(item) is not tuple or PyTuple_GET_SIZE(item) != 2
                or type((<tuple>item)[0]) is not str or type((<tuple>item)[1]) is not str):
            return _forward_ref("relay_fields")(headers)
    cdef object message_id = None, byte_range = None
    cdef str failure_report = S_YES
    for i in range(len(hlist)):
        item = hlist[i]
        name = (<tuple>item)[0]
        value = (<tuple>item)[1]
        PYIM_UNICODE_READY(name)
        which = _field_name(<str>name)
        if which == F_MESSAGE_ID:
            message_id = value
        elif which == F_BYTE_RANGE:
            byte_range = value
        elif which == F_FAILURE_REPORT:
            failure_report = (<str>value).strip().lower()
    return message_id, byte_range, failure_report
