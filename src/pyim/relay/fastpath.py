"""Which forwarding fast path runs: the Cython one when built, else the reference.

``native/_speedups.pyx`` holds compiled twins of :mod:`pyim.relay.forward` (same
results, same errors; tests/test_relay_forward_parity.py, test_relay_fastpath.py).
``PYIM_PURE=1`` forces the reference; ``forward_impl`` says which one is in use.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from . import forward

RewriteHead = Callable[[str, str, list[tuple[str, str]]], tuple[str, str, int, bytes, str]]
rewrite_head: RewriteHead
forward_impl: str
try:  # the native fast paths: same results, same errors as pyim.relay.forward
    from ..msrp import _speedups as _native
except ImportError:  # the pure reference when the extension is not built
    _native = None
if os.environ.get("PYIM_PURE", "") not in ("", "0"):
    _native = None
_impl = _native if _native is not None else forward
rewrite_head = _impl.rewrite_head
local_hop_head: Callable[[bytes, str], bytes] = _impl.local_hop_head
ok_response: Callable[[str, str, str], bytes] = _impl.ok_response
relay_fields: Callable[[list[tuple[str, str]]], tuple[str | None, str | None, str]]
relay_fields = _impl.relay_fields
forward_impl = "pure" if _native is None else "native"
