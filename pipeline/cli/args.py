"""What argparse cannot parse alone: comma-separated lists, with one clear error for a bad item."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import degradations as D

T = TypeVar("T")


def items(text: str | None) -> list[str]:
    """`a, b,,c` -> ["a", "b", "c"]; None or "" -> []."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def numbers(text: str, kind: Callable[[str], T], flag: str) -> list[T]:
    """Comma-separated numbers of `kind` (int or float); UserError naming `flag` for one that is not."""
    try:
        return [kind(part) for part in items(text)]
    except ValueError:
        raise D.UserError(f"{flag} wants comma-separated {kind.__name__}s such as {'0.2,0.6' if kind is float else '1000,600'}; got {text!r}") from None
