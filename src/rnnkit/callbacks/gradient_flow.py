"""Gradients through time: how much of the loss's gradient reaches each time step.

:func:`~rnnkit.callbacks.measure_gradient_flow` runs one diagnostic forward and backward pass
of an rnnkit model on a fixed batch and returns, for every time step t, the norm of the loss's
gradient with respect to the recurrent state, ``||dL/dh_t||``, and how saturated the units
are. :class:`~rnnkit.callbacks.GradientFlow` does it during a fit, plots the curves and warns
when the gradient vanishes or explodes on its way back to the first step.

How it is measured: torch's fused recurrent layers hide the per-step states inside one
operation, so the gradient flowing *through* the recurrence cannot be hooked on their output.
For the diagnostic pass the encoder's recurrence is instead written out one step at a time
with torch's equations and the layer's own weights (same loss, the model's own readout and
head; the output agrees with the fused layer's to float rounding), so that every step's state
:math:`h_t` is a tensor in the autograd graph; ``torch.autograd.grad`` then gives
``dL/dh_t`` for all t at once, without touching the parameters'
``.grad``. The pass runs in eval mode (no dropout) and draws no random numbers, so it changes
neither the training nor an exact resume.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnkit._validate import check_int, check_optional_int
from rnnkit.callbacks._base import Callback
from rnnkit.callbacks._unroll import Unroll, stepwise
from rnnkit.data import Batch
from rnnkit.models.base import RecurrentModel
from rnnkit.tasks import LossFn, task_for

__all__ = ["FlowRecord", "GradientFlow", "measure_gradient_flow"]

_VANISHING = 1e-3  # below this FlowRecord.ratio: vanishing
_EXPLODING = 1e3

_SATURATED = 0.99  # |tanh| above, or a sigmoid gate above it (or below 1 - it)


@dataclass(frozen=True)
class FlowRecord:
    """One measurement of the gradient flow through time.

    Attributes:
        epoch: The epoch (0-based) it was taken in, -1 when taken outside a fit.
        step: The trainer's global step at the time.
        norms: ``||dL/dh_t||`` for t = 0, ..., L-1: the norm
            over the batch, the layers and the units of the gradient with respect to the state
            of every layer at step t (for an LSTM, its ``h``).
        saturation: The fraction of saturated units (see :func:`measure_gradient_flow`).
    """

    epoch: int
    step: int
    norms: list[float]
    saturation: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """The share of the gradient that survives the way back, ``norms[0] / norms[-2]``.

        The gradient at the second-to-last step has already come through one step of the
        recurrence; the last step's also holds the readout's direct share (a many-to-one
        model reads only the last state), whose size says nothing about the flow through
        time. ``nan`` for fewer than 2 steps or when that step gets no gradient.
        """
        if len(self.norms) < 2 or not self.norms[-2] > 0:
            return math.nan
        return self.norms[0] / self.norms[-2]

    @property
    def verdict(self) -> Literal["vanishing", "exploding", "ok"]:
        """``"vanishing"`` below 1e-3, ``"exploding"`` above 1e3, else ``"ok"``."""
        if self.ratio < _VANISHING:
            return "vanishing"
        return "exploding" if self.ratio > _EXPLODING else "ok"


def _check_flow_model(model: object) -> RecurrentModel:
    """The model, when the diagnostic can unroll it.

    Raises:
        TypeError: ``model`` is not an rnnkit model.
        ValueError: Its encoder is bidirectional.
    """
    if not isinstance(model, RecurrentModel):
        raise TypeError(
            f"Expected `model` to be an rnnkit SequenceClassifier or Seq2SeqRegressor, but got "
            f"{type(model).__name__}."
        )
    if model.spec.bidirectional:
        raise ValueError(
            "Expected a unidirectional model for the gradient-flow diagnostic, but got "
            "bidirectional=True. Hint: measure a unidirectional model of the same size; the "
            "backward direction's gradient flows the other way in time."
        )
    return model


def measure_gradient_flow(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    lengths: Tensor | None = None,
    *,
    loss: LossFn | None = None,
) -> tuple[list[float], dict[str, float]]:
    """Run one diagnostic pass: the gradient norm per time step and the units' saturation.

    The loss is the Trainer's: cross-entropy for a classifier, mean squared error over the
    valid steps for a regressor, or ``loss``. The saturation is the fraction of saturated
    values over the valid steps, layers and units: for a tanh RNN ``{"tanh": ...}`` with
    :math:`|h_t| > 0.99`; for a relu RNN ``{"relu_zero": ...}``, units at exactly 0; for an
    LSTM ``{"input", "forget", "output"}`` and for a GRU ``{"reset", "update"}``, the gate
    values below 0.01 or above 0.99.

    Args:
        model: A unidirectional :class:`~rnnkit.SequenceClassifier` or
            :class:`~rnnkit.Seq2SeqRegressor`; left in the mode it was in, its ``.grad``
            untouched.
        x: The inputs (on any device; moved to the model's).
        y: The targets: class indices or per-step values.
        lengths: Valid lengths of a right-padded batch, or ``None``.
        loss: A loss ``loss(output, target)`` instead of the default.

    Returns:
        ``(norms, saturation)``: ``||dL/dh_t||`` for each
        step t, and the saturation fractions.

    Raises:
        TypeError: ``model`` is not an rnnkit model.
        ValueError: The model is bidirectional.

    Shapes:
        - ``x``: ``(N, L, H_in)`` (``(L, N, H_in)`` for a time-major model); ``y``: ``(N,)``
          or ``(N, L, H_y)``; ``lengths``: ``(N,)``; ``norms``: L values.
    """
    recurrent = _check_flow_model(model)
    device = next(recurrent.parameters()).device
    task = task_for(recurrent, loss=loss, metrics=[])
    x, y = x.to(device), y.to(device)
    if not recurrent.batch_first:  # the task takes batch-first chunks
        x = x.transpose(0, 1)
    x = x if x.is_floating_point() else x.float()
    chunk = next(task.chunks(Batch(x, y, lengths)))
    unroll = Unroll(recurrent.encoder)
    was_training = recurrent.training
    recurrent.eval()  # no dropout: the pass draws no random numbers
    try:
        with torch.enable_grad(), stepwise(recurrent.encoder, unroll):
            output, _ = task.forward(recurrent, chunk, None)
            value = task.loss(output, chunk)
        states = [h for layer in unroll.states for h in layer]
        grads = torch.autograd.grad(value, states, allow_unused=True)
    finally:
        recurrent.train(was_training)
    return _step_norms(grads, len(unroll.states[0])), _saturation(unroll)


def _step_norms(grads: tuple[Tensor | None, ...], steps: int) -> list[float]:
    """The norm at each step over every layer's gradient (``grads`` is layer-major)."""
    squares = torch.stack(
        [torch.zeros(()) if g is None else g.detach().square().sum().cpu() for g in grads]
    )
    return squares.view(-1, steps).sum(dim=0).sqrt().tolist()


@torch.no_grad()
def _saturation(unroll: Unroll) -> dict[str, float]:
    """The saturated fractions of the recurrence's units or gates (valid steps only)."""
    assert unroll.valid is not None
    valid = unroll.valid
    if unroll.spec.cell != "rnn":
        return {
            name: _fraction(values, valid, lambda v: (v > _SATURATED) | (v < 1 - _SATURATED))
            for name, values in unroll.gates.items()
        }
    states = [h for layer in unroll.states for h in layer]
    if getattr(unroll.rnn, "nonlinearity", "tanh") == "relu":
        return {"relu_zero": _fraction(states, valid, lambda v: v == 0)}
    return {"tanh": _fraction(states, valid, lambda v: v.abs() > _SATURATED)}


def _fraction(values: list[Tensor], valid: Tensor, saturated: Callable[[Tensor], Tensor]) -> float:
    """The fraction of saturated values at valid steps.

    Shapes:
        - ``values``: ``(N, H)`` each, layer-major: layer 0's steps first; ``valid``: ``(L, N)``.
    """
    steps, width = valid.shape[0], values[0].shape[-1]
    stacked = torch.stack(values).view(-1, steps, *values[0].shape)  # (layers, L, N, H)
    counted = (saturated(stacked) & valid.unsqueeze(-1)).sum()
    total = valid.sum() * stacked.shape[0] * width
    return float(counted / total) if total > 0 else math.nan


_PLOT_HINT = (
    "GradientFlow.plot needs matplotlib, which is not installed. Install it with "
    "`pip install matplotlib` (rnnkit's `plot` extra)."
)


class GradientFlow(Callback):
    """Watch the gradient flow through time during a fit, on a fixed diagnostic batch.

    At the end of every ``every_n_epochs``-th epoch (and, with ``every_n_steps``, after every
    n-th optimizer step) it runs :func:`measure_gradient_flow` on the batch ``(x, y)`` and
    keeps a :class:`FlowRecord`: ``||dL/dh_t||`` for every
    step t and the fraction of saturated units. The ratio of the first step's norm to the
    second-to-last step's (:attr:`FlowRecord.ratio`: how much of the gradient survives the
    way back through time) is added to the
    epoch logs as ``log_key``, so the History, :class:`~rnnkit.callbacks.CSVLogger` and
    :class:`~rnnkit.callbacks.TensorBoardLogger` record it.

    When the ratio falls below 1e-3 (vanishing: early inputs barely change the loss, so they
    are hardly learned) or rises above 1e3 (exploding), it warns once per fit, in one line,
    with the remedies: a gated cell (``cell="lstm"`` or ``"gru"``), ``init="orthogonal"`` or
    ``"identity"``, gradient clipping (``grad_clip_norm``) or truncated back-propagation
    (``tbptt_steps``). The check means most for a many-to-one model, whose loss reads only the
    end of the sequence; with per-step targets every step also gets its own loss's gradient.

    The measurement costs one forward and backward pass of the batch, step by step (slower
    than the fused layer): keep the batch small. Per epoch it runs on every process (under
    DDP all log the same ratio), per step on rank 0 only; in eval mode, and it changes
    neither the training nor the random numbers of an exact resume.

    Args:
        x: The diagnostic inputs, ``(N, L, H_in)``.
        y: Their targets: class indices ``(N,)`` or per-step values ``(N, L, H_y)``.
        lengths: Valid lengths of a right-padded batch, ``(N,)``, or ``None``.
        every_n_epochs: Measure after every n-th epoch; 0 never.
        every_n_steps: Also measure after every n-th optimizer step; ``None`` never.
        log_key: The epoch-log key of the ratio; ``None`` logs nothing.
        warn: Warn on vanishing or exploding gradients.

    Raises:
        TypeError: ``every_n_epochs`` or ``every_n_steps`` is not an int.
        ValueError: An argument is out of range.

    Attributes:
        records: The :class:`FlowRecord` s of the fit, oldest first.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        every_n_epochs: int = 1,
        every_n_steps: int | None = None,
        log_key: str | None = "grad_flow_ratio",
        warn: bool = True,
    ) -> None:
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, 0)
        self.every_n_steps = check_optional_int("every_n_steps", every_n_steps, 1)
        self.x, self.y, self.lengths = x, y, lengths
        self.log_key = log_key
        self.warn = warn
        self.records: list[FlowRecord] = []
        self._warned: set[str] = set()

    def log_keys(self, trainer: Any) -> Sequence[str]:
        """``log_key``, the ratio it adds to each measured epoch's logs (none without one)."""
        return () if self.log_key is None else (self.log_key,)

    def on_fit_start(self, trainer: Any) -> None:
        """Check the model can be measured; start afresh unless the fit resumes."""
        _check_flow_model(trainer.model)
        step = int(getattr(trainer, "global_step", 0))
        self.records = [r for r in self.records if r.step <= step] if step else []
        self._warned = set()

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: Mapping[str, Any]) -> None:
        """Measure after every ``every_n_steps``-th optimizer step."""
        every = self.every_n_steps
        if every and int(trainer.global_step) % every == 0 and _is_zero(trainer):
            self.measure(trainer)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        """Measure after every ``every_n_epochs``-th epoch; log the ratio.

        Under DDP every process measures (the same weights on the same batch give the same
        ratio) and logs it, so the processes' epoch logs, and a callback monitoring the key,
        agree; only rank 0 warns. No collective is used, so the callback may also be given
        to rank 0 alone.
        """
        every = self.every_n_epochs
        if not every or (epoch + 1) % every:
            return
        record = self.measure(trainer, epoch)
        if self.log_key is not None:
            logs[self.log_key] = record.ratio

    def measure(self, trainer: Any, epoch: int | None = None) -> FlowRecord:
        """Measure the trainer's model now, keep the record and warn if needed.

        Args:
            trainer: The running :class:`~rnnkit.Trainer` (its ``model``, ``loss_fn``,
                ``epoch`` and ``global_step`` are read).
            epoch: The epoch to file the record under; default the trainer's.

        Returns:
            The new record.
        """
        norms, saturation = measure_gradient_flow(
            trainer.model, self.x, self.y, self.lengths, loss=getattr(trainer, "loss_fn", None)
        )
        when = int(trainer.epoch) if epoch is None else epoch
        record = FlowRecord(when, int(trainer.global_step), norms, saturation)
        self.records.append(record)
        if self.warn and _is_zero(trainer):
            self._check(record)
        return record

    def _check(self, record: FlowRecord) -> None:
        verdict = record.verdict
        if verdict == "ok" or verdict in self._warned:
            return
        self._warned.add(verdict)
        warnings.warn(_flow_warning(record), UserWarning, stacklevel=2)

    def plot(self, path: str | os.PathLike[str] | None = None, title: str | None = None) -> Path:
        """Plot the gradient norm against the time step, one line per record, as a PNG.

        The y-axis is logarithmic: a vanishing gradient is a straight line down towards
        t = 0.

        Args:
            path: Where to write the PNG; default ``"gradient_flow.png"``.
            title: The figure's title; default none.

        Returns:
            The path written.

        Raises:
            ImportError: matplotlib is missing (``pip install matplotlib``).
            ValueError: Nothing was measured yet.
        """
        if not self.records:
            raise ValueError("GradientFlow.plot: no record yet; fit for an epoch first.")
        return _plot_flow(self.records, Path(path or "gradient_flow.png"), title)

    def state_dict(self) -> dict[str, Any]:
        """The records, as plain lists and dicts."""
        return {"records": [asdict(record) for record in self.records]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the records of :meth:`state_dict`."""
        self.records = [FlowRecord(**dict(record)) for record in state.get("records", [])]


def _is_zero(trainer: Any) -> bool:
    return bool(getattr(trainer, "is_global_zero", True))


def _flow_warning(record: FlowRecord) -> str:
    """The one-line warning for a vanishing or exploding record."""
    where = f"epoch {record.epoch}, step {record.step}"
    steps = len(record.norms)
    if record.verdict == "vanishing":
        return (
            f"GradientFlow: vanishing gradients through time ({where}): the loss's gradient "
            f"at the first of {steps} steps is {record.ratio:.1e} of its norm one step before "
            "the last. "
            "Hint: use a gated cell (cell='lstm' or 'gru'), init='orthogonal' or 'identity', "
            "or shorter windows with truncated BPTT (tbptt_steps=...)."
        )
    return (
        f"GradientFlow: exploding gradients through time ({where}): the loss's gradient at "
        f"the first of {steps} steps is {record.ratio:.1e} times its norm one step before the "
        "last. Hint: "
        "clip gradients (grad_clip_norm=1.0), use init='orthogonal', a gated cell "
        "(cell='lstm' or 'gru'), or truncated BPTT (tbptt_steps=...)."
    )


def _plot_flow(records: list[FlowRecord], path: Path, title: str | None = None) -> Path:
    """Draw ``||dL/dh_t||`` against t for each record (log scale) and save a PNG."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(_PLOT_HINT) from err
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for record in records:
        positive = [n if n > 0 else math.nan for n in record.norms]  # log scale: no zeros
        axes.plot(range(len(positive)), positive, label=f"epoch {record.epoch}")
    axes.set_yscale("log")
    axes.set_xlabel("time step t")
    axes.set_ylabel("‖∂L/∂h_t‖")
    axes.grid(visible=True, alpha=0.3)
    axes.legend()
    if title is not None:
        axes.set_title(title)
    figure.savefig(path, format="png")
    return path
