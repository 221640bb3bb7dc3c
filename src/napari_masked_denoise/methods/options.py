"""Checks of method options, shared by every method.

A method declares ``checks = {"steps": integer(0), "lr": number(0, open_lo=True), ...}``;
:meth:`Method.check_options` runs them on the merged options before anything is built,
so a bad value (``-o steps=abc``, ``mask_ratio=1.5``) is a one-line error naming the
option, what it must be, and what it got.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.axes import DenoiseError

__all__ = ["Check", "integer", "number", "one_of", "check"]


@dataclass(frozen=True)
class Check:
    """What an option must be (``must``, for the message) and the test of a value."""

    must: str
    ok: Callable[[object], bool]


def _is_number(v) -> bool:
    import numbers

    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _numeric(v):
    """``v``, or the number a numeric string spells (methods convert with ``int()`` and
    ``float()``, which accept both)."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    """A whole number in ``[lo, hi]`` (either bound may be None)."""
    if hi is None:
        must = "a whole number" if lo is None else f"a whole number, {lo} or more"
    else:
        must = f"a whole number from {lo} to {hi}"
    return Check(
        must,
        lambda v: (
            _is_number(v) and int(v) == v and (lo is None or v >= lo) and (hi is None or v <= hi)
        ),
    )


def number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    open_lo: bool = False,
    open_hi: bool = False,
) -> Check:
    """A number between ``lo`` and ``hi``, bounds included unless ``open_lo``/``open_hi``."""
    if lo is not None and hi is not None:
        must = f"a number in {'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}"
    elif lo is not None:
        must = (
            f"a number {'above' if open_lo else 'at least'} {lo}"
            if lo != 0 or not open_lo
            else "positive"
        )
    else:
        must = "a number"

    def ok(v) -> bool:
        if not _is_number(v) or v != v:
            return False
        if lo is not None and (v <= lo if open_lo else v < lo):
            return False
        return hi is None or (v < hi if open_hi else v <= hi)

    return Check(must, ok)


def one_of(*values) -> Check:
    """One of ``values``."""
    return Check("one of " + ", ".join(repr(v) for v in values), lambda v: v in values)


def check(name: str, value, rule: Check) -> None:
    """Raise a one-line :class:`DenoiseError` unless ``value`` passes ``rule``."""
    if not (rule.ok(value) or rule.ok(_numeric(value))):
        raise DenoiseError(f"{name} must be {rule.must}, got {value!r}")
