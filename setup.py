"""Build script for pyim's optional native extension.

All project metadata lives in pyproject.toml; this file only declares the Cython
extension ``pyim.msrp._speedups``, compiled from ``native/_speedups.pyx`` (the hot
byte paths: the incremental MSRP frame parser and the relay forwarding fast path).

The extension is OPTIONAL. pyim has a pure-Python reference for every compiled
routine, so when Cython is missing or the C compiler fails, the build prints a
warning and the package installs without it. Environment variables:

    PYIM_NO_NATIVE=1       do not even try to build the extension
    PYIM_REQUIRE_NATIVE=1  a failed native build is an error (used by scripts/test.sh,
                           so that CI never silently tests the fallback only)

Works for ``pip install .``, ``pip install -e .`` (the module is then compiled in
place into src/pyim/msrp/) and ``python setup.py build_ext --inplace``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE_SOURCE = os.path.join("native", "_speedups.pyx")
NATIVE_MODULE = "pyim.msrp._speedups"

# Defaults for every .pyx; a file's own "# cython: ..." header comment overrides them.
CYTHON_DIRECTIVES: dict[str, Any] = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
}
UNIX_COMPILE_ARGS = ["-O3"]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _warn(reason: str) -> None:
    msg = f"pyim: native extension not built ({reason}); using the pure-Python reference"
    bar = "*" * min(len(msg), 100)
    print(f"\n{bar}\n{msg}\n{bar}\n", file=sys.stderr, flush=True)


def _build_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "no usable compiler/toolchain here"."""
    errors: list[type[BaseException]] = [ImportError, OSError, ValueError]
    try:  # setuptools >= 59 vendors distutils and exposes its errors here
        from setuptools.errors import (
            CCompilerError,
            CompileError,
            ExecError,
            LinkError,
            PlatformError,
        )

        errors += [CCompilerError, CompileError, ExecError, LinkError, PlatformError]
    except ImportError:  # pragma: no cover - very old setuptools
        pass
    try:
        from distutils.errors import (
            CCompilerError as DCCompilerError,
        )
        from distutils.errors import (
            DistutilsExecError,
            DistutilsPlatformError,
        )

        errors += [DCCompilerError, DistutilsExecError, DistutilsPlatformError]
    except ImportError:  # pragma: no cover - Python >= 3.12 without setuptools' shim
        pass
    return tuple(errors)


class optional_build_ext(build_ext):
    """build_ext that cythonizes lazily and never fails the install (unless required)."""

    def initialize_options(self) -> None:
        super().initialize_options()
        self._not_built: set[str] = set()  # names of extensions that failed to build

    def run(self) -> None:
        if not self.extensions:
            return
        if _env_flag("PYIM_NO_NATIVE"):
            self._skip_all("PYIM_NO_NATIVE=1")
            return
        try:
            self._cythonize(self.extensions)
        except _build_errors() as exc:
            self._failed(exc)
            self._skip_all(None)
            return
        super().run()

    def build_extension(self, ext: Extension) -> None:
        if self.compiler.compiler_type == "unix":
            ext.extra_compile_args = [*ext.extra_compile_args, *UNIX_COMPILE_ARGS]
        try:
            super().build_extension(ext)
        except _build_errors() as exc:
            self._failed(exc)
            self._not_built.add(ext.name)

    # After a failed optional build, nothing of that extension is copied, installed or mapped.
    def copy_extensions_to_source(self) -> None:
        with self._only_built():
            super().copy_extensions_to_source()

    def get_outputs(self) -> list[str]:
        with self._only_built():
            return list(super().get_outputs())

    def get_output_mapping(self) -> dict[str, str]:  # setuptools >= 64 (editable installs)
        with self._only_built():
            return dict(super().get_output_mapping())  # type: ignore[misc]

    @contextmanager
    def _only_built(self) -> Iterator[None]:
        saved = self.extensions
        self.extensions = [ext for ext in saved if ext.name not in self._not_built]
        try:
            yield
        finally:
            self.extensions = saved

    def _skip_all(self, reason: str | None) -> None:
        if reason is not None:
            _warn(reason)
        self._not_built.update(ext.name for ext in self.extensions)

    def _cythonize(self, extensions: list[Extension]) -> list[Extension]:
        """Turn .pyx sources into generated C, in place on the original Extension objects
        (setuptools has already annotated them in finalize_options)."""
        if not any(src.endswith(".pyx") for ext in extensions for src in ext.sources):
            return extensions
        try:
            from Cython.Build import cythonize
        except ImportError as exc:
            raise ImportError(f"Cython is not installed: {exc}") from exc
        for ext in extensions:
            try:
                (generated,) = cythonize(
                    [ext],
                    compiler_directives=CYTHON_DIRECTIVES,
                    build_dir=os.path.join(self.build_temp, "cython"),  # no C in native/
                    force=bool(self.force),
                    quiet=True,
                )
            except Exception as exc:  # Cython's CompileError is not a distutils error
                raise ValueError(f"Cython failed: {type(exc).__name__}: {exc}") from exc
            ext.sources = list(generated.sources)
        return extensions

    def _failed(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}".strip()
        if _env_flag("PYIM_REQUIRE_NATIVE"):
            raise SystemExit(
                f"pyim: native extension build failed ({reason}) and PYIM_REQUIRE_NATIVE=1"
            ) from exc
        _warn(reason)


native_ext = Extension(NATIVE_MODULE, sources=[NATIVE_SOURCE])
# Without Cython importable, setuptools' Extension silently renames .pyx sources to .c
# (expecting shipped C files, which pyim does not ship); keep the .pyx so that
# optional_build_ext reports "Cython is not installed" instead of a missing .c file.
native_ext.sources = [NATIVE_SOURCE]

setup(
    ext_modules=[native_ext],
    cmdclass={"build_ext": optional_build_ext},
)
