"""Variable-length sequences: padding into a dataset, a padding collate function, bucketing.

Sequences of different lengths are padded at the end to the longest one and carry their true
``lengths`` (``int64``, on the CPU), which rnnkit's models use to skip the padding. Batches of
similar lengths waste less compute on padding: :class:`BucketBatchSampler` groups them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Sampler

from rnnkit._validate import check_int, is_int
from rnnkit.data._checks import as_tensor, fmt_shape
from rnnkit.data._prepare import IGNORE_INDEX, _is_integer, _require_integer_labels
from rnnkit.data.dataset import Batch, SequenceDataset
from rnnkit.errors import ShapeError

__all__ = ["BucketBatchSampler", "collate_padded", "pad"]


def pad(
    sequences: Sequence[Tensor | Any],
    targets: Sequence[Any] | Tensor | Any | None = None,
    *,
    padding_value: float = 0.0,
) -> SequenceDataset:
    """Pad sequences of different lengths into one :class:`~rnnkit.data.SequenceDataset`.

    Args:
        sequences: N sequences, each a tensor, array or list of shape ``(L_i, H_in)`` or
            ``(L_i,)`` (one feature), with ``L_i >= 1``.
        targets: ``None``; N class labels (a sequence of ints or a ``(N,)`` tensor); N
            per-step targets of shape ``(L_i, H_y)`` or ``(L_i,)`` floating, one per sequence
            and of the same length, padded like the inputs; or N per-step class labels (a
            tagger's), each a 1-D integer tensor or array ``(L_i,)``, padded with
            :data:`~rnnkit.data.IGNORE_INDEX`.
        padding_value: The value written after each sequence's end.

    Returns:
        A dataset with ``lengths``; its batches are trimmed to their longest sequence.

    Raises:
        ValueError: No sequences, an empty sequence, or a target count differing from N.
        TypeError: Floating-point class labels (refused, not truncated).
        rnnkit.errors.ShapeError: Sequences with different feature sizes, a sequence with more
            than two axes, or a per-step target whose length differs from its sequence's.

    Shapes:
        - ``sequences[i]``: ``(L_i, H_in)`` or ``(L_i,)``.
        - ``targets``: ``(N,)``, or ``targets[i]``: ``(L_i, H_y)`` or ``(L_i,)``.
        - returns: ``x`` ``(N, max L_i, H_in)``, ``lengths`` ``(N,)``, ``y`` ``(N,)``,
          ``(N, max L_i)`` (labels per step) or ``(N, max L_i, H_y)``.
    """
    if len(sequences) == 0:
        raise ValueError("Expected `sequences` to hold at least one sequence, but it is empty.")
    xs = _sequences(sequences, "sequences")
    lengths = torch.tensor([len(x) for x in xs], dtype=torch.int64)
    x = pad_sequence(xs, batch_first=True, padding_value=padding_value)
    y = None if targets is None else _targets(targets, lengths, padding_value, "targets")
    return SequenceDataset(x, y, lengths)


def collate_padded(samples: Sequence[Any], padding_value: float = 0.0) -> Batch:
    """Collate samples of different lengths into a padded :class:`~rnnkit.data.Batch`.

    For ``DataLoader(..., collate_fn=collate_padded)``. Each sample is a sequence
    ``x_i``, or a tuple ``(x_i,)``, ``(x_i, y_i)`` or ``(x_i, y_i, length_i)`` (what a padded
    :class:`~rnnkit.data.SequenceDataset` with targets yields; the padding beyond the longest
    ``length_i`` is trimmed). A 2-tuple is always read as ``(x_i, y_i)``. Use
    ``functools.partial`` to set ``padding_value``.

    ``y_i`` is a class index ``()``, per-step targets ``(L_i, H_y)`` (or ``(L_i,)`` floating,
    one value per step), or, when it is a 1-D integer tensor or array ``(L_i,)``, a class
    label per step (a tagger's): these are padded with :data:`~rnnkit.data.IGNORE_INDEX`,
    not ``padding_value``, exactly as :meth:`~rnnkit.data.SequenceDataset.batch` gives them.

    Note:
        The batch is ``(x, y, lengths)``, rnnkit's order everywhere (see
        :class:`~rnnkit.data.Batch`), not the ``(x, lengths, y)`` some code bases use.

    Args:
        samples: The samples of one batch.
        padding_value: The value written after each sequence's end.

    Returns:
        ``Batch(x, y, lengths)`` with ``x`` in ``float32`` and ``lengths`` ``int64`` on the CPU.

    Raises:
        ValueError: No samples, an empty sequence, or lengths carried by some samples only.
        TypeError: Floating-point class indices ``y_i`` of shape ``()`` (refused, not
            truncated).
        rnnkit.errors.ShapeError: Mixed feature sizes, or a per-step target whose length
            differs from its sequence's.

    Shapes:
        - ``x_i``: ``(L_i, H_in)`` or ``(L_i,)``; ``y_i``: ``()``, ``(L_i,)`` or
          ``(L_i, H_y)``; ``length_i``: ``()``.
        - returns: ``x`` ``(N, max L_i, H_in)``; ``y`` ``(N,)`` ``int64``, ``(N, max L_i)``
          ``int64`` (labels per step) or ``(N, max L_i, H_y)`` ``float32``; ``lengths``
          ``(N,)``.
    """
    if len(samples) == 0:
        raise ValueError("Expected `samples` to hold at least one sample, but it is empty.")
    parts = [s if isinstance(s, (tuple, list)) else (s,) for s in samples]
    xs = _sequences([p[0] for p in parts], "samples[].x")
    given = [p[2] for p in parts if len(p) > 2]
    if given and len(given) != len(parts):
        raise ValueError(
            f"Expected every sample to carry its length or none to, but {len(given)} of "
            f"{len(parts)} do. Hint: samples of one dataset all have the same form."
        )
    lengths = torch.tensor([int(n) for n in given] if given else [len(x) for x in xs])
    steps = int(lengths.max())
    x = pad_sequence(xs, batch_first=True, padding_value=padding_value)[:, :steps].float()
    ys = [p[1] for p in parts if len(p) > 1]
    if not ys:
        return Batch(x, None, lengths)
    sizes = torch.tensor([len(s) for s in xs])
    y = _targets(ys, sizes, padding_value, "samples[].y")
    if y.dim() == 1:
        return Batch(x, y, lengths)
    return Batch(x, y[:, :steps].float() if y.dim() == 3 else y[:, :steps], lengths)


def _sequences(items: Sequence[Any], name: str) -> list[Tensor]:
    """Each item as a ``(L_i, H)`` tensor of one dtype, checked for sizes."""
    xs = [_sequence(item, f"{name}[{i}]") for i, item in enumerate(items)]
    width = xs[0].shape[1]
    for i, x in enumerate(xs):
        if x.shape[1] != width:
            raise ShapeError(
                f"Expected `{name}[{i}]` to have shape (L_i, H) = (?, {width}) like the first "
                f"sequence, but got {fmt_shape(x)}. Hint: every step needs the same features."
            )
    if len({x.dtype for x in xs}) > 1:
        xs = [x.float() for x in xs]
    return xs


def _sequence(item: Any, name: str) -> Tensor:
    t = torch.as_tensor(item) if isinstance(item, (list, tuple)) else as_tensor(item, name)
    if t.dim() not in (1, 2):
        raise ShapeError(
            f"Expected `{name}` to have shape (L, H) or (L,), but got {fmt_shape(t)}. Hint: "
            "pass the sequences one by one, without a batch axis."
        )
    if t.shape[0] == 0:
        raise ValueError(f"Expected `{name}` to have at least one step, but it is empty.")
    return t.unsqueeze(-1) if t.dim() == 1 else t


def _targets(targets: Any, lengths: Tensor, padding_value: float, name: str) -> Tensor:
    """Class labels ``(N,)``, per-step labels ``(N, max L_i)``, or targets ``(N, max L_i, H_y)``."""
    _check_count(targets, len(lengths), name)
    if isinstance(targets, (Tensor, np.ndarray)) and targets.ndim == 1:
        return _class_targets(as_tensor(targets, name))
    if all(_is_scalar(t) for t in targets):
        values = [t.item() if isinstance(t, (Tensor, np.ndarray)) else t for t in targets]
        return _class_targets(torch.tensor(values))
    tags = _tag_sequences(list(targets))
    if tags is not None:  # per-step class labels, padded as SequenceDataset.batch pads them
        return _padded_tags(tags, lengths, name)
    ys = _sequences(list(targets), name)
    _check_steps(ys, lengths, name)
    return pad_sequence(ys, batch_first=True, padding_value=padding_value)


def _class_targets(t: Tensor) -> Tensor:
    """Class labels ``(N,)`` as ``int64``; floating ones are refused, not truncated."""
    _require_integer_labels(t)
    return t.long()


def _tag_sequences(items: Sequence[Any]) -> list[Tensor] | None:
    """The items as ``int64`` tensors if each is per-step class labels ``(L_i,)``, else ``None``.

    A sample of a :class:`~rnnkit.data.SequenceDataset` with ``target_kind == "tag"`` holds
    such a ``y_i``; ``(L_i,)`` floating targets stay per-step values.
    """
    if not all(_is_tag_row(t) for t in items):
        return None
    return [as_tensor(t, "y").long() for t in items]


def _is_tag_row(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.dim() == 1 and _is_integer(value)
    return isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu"


def _padded_tags(tags: list[Tensor], lengths: Tensor, name: str) -> Tensor:
    """Per-step class labels padded with :data:`~rnnkit.data.IGNORE_INDEX` to ``(N, max L_i)``."""
    _check_count(tags, len(lengths), name)
    _check_steps(tags, lengths, name)
    return pad_sequence(tags, batch_first=True, padding_value=IGNORE_INDEX)


def _check_count(targets: Sized, n: int, name: str) -> None:
    if len(targets) != n:
        raise ValueError(
            f"Expected `{name}` to hold N = {n} targets (one per sequence), but got {len(targets)}."
        )


def _check_steps(ys: Sequence[Tensor], lengths: Tensor, name: str) -> None:
    for i, (y, length) in enumerate(zip(ys, lengths.tolist(), strict=True)):
        if len(y) != length:
            raise ShapeError(
                f"Expected `{name}[{i}]` to have {length} steps like its sequence, but got "
                f"{fmt_shape(y)}. Hint: per-step targets align with the inputs step by step."
            )


def _is_scalar(value: Any) -> bool:
    if isinstance(value, (Tensor, np.ndarray)):
        return value.ndim == 0
    return is_int(value) or isinstance(value, float)  # a float label is refused, by name


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose sequences have similar lengths, to limit padding.

    Each epoch the indices are shuffled, cut into buckets of ``bucket_size`` (rounded up to a
    multiple of ``batch_size``), sorted by length within each bucket (longest first), cut into
    batches, and the batches are shuffled. Without ``shuffle``, buckets follow the index order
    and batches keep theirs. Each pass draws from a generator seeded with ``seed + epoch``; the
    epoch counts passes, or is set with :meth:`set_epoch`.

    Use it as ``DataLoader(data, batch_sampler=sampler, collate_fn=collate_padded)`` or, on the
    fast path, ``data.batch(torch.tensor(indices))`` for each ``indices`` it yields.

    Args:
        lengths: The sequence lengths, or a :class:`~rnnkit.data.SequenceDataset` (its
            ``lengths``, or all ``seq_len`` when it has none).
        batch_size: Samples per batch.
        shuffle: Shuffle the samples and the batches each epoch.
        drop_last: Drop the final batch when it is smaller than ``batch_size``.
        bucket_size: Samples sorted together; default ``50 * batch_size``. Larger buckets pad
            less and shuffle less.
        seed: Base seed of the shuffles.

    Raises:
        ValueError: No lengths, a length below 1, ``batch_size`` or ``bucket_size`` below 1.
        TypeError: Lengths that are not integers.

    Shapes:
        - ``lengths``: ``(N,)``.
    """

    def __init__(
        self,
        lengths: SequenceDataset | torch.Tensor | Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        bucket_size: int | None = None,
        seed: int = 0,
    ) -> None:
        self.lengths = _lengths_of(lengths)
        self.batch_size = check_int("batch_size", batch_size, 1)
        bucket = check_int(
            "bucket_size", 50 * self.batch_size if bucket_size is None else bucket_size, 1
        )
        self.bucket_size = math.ceil(bucket / self.batch_size) * self.batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.epoch = check_int("seed", seed, 0), 0

    def set_epoch(self, epoch: int) -> None:
        """Use ``seed + epoch`` for the next pass (as with ``DistributedSampler``)."""
        self.epoch = check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        n = len(self.lengths)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        batches: list[Tensor] = []
        for bucket in torch.split(order, self.bucket_size):
            ranked = bucket[torch.argsort(self.lengths[bucket], descending=True, stable=True)]
            batches.extend(torch.split(ranked, self.batch_size))
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return iter([b.tolist() for b in batches])


def _lengths_of(lengths: SequenceDataset | Tensor | Sequence[int]) -> Tensor:
    if isinstance(lengths, SequenceDataset):
        given = lengths.lengths
        return given if given is not None else torch.full((len(lengths),), lengths.seq_len)
    given = torch.as_tensor(lengths)
    if given.numel() == 0:
        raise ValueError("Expected `lengths` to hold at least one length, but it is empty.")
    if not _is_integer(given):
        raise TypeError(
            f"Expected `lengths` to hold integers, but got dtype {given.dtype}. Hint: lengths "
            "count steps; a dataset's own lengths come with BucketBatchSampler(dataset, ...)."
        )
    t = given.to(torch.int64).flatten()
    if bool((t < 1).any()):
        first = int((t < 1).nonzero()[0])
        raise ValueError(
            f"Expected every length >= 1, but `lengths[{first}]` is {int(t[first])}. Hint: "
            "drop empty sequences first; each length counts a sequence's steps."
        )
    return t
