"""The argument checks and the shape formatter every layer shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit._validate import check_bool, check_int, check_number, check_optional_int, fmt_shape


def test_check_int_accepts_python_and_numpy_ints_only() -> None:
    assert check_int("n", 3, 1) == 3
    assert check_int("n", np.int64(3), 1) == 3
    with pytest.raises(TypeError, match=r"Expected `n` to be an int, but got True\."):
        check_int("n", True, 1)
    with pytest.raises(TypeError, match=r"but got 2\.0"):
        check_int("n", 2.0, 1)
    with pytest.raises(ValueError, match=r"Expected `n` >= 1, but got 0\."):
        check_int("n", 0, 1)


def test_check_number_and_check_bool() -> None:
    assert check_number("lr", 1, low=0) == 1.0
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        check_number("p", 1.5, low=0, high=1)
    with pytest.raises(ValueError, match="Expected `p` to be a number, but got nan"):
        check_number("p", float("nan"), low=0, high=1)
    with pytest.raises(TypeError, match="to be a number"):
        check_number("p", False)
    assert check_bool("flag", True) is True
    with pytest.raises(TypeError, match="to be a bool, but got int 1"):
        check_bool("flag", 1)


@pytest.mark.parametrize(
    ("shape", "text"),
    [
        ((128, 28, 28), "(128, 28, 28)"),
        ((5,), "(5,)"),
        ((), "()"),
        (torch.Size([2, 3]), "(2, 3)"),
        (torch.zeros(4, 1), "(4, 1)"),
        (np.zeros(7), "(7,)"),
    ],
)
def test_fmt_shape_renders_shapes_as_python_tuples(shape: object, text: str) -> None:
    assert fmt_shape(shape) == text  # type: ignore[arg-type]
    if type(shape) is tuple:
        assert text == repr(shape)


def test_check_optional_int_passes_none_and_checks_the_rest() -> None:
    assert check_optional_int("n", None, 1) is None
    assert check_optional_int("n", np.int64(4), 1) == 4
    with pytest.raises(TypeError, match=r"Expected `n` to be an int, but got 1\.5\."):
        check_optional_int("n", 1.5, 1)
    with pytest.raises(ValueError, match=r"Expected `n` >= 1, but got 0\."):
        check_optional_int("n", 0, 1)
