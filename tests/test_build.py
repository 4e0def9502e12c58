"""The test environment has the native extension built, and pyim.msrp selects it.

These run the selection in fresh interpreters (subprocesses), because ``parser_impl`` is
decided once, at import time of ``pyim.msrp``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pyim

REPO = Path(__file__).resolve().parent.parent
PYX = REPO / "native" / "_speedups.pyx"
REBUILD_HINT = "build it with `python setup.py build_ext --inplace` or `pip install -e .`"


def _parser_impl(env_updates: dict[str, str | None]) -> str:
    env = dict(os.environ)
    for key, value in env_updates.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    # The child must import the same pyim as this process (installed or from src/).
    pkg_parent = str(Path(pyim.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_parent, env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", "import pyim.msrp; print(pyim.msrp.parser_impl)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_native_extension_is_built() -> None:
    try:
        module = importlib.import_module("pyim.msrp._speedups")
    except ImportError as exc:
        raise AssertionError(f"pyim.msrp._speedups is not built ({exc}); {REBUILD_HINT}") from exc
    path = Path(module.__file__ or "").resolve()
    assert path.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), path
    # It belongs to the pyim under test, not to some other copy on sys.path.
    assert path.parent == Path(pyim.__file__).resolve().parent / "msrp", path


def test_native_extension_is_not_stale() -> None:
    module = importlib.import_module("pyim.msrp._speedups")
    path = Path(module.__file__ or "").resolve()
    if not PYX.exists() or REPO not in path.parents:
        return  # installed (non-editable) copy: nothing in this tree to compare against
    # +1 s: setuptools copies the in-place module with whole-second timestamps.
    assert path.stat().st_mtime + 1 >= PYX.stat().st_mtime, (
        f"{path.name} is older than {PYX.relative_to(REPO)}: the tests would exercise "
        f"stale native code; {REBUILD_HINT}"
    )


def test_parser_impl_is_native_by_default() -> None:
    assert _parser_impl({"PYIM_PURE": None, "PYIM_NO_NATIVE": None}) == "native"


def test_pyim_pure_forces_the_reference() -> None:
    assert _parser_impl({"PYIM_PURE": "1"}) == "pure"
