"""valid_mask: the (N, L) mask of a padded batch, against torch's own padding of ragged pieces."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

import rnnkit.data.masks
from rnnkit import ShapeError
from rnnkit.data import pad, valid_mask
from rnnkit.metrics import accuracy, mse


def _ragged(lengths: list[int], width: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, width, generator=g) for n in lengths]


@pytest.mark.parametrize("lengths", [[3, 1, 4], [1], [2, 2], [5, 0, 2]])
def test_mask_equals_torch_padding_of_ones(lengths: list[int]) -> None:
    ones = [torch.ones(n, dtype=torch.bool) for n in lengths]
    expected = pad_sequence(ones, batch_first=True, padding_value=False)
    mask = valid_mask(torch.tensor(lengths))
    assert mask.shape == (len(lengths), max(lengths))
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_steps_widens_the_mask_with_padding() -> None:
    mask = valid_mask(torch.tensor([2, 1]), 5)
    assert mask.shape == (2, 5)
    assert mask.sum(dim=1).tolist() == [2, 1]
    assert not bool(mask[:, 2:].any())


def test_an_empty_batch_gives_an_empty_mask() -> None:
    assert valid_mask(torch.zeros(0, dtype=torch.int64)).shape == (0, 0)
    assert valid_mask(torch.zeros(0, dtype=torch.int64), 4).shape == (0, 4)


def test_mask_follows_the_lengths_device_or_the_given_one() -> None:
    lengths = torch.tensor([1, 2], dtype=torch.int32)
    assert valid_mask(lengths).device == lengths.device
    assert valid_mask(lengths, device="meta").device.type == "meta"


def test_masked_metrics_equal_the_metric_of_the_unpadded_pieces() -> None:
    pieces = _ragged([4, 1, 3])
    targets = _ragged([4, 1, 3])
    data = pad(pieces, [t * 2 for t in targets])
    assert data.lengths is not None
    assert data.y is not None
    mask = valid_mask(data.lengths, data.seq_len)
    expected = torch.nn.functional.mse_loss(torch.cat(pieces), torch.cat(targets) * 2)
    assert torch.allclose(mse(data.x, data.y, mask), expected)
    logits = torch.randn(3, data.seq_len, 5)
    labels = torch.randint(0, 5, (3, data.seq_len))
    kept = [(logits[i, :n].argmax(-1) == labels[i, :n]) for i, n in enumerate([4, 1, 3])]
    assert float(accuracy(logits, labels, mask)) == pytest.approx(
        float(torch.cat(kept).float().mean())
    )


@pytest.mark.parametrize("lengths", [torch.tensor([1.0, 2.0]), torch.tensor([True]), [1, 2]])
def test_non_integer_lengths_are_refused(lengths: object) -> None:
    with pytest.raises(TypeError, match=r"Expected `lengths` to be an integer tensor, but got"):
        valid_mask(lengths)  # type: ignore[arg-type]


def test_lengths_with_two_axes_are_refused_with_the_shape() -> None:
    message = "Expected `lengths` to have shape (N,), but got (2, 1). Hint: one length per sequence"
    with pytest.raises(ShapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        valid_mask(torch.tensor([[1], [2]]))


def test_negative_or_fractional_steps_are_refused() -> None:
    with pytest.raises(ValueError, match=r"Expected `steps` >= 0, but got -1"):
        valid_mask(torch.tensor([1]), -1)
    with pytest.raises(TypeError, match=r"Expected `steps` to be an int"):
        valid_mask(torch.tensor([1]), 2.0)  # type: ignore[arg-type]


def test_the_docstring_example_prints_what_it_shows() -> None:
    results = doctest.testmod(rnnkit.data.masks)
    assert results.attempted == 3  # the import lines and the call
    assert results.failed == 0


def test_metric_mask_hint_names_the_helper() -> None:
    with pytest.raises(ShapeError, match=r"rnnkit\.data\.valid_mask\(lengths, L\)"):
        mse(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.ones(3, 2, dtype=torch.bool))
