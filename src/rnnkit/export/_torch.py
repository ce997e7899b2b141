"""Export a model with :func:`torch.export.export`, its state an explicit input (private).

The exported modules below compute the model's eval-mode forward through the cell equations
of :mod:`rnnkit.export._cells`, so the sequence length stays dynamic.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from rnnkit.export._cells import run_stack, step_stack
from rnnkit.export._checks import check_exportable
from rnnkit.export._signature import ExportMode
from rnnkit.models import RecurrentModel, Seq2SeqRegressor, SequenceClassifier, SequenceTagger
from rnnkit.models.readouts import max_over_valid, mean_over_valid

__all__ = ["SequenceProgram", "StepProgram", "export_program"]

# Example sizes for tracing: distinct and >= 2, so that torch keeps N and L symbolic.
_N, _L = 3, 5


class SequenceProgram(nn.Module):
    """A model's sequence-mode forward with optional ``lengths`` and initial state."""

    def __init__(self, model: RecurrentModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        h0: Tensor | None = None,
        c0: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """See :func:`rnnkit.export.to_torch_export`."""
        model, spec = self.model, self.model.spec
        xs = x.transpose(0, 1) if spec.batch_first else x
        rows, n = spec.D * spec.num_layers, xs.shape[1]
        h = xs.new_zeros(rows, n, spec.output_size) if h0 is None else h0
        c = xs.new_zeros(rows, n, spec.hidden_size) if c0 is None else c0
        valid = None
        if lengths is not None:
            positions = torch.arange(xs.shape[0], device=xs.device).unsqueeze(1)
            valid = (positions < lengths.to(xs.device).unsqueeze(0)).unsqueeze(-1)
        output, h_n, c_n = run_stack(model.encoder.rnn, xs, h, c, valid)
        first = self._result(output, h_n, lengths, valid)
        return (first, h_n, c_n) if spec.cell == "lstm" else (first, h_n)

    def _result(
        self, output: Tensor, h_n: Tensor, lengths: Tensor | None, valid: Tensor | None
    ) -> Tensor:
        model, spec = self.model, self.model.spec
        if isinstance(model, Seq2SeqRegressor | SequenceTagger):
            y: Tensor = model.head(output)
            if valid is not None:
                y = torch.where(valid, y, torch.zeros_like(y))
            return y.transpose(0, 1) if spec.batch_first else y
        assert isinstance(model, SequenceClassifier)
        logits: Tensor = model.head(_readout(model, output, h_n, lengths))
        return logits


def _readout(
    model: SequenceClassifier, output: Tensor, h_n: Tensor, lengths: Tensor | None
) -> Tensor:
    """The readout from time-major outputs ``(L, N, D·H_out)``."""
    directions = model.spec.D
    if model.readout == "last":
        width = directions * model.spec.output_size  # fixed: -1 fails for N = 0
        return h_n[-directions:].transpose(0, 1).reshape(output.shape[1], width)
    if model.readout == "output_last":
        return output[-1]
    pool = mean_over_valid if model.readout == "mean" else max_over_valid
    return pool(output.transpose(0, 1), lengths)


class StepProgram(nn.Module):
    """A unidirectional model's single step with explicit state."""

    def __init__(self, model: RecurrentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_t: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, ...]:
        """See :func:`rnnkit.export.to_torch_export`."""
        model = self.model
        assert isinstance(model, SequenceClassifier | Seq2SeqRegressor | SequenceTagger)
        cell = torch.zeros_like(h) if c is None else c
        top, h_next, c_next = step_stack(model.encoder.rnn, x_t, h, cell)
        y: Tensor = model.head(top)
        return (y, h_next, c_next) if model.spec.cell == "lstm" else (y, h_next)


def _zeros(model: RecurrentModel, *shape: int) -> Tensor:
    """An example input of zeros in the model's dtype, on the model's device."""
    weight = next(model.parameters())
    return torch.zeros(shape, dtype=weight.dtype, device=weight.device)


def _sequence_example(
    model: RecurrentModel, lengths: bool, initial_state: bool
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    spec = model.spec
    shape = (_N, _L, spec.input_size) if spec.batch_first else (_L, _N, spec.input_size)
    batch = Dim("N", min=1)
    example = {"x": _zeros(model, *shape)}
    time_dim = 1 if spec.batch_first else 0
    dynamic: dict[str, Any] = {"x": {1 - time_dim: batch, time_dim: Dim("L", min=1)}}
    if lengths:
        example["lengths"] = torch.tensor([_L, 2, 4][:_N])
        dynamic["lengths"] = {0: batch}
    if initial_state:
        rows = spec.D * spec.num_layers
        example["h0"] = _zeros(model, rows, _N, spec.output_size)
        dynamic["h0"] = {1: batch}
        if spec.cell == "lstm":
            example["c0"] = _zeros(model, rows, _N, spec.hidden_size)
            dynamic["c0"] = {1: batch}
    return example, dynamic


def _step_example(model: RecurrentModel) -> tuple[dict[str, Tensor], dict[str, Any]]:
    spec = model.spec
    batch = Dim("N", min=1)
    example = {
        "x_t": _zeros(model, _N, spec.input_size),
        "h": _zeros(model, spec.num_layers, _N, spec.output_size),
    }
    dynamic: dict[str, Any] = {"x_t": {0: batch}, "h": {1: batch}}
    if spec.cell == "lstm":
        example["c"] = _zeros(model, spec.num_layers, _N, spec.hidden_size)
        dynamic["c"] = {1: batch}
    return example, dynamic


def export_program(
    model: RecurrentModel, mode: ExportMode, *, lengths: bool, initial_state: bool
) -> ExportedProgram:
    """Export `model` (see :func:`rnnkit.export.to_torch_export`)."""
    check_exportable(model, mode)
    program: nn.Module
    if mode == "step":
        program, (example, dynamic) = StepProgram(model), _step_example(model)
    else:
        program = SequenceProgram(model)
        example, dynamic = _sequence_example(model, lengths, initial_state)
    was_training = model.training
    program.eval()
    try:
        # without autograd, torch need not trace the loop's backward (much faster)
        with torch.no_grad():
            return torch.export.export(program, (), kwargs=example, dynamic_shapes=dynamic)
    finally:
        model.train(was_training)
