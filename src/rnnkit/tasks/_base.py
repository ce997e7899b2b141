"""The :class:`Task` base class, the :class:`Chunk` a model runs on, and helpers for tasks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from rnnkit._validate import fmt_shape
from rnnkit.data import IGNORE_INDEX, Batch
from rnnkit.errors import ShapeError
from rnnkit.metrics import Metric, get_metric
from rnnkit.shapes import RecurrentSpec, State
from rnnkit.tasks._info import DataInfo, info_from_batch, unpadded_steps

__all__ = [
    "Chunk",
    "LossFn",
    "Parts",
    "Task",
    "check_labels_fit",
    "check_user_loss",
    "detach_state",
    "resolve_metrics",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""A user loss: ``loss(output, target) -> 0-dim Tensor``."""

Parts = list[tuple[str, Tensor, Tensor | float]]
"""``(name, sum, count)`` triples: each metric's mean is ``sum / count`` over the epoch."""


@dataclass
class _WindowCarry:
    """What one window of a batch hands the next besides the state (one holder per batch).

    The Trainer carries only the state from window to window; a task whose windows need more
    (a closed loop's last prediction) shares one holder among the chunks of a batch.

    Attributes:
        prediction: The previous window's last prediction, detached, or ``None`` before the
            batch's first window has run.

    Shapes:
        - prediction: ``(N, H_y)``
    """

    prediction: Tensor | None = None


class Chunk(NamedTuple):
    """A piece of a batch the model runs on in one call.

    Attributes:
        x: Inputs, batch-first, on the device.
        y: Targets, on the device (``None`` when predicting). Per-step targets shorter than
            the inputs (``L_y < l``) belong to the output's last ``L_y`` steps.
        lengths: Valid lengths to pass to the model (CPU, each >= 1), or ``None``.
        mask: ``True`` at valid steps (on the device), or ``None`` when all are valid.
        elements: Number of target elements the loss averages over.
        carried: What the previous window of the same batch left besides the state (shared
            by the batch's windows), or ``None``.

    Its ``target`` property is ``y``, raising ``ValueError`` when there is none.

    Shapes:
        - x: ``(N, l, H_in)``
        - y: ``(N,)``, ``(N, L_y)`` or ``(N, L_y, H_y)``
        - lengths: ``(N,)``
        - mask: ``(N, l)``
    """

    x: Tensor
    y: Tensor | None
    lengths: Tensor | None
    mask: Tensor | None
    elements: int
    carried: _WindowCarry | None = None

    @property
    def target(self) -> Tensor:
        """``y``, which training and evaluation need."""
        if self.y is None:
            raise ValueError("Expected targets `y` in the batch, but it has none.")
        return self.y


def _map_state(state: State | None, fn: Callable[[Tensor], Tensor]) -> State | None:
    """``fn`` applied to ``h`` (and ``c``) of a recurrent state; ``None`` stays ``None``."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return (fn(state[0]), fn(state[1]))
    return fn(state)


def detach_state(state: State | None) -> State | None:
    """Cut the autograd graph behind a recurrent state (between TBPTT windows)."""
    return _map_state(state, Tensor.detach)


def state_as(state: State | None, dtype: torch.dtype) -> State | None:
    """Return ``state`` in ``dtype``, the inputs' dtype.

    A state carried from a window run under autocast, whose fed-back predictions were
    low-precision, enters the next window in the inputs' dtype again.
    """
    return _map_state(state, lambda t: t.to(dtype))


def time_major(model: nn.Module) -> bool:
    """Whether ``model`` takes ``(L, N, H_in)`` inputs (``batch_first=False``)."""
    return getattr(model, "batch_first", True) is False


def resolve_metrics(metrics: Sequence[str | Metric] | None) -> list[Metric] | None:
    """Metric objects for the given names (``None`` keeps the task's defaults).

    Raises:
        ValueError: For an unknown metric name.
        TypeError: For something that is neither a name nor a :class:`~rnnkit.metrics.Metric`.
    """
    if metrics is None:
        return None
    if isinstance(metrics, str):
        metrics = [metrics]
    resolved = []
    for metric in metrics:
        if isinstance(metric, str):
            resolved.append(get_metric(metric))
        elif isinstance(metric, Metric):
            resolved.append(metric)
        else:
            raise TypeError(
                f"Expected each metric to be a name such as 'accuracy' or an "
                f"rnnkit.metrics.Metric, but got {metric!r}."
            )
    return resolved


def check_user_loss(value: object) -> Tensor:
    """Return ``value`` when it is a 0-dim tensor, as a user ``loss`` must return.

    A one-element tensor (e.g. shape ``(1,)``) is accepted as its 0-dim view. No value is read,
    so the check costs no host synchronisation.

    Raises:
        TypeError: ``value`` is not a tensor.
        ValueError: ``value`` has more than one element.
    """
    if not isinstance(value, Tensor):
        raise TypeError(
            f"Expected `loss` to return a 0-dim torch.Tensor (the batch's mean loss), but it "
            f"returned {type(value).__name__} {value!r}. Hint: compute it with torch "
            "operations on the output and the targets, so that it can be back-propagated."
        )
    if value.numel() != 1:
        raise ValueError(
            f"Expected `loss` to return a 0-dim tensor (the batch's mean loss), but it returned "
            f"a tensor of shape {fmt_shape(value)}. Hint: reduce it to one value, e.g. "
            "reduction='mean' in torch.nn.functional losses, or .mean() at the end."
        )
    return value.reshape(())


def _check_labels(batch: Batch, kind: str) -> None:
    """Raise unless class labels (``kind`` ``"class"`` or ``"tag"``) are valid indices."""
    y = batch.y
    if y is None or kind not in ("class", "tag"):
        return
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(
            f"Expected integer class labels (torch.int64), but got {y.dtype} labels of shape "
            f"{fmt_shape(y)}. Hint: convert them with y.long() (after rounding, if they are "
            "whole numbers stored as floats)."
        )
    skipped = IGNORE_INDEX if kind == "tag" else None
    bad = (y < 0) if skipped is None else (y < 0) & (y != skipped)
    if kind == "tag":  # padding holds no labels
        bad &= unpadded_steps(y, batch.lengths)
    if y.numel() and bool(bad.any()):
        allowed = "0..C-1, or -100 for a step to skip" if skipped is not None else "0..C-1"
        raise ValueError(
            f"Expected class labels in {allowed}, but got {int(y[bad][0])}. Hint: map the "
            "labels to 0..C-1 first (rnnkit.data.encode_labels(...) does)."
        )


def check_labels_fit(model: nn.Module, info: DataInfo, name: str) -> None:
    """Raise unless the labels of ``name`` fit the model's ``num_classes`` (when it has one).

    Raises:
        ValueError: A label beyond ``num_classes - 1``.
    """
    num_classes = getattr(model, "num_classes", None)
    labels = info.num_classes
    if isinstance(num_classes, int) and labels is not None and labels > num_classes:
        raise ValueError(
            f"Expected the labels of `{name}` in 0..C-1 = 0..{num_classes - 1} (the model's "
            f"num_classes = {num_classes}), but they go up to {labels - 1}. Hint: "
            f"build the model with num_classes = {labels} (the largest label + 1)."
        )


def _check_enough_classes(model: nn.Module, metric: Metric) -> None:
    num_classes = getattr(model, "num_classes", None)
    if isinstance(num_classes, int) and num_classes < metric.min_classes:
        raise ValueError(
            f"Expected a model with at least {metric.min_classes} classes for "
            f"{metric.name!r}, but its num_classes = {num_classes}. Hint: drop the metric, "
            f"or use 'top{num_classes}_accuracy' or 'accuracy'."
        )


def _positional_arity(model: nn.Module) -> int | None:
    """How many positional arguments ``model.forward`` takes (``None``: any number)."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = [p.kind for p in parameters]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(kind in positional for kind in kinds)


_METRIC_KINDS = {"class": "class", "tag": "class", "step": "step"}
"""Each target kind, and the kind of the metrics that score it."""


class Task:
    """What training, evaluating and predicting mean for one kind of model (a base class).

    A task owns everything that depends on the kind of model: how a batch becomes the model's
    inputs (one :class:`Chunk`, or several windows), how the model is called, the default loss
    and metrics, which data fit the model, and what ``predict`` returns. The
    :class:`~rnnkit.Trainer` owns the rest (devices, precision, optimizer, loops, callbacks,
    checkpoints), so any :class:`torch.nn.Module` trains once a task describes it.

    A subclass sets :attr:`target_kind` and :attr:`default_metrics` and implements
    :meth:`loss`; it overrides the other methods where its model differs. (Its
    :attr:`metric_kind` follows from :attr:`target_kind` unless it sets one.)

    Args:
        loss: A user loss ``loss(output, target) -> 0-dim Tensor``, or ``None`` for the
            task's default.
        metrics: Metric names (see :func:`rnnkit.metrics.get_metric`) or
            :class:`~rnnkit.metrics.Metric` objects; ``None``: :attr:`default_metrics`.

    Raises:
        TypeError: The class sets no :attr:`target_kind`.
        ValueError: An unknown metric name.
    """

    target_kind: ClassVar[str] = ""
    """The targets the task trains on, as :attr:`DataInfo.target_kind` names them:
    ``"class"``, ``"tag"`` or ``"step"``."""

    metric_kind: ClassVar[str] = ""
    """The ``target_kind`` of the :class:`~rnnkit.metrics.Metric` objects it accepts; ``""``
    (the default): ``"class"`` for class and tag targets, ``"step"`` for per-step values."""

    default_metrics: ClassVar[tuple[str, ...]] = ()
    """The metric names used when ``metrics`` is ``None``."""

    def __init__(
        self, loss: LossFn | None = None, metrics: Sequence[str | Metric] | None = None
    ) -> None:
        if self.target_kind not in _METRIC_KINDS:
            raise TypeError(
                f"Expected {type(self).__name__} to set `target_kind` to one of "
                f"{list(_METRIC_KINDS)}, but it is {self.target_kind!r}. Hint: a Task subclass "
                'names the targets it trains on, e.g. `target_kind = "class"`.'
            )
        self.loss_fn = loss
        resolved = resolve_metrics(metrics)
        default = [get_metric(name) for name in self.default_metrics]
        self.metrics: list[Metric] = default if resolved is None else resolved

    # -- checks, before any step -------------------------------------------------------------

    def check_setup(
        self,
        model: nn.Module,
        infos: Sequence[tuple[str, DataInfo]],
        *,
        teacher_forcing: bool = False,
    ) -> None:
        """Check the model, the metrics and every labelled data set before training.

        Args:
            model: The model to train or evaluate.
            infos: ``(argument name, DataInfo)`` of each data set (``"train"``, ``"val"``).
            teacher_forcing: Whether a teacher-forcing ratio below 1 was asked for.

        Raises:
            ValueError: A metric for other targets, data without fitting targets, or
                teacher forcing for a task that cannot feed predictions back.
            rnnkit.errors.ShapeError: Data of the wrong sequence width or target size.
        """
        self._check_metrics(model)
        if teacher_forcing:
            raise ValueError(
                f"Expected `teacher_forcing` only for a Seq2SeqRegressor, but the model is a "
                f"{type(model).__name__}. Hint: leave `teacher_forcing` at its default."
            )
        for name, info in infos:
            self.check_data(model, info, name)

    def _check_metrics(self, model: nn.Module) -> None:
        for metric in self.metrics:
            kind = self.metric_kind or _METRIC_KINDS[self.target_kind]
            if metric.target_kind != kind:
                raise ValueError(
                    f"Expected metrics for a {type(model).__name__} ({kind} "
                    f"targets), but got {metric.name!r}, a metric for {metric.target_kind} "
                    "targets. Hint: 'accuracy'/'top5_accuracy' suit classifiers, 'mse'/'mae' "
                    "regressors."
                )
            _check_enough_classes(model, metric)

    def check_data(self, model: nn.Module, info: DataInfo, name: str) -> None:
        """Check one labelled data set against the model (targets, width, padding).

        Raises:
            ValueError: No targets, or targets of another kind than :attr:`target_kind`.
            rnnkit.errors.ShapeError: The wrong sequence width.
        """
        if info.target_kind is None:
            raise ValueError(
                f"Expected `{name}` to hold targets for the loss and metrics, but it holds inputs "
                "only. Hint: pass (x, y), or a SequenceDataset built with y; predict() takes "
                "inputs alone."
            )
        if info.target_kind != self.target_kind:
            raise ValueError(
                f"Expected `{name}` to hold {self.describe_targets()} for a "
                f"{type(model).__name__}, but it holds {info.layout()}. Hint: "
                f"{self.target_hint(info)}."
            )
        self.check_inputs(model, info, name)

    def describe_targets(self) -> str:
        """The targets the task needs, in words, for error messages."""
        return f"{self.target_kind} targets"

    def target_hint(self, info: DataInfo) -> str:
        """How to fix data whose targets are of another kind (see :meth:`check_data`)."""
        return "pass targets of the kind the model predicts"

    def check_inputs(self, model: nn.Module, info: DataInfo, name: str) -> None:
        """Check the inputs (width H_in, padding) against the model; targets are not needed.

        The width is checked for models with a ``spec`` (a
        :class:`~rnnkit.shapes.RecurrentSpec`), as rnnkit's models have.

        Raises:
            rnnkit.errors.ShapeError: The sequences' H_in is not the model's.
            ValueError: Padded sequences for a model whose ``forward`` takes only ``x``.
        """
        spec = getattr(model, "spec", None)
        if isinstance(spec, RecurrentSpec) and info.input_size != spec.input_size:
            raise ShapeError(
                f"Expected `{name}` to hold sequences of shape (N, L, H_in) = (?, ?, "
                f"{spec.input_size}) for the model's input_size = {spec.input_size}, but got "
                f"(?, {info.seq_len}, {info.input_size}). Hint: build the model with "
                f"input_size={info.input_size}, or check how the data was turned into "
                "sequences (rows of an image: H_in = width)."
            )
        arity = _positional_arity(model)
        if not info.full_length and arity is not None and arity < self.padded_arguments:
            raise ValueError(
                f"Expected a model whose forward takes the valid lengths for the padded "
                f"sequences of `{name}`, but {type(model).__name__}.forward takes {arity} "
                "argument(s). Hint: add a `lengths` argument (e.g. pack the sequences with "
                "torch.nn.utils.rnn.pack_padded_sequence), or pass unpadded sequences."
            )

    def check_batch(self, model: nn.Module, batch: Batch, name: str, index: int) -> None:
        """Check one batch of a DataLoader or list as it is drawn, before a step runs on it.

        Data the Trainer can index (a :class:`~rnnkit.data.SequenceDataset` or an ``(x, y)``
        pair) are checked once, as a whole, before training; a DataLoader's batches are seen
        only one at a time, so each is checked as :meth:`check_data` checks a data set (its
        layout, its width, its labels against the model's ``num_classes``), and class labels
        must be integers, ``>= 0`` (or ``-100`` for a per-step label to skip). The checks
        read a few numbers of the batch (its largest and smallest label): no step's work is
        lost to a bad batch.

        Args:
            model: The model the batch is for.
            batch: The batch, on the CPU (as the DataLoader made it).
            name: The argument the data came in (``"train"``, ``"val"``, ``"data"``).
            index: The batch's position in the epoch, 0-based.

        Raises:
            ValueError: Labels that are not integers, negative or beyond ``num_classes``, or
                targets of another kind than the model predicts.
            rnnkit.errors.ShapeError: The wrong layout or sequence width.
        """
        try:
            info = info_from_batch(batch, None, name)
            if info.target_kind == self.target_kind:
                _check_labels(batch, self.target_kind)
            self.check_data(model, info, name)
        except ValueError as exc:  # ShapeError included: same type, with the batch named
            raise type(exc)(
                f"Batch {index} (0-based) of `{name}` does not fit the model: {exc}"
            ) from None

    padded_arguments: ClassVar[int] = 2
    """Positional arguments ``forward`` needs for padded batches (``x, lengths``)."""

    # -- per batch ---------------------------------------------------------------------------

    def chunks(self, batch: Batch) -> Iterator[Chunk]:
        """The pieces the batch is run in (the whole batch once, by default)."""
        x, y, lengths = batch
        yield Chunk(x, y, lengths, None, int(x.shape[0]))

    def forward(
        self,
        model: nn.Module,
        chunk: Chunk,
        state: State | None,
        ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, State | None]:
        """Run the model on a chunk; return its batch-first output and final state.

        By default ``model(x)``, or ``model(x, lengths)`` for a padded chunk (``x``
        transposed for a model with ``batch_first=False``), with no state.

        Args:
            model: The model (or its DDP wrapper).
            chunk: The inputs and targets.
            state: The state a previous window left, or ``None``.
            ratio: The teacher-forcing ratio of this epoch (1 outside training).
            generator: The generator of the teacher-forcing coins.
        """
        x = chunk.x.transpose(0, 1) if time_major(model) else chunk.x
        if chunk.lengths is None:
            return model(x), None
        return model(x, chunk.lengths), None

    def loss(self, output: Tensor, chunk: Chunk) -> Tensor:
        """The chunk's mean loss (a 0-dim tensor), over :attr:`Chunk.elements` units."""
        raise NotImplementedError

    def user_loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The user's ``loss(output, target)``, checked to be a 0-dim tensor.

        Raises:
            TypeError: The loss returned something other than a tensor.
            ValueError: The loss returned a tensor with more than one element.
        """
        assert self.loss_fn is not None
        return check_user_loss(self.loss_fn(output, target))

    def aligned(self, output: Tensor, chunk: Chunk) -> Tensor:
        """The part of ``output`` the targets refer to (all of it, by default)."""
        return output

    def metric_parts(self, output: Tensor, chunk: Chunk) -> Parts:
        """Every metric's ``(sum, count)`` on the chunk (no host synchronisation)."""
        output = self.aligned(output, chunk)
        return [(m.name, *m.parts(output, chunk.target, chunk.mask)) for m in self.metrics]

    def evaluation_parts(self, model: nn.Module, batch: Batch) -> Parts:
        """Parts computed once per whole batch in evaluation (none, by default)."""
        return []

    # -- prediction --------------------------------------------------------------------------

    def predict(self, model: nn.Module, batch: Batch) -> Tensor:
        """The model's output for one batch, float32 on the CPU (chunks joined on dim 1).

        Shapes:
            - ``batch.x``: ``(N, L, H_in)``; return: ``(N, ...)``.
        """
        state: State | None = None
        pieces = []
        for chunk in self.chunks(batch):
            output, state = self.forward(model, chunk, state)
            pieces.append(output.float().cpu())
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def join_predictions(self, outputs: list[Tensor], steps: int = 0) -> Tensor:
        """The outputs as one tensor; per-step ones zero-padded to max(longest, ``steps``)."""
        longest = max([steps, *(o.shape[1] for o in outputs if o.dim() > 2)])
        if outputs[0].dim() == 2 or all(o.shape[1] == longest for o in outputs):
            return torch.cat(outputs)
        pad = [0, 0] * (outputs[0].dim() - 2)
        return torch.cat([nn.functional.pad(o, (*pad, 0, longest - o.shape[1])) for o in outputs])
