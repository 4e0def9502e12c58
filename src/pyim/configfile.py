"""Reading the daemons' TOML files (``pyim relay``, ``pyim server``): one error type
whose message names the file and the key, one way to read and build a config."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
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
