"""Where the Trainer's batches come from: the fast indexed path and any iterable of batches.

:func:`as_source` turns what a user passes to ``fit``/``evaluate``/``predict`` into a
:class:`BatchSource`:

- a :class:`~rnnkit.data.SequenceDataset`, or an ``(x, y)`` / ``(x, y, lengths)`` pair of
  tensors or NumPy arrays (wrapped in one), gives an :class:`IndexedSource`: each epoch draws
  one permutation and gathers whole batches by index with
  :meth:`~rnnkit.data.SequenceDataset.batch` (no per-sample ``__getitem__``, no collate);
- a :class:`~torch.utils.data.DataLoader` or any re-iterable of batches gives an
  :class:`IterableSource`; each item is a :class:`~rnnkit.data.Batch`, an ``(x, y)`` or
  ``(x, y, lengths)`` tuple, a mapping with those keys, or a bare ``x`` tensor.

:func:`to_device` moves one batch in one go (pinned memory and ``non_blocking`` on CUDA).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit.data import Batch, SequenceDataset
from rnnkit.tasks import DataInfo, info_from_batch

__all__ = [
    "BatchCheck",
    "BatchSource",
    "IndexedSource",
    "IterableSource",
    "as_source",
    "input_dtype",
    "to_device",
]


BatchCheck = Callable[[Batch, int], None]
"""Checks one batch drawn from an iterable source: ``check(batch, index)``; raises when bad."""


class BatchSource:
    """Base class: a re-iterable supply of :class:`~rnnkit.data.Batch` for every epoch.

    Args:
        name: The argument the data came in (``"train"``, ``"val"``, ...), for messages.
    """

    #: Whether the Trainer may draw its own order (only the indexed path).
    shuffleable: bool = False

    def __init__(self, name: str) -> None:
        self.name = name

    def num_batches(self, batch_size: int) -> int | None:
        """Batches per epoch, or ``None`` when unknown (an iterable without ``len``)."""
        raise NotImplementedError

    def batches(
        self, batch_size: int, order: Tensor | None = None, start: int = 0
    ) -> Iterator[Batch]:
        """The epoch's batches, skipping the first ``start`` (when resuming mid-epoch).

        Args:
            batch_size: Sequences per batch (ignored by iterable sources).
            order: A permutation of the sample indices, or ``None`` for the stored order.
            start: Batches to skip.

        Shapes:
            - ``order``: ``(num_samples,)``.
        """
        raise NotImplementedError

    def limited(self, batches: int, batch_size: int) -> BatchSource:
        """The same data cut to its first ``batches`` batches."""
        raise NotImplementedError

    def info(self) -> DataInfo:
        """What the source holds (a :class:`~rnnkit.tasks.DataInfo`), from its first batch."""
        raise NotImplementedError


MAX_GROUP = 16
"""The most batches :meth:`IndexedSource.gather` gathers at once."""

GROUP_BYTES = 16 * 2**20
"""About the most bytes of float32 input (and per-step targets) one grouped gather makes."""


def _step_target_size(data: SequenceDataset) -> int:
    """L_y · H_y of per-step targets (0 for class targets or none): a sample's target values."""
    y = data.y
    return int(y[0].numel()) if data.target_kind == "step" and y is not None else 0


class IndexedSource(BatchSource):
    """The fast path: whole batches gathered by index from a :class:`SequenceDataset`.

    Args:
        dataset: The data.
        name: The argument's name, for messages.
        limit: Use only the first ``limit`` sequences (``overfit_batches``, ``fast_dev_run``).
    """

    shuffleable = True

    def __init__(self, dataset: SequenceDataset, name: str, limit: int | None = None) -> None:
        super().__init__(name)
        self.dataset = dataset
        self.num_samples = len(dataset) if limit is None else min(limit, len(dataset))

    def num_batches(self, batch_size: int) -> int:
        """``ceil(num_samples / batch_size)``: the last batch may be smaller."""
        return -(-self.num_samples // batch_size)

    def batches(
        self, batch_size: int, order: Tensor | None = None, start: int = 0
    ) -> Iterator[Batch]:
        """The batches of ``order`` (or ``0..n-1``), gathered by :meth:`gather`.

        ``order`` may also be a part of the indices (a process's part under DDP).
        """
        indices = torch.arange(self.num_samples) if order is None else order
        rest = indices[start * batch_size :]
        yield from self.gather(list(torch.split(rest, batch_size)) if rest.numel() else [])

    def gather(self, parts: list[Tensor]) -> Iterator[Batch]:
        """One batch per index tensor of ``parts``, several gathered at once.

        A training loop pays for each gather far more than its copying costs (its threads and
        caches are cold after every step), so up to :data:`MAX_GROUP` batches (about
        :data:`GROUP_BYTES` of input at most) are gathered together and handed out as views
        of the group's tensors: the values are the same, and a batch kept by a callback
        keeps its group alive, never sees it change. A padded dataset (with ``lengths``) is
        gathered batch by batch, since each batch is trimmed to its own longest sequence.

        Shapes:
            - ``parts[i]``: ``(N_i,)``, ``N_i >= 1``; the i-th batch holds ``N_i`` sequences.
        """
        group = self._group_size(max((part.numel() for part in parts), default=1))
        for first in range(0, len(parts), group):
            yield from self._gather_group(parts[first : first + group])

    def _group_size(self, batch_size: int) -> int:
        if self.dataset.lengths is not None:
            return 1
        data = self.dataset
        sample_bytes = 4 * (data.seq_len * data.input_size + _step_target_size(data))
        return max(1, min(MAX_GROUP, GROUP_BYTES // max(1, batch_size * sample_bytes)))

    def _gather_group(self, parts: list[Tensor]) -> Iterator[Batch]:
        if len(parts) == 1:
            yield self.dataset.batch(parts[0])
            return
        sizes = [part.numel() for part in parts]
        x, y, _ = self.dataset.batch(torch.cat(parts))
        ys = [None] * len(parts) if y is None else torch.split(y, sizes)
        for xb, yb in zip(torch.split(x, sizes), ys, strict=True):
            yield Batch(xb, yb, None)

    def limited(self, batches: int, batch_size: int) -> IndexedSource:
        """The first ``batches * batch_size`` sequences."""
        return IndexedSource(self.dataset, self.name, batches * batch_size)

    def info(self) -> DataInfo:
        """Layout from the first sequences; L, padding and ``num_classes`` over the whole set."""
        data = self.dataset
        first = data.batch(torch.arange(min(2, self.num_samples)))
        info = info_from_batch(first, data.num_classes, self.name)
        full = data.lengths is None or bool((data.lengths == data.seq_len).all())
        target_len = (
            info.target_len
            if data.target_kind not in ("step", "tag") or data.y is None
            else int(data.y.shape[1])
        )
        return dataclasses.replace(
            info, seq_len=data.seq_len, full_length=full, target_len=target_len
        )


class IterableSource(BatchSource):
    """Batches from a :class:`~torch.utils.data.DataLoader` or another re-iterable.

    Args:
        iterable: Iterated once per epoch, in its own order (a DataLoader's sampler).
        name: The argument's name, for messages.
        limit: Yield at most ``limit`` batches per epoch.
    """

    def __init__(
        self,
        iterable: Iterable[Any],
        name: str,
        limit: int | None = None,
        check: BatchCheck | None = None,
    ) -> None:
        super().__init__(name)
        self.iterable = iterable
        self.limit = limit
        self.check = check

    def num_batches(self, batch_size: int) -> int | None:
        """``len(iterable)`` (capped by the limit), or ``None``."""
        try:
            n = len(self.iterable)  # type: ignore[arg-type]
        except TypeError:
            return self.limit
        return n if self.limit is None else min(n, self.limit)

    def batches(
        self, batch_size: int, order: Tensor | None = None, start: int = 0
    ) -> Iterator[Batch]:
        """Iterate the source afresh, skipping ``start`` batches, converting each item.

        Each batch is checked with :attr:`check` (when set) as it is drawn, before any step
        runs on it.
        """
        items: Iterator[Any] = iter(self.iterable)
        for index, item in enumerate(itertools.islice(items, start, self.limit), start):
            batch = as_batch(item, self.name, index)
            if self.check is not None:
                self.check(batch, index)
            yield batch

    def limited(self, batches: int, batch_size: int) -> IterableSource:
        """At most ``batches`` batches per epoch."""
        return IterableSource(self.iterable, self.name, batches, self.check)

    def info(self) -> DataInfo:
        """Layout and labels of the first batch the iterable yields.

        Raises:
            ValueError: If the iterable yields nothing.
        """
        for item in itertools.islice(self.iterable, 1):
            return info_from_batch(as_batch(item, self.name, 0), None, self.name)
        raise ValueError(
            f"Expected `{self.name}` to yield at least one batch, but it is empty. Hint: check "
            "the dataset behind the DataLoader (and drop_last with a small dataset)."
        )


def as_batch(item: Any, name: str = "data", index: int = 0) -> Batch:
    """Convert one item of an iterable source into a :class:`~rnnkit.data.Batch`.

    NumPy arrays become tensors, every tensor is detached from any autograd graph (data are
    constants to the model), ``x`` becomes floating point and integer labels ``int64``.

    Args:
        item: The item the iterable yielded.
        name: The argument the data came in, for messages.
        index: The item's position in the epoch (0-based), for messages.

    Raises:
        TypeError: If the item has none of the accepted forms.
        ValueError: A mapping without the key ``"x"``.
    """
    x: Any
    if isinstance(item, Batch):
        x, y, lengths = item
    elif isinstance(item, Tensor | np.ndarray):
        x, y, lengths = item, None, None
    elif isinstance(item, Mapping):
        x, y, lengths = _from_mapping(item, name, index)
    elif isinstance(item, tuple | list) and 1 <= len(item) <= 3:
        x, y, lengths = list(item) + [None] * (3 - len(item))
    else:
        raise TypeError(
            f"Expected batch {index} of `{name}` to be a Batch, an (x, y) or (x, y, lengths) "
            f"tuple, a mapping with keys 'x', 'y', 'lengths', or a tensor x, but got "
            f"{type(item).__name__}. Hint: rnnkit.data.collate_padded builds such batches "
            "from variable-length samples."
        )
    return Batch(_float_x(x), _labels(y), _plain(lengths))


def _from_mapping(item: Mapping[Any, Any], name: str, index: int) -> tuple[Any, Any, Any]:
    if "x" not in item:
        raise ValueError(
            f"Expected batch {index} of `{name}` (a mapping) to hold the inputs under 'x' "
            f"(and the targets under 'y', the lengths under 'lengths'), but its keys are "
            f"{sorted(map(str, item))}. Hint: rename the keys in the dataset or the "
            "DataLoader's collate_fn, e.g. {'x': inputs, 'y': targets}."
        )
    return item["x"], item.get("y"), item.get("lengths")


def _plain(value: Any) -> Tensor | None:
    """``value`` as a tensor detached from autograd (``None`` stays ``None``)."""
    if value is None:
        return None
    return torch.as_tensor(value).detach()


def _labels(y: Any) -> Tensor | None:
    """Targets as a detached tensor; integer labels as ``int64``, which the losses need."""
    t = _plain(y)
    if t is None or t.is_floating_point() or t.is_complex() or t.dtype in (torch.int64, torch.bool):
        return t
    return t.long()


def _float_x(x: Any) -> Tensor:
    t = torch.as_tensor(x).detach()
    return t if t.is_floating_point() else t.float()


def _is_array(value: object) -> bool:
    return isinstance(value, Tensor | np.ndarray)


def as_source(data: Any, name: str) -> BatchSource:
    """Turn fit/evaluate/predict input into a :class:`BatchSource`.

    Args:
        data: A :class:`SequenceDataset`; an ``(x, y)`` or ``(x, y, lengths)`` tuple of
            tensors or arrays; a bare ``x`` tensor/array (inputs without targets); or a
            re-iterable of batches (a DataLoader, a list).
        name: The argument's name, for error messages.

    Raises:
        TypeError: For an unsupported type or a one-shot iterator.
        ValueError: For an empty data set.
    """
    if isinstance(data, SequenceDataset):
        return IndexedSource(data, name)
    if _is_array(data):
        return IndexedSource(SequenceDataset(data), name)
    if isinstance(data, tuple) and 2 <= len(data) <= 3 and any(map(_is_array, data)):
        _check_pair(data, name)
        return IndexedSource(SequenceDataset(*data), name)
    return _iterable_source(data, name)


def _check_pair(data: tuple[Any, ...], name: str) -> None:
    """An ``(x, y[, lengths])`` tuple holding an array holds arrays (``y``: or ``None``)."""
    parts = ("x", "y", "lengths")
    for k, value in enumerate(data):
        if not (_is_array(value) or (k > 0 and value is None)):
            raise TypeError(
                f"Expected `{name}` = (x, y[, lengths]) to hold tensors or arrays, but its "
                f"{parts[k]} is a {type(value).__name__}. Hint: convert it with "
                f"torch.as_tensor({parts[k]}); a list of batches is a list, not a tuple."
            )


def _iterable_source(data: Any, name: str) -> IterableSource:
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, Iterable):
        raise TypeError(
            f"Expected `{name}` to be a SequenceDataset, an (x, y) pair, or a DataLoader, but "
            f"got the map-style dataset {type(data).__name__}. Hint: wrap it in "
            "torch.utils.data.DataLoader(dataset, batch_size=..., shuffle=True)."
        )
    if not isinstance(data, Iterable) or isinstance(data, str | bytes | Mapping):
        raise TypeError(
            f"Expected `{name}` to be a SequenceDataset, an (x, y) pair of tensors or arrays, "
            f"or an iterable of batches, but got {type(data).__name__}."
        )
    if iter(data) is data:
        raise TypeError(
            f"Expected `{name}` to be re-iterable (iterated once per epoch), but got the "
            f"one-shot iterator {type(data).__name__}. Hint: pass a DataLoader or a list."
        )
    return IterableSource(data, name)


def input_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter (``None``: it has none).

    The Trainer casts floating inputs and targets to it, so that a model converted with
    ``model.double()`` trains on the same data as a ``float32`` one.
    """
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return None


def to_device(batch: Batch, device: torch.device, dtype: torch.dtype | None = None) -> Batch:
    """Move ``x`` and ``y`` to ``device`` once; ``lengths`` stay on the CPU.

    On CUDA, CPU tensors are pinned and copied with ``non_blocking=True``, so the copy overlaps
    the previous step's kernels. With ``dtype``, floating ``x`` and ``y`` are cast to it (after
    the copy; integer labels are kept).
    """
    x, y, lengths = batch
    if lengths is not None and lengths.device.type != "cpu":
        lengths = lengths.cpu()
    return Batch(
        _cast(_move(x, device), dtype),
        None if y is None else _cast(_move(y, device), dtype),
        lengths,
    )


def _cast(t: Tensor, dtype: torch.dtype | None) -> Tensor:
    if dtype is None or not t.is_floating_point() or t.dtype == dtype:
        return t
    return t.to(dtype)


def _move(t: Tensor, device: torch.device) -> Tensor:
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        pinned = t if t.is_pinned() else t.pin_memory()
        return pinned.to(device, non_blocking=True)
    return t.to(device)
