"""`from_arrays`: arrays in the time-series ecosystem's layouts as a `SequenceDataset`.

rnnkit's models read ``(N, L, C)`` ("NLC": samples, steps, channels; ``C`` is ``H_in``), the
layout of :class:`torch.nn.RNN` with ``batch_first=True``. aeon and sktime store collections
as ``(N, C, L)`` ("NCL", their "numpy3D"), and unequal-length collections as a list of
``(C, L_i)`` arrays ("np-list"). :func:`from_arrays` takes any of them, pads unequal lengths,
encodes class labels and handles missing values.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from rnnkit._validate import check_int
from rnnkit.data._checks import fmt_shape
from rnnkit.data._prepare import COLUMN_HINT, IGNORE_INDEX
from rnnkit.data.dataset import SequenceDataset
from rnnkit.data.labels import encode_labels, label_array, plain_label, unknown_label
from rnnkit.data.masks import valid_mask
from rnnkit.data.missing import MissingPolicy, fill_missing
from rnnkit.errors import ShapeError

__all__ = ["SeriesLayout", "from_arrays"]

SeriesLayout = Literal["NLC", "NCL"]
"""``"NLC"``: ``(N, L, C)``, torch's and rnnkit's; ``"NCL"``: ``(N, C, L)``, aeon's and sktime's."""

_LAYOUT_HINT = {
    "NLC": "if the array is (N, C, L), aeon's and sktime's layout, pass layout='NCL'.",
    "NCL": "if the array is (N, L, C), torch's layout, pass layout='NLC'.",
}


def from_arrays(
    x: Any,
    y: Any | None = None,
    *,
    layout: SeriesLayout = "NLC",
    lengths: Any | None = None,
    input_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    missing: MissingPolicy = "error",
    classes: Sequence[Any] | np.ndarray[Any, Any] | None = None,
) -> SequenceDataset:
    """Build a :class:`~rnnkit.data.SequenceDataset` from arrays in either layout.

    ``x`` may be

    - a 3-D array or tensor, ``(N, L, C)`` with ``layout="NLC"`` or ``(N, C, L)`` with
      ``layout="NCL"``;
    - a 2-D array ``(N, L)``: N univariate series (either layout);
    - a list of N 2-D arrays of unequal lengths, each ``(L_i, C)`` (``"NLC"``) or ``(C, L_i)``
      (``"NCL"``, aeon's "np-list"), or of 1-D arrays ``(L_i,)``; they are padded with zeros at
      the end to the longest and the dataset's ``lengths`` are set.

    Steps after a sequence's length (given ``lengths``, or a list's padding) are padding: their
    values are ignored and stored as 0.

    Labels ``y`` of shape ``(N,)`` of any kind (strings, 1-based integers, ...) are encoded as
    indices in sorted order of their distinct values; the dataset keeps them in
    :attr:`~rnnkit.data.SequenceDataset.classes` and maps predictions back with
    :meth:`~rnnkit.data.SequenceDataset.decode`. Encode a test set with the training set's
    classes: ``from_arrays(x_test, y_test, classes=train.classes)``. A ``y`` of shape
    ``(N, L)`` holds a label per step (for a :class:`~rnnkit.SequenceTagger`), encoded the same
    way over the valid steps; steps after a sequence's length become
    :data:`~rnnkit.data.IGNORE_INDEX`, whatever they held; for a list ``x`` they may also come
    as a list of N label sequences, each as long as its series. A column of labels ``(N, 1)``
    is a label per step only for ``L == 1``; with longer sequences it is refused, with the hint
    to squeeze it to ``(N,)``. A ``y`` with three axes holds per-step regression targets and is
    laid out like ``x``.

    Args:
        x: The input series, see above (:class:`numpy.ndarray`, :class:`torch.Tensor` or
            anything ``numpy.asarray`` takes).
        y: ``None``; N class labels ``(N,)``; a label per step ``(N, L)`` (or N sequences of
            ``L_i`` labels); or per-step targets ``(N, L_y, H_y)`` (``"NLC"``) or
            ``(N, H_y, L_y)`` (``"NCL"``).
        layout: ``"NLC"`` (the default, torch's) or ``"NCL"`` (aeon's and sktime's).
        lengths: For a padded 3-D ``x``, each sequence's true length ``(N,)``; must be
            ``None`` for a list (the lengths are the items' lengths).
        input_size: The channels C the model expects; when given, an ``x`` whose channel axis
            differs is a :class:`~rnnkit.errors.ShapeError` (with a hint naming ``layout=``
            when the other axis matches).
        dtype: The floating dtype the inputs are stored in: ``torch.float32``, or
            ``torch.float16``/``torch.bfloat16`` to halve the memory. ``torch.float64`` is
            stored as ``float32``, as :class:`~rnnkit.data.SequenceDataset` stores it; its
            batches are ``float32`` whatever the storage, so no precision a model sees is lost.
        missing: What to do with NaN inside a series: ``"error"`` (the default) raises naming
            the sample, step and channel; ``"ffill"`` carries the last observed value of the
            channel forward (values before the first observation take the first observed
            one); ``"zero"`` writes 0.
        classes: The classes, in index order, to encode ``y`` with (e.g. ``train.classes``).

    Returns:
        A dataset with ``x`` of shape ``(N, L, C)``.

    Raises:
        rnnkit.errors.ShapeError: Wrong dimensionality, items with different channel counts,
            targets that do not match ``x``, or channels other than ``input_size``.
        ValueError: NaN with ``missing="error"``, an infinite value, a channel with no
            observed value at all under ``"ffill"``, an empty sequence, a missing label
            (``None``), or a label not among ``classes``.
        TypeError: Floating-point labels with fractional parts, labels mixing strings and
            numbers, or a non-floating ``dtype``.

    Warns:
        UserWarning: A 3-D ``x`` read in the given layout has fewer steps than channels, the
            typical sign of the other layout (pass ``input_size`` to make it an error).

    Shapes:
        - ``x``: ``(N, L, C)``, ``(N, C, L)``, ``(N, L)``, or a list of ``(L_i, C)`` /
          ``(C, L_i)`` / ``(L_i,)``.
        - ``y``: ``(N,)``, ``(N, L)``, or ``(N, L_y, H_y)`` / ``(N, H_y, L_y)``.
        - returns: ``x`` ``(N, L, C)``, ``lengths`` ``(N,)`` (when padded), ``y`` ``(N,)``,
          ``(N, L)`` or ``(N, L_y, H_y)``.

    Example:
        >>> import numpy as np
        >>> from rnnkit.data import from_arrays
        >>> x = np.random.default_rng(0).normal(size=(6, 3, 50))  # aeon's (N, C, L)
        >>> data = from_arrays(x, ["walk", "run"] * 3, layout="NCL")
        >>> data.x.shape, data.classes.tolist(), data.decode([1, 0]).tolist()
        (torch.Size([6, 50, 3]), ['run', 'walk'], ['walk', 'run'])
    """
    _check_options(layout, dtype, missing)
    lengths_t: Tensor | None
    if isinstance(x, (list, tuple)):
        values, valid, lengths_t = _from_list(x, layout, lengths)
    else:
        values, valid, lengths_t = _from_array(x, layout, lengths)
    if input_size is not None:
        size = check_int("input_size", input_size, 1)
        if not isinstance(x, (list, tuple)) and _ndim(x) == 2:
            _check_univariate(values, size)
        _check_channels(values, size, layout)
    elif not isinstance(x, (list, tuple)) and _ndim(x) == 3:
        _warn_layout(values, layout)
    values = fill_missing(values, valid, missing)
    targets, codes = _targets(y, layout, classes, valid)
    return SequenceDataset(_cast(values, dtype), targets, lengths_t, classes=codes)


def _check_options(layout: str, dtype: torch.dtype, missing: str) -> None:
    if layout not in ("NLC", "NCL"):
        raise ValueError(
            f"Expected `layout` to be 'NLC' (N, L, C) or 'NCL' (N, C, L), but got {layout!r}."
        )
    if not getattr(dtype, "is_floating_point", False):
        raise TypeError(f"Expected `dtype` to be a floating torch.dtype, but got {dtype!r}.")
    if missing not in ("error", "ffill", "zero"):
        raise ValueError(
            f"Expected `missing` to be 'error', 'ffill' or 'zero', but got {missing!r}."
        )


def _cast(values: Tensor, dtype: torch.dtype) -> Tensor:
    """``values`` in ``dtype``, refusing a value that only the cast made infinite."""
    cast = values.to(dtype)
    overflow = torch.isinf(cast) & torch.isfinite(values)
    if bool(overflow.any()):
        sample, step, channel = (int(i) for i in overflow.nonzero()[0])
        raise ValueError(
            f"Expected `x` to fit dtype={dtype} (largest {torch.finfo(dtype).max:g}), but sample "
            f"{sample} holds {float(values[sample, step, channel]):g} at step {step} (channel "
            f"{channel}). Hint: standardise the data first, or use dtype=torch.float32."
        )
    return cast


def _as_float(value: Any, name: str) -> Tensor:
    """``value`` as a ``float64`` (or lower-precision float) tensor, NaN preserved."""
    if isinstance(value, Tensor):
        return value.detach().cpu() if value.is_floating_point() else value.double()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"Expected `{name}` to hold numbers, but it cannot be read as a numeric array "
            f"({error}). Hint: series of unequal lengths go in as a list of arrays."
        ) from None
    if not array.flags.writeable or any(step < 0 for step in array.strides):
        array = array.copy()  # pandas hands out read-only views, x[:, ::-1] reversed ones
    return torch.from_numpy(array)


def _from_array(
    x: Any, layout: SeriesLayout, lengths: Any | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    t = _as_float(x, "x")
    if t.dim() == 2:
        t = t.unsqueeze(-1)  # (N, L): univariate in either layout
    elif t.dim() == 3 and layout == "NCL":
        t = t.transpose(1, 2)
    elif t.dim() != 3:
        expected = "(N, L, C)" if layout == "NLC" else "(N, C, L)"
        raise ShapeError(
            f"Expected `x` to have shape {expected} (layout={layout!r}) or (N, L), but got "
            f"{fmt_shape(t)}. Hint: series of unequal lengths go in as a list of arrays."
        )
    if t.numel() == 0:
        raise ValueError(f"Expected a non-empty `x`, but got shape {fmt_shape(t)}.")
    if lengths is None:
        return t, torch.ones(t.shape[:2], dtype=torch.bool), None
    given = np.asarray(lengths)
    if given.dtype.kind not in "iu":  # 2.5 must not be cut to 2
        raise TypeError(
            f"Expected `lengths` to hold integers, but got dtype {given.dtype} ({lengths!r})."
        )
    lengths_t = torch.as_tensor(given).long().flatten()
    valid = valid_mask(lengths_t, t.shape[1]) if len(lengths_t) == len(t) else None
    if valid is None:
        raise ShapeError(
            f"Expected `lengths` to have shape (N,) = ({len(t)},), but got "
            f"{fmt_shape(lengths_t)}. Hint: one length per sequence in `x`."
        )
    return t, valid, lengths_t


def _ndim(value: Any) -> int:
    if isinstance(value, Tensor):
        return int(value.dim())
    try:
        return int(np.ndim(value))
    except ValueError:  # numpy refuses nested lists of unequal lengths
        raise ShapeError(
            "Expected `y` to be rectangular, (N,), (N, L) or (N, L_y, H_y), but its items "
            "have unequal shapes. Hint: per-step labels of series of unequal lengths go in as "
            "a list of N label sequences, each as long as its series; per-step targets, "
            "padded to (N, L, H_y)."
        ) from None


def _from_list(
    items: Sequence[Any], layout: SeriesLayout, lengths: Any | None
) -> tuple[Tensor, Tensor, Tensor]:
    if lengths is not None:
        raise ValueError(
            "Expected `lengths` to be None for a list of series: each item's length is its own."
        )
    if len(items) == 0:
        raise ValueError("Expected `x` to hold at least one series, but the list is empty.")
    series = [_item(item, i, layout) for i, item in enumerate(items)]
    channels = series[0].shape[1]
    for i, s in enumerate(series):
        if s.shape[1] != channels:
            wanted = (
                f"(L_i, C) = (?, {channels})" if layout == "NLC" else f"(C, L_i) = ({channels}, ?)"
            )
            raise ShapeError(
                f"Expected `x[{i}]` to have shape {wanted} like `x[0]`, but got "
                f"{fmt_shape(s.shape if layout == 'NLC' else s.T.shape)}. Hint: every series "
                f"needs the same channels; {_LAYOUT_HINT[layout]}"
            )
    lengths_t = torch.tensor([len(s) for s in series], dtype=torch.int64)
    padded = torch.nn.utils.rnn.pad_sequence(series, batch_first=True)
    return padded, valid_mask(lengths_t, padded.shape[1]), lengths_t


def _item(item: Any, i: int, layout: SeriesLayout) -> Tensor:
    t = _as_float(item, f"x[{i}]")
    if t.dim() == 1:
        t = t.unsqueeze(-1)
    elif t.dim() != 2:
        raise ShapeError(
            f"Expected `x[{i}]` to have shape {'(L_i, C)' if layout == 'NLC' else '(C, L_i)'} "
            f"or (L_i,), but got {fmt_shape(t)}. Hint: a list holds one series per item."
        )
    elif layout == "NCL":
        t = t.T
    if t.shape[0] == 0:
        raise ValueError(f"Expected `x[{i}]` to have at least one step, but it is empty.")
    return t


def _check_channels(values: Tensor, input_size: int, layout: SeriesLayout) -> None:
    channels, steps = values.shape[2], values.shape[1]
    if channels == input_size:
        return
    hint = "check which features the model expects."
    if steps == input_size:
        axis = 1 if layout == "NLC" else 2
        hint = f"axis {axis} has the expected {input_size}: {_LAYOUT_HINT[layout]}"
    shown = values.shape if layout == "NLC" else (values.shape[0], channels, steps)
    expected = "(N, L, C) = (?, ?, {})" if layout == "NLC" else "(N, C, L) = (?, {}, ?)"
    raise ShapeError(
        f"Expected `x` to have shape {expected.format(input_size)} (layout={layout!r}), "
        f"but got {fmt_shape(tuple(shown))}. Hint: {hint}"
    )


def _check_univariate(values: Tensor, input_size: int) -> None:
    """A 2-D ``x`` is N univariate series in either layout: only ``input_size == 1`` fits."""
    if input_size != 1:
        raise ShapeError(
            f"Expected `x` to have shape (N, L, C) = (?, ?, {input_size}), but got "
            f"{fmt_shape(values.shape[:2])}, read as N = {values.shape[0]} univariate series "
            f"(C = 1) in either layout. Hint: one series of {input_size} channels is "
            "x[None] with layout='NLC' (shape (1, L, C)) or 'NCL' (shape (1, C, L))."
        )


def _warn_layout(values: Tensor, layout: SeriesLayout) -> None:
    steps, channels = values.shape[1], values.shape[2]
    if steps < channels:
        warnings.warn(
            f"`x` read with layout={layout!r} holds sequences of L = {steps} steps with "
            f"C = {channels} channels: fewer steps than channels. Hint: "
            f"{_LAYOUT_HINT[layout]} Pass input_size=C to turn this check into an error.",
            UserWarning,
            stacklevel=3,
        )


def _targets(
    y: Any,
    layout: SeriesLayout,
    classes: Any,
    valid: Tensor,
) -> tuple[Tensor | None, np.ndarray[Any, Any] | None]:
    if y is None:
        if classes is not None:
            raise ValueError("Expected `classes` only together with class labels `y`.")
        return None, None
    y = _padded_step_labels(y, valid)
    if _ndim(y) <= 1:
        codes, known = encode_labels(y, classes, name="y")
        return codes, known
    if _ndim(y) == 2:
        return _step_labels(y, classes, valid)
    t = _as_float(y, "y")
    if t.dim() == 3 and layout == "NCL":
        t = t.transpose(1, 2)
    if t.dim() == 3 and t.shape[:2] == valid.shape:  # aligned with x: its padding is padding
        t = t.masked_fill(~valid.unsqueeze(-1), 0.0)
    return t.float(), None


def _padded_step_labels(y: Any, valid: Tensor) -> Any:
    """Per-step labels given as N sequences of unequal lengths, padded to ``(N, L)``.

    Sequence ``i`` holds a label for each of its series' ``L_i`` steps (or for all ``L``);
    the padding repeats its first label, which ``valid`` masks out. Anything else is returned
    as it is.
    """
    if not isinstance(y, (list, tuple)) or not all(_is_label_row(item) for item in y):
        return y
    rows = [item.tolist() if isinstance(item, (np.ndarray, Tensor)) else list(item) for item in y]
    if len({len(row) for row in rows}) == 1:
        return y  # equal lengths: an ordinary (N, L) array
    counts, width = valid.sum(1).tolist(), valid.shape[1]
    if len(rows) != len(counts):
        raise ShapeError(
            f"Expected `y` to hold a label sequence for each of the N = {len(counts)} series, "
            f"but got {len(rows)}. Hint: one sequence per item of `x`, in the same order."
        )
    for i, (row, count) in enumerate(zip(rows, counts, strict=True)):
        if len(row) not in (count, width):
            raise ShapeError(
                f"Expected `y[{i}]` to hold a label per step of `x[{i}]`, L_{i} = {count} "
                f"labels, but got {len(row)}. Hint: y[i] labels the steps of x[i], in order."
            )
    return [row + row[:1] * (width - len(row)) for row in rows]


def _is_label_row(item: Any) -> bool:
    """Whether ``item`` is a non-empty sequence of single labels (not of target vectors)."""
    if isinstance(item, (np.ndarray, Tensor)):
        return item.ndim == 1 and len(item) > 0
    return isinstance(item, (list, tuple)) and len(item) > 0 and np.ndim(item[0]) == 0


def _skipped(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Where ``values`` holds the integer ``IGNORE_INDEX`` (a step to skip, not a class)."""
    skipped = np.zeros(values.shape, dtype=bool)
    if values.dtype.kind in "iuf":
        skipped = values == IGNORE_INDEX
    elif values.dtype.kind == "O":
        for index, value in np.ndenumerate(values):
            skipped[index] = _is_ignore_index(value)
    return skipped


def _is_ignore_index(value: Any) -> bool:
    return (
        isinstance(value, (int, np.integer))
        and not isinstance(value, bool)
        and value == IGNORE_INDEX
    )


def _raise_step_shape(shape: tuple[int, ...], valid: Tensor) -> None:
    if shape == (len(valid), 1):  # L > 1 here: one label per sequence, given as a column
        raise ShapeError(
            f"Expected `y` to have shape (N,) for a label per sequence or (N, L) = "
            f"{fmt_shape(valid)} for a label per step, but got {fmt_shape(shape)}. "
            f"Hint: {COLUMN_HINT}"
        )
    raise ShapeError(
        f"Expected `y` of a label per step to have shape (N, L) = {fmt_shape(valid)}, as "
        f"`x`, but got {fmt_shape(shape)}. Hint: one label per step of every "
        "sequence; padded steps may hold anything."
    )


def _step_labels(y: Any, classes: Any, valid: Tensor) -> tuple[Tensor, np.ndarray[Any, Any]]:
    """Encode ``(N, L)`` labels over ``x``'s ``valid`` steps; the others become ``IGNORE_INDEX``.

    Steps after a sequence's length are padding; an integer ``IGNORE_INDEX`` marks a step to
    skip, as in a :class:`~rnnkit.data.SequenceDataset`'s own tags.
    """
    values = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if values.shape != tuple(valid.shape):
        _raise_step_shape(values.shape, valid)
    labelled = valid.numpy() & ~_skipped(values)
    values = label_array(y, "y", labelled)  # padded steps may hold anything, even None
    if classes is not None:
        known = np.asarray(classes)
        unknown = np.argwhere(labelled & ~np.isin(values, known))
        if len(unknown):  # named by its (sample, step), not its place among the valid steps
            i, step = (int(v) for v in unknown[0])
            raise unknown_label(known, f"y[{i}, {step}]", plain_label(values[i, step]))
    kept = values[labelled]
    kept = np.asarray(kept.tolist()) if kept.dtype.kind == "O" else kept  # typed, as if given so
    codes, known = encode_labels(kept, classes, name="y")
    tags = torch.full(labelled.shape, IGNORE_INDEX, dtype=torch.int64)
    tags[torch.from_numpy(labelled)] = codes
    return tags, known
