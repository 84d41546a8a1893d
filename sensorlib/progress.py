"""How long set-up steps (fetching jars, starting a server) report progress: a
:data:`Progress` callable takes one line of text; :func:`quiet` says nothing."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress", "quiet"]

#: Called with one line of text per step.
Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """Progress that says nothing (the default of every step that takes one)."""
