"""Reading the daemons' TOML files (``pyim relay``, ``pyim server``): one error type
whose message names the file and the key, one way to read and build a config."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file, the key and the problem."""


def load_toml(path: Path, build: Callable[[dict[str, Any]], T]) -> T:
    """Parse ``path`` and ``build`` a config from it; any problem is a ConfigError
    that starts with the file name."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return build(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def build_table(
    cls: type[T],
    table: Any,
    where: str,
    *,
    paths: Collection[str] = (),
    base: Path | None = None,
) -> T:
    """The dataclass ``cls`` from a TOML table: every key must be a field, of the type
    of the field's default (bool, int, float — an int is taken —, str, a tuple as a
    list of strings; a field whose default is None takes a string). Fields named in
    ``paths`` take a path, relative to ``base`` when given."""
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table")
    assert dataclasses.is_dataclass(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    defaults = cls()
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{where}.{key}"
        if key not in names:
            raise ConfigError(f"{name}: unknown key")
        if key in paths:
            if not isinstance(value, str):
                raise ConfigError(f"{name}: expected a path")
            path = Path(value)
            values[key] = base / path if base is not None and not path.is_absolute() else path
        else:
            values[key] = _typed(value, getattr(defaults, key), name)
    return cls(**values)


def _typed(value: Any, default: Any, name: str) -> Any:
    """``value`` checked against (and converted to) the type of ``default``."""
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: expected a list of strings")
        return tuple(value)
    expected: type[Any] = str if default is None else type(default)
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, expected) and isinstance(value, bool) == (expected is bool)
    if not ok:
        raise ConfigError(f"{name}: expected {expected.__name__}, got {value!r}")
    return value
