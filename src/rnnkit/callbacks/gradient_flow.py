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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.callbacks._base import Callback
from rnnkit.data import Batch
from rnnkit.models.base import RecurrentModel
from rnnkit.models.encoder import RecurrentEncoder
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


class _Unroll:
    """The encoder's recurrence written out step by step, every state kept in the graph.

    Stands in for :meth:`~rnnkit.RecurrentEncoder.run` and
    :meth:`~rnnkit.RecurrentEncoder.run_outputs` (same arguments, same results up to float
    rounding) during a diagnostic pass. It runs layer by layer with torch's equations and the
    wrapped layer's own weights, projecting each layer's inputs for all steps at once.
    """

    def __init__(self, encoder: RecurrentEncoder) -> None:
        self.rnn = encoder.rnn
        self.spec = encoder.spec
        self.states: list[list[Tensor]] = []  # [layer][t]: h_t, (N, H_out)
        self.gates: dict[str, list[Tensor]] = {}  # name -> values per (layer, t), detached
        self.valid: Tensor | None = None  # (L, N), True at valid steps

    def run(self, x: Tensor, h0: Any = None, lengths: Tensor | None = None) -> tuple[Tensor, Any]:
        n, steps = x.shape[0], x.shape[1]
        self.valid = _valid(lengths, n, steps, x.device)
        h0s, c0s = self._initial(x, h0)
        inputs, finals_h, finals_c = x, [], []
        for layer in range(self.spec.num_layers):
            hs, (h, c) = self._layer(layer, inputs, h0s[layer], c0s[layer])
            self.states.append(hs)
            finals_h.append(h)
            finals_c.append(c)
            inputs = torch.stack(hs, dim=1)
        keep = self.valid.transpose(0, 1).unsqueeze(-1).to(inputs.dtype)
        output = inputs * keep  # zero at padded positions
        h_n = torch.stack(finals_h)
        return output, ((h_n, torch.stack(finals_c)) if self.spec.cell == "lstm" else h_n)

    def run_outputs(self, x: Tensor, h0: Any = None, lengths: Tensor | None = None) -> Tensor:
        return self.run(x, h0, lengths)[0]

    def _initial(self, x: Tensor, h0: Any) -> tuple[Tensor, Tensor]:
        spec, n = self.spec, x.shape[0]
        if h0 is None:
            h = x.new_zeros(spec.num_layers, n, spec.output_size)
            return h, x.new_zeros(spec.num_layers, n, spec.hidden_size)
        if isinstance(h0, tuple):
            return h0[0], h0[1]
        return h0, h0  # the second is unused without a cell state

    def _layer(
        self, layer: int, inputs: Tensor, h: Tensor, c: Tensor
    ) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        """One layer over all steps; padded steps carry the state unchanged."""
        rnn, cell = self.rnn, self.spec.cell
        w_hh = getattr(rnn, f"weight_hh_l{layer}")
        b_hh = getattr(rnn, f"bias_hh_l{layer}", None)
        w_hr = getattr(rnn, f"weight_hr_l{layer}", None)
        projected = F.linear(
            inputs, getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"bias_ih_l{layer}", None)
        )  # (N, L, G·H): every step's input term at once
        assert self.valid is not None
        hs = []
        for t in range(inputs.shape[1]):
            recurrent = F.linear(h, w_hh, b_hh)
            if cell == "lstm":
                new_h, new_c = self._lstm(projected[:, t], recurrent, c, w_hr)
            elif cell == "gru":
                new_h, new_c = self._gru(projected[:, t], recurrent, h), c
            else:
                new_h, new_c = self._rnn(projected[:, t] + recurrent), c
            keep = self.valid[t].unsqueeze(-1)
            h, c = torch.where(keep, new_h, h), torch.where(keep, new_c, c)
            hs.append(h)
        return hs, (h, c)

    def _rnn(self, pre: Tensor) -> Tensor:
        relu = getattr(self.rnn, "nonlinearity", "tanh") == "relu"
        return torch.relu(pre) if relu else torch.tanh(pre)

    def _lstm(
        self, x_term: Tensor, h_term: Tensor, c: Tensor, w_hr: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        i, f, g, o = (x_term + h_term).chunk(4, dim=-1)
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
        self._keep_gates(input=i, forget=f, output=o)
        c = f * c + i * torch.tanh(g)
        h = o * torch.tanh(c)
        return (h if w_hr is None else F.linear(h, w_hr)), c

    def _gru(self, x_term: Tensor, h_term: Tensor, h: Tensor) -> Tensor:
        x_r, x_z, x_n = x_term.chunk(3, dim=-1)
        h_r, h_z, h_n = h_term.chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        self._keep_gates(reset=r, update=z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h

    def _keep_gates(self, **gates: Tensor) -> None:
        for name, value in gates.items():
            self.gates.setdefault(name, []).append(value.detach())


def _valid(lengths: Tensor | None, n: int, steps: int, device: torch.device) -> Tensor:
    """``(L, N)``: True where step t of sequence n is valid."""
    if lengths is None:
        return torch.ones(steps, n, dtype=torch.bool, device=device)
    return (torch.arange(steps).unsqueeze(1) < lengths.unsqueeze(0)).to(device)


@contextmanager
def _stepwise(encoder: RecurrentEncoder, unroll: _Unroll) -> Iterator[None]:
    """Route the encoder's ``run`` and ``run_outputs`` through ``unroll`` for one pass.

    Instance attributes shadow the methods, so the model's own ``forward`` (readout, head,
    masking) runs unchanged around the step-by-step recurrence.
    """
    setattr(encoder, "run", unroll.run)  # noqa: B010 (mypy forbids assigning to a method)
    setattr(encoder, "run_outputs", unroll.run_outputs)  # noqa: B010
    try:
        yield
    finally:
        delattr(encoder, "run")
        delattr(encoder, "run_outputs")


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
    unroll = _Unroll(recurrent.encoder)
    was_training = recurrent.training
    recurrent.eval()  # no dropout: the pass draws no random numbers
    try:
        with torch.enable_grad(), _stepwise(recurrent.encoder, unroll):
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
def _saturation(unroll: _Unroll) -> dict[str, float]:
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
    "`pip install rnnkit[plot]` (or `pip install matplotlib`)."
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
    than the fused layer): keep the batch small. It runs on rank 0 only, in eval mode, and
    changes neither the training nor the random numbers of an exact resume.

    Args:
        x: The diagnostic inputs, ``(N, L, H_in)``.
        y: Their targets: class indices ``(N,)`` or per-step values ``(N, L, H_y)``.
        lengths: Valid lengths of a right-padded batch, ``(N,)``, or ``None``.
        every_n_epochs: Measure after every n-th epoch; 0 never.
        every_n_steps: Also measure after every n-th optimizer step; ``None`` never.
        log_key: The epoch-log key of the ratio; ``None`` logs nothing.
        warn: Warn on vanishing or exploding gradients.

    Raises:
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
        _check_every(every_n_epochs, every_n_steps)
        self.x, self.y, self.lengths = x, y, lengths
        self.every_n_epochs = every_n_epochs
        self.every_n_steps = every_n_steps
        self.log_key = log_key
        self.warn = warn
        self.records: list[FlowRecord] = []
        self._warned: set[str] = set()

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
        """Measure after every ``every_n_epochs``-th epoch; log the ratio."""
        every = self.every_n_epochs
        if not every or (epoch + 1) % every or not _is_zero(trainer):
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
        if self.warn:
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
            ImportError: matplotlib is missing (``pip install rnnkit[plot]``).
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


def _check_every(every_n_epochs: object, every_n_steps: object) -> None:
    if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int):
        raise ValueError(f"Expected `every_n_epochs` to be an int >= 0, got {every_n_epochs!r}.")
    if every_n_epochs < 0:
        raise ValueError(f"Expected `every_n_epochs` to be an int >= 0, got {every_n_epochs!r}.")
    bad_steps = isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int | None)
    if bad_steps or (isinstance(every_n_steps, int) and every_n_steps < 1):
        raise ValueError(
            f"Expected `every_n_steps` to be an int >= 1 or None, got {every_n_steps!r}."
        )


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
