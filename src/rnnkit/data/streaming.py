"""Long series as parallel streams of consecutive windows, for stateful training.

A long series is too long for one back-propagation pass. :func:`~rnnkit.data.streams` cuts
it (or several series) into ``num_streams`` contiguous streams and walks along them
``window`` steps at a time, like the classic language-model "batchify": batch ``j`` holds
window ``j`` of every stream, so **row i of consecutive batches continues the same
stream**. A model that carries its final state from batch ``j`` into batch ``j + 1``
(detached: truncated back-propagation through time) sees each stream from its start,
without cutting it into independent windows.

The contract, for a trainer or a loop that carries state across batches:

- iterate the batches in order, unshuffled (a :class:`~rnnkit.data.StreamBatches` is a
  sequence);
- row ``i`` of batch ``j + 1`` continues row ``i`` of batch ``j``: feed it the state that
  batch ``j`` ended with for row ``i``, detached;
- except where ``resets[j + 1, i]`` is True: a new stream (or a new series) starts at that
  row, so its state starts from zeros. ``resets[0]`` is all True;
- windows never straddle two series, so a reset is only ever needed at a window's start.

Without state carried, the batches are plain :class:`~rnnkit.data.Batch` es of next-step pairs
that any consumer of batches (e.g. :class:`~rnnkit.Trainer`'s ``fit``) accepts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import torch
from torch import Tensor

from rnnkit._validate import check_int
from rnnkit.data.dataset import Batch
from rnnkit.data.series import as_series_batch

__all__ = ["StreamBatches", "streams"]


class StreamBatches(Sequence[Batch]):
    """Consecutive windows of parallel streams: ``len(self)`` batches, in order.

    Built by :func:`streams`. Item ``j`` is the :class:`~rnnkit.data.Batch` of window ``j``
    of every stream, with next-step targets and no lengths (every window is full).

    Attributes:
        x: Every stream's inputs, windows laid end to end.
        y: Their next-step targets: ``y[i, t]`` is the value after ``x[i, t]`` in its series.
        resets: True where a row starts a new stream or series, so a carried state must
            restart from zeros (all of batch 0).
        window: The steps per window, L.

    Shapes:
        - ``x``, ``y``: ``(num_streams, num_batches·L, F)``.
        - ``resets``: ``(num_batches, num_streams)``.
        - each batch's ``x`` and ``y``: ``(num_streams, L, F)``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, resets: torch.Tensor, window: int) -> None:
        self.x, self.y, self.resets, self.window = x, y, resets, window

    @property
    def num_streams(self) -> int:
        """The number of streams, N (the rows of every batch)."""
        return int(self.x.shape[0])

    def __len__(self) -> int:
        return int(self.resets.shape[0])

    @overload
    def __getitem__(self, index: int) -> Batch: ...

    @overload
    def __getitem__(self, index: slice) -> list[Batch]: ...

    def __getitem__(self, index: int | slice) -> Batch | list[Batch]:
        if isinstance(index, slice):
            return [self[j] for j in range(*index.indices(len(self)))]
        j = range(len(self))[index]  # negative indices; IndexError when out of range
        steps = slice(j * self.window, (j + 1) * self.window)
        return Batch(self.x[:, steps], self.y[:, steps], None)

    def __iter__(self) -> Iterator[Batch]:
        return (self[j] for j in range(len(self)))

    def with_resets(self) -> Iterator[tuple[Batch, Tensor]]:
        """Each batch with its reset flags, for a loop that carries the state.

        Yields:
            ``(batch, reset)``; ``reset`` is ``(num_streams,)``, True where that row's state
            must start from zeros.
        """
        for j in range(len(self)):
            yield self[j], self.resets[j]

    def __repr__(self) -> str:
        width = int(self.x.shape[2])
        return (
            f"StreamBatches({len(self)} batches of (N, L, F) = "
            f"({self.num_streams}, {self.window}, {width}))"
        )


def _series_list(series: Any) -> list[Tensor]:
    """One ``(T, F)`` ``float32`` tensor per series, from a tensor/array or a list of them."""
    if isinstance(series, list | tuple):
        parts = [as_series_batch(s, f"series[{k}]") for k, s in enumerate(series)]
    else:
        parts = [as_series_batch(series)]
    return [one.float() for batch in parts for one in batch]  # models take float32, as Batch


def _windows(s: Tensor, window: int) -> tuple[Tensor, Tensor, Tensor]:
    """The whole windows of one series: inputs, next-step targets, first-window flags."""
    count = (s.shape[0] - 1) // window  # the targets need one step more
    width = s.shape[1]
    x = s[: count * window].reshape(count, window, width)
    y = s[1 : count * window + 1].reshape(count, window, width)
    first = torch.zeros(count, dtype=torch.bool)
    first[:1] = True
    return x, y, first


def streams(series: Any, num_streams: int, window: int) -> StreamBatches:
    """Split long series into ``num_streams`` streams of consecutive next-step windows.

    Every series is cut into whole windows of ``window`` input steps, each with the next
    ``window`` values as targets (a final piece too short for a window is dropped). The
    windows of all series, in order, are dealt into ``num_streams`` contiguous runs of equal
    length (the last ``K mod num_streams`` windows are dropped): stream ``i`` is windows
    ``i·m .. (i+1)·m - 1``, ``m = K // num_streams``. Batch ``j`` is window ``j`` of every
    stream; see the module's contract for carrying state across batches.

    Args:
        series: One series ``(T,)`` or ``(T, F)``, B series of one length ``(B, T, F)``, or a
            list of series of any lengths, each ``(T_k,)`` or ``(T_k, F)`` (tensors or
            arrays).
        num_streams: N, the streams (the rows of every batch), at least 1.
        window: L, the steps per window (per truncated back-propagation pass), at least 1.

    Returns:
        The :class:`StreamBatches`: ``m`` batches of ``(N, L, F)`` inputs and targets in
        ``float32`` (whatever the series' dtype, as every :class:`~rnnkit.data.Batch`), and
        the reset flags.

    Raises:
        rnnkit.errors.ShapeError: A series of the wrong dimensionality.
        ValueError: Fewer whole windows than streams, NaN or infinite values, or series of
            different feature counts.
        TypeError: ``num_streams`` or ``window`` is not an int.

    Shapes:
        - ``series``: ``(T,)``, ``(T, F)``, ``(B, T, F)`` or a list of ``(T_k, F)``.
        - each batch: ``x``, ``y`` ``(N, L, F)``; ``resets``: ``(m, N)``.

    Example:
        >>> import torch
        >>> from rnnkit.data import streams
        >>> batches = streams(torch.arange(21.0), num_streams=2, window=5)
        >>> len(batches), tuple(batches[0].x.shape)
        (2, (2, 5, 1))
        >>> batches[0].x[1, :, 0].tolist()  # stream 1 starts half-way
        [10.0, 11.0, 12.0, 13.0, 14.0]
        >>> batches[1].x[1, :, 0].tolist()  # and continues in the next batch
        [15.0, 16.0, 17.0, 18.0, 19.0]
    """
    num_streams = check_int("num_streams", num_streams, 1)
    window = check_int("window", window, 1)
    parts = [_windows(s, window) for s in _series_list(series)]
    _check_widths(parts)
    x, y, first = (torch.cat([p[k] for p in parts]) for k in range(3))
    per_stream = x.shape[0] // num_streams
    if per_stream == 0:
        raise ValueError(
            f"Expected at least num_streams = {num_streams} whole windows of {window} steps "
            f"(plus one target step per series), but the series hold {x.shape[0]}. Hint: "
            "use fewer streams or a shorter window."
        )
    used = per_stream * num_streams
    width = x.shape[2]
    resets = first[:used].reshape(num_streams, per_stream).t().contiguous()
    resets[0] = True
    return StreamBatches(
        x[:used].reshape(num_streams, per_stream * window, width),
        y[:used].reshape(num_streams, per_stream * window, width),
        resets,
        window,
    )


def _check_widths(parts: list[tuple[Tensor, Tensor, Tensor]]) -> None:
    widths = sorted({int(p[0].shape[2]) for p in parts})
    if len(widths) > 1:
        raise ValueError(
            f"Expected every series to have the same number of features F, but got {widths}. "
            "Hint: pass series of one width (a univariate series is (T,) or (T, 1))."
        )
