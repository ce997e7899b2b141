"""The Trainer's epoch sums (``rnnkit.training._totals.EpochTotals``) are exact float64 sums."""

from __future__ import annotations

import math

import torch

from rnnkit.training._totals import EpochTotals


def test_sums_equal_an_exact_float64_sum_of_the_steps() -> None:
    values = torch.rand(469, generator=torch.Generator().manual_seed(0)) * 1000
    totals = EpochTotals()
    for value in values:
        totals.add("loss", value, 128)
    total, count = totals.sums()["loss"]
    assert total == math.fsum(float(v) for v in values.double())
    assert count == 469 * 128


def test_mixed_dtypes_are_each_converted_exactly() -> None:
    big = 2**40 + 1  # not representable in bfloat16 or float32
    totals = EpochTotals()
    totals.add("n", torch.tensor(big), 1.0)
    totals.add("n", torch.tensor(1.5, dtype=torch.bfloat16), 1.0)
    assert totals.sums()["n"] == (big + 1.5, 2.0)
