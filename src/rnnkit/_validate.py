"""Argument checks and shape formatting shared by every layer (imports nothing from rnnkit).

Each check raises the error a user would expect (:class:`TypeError` for the wrong type,
:class:`ValueError` for a value out of range) with the argument's name, what was expected and
what came, so that every layer words the same mistake the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["check_bool", "check_int", "check_number", "check_optional_int", "fmt_shape", "is_int"]


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (a Python or NumPy int; a bool is not)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int, or raise unless it is an integer >= ``minimum``.

    Raises:
        TypeError: ``value`` is not an integer (a bool is not).
        ValueError: ``value`` < ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"Expected `{name}` to be an int, but got {value!r}.")
    number = int(value)
    if number < minimum:
        raise ValueError(f"Expected `{name}` >= {minimum}, but got {number}.")
    return number


def check_optional_int(name: str, value: object, minimum: int) -> int | None:
    """``None`` (an option turned off), or ``value`` checked as :func:`check_int` checks it."""
    return None if value is None else check_int(name, value, minimum)


def check_number(
    name: str, value: object, *, low: float = -math.inf, high: float = math.inf
) -> float:
    """Return ``value`` as a float, or raise unless it is a number in ``[low, high]``.

    Raises:
        TypeError: ``value`` is not a real number (a bool is not).
        ValueError: ``value`` is NaN or outside ``[low, high]``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"Expected `{name}` to be a number, but got {value!r}.")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"Expected `{name}` to be a number, but got {value!r}.")
    if not low <= number <= high:
        raise ValueError(f"Expected `{name}` in [{low}, {high}], but got {value!r}.")
    return number


def check_bool(name: str, value: object) -> bool:
    """Return ``value``, or raise :class:`TypeError` unless it is a bool."""
    if not isinstance(value, bool):
        raise TypeError(
            f"Expected `{name}` to be a bool, but got {type(value).__name__} {value!r}."
        )
    return value


def fmt_shape(shape: Iterable[Any]) -> str:
    """Render a shape as Python renders a tuple: ``(128, 28, 28)``, ``(128,)``, ``()``.

    Takes any sequence of sizes (a :class:`torch.Size` included) or an object with a
    ``.shape`` (a tensor or an array).
    """
    sizes = getattr(shape, "shape", shape)
    parts = [str(int(size)) for size in sizes]
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"
