"""`SequenceDataset`, the compact in-memory sequence store every adapter returns, and `Batch`.

A :class:`SequenceDataset` keeps its inputs in the dtype they came in (MNIST's ``uint8`` pixels
stay ``uint8``: 47 MB for the training set instead of 188 MB as ``float32``) and converts to
``float32``, scales and normalises one batch at a time. :meth:`SequenceDataset.batch` draws a
whole batch by index with a handful of tensor operations and no per-sample Python, which is the
Trainer's fast path; ``len`` and ``__getitem__`` make it a plain map-style dataset as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnkit._validate import check_int
from rnnkit.data._checks import as_indices, check_index, fmt_shape
from rnnkit.data._prepare import (
    _prepare_affine,
    _prepare_classes,
    _prepare_lengths,
    _prepare_scale,
    _prepare_x,
    _prepare_y,
)
from rnnkit.data.labels import decode_labels

__all__ = ["Batch", "SequenceDataset", "TargetKind"]

TargetKind = Literal["class", "step", "tag"]
"""What a dataset's targets are: class indices ``(N,)``, per-step values ``(N, L_y, H_y)``, or
per-step class indices ``(N, L)`` (``"tag"``, for a :class:`~rnnkit.SequenceTagger`)."""


class Batch(NamedTuple):
    """One batch of sequences: inputs, targets and lengths, in that order.

    The order is ``(x, y, lengths)`` everywhere in rnnkit, so ``x, y, lengths = batch`` works for
    every batch a :class:`SequenceDataset` or :func:`~rnnkit.data.collate_padded` produces.

    Shapes:
        - ``x``: ``(N, L, H_in)``, ``float32``, on the dataset's device.
        - ``y``: class indices ``(N,)`` (``int64``), per-step targets ``(N, L_y, H_y)``
          (``float32``), per-step class indices ``(N, L)`` (``int64``), or ``None`` for a
          dataset without targets.
        - ``lengths``: ``(N,)``, ``int64``, always on the CPU (as
          ``torch.nn.utils.rnn.pack_padded_sequence`` requires), or ``None`` when every
          sequence is ``L`` steps long.
    """

    x: Tensor
    y: Tensor | None = None
    lengths: Tensor | None = None


class SequenceDataset(Dataset[tuple[Tensor, ...]]):
    """Sequences ``x`` with optional targets ``y`` and ``lengths``, stored compactly.

    Inputs keep their integer dtype in memory (``float64`` is stored as ``float32``); each batch
    is converted to ``float32`` and then, in this order, multiplied by ``scale``, shifted by
    ``mean`` and divided by ``std``: ``((x.float() * scale) - mean) / std``. With
    ``scale=1/255`` the scaling is computed as a division by 255, bit for bit what
    ``torchvision.transforms.ToTensor`` does, and the normalisation matches
    ``torchvision.transforms.Normalize``.

    Args:
        x: Input sequences, a :class:`torch.Tensor` or :class:`numpy.ndarray` of shape
            ``(N, L, H_in)``.
        y: Targets: integer class indices of shape ``(N,)``, per-step targets of shape
            ``(N, L_y, H_y)`` (usually ``L_y = L``; converted to ``float32``), integer
            per-step class indices of shape ``(N, L)`` (-100 marks a step to skip; steps
            beyond a sequence's length are stored as -100, whatever they held), or ``None``.
        lengths: For padded variable-length data, the true length of each sequence, integers in
            ``[1, L]`` of shape ``(N,)``; ``None`` when every sequence has ``L`` steps.
        scale: Multiplier applied to the ``float32`` inputs, e.g. ``1/255`` for pixels.
        mean: Subtracted after scaling: a number or one value per feature (``H_in`` values).
        std: Divides after the mean: a positive number or one value per feature.
        num_classes: The number of classes C for class targets (per sequence or per step); by
            default the largest label plus one (or ``len(classes)``). Labels must lie in ``[0, C)``.
        classes: For class targets, the original label of each class index (``classes[k]`` is
            the label encoded as ``k``), kept so that predictions can be mapped back with
            :meth:`decode`; :func:`~rnnkit.data.from_arrays` sets it.

    Raises:
        rnnkit.errors.ShapeError: ``x``, ``y`` or ``lengths`` has the wrong number of
            dimensions, or ``y``/``lengths`` a different count than ``x``.
        ValueError: An empty dataset, NaN or infinite values (the first offending index is
            named), labels outside ``[0, num_classes)``, lengths outside ``[1, L]``, or a
            non-positive ``scale``/``std``.
        TypeError: An argument of the wrong type, e.g. floating-point class labels.

    Shapes:
        - ``x``: ``(N, L, H_in)``.
        - ``y``: ``(N,)``, ``(N, L_y, H_y)`` or ``(N, L)``.
        - ``lengths``: ``(N,)``.
        - ``mean``, ``std``: ``()``, ``(1,)`` or ``(H_in,)``.

    Example:
        >>> import torch
        >>> from rnnkit import SequenceDataset
        >>> pixels = torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8)
        >>> data = SequenceDataset(pixels, torch.randint(0, 10, (100,)), scale=1 / 255)
        >>> x, y, lengths = data.batch(torch.arange(32))
        >>> x.shape, x.dtype, y.shape, lengths
        (torch.Size([32, 28, 28]), torch.float32, torch.Size([32]), None)
    """

    def __init__(
        self,
        x: Any,
        y: Any | None = None,
        lengths: Any | None = None,
        *,
        scale: float | None = None,
        mean: float | Sequence[float] | torch.Tensor | None = None,
        std: float | Sequence[float] | torch.Tensor | None = None,
        num_classes: int | None = None,
        classes: Sequence[Any] | np.ndarray[Any, Any] | None = None,
    ) -> None:
        self._x = _prepare_x(x)
        n, seq_len, input_size = self._x.shape
        self._classes = _prepare_classes(classes, y)
        if self._classes is not None and num_classes is None:
            num_classes = len(self._classes)
        self._lengths = _prepare_lengths(lengths, n, seq_len)
        self._y, self._num_classes = _prepare_y(y, n, seq_len, num_classes, self._lengths)
        if self._classes is not None and len(self._classes) != self._num_classes:
            raise ValueError(
                f"Expected `classes` to hold num_classes = {self._num_classes} labels, one per "
                f"class index, but it holds {len(self._classes)}."
            )
        self._scale = _prepare_scale(scale)
        self._mean = _prepare_affine(mean, "mean", input_size, self._x.device, positive=False)
        self._std = _prepare_affine(std, "std", input_size, self._x.device, positive=True)

    # -- construction without re-validation (subsets, device moves) -------------------------

    def _replace(self, x: Tensor, y: Tensor | None, lengths: Tensor | None) -> SequenceDataset:
        """A dataset over new storage with this one's conversion and class count."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._x, new._y, new._lengths = x, y, lengths
        return new

    # -- the map-style protocol ---------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._x.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        """One sample, converted like a batch: ``(x_i,)`` then ``y_i`` and ``length_i`` if set.

        The sample is never trimmed, so a plain :class:`~torch.utils.data.DataLoader` can stack
        samples of a padded dataset. ``y`` and ``lengths`` appear only when the dataset has
        them: ``(x_i, y_i)`` for a labelled dataset, ``(x_i, y_i, length_i)`` with lengths.

        Shapes:
            - ``x_i``: ``(L, H_in)``; ``y_i``: ``()`` or ``(L_y, H_y)``; ``length_i``: ``()``.
        """
        i = check_index(index, len(self))
        batch = self._gather(torch.tensor([i]), trim=False)
        return tuple(t[0] for t in batch if t is not None)

    def batch(self, indices: Tensor | Sequence[int]) -> Batch:
        """The samples at ``indices`` as one :class:`Batch`, with no per-sample Python.

        A padded dataset's batch is trimmed to the longest sequence it holds (per-step targets
        of the same length too), so batches of similar lengths (see
        :class:`~rnnkit.data.BucketBatchSampler`) waste little compute on padding.

        Args:
            indices: Non-negative sample indices, e.g. a slice of ``torch.randperm(N)``, or a
                boolean mask with one flag per sample, which selects the samples where it is
                true (as in numpy).

        Raises:
            IndexError: An index outside ``[0, N)``, or a boolean mask whose length is not the
                dataset's.
            TypeError: Fractional indices (refused, not truncated).
            rnnkit.errors.ShapeError: Indices with more than one axis.

        Shapes:
            - ``indices``: ``(B,)``, or ``(N,)`` for a mask.
            - returns: ``x`` ``(B, L, H_in)``; ``y`` ``(B,)`` or ``(B, L_y, H_y)``; ``lengths``
              ``(B,)``, see :class:`Batch`.
        """
        return self._gather(as_indices(indices, len(self)), trim=True)

    def _gather(self, idx: Tensor, *, trim: bool) -> Batch:
        lengths = None if self._lengths is None else self._lengths[idx.cpu()]
        steps = self.seq_len
        if trim and lengths is not None and lengths.numel() > 0:
            steps = int(lengths.max())
        if idx.device != self._x.device:
            idx = idx.to(self._x.device)
        x = self._convert(self._x[:, :steps].index_select(0, idx))
        return Batch(x, self._gather_y(idx, steps), lengths)

    def _gather_y(self, idx: Tensor, steps: int) -> Tensor | None:
        if self._y is None or self._y.dim() == 1:
            return None if self._y is None else self._y.index_select(0, idx)
        y = self._y[:, :steps] if self._y.shape[1] == self.seq_len else self._y
        y = y.index_select(0, idx)
        return y if self._y.dim() == 2 else y.float()

    def _convert(self, raw: Tensor) -> Tensor:
        """``raw`` (a fresh tensor, safe to modify) as scaled, normalised ``float32``."""
        x = self._scaled(raw)
        if self._mean is not None:
            x.sub_(self._mean)
        if self._std is not None:
            x.div_(self._std)
        return x

    def _scaled(self, raw: Tensor) -> Tensor:
        """``raw`` in ``float32`` times ``scale``; one pass over integer storage."""
        if self._scale is None:
            return raw.float()
        divisor = 1.0 / self._scale  # 1 / (1/255) == 255.0 exactly: ToTensor's division
        if raw.is_floating_point():
            return raw.float().div_(divisor)
        return torch.div(raw, divisor).float()  # integer / float is float32: no extra copy

    # -- labels -----------------------------------------------------------------------------

    @property
    def classes(self) -> np.ndarray[Any, Any] | None:
        """The original label of every class index (``classes[k]`` is class ``k``), or ``None``.

        Set by :func:`~rnnkit.data.from_arrays` and :func:`~rnnkit.data.from_dataframe` when they
        encode labels; pass it to them as ``classes=`` to encode a test set the same way.

        Shapes:
            - returns: ``(C,)``.
        """
        return self._classes

    def decode(self, indices: Tensor | np.ndarray[Any, Any] | Sequence[int] | int) -> Any:
        """Map class indices (e.g. ``model.predict(x)``) back to the original labels.

        Args:
            indices: Class indices in ``[0, C)``: a tensor, an array, a list or one int.

        Returns:
            A :class:`numpy.ndarray` of labels with the shape of ``indices`` (one label for an
            int).

        Raises:
            ValueError: The dataset has no ``classes``, or an index lies outside ``[0, C)``.
            TypeError: ``indices`` are not integers (class scores go through ``argmax(-1)``).

        Shapes:
            - ``indices``: any shape, e.g. ``(N,)``; returns the same shape.
        """
        if self._classes is None:
            raise ValueError(
                "This dataset has no `classes` to decode with. Hint: build it with "
                "rnnkit.data.from_arrays(x, labels) or pass `classes=` to SequenceDataset."
            )
        return decode_labels(indices, self._classes)

    # -- derived datasets ---------------------------------------------------------------------

    def subset(self, indices: Tensor | Sequence[int]) -> SequenceDataset:
        """A new dataset holding copies of the samples at ``indices``, converted the same way.

        Args:
            indices: Sample indices, or a boolean mask with one flag per sample, which selects
                the samples where it is true (as in numpy).

        Raises:
            ValueError: ``indices`` selects no sample.
            IndexError: An index outside ``[0, N)``, or a boolean mask whose length is not the
                dataset's.
            TypeError: Fractional indices.

        Shapes:
            - ``indices``: ``(M,)``, or ``(N,)`` for a mask; returns a dataset of M samples.
        """
        idx = as_indices(indices, len(self))
        if idx.numel() == 0:
            raise ValueError("Expected `indices` to select at least one sample, but it is empty.")
        dev = idx.to(self._x.device)
        y = None if self._y is None else self._y.index_select(0, dev)
        lengths = None if self._lengths is None else self._lengths[idx.cpu()]
        return self._replace(self._x.index_select(0, dev), y, lengths)

    def split(
        self, fraction_or_sizes: float | tuple[int, int], seed: int = 0
    ) -> tuple[SequenceDataset, SequenceDataset]:
        """Split at random into two datasets, e.g. training and validation.

        Args:
            fraction_or_sizes: The first part's share of the samples, in ``(0, 1)`` (rounded to
                a whole number of samples), or the two parts' sizes, summing to ``len(self)``.
            seed: Seed of the shuffle; the same seed gives the same split.

        Returns:
            The two parts, each converted like this dataset and with the same ``num_classes``.

        Raises:
            ValueError: A part would be empty, or the sizes do not add up.
            TypeError: ``fraction_or_sizes`` is neither a float nor a pair of ints.
        """
        first, _ = _split_sizes(fraction_or_sizes, len(self))
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.subset(perm[:first]), self.subset(perm[first:])

    def with_normalization(
        self,
        mean: float | Sequence[float] | Tensor | None,
        std: float | Sequence[float] | Tensor | None,
    ) -> SequenceDataset:
        """A dataset over the same storage, normalised with ``mean`` and ``std`` instead.

        Each batch becomes ``((x.float() * scale) - mean) / std``; ``None`` drops that part.
        :meth:`rnnkit.data.Standardizer.apply` uses it with statistics fitted on training data.

        Raises:
            ValueError: ``mean`` or ``std`` is neither one number nor H_in numbers, is not
                finite, or ``std`` is not positive.

        Shapes:
            - ``mean``, ``std``: ``()``, ``(1,)`` or ``(H_in,)``.
        """
        new = self._replace(self._x, self._y, self._lengths)
        size, device = self.input_size, self._x.device
        new._mean = _prepare_affine(mean, "mean", size, device, positive=False)
        new._std = _prepare_affine(std, "std", size, device, positive=True)
        return new

    def to(self, device: torch.device | str) -> SequenceDataset:
        """A copy with ``x``, ``y`` and the normalisation on ``device``; lengths stay on the CPU.

        Worth it for small data sets on a GPU: every batch is then gathered on the device.
        """
        new = self._replace(
            self._x.to(device), None if self._y is None else self._y.to(device), self._lengths
        )
        new._mean = None if self._mean is None else self._mean.to(device)
        new._std = None if self._std is None else self._std.to(device)
        return new

    # -- properties ---------------------------------------------------------------------------

    @property
    def x(self) -> Tensor:
        """The stored inputs, in their compact dtype, before conversion. Shape ``(N, L, H_in)``."""
        return self._x

    @property
    def y(self) -> Tensor | None:
        """The stored targets (``(N,)`` or ``(N, L)`` ``int64`` labels, or ``(N, L_y, H_y)``)."""
        return self._y

    @property
    def lengths(self) -> Tensor | None:
        """The ``int64`` CPU tensor of sequence lengths, shape ``(N,)``, or ``None``."""
        return self._lengths

    @property
    def scale(self) -> float | None:
        """The multiplier applied to each batch, or ``None``."""
        return self._scale

    @property
    def mean(self) -> Tensor | None:
        """The per-feature mean subtracted from each batch, shape ``(H_in,)``, or ``None``."""
        return self._mean

    @property
    def std(self) -> Tensor | None:
        """The per-feature divisor of each batch, shape ``(H_in,)``, or ``None``."""
        return self._std

    @property
    def input_size(self) -> int:
        """H_in, the number of features per step."""
        return int(self._x.shape[2])

    @property
    def seq_len(self) -> int:
        """L, the (padded) number of steps per sequence."""
        return int(self._x.shape[1])

    @property
    def target_kind(self) -> TargetKind | None:
        """``"class"`` (``y`` is ``(N,)``), ``"step"`` (``(N, L_y, H_y)``), ``"tag"`` (``(N, L)``).

        ``None`` without targets.
        """
        if self._y is None:
            return None
        kinds: tuple[TargetKind, ...] = ("class", "tag", "step")
        return kinds[self._y.dim() - 1]

    @property
    def num_classes(self) -> int | None:
        """C for class targets, per sequence or per step (given, or the largest label plus one).

        ``None`` for per-step values.
        """
        return self._num_classes

    @property
    def target_size(self) -> int | None:
        """H_y for per-step targets; ``None`` otherwise."""
        return int(self._y.shape[2]) if self._y is not None and self._y.dim() == 3 else None

    @property
    def device(self) -> torch.device:
        """The device holding ``x`` (and ``y``)."""
        return self._x.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored tensors (inputs, targets, lengths, normalisation)."""
        held = (self._x, self._y, self._lengths, self._mean, self._std)
        return sum(t.numel() * t.element_size() for t in held if t is not None)

    def __repr__(self) -> str:
        described = "none"
        if self._y is not None and self._y.dim() < 3:
            described = f"{self.target_kind} (C={self._num_classes})"
        elif self._y is not None:
            described = f"step {fmt_shape(self._y.shape[1:])}"
        return (
            f"SequenceDataset(N={len(self)}, L={self.seq_len}, H_in={self.input_size}, "
            f"x={str(self._x.dtype).removeprefix('torch.')}, targets={described}, "
            f"lengths={'yes' if self._lengths is not None else 'no'}, "
            f"{self.nbytes / 1e6:.1f} MB, device={self.device})"
        )


# -- argument preparation ---------------------------------------------------------------------


def _split_sizes(fraction_or_sizes: Any, n: int) -> tuple[int, int]:
    arg = fraction_or_sizes
    if isinstance(arg, float):
        if not 0.0 < arg < 1.0:
            raise ValueError(f"Expected `fraction_or_sizes` in (0, 1), but got {arg}.")
        first = round(n * arg)
    elif isinstance(arg, (tuple, list)) and len(arg) == 2:
        first = check_int("fraction_or_sizes[0]", arg[0], 1)
        if check_int("fraction_or_sizes[1]", arg[1], 1) + first != n:
            raise ValueError(f"Expected the sizes {tuple(arg)} to add up to {n}, the dataset size.")
    else:
        raise TypeError(
            "Expected `fraction_or_sizes` to be a float in (0, 1) or a pair of sizes, but got "
            f"{arg!r}."
        )
    if not 0 < first < n:
        raise ValueError(
            f"Splitting {n} samples by {arg!r} leaves a part empty. Hint: each part needs at "
            "least one sample."
        )
    return first, n - first
