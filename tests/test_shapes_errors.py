"""Invalid inputs: each raises ShapeError with its full message pinned, before torch runs.

Every case says what torch itself does with the same input: ``"raises"`` (torch fails later,
often with a less helpful message) or ``"silent"`` (torch runs and returns a wrong or useless
result). Both are checked against torch, so the contract rejects nothing torch handles well.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from rnnkit import ShapeError
from rnnkit.shapes import RecurrentSpec, validate_class_targets, validate_step_targets

Outcome = Literal["raises", "silent"]


@dataclass(frozen=True)
class Call:
    """One call of a recurrent layer: the layer and its arguments."""

    layer: nn.RNNBase
    x: Any
    state: Any = None
    lengths: Any = None


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], Call]
    torch: Outcome
    message: str


def rnn(**kwargs: Any) -> nn.RNNBase:
    """The tutorial's MNIST layer, small: H_in = 28, hidden_size = 8, batch first."""
    kwargs.setdefault("batch_first", True)
    return nn.RNN(28, 8, **kwargs)


def zeros(*shape: int, **kwargs: Any) -> Tensor:
    return torch.zeros(*shape, **kwargs)


def lengths_case(lengths: Any) -> Callable[[], Call]:
    """A padded batch of N = 5 sequences of L = 7 steps, with these lengths."""
    return lambda: Call(rnn(), zeros(5, 7, 28), None, lengths() if callable(lengths) else lengths)


CASES: list[Case] = [
    # -- x: layout -----------------------------------------------------------------------
    Case(
        "images_not_sequences",
        lambda: Call(rnn(), zeros(5, 1, 28, 28)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 28) or, unbatched, (L, H_in) = "
            "(?, 28), but got (5, 1, 28, 28). Hint: x looks like a batch of one-channel "
            "images (N, C, H, W); read each image row by row, as L = 28 steps of H_in = 28 "
            "pixels, with x.squeeze(1)."
        ),
    ),
    Case(
        "images_not_sequences_time_first",
        lambda: Call(rnn(batch_first=False), zeros(5, 1, 28, 28)),
        "raises",
        (
            "Expected `x` to have shape (L, N, H_in) = (?, ?, 28) or, unbatched, (L, H_in) = "
            "(?, 28), but got (5, 1, 28, 28). Hint: x looks like a batch of one-channel "
            "images (N, C, H, W); read each image row by row, as L = 28 steps of H_in = 28 "
            "pixels, with x.squeeze(1).transpose(0, 1)."
        ),
    ),
    Case(
        "extra_singleton_dimension",
        lambda: Call(rnn(), zeros(5, 7, 1, 28)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 28) or, unbatched, (L, H_in) = "
            "(?, 28), but got (5, 7, 1, 28). Hint: x has an extra dimension of size 1; "
            "remove it with x.squeeze(2)."
        ),
    ),
    Case(
        "five_dimensions",
        lambda: Call(rnn(), zeros(2, 3, 4, 5, 28)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 28) or, unbatched, (L, H_in) = "
            "(?, 28), but got (2, 3, 4, 5, 28). Hint: x has 5 dimensions; a recurrent layer "
            "takes 3 (batched) or 2 (unbatched): reshape it so that the features come last."
        ),
    ),
    Case(
        "features_and_time_swapped",
        lambda: Call(rnn(), zeros(5, 28, 7)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 28), but got (5, 28, 7). Hint: "
            "x looks like (N, H_in, L): features and time are swapped; use "
            "x.transpose(1, 2). Arrays from aeon or sktime are (N, C, L): "
            "rnnkit.data.from_arrays(x, layout='NCL') reads them."
        ),
    ),
    Case(
        "channels_first_to_time_first",
        lambda: Call(rnn(batch_first=False), zeros(5, 28, 7)),
        "raises",
        (
            "Expected `x` to have shape (L, N, H_in) = (?, ?, 28), but got (5, 28, 7). Hint: "
            "x looks like (N, H_in, L), channels first as a Conv1d makes it; a time-first "
            "layer takes (L, N, H_in): use x.permute(2, 0, 1)."
        ),
    ),
    Case(
        "features_first_to_time_first",
        lambda: Call(rnn(batch_first=False), zeros(28, 5, 7)),
        "raises",
        (
            "Expected `x` to have shape (L, N, H_in) = (?, ?, 28), but got (28, 5, 7). Hint: "
            "x looks like (H_in, N, L): features and time are swapped; use "
            "x.transpose(0, 2)."
        ),
    ),
    Case(
        "features_first_to_batch_first",
        lambda: Call(rnn(), zeros(28, 5, 7)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 28), but got (28, 5, 7). Hint: "
            "x has H_in = 28 in dimension 0; the features go last: use x.movedim(0, -1)."
        ),
    ),
    Case(
        "unbatched_features_and_time_swapped",
        lambda: Call(rnn(), zeros(28, 7)),
        "raises",
        (
            "Expected `x` to have shape (L, H_in) = (?, 28), but got (28, 7). Hint: x looks "
            "like (H_in, L): features and time are swapped; use x.transpose(0, 1)."
        ),
    ),
    Case(
        "sine_wave_as_a_vector",
        lambda: Call(nn.RNN(1, 16, batch_first=True), zeros(100)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 1) or, unbatched, (L, H_in) = "
            "(?, 1), but got (100,). Hint: x looks like one sequence of L = 100 numbers; add "
            "the feature dimension with x.unsqueeze(-1) for (L, H_in) = (100, 1), or make it "
            "a batch of one with x.view(1, -1, 1)."
        ),
    ),
    Case(
        "sine_waves_without_feature_dimension",
        lambda: Call(nn.RNN(1, 16, batch_first=True), zeros(5, 100)),
        "raises",
        (
            "Expected `x` to have shape (L, H_in) = (?, 1), but got (5, 100). Hint: x looks "
            "like a batch of sequences of numbers, (N, L) = (5, 100); add the feature "
            "dimension with x.unsqueeze(-1) for (N, L, H_in) = (5, 100, 1)."
        ),
    ),
    Case(
        "one_step_as_a_vector",
        lambda: Call(rnn(), zeros(28)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 28) or, unbatched, (L, H_in) = "
            "(?, 28), but got (28,). Hint: x looks like a single step of H_in = 28 features; "
            "add the time dimension with x.unsqueeze(0) for (L, H_in) = (1, 28)."
        ),
    ),
    Case(
        "a_scalar",
        lambda: Call(nn.RNN(1, 16, batch_first=True), torch.tensor(0.5)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 1) or, unbatched, (L, H_in) = "
            "(?, 1), but got (). Hint: x is a single number; as one step of one feature it "
            "is x.view(1, 1, 1)."
        ),
    ),
    Case(
        "wrong_input_size",
        lambda: Call(rnn(), zeros(5, 7, 3)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 28), but got (5, 7, 3). Hint: "
            "x has 3 features per step, but the layer was built with input_size=28; fix x or "
            "build the layer with input_size=3."
        ),
    ),
    Case(
        "time_first_x_for_batch_first_layer_revealed_by_h_0",
        lambda: Call(rnn(), zeros(7, 5, 28), zeros(1, 5, 8)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (5, ?, 28), but got (7, 5, 28). Hint: "
            "h_0 says N = 5, which is x's dimension 0: x looks like (L, N, H_in), time "
            "first, but the layer has batch_first=True; use x.transpose(0, 1), or build the "
            "layer with batch_first=False."
        ),
    ),
    Case(
        "batch_first_x_for_time_first_layer_revealed_by_lengths",
        lambda: Call(rnn(batch_first=False), zeros(5, 7, 28), None, torch.tensor([7, 7, 6, 5, 1])),
        "raises",
        (
            "Expected `x` to have shape (L, N, H_in) = (?, 5, 28), but got (5, 7, 28). Hint: "
            "lengths says N = 5, which is x's dimension 1: x looks like (N, L, H_in), batch "
            "first, but the layer has batch_first=False; use x.transpose(0, 1), or build the "
            "layer with batch_first=True."
        ),
    ),
    Case(
        "empty_batch",
        lambda: Call(rnn(), zeros(0, 7, 28)),
        "silent",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 28) with N >= 1, but got "
            "(0, 7, 28). Hint: the batch is empty (its mean loss would be NaN); skip empty "
            "batches."
        ),
    ),
    Case(
        "zero_length_sequences",
        lambda: Call(rnn(), zeros(5, 0, 28)),
        "raises",
        (
            "Expected `x` to have shape (N, L, H_in) = (?, ?, 28) with L >= 1, but got "
            "(5, 0, 28). Hint: every sequence needs at least one step; check the slicing "
            "that made it."
        ),
    ),
    # -- x: type, dtype, device -----------------------------------------------------------
    Case(
        "numpy_array",
        lambda: Call(rnn(), np.zeros((5, 7, 28), dtype=np.float32)),
        "raises",
        (
            "Expected `x` to be a tensor of shape (N, L, H_in) = (?, ?, 28), but got an "
            "object of type numpy.ndarray. Hint: convert it with "
            "torch.as_tensor(x, dtype=torch.float32)."
        ),
    ),
    Case(
        "uint8_pixels",
        lambda: Call(rnn(), zeros(5, 28, 28, dtype=torch.uint8)),
        "raises",
        (
            "Expected `x` to be a torch.float32 tensor (the layer's dtype) of shape "
            "(N, L, H_in) = (?, ?, 28), but got a torch.uint8 tensor of shape (5, 28, 28). "
            "Hint: convert it with x.float(), and scale 0..255 pixels with x.float() / 255."
        ),
    ),
    Case(
        "float64_input_for_float32_layer",
        lambda: Call(rnn(), zeros(5, 7, 28, dtype=torch.float64)),
        "raises",
        (
            "Expected `x` to be a torch.float32 tensor (the layer's dtype) of shape "
            "(N, L, H_in) = (?, ?, 28), but got a torch.float64 tensor of shape (5, 7, 28). "
            "Hint: convert it with x.float() (NumPy arrays are float64 by default), or the "
            "model with model.to(torch.float64)."
        ),
    ),
    Case(
        "input_on_another_device",
        lambda: Call(rnn().to("meta"), zeros(5, 7, 28)),
        "raises",
        (
            "Expected `x` to be on meta (the layer's device) with shape (N, L, H_in) = "
            "(?, ?, 28), but got a tensor on cpu of shape (5, 7, 28). Hint: move it with "
            "x.to('meta')."
        ),
    ),
    # -- h_0 and c_0 ----------------------------------------------------------------------
    Case(
        "h_0_without_directions_for_bidirectional_layer",
        lambda: Call(rnn(num_layers=2, bidirectional=True), zeros(5, 7, 28), zeros(2, 5, 8)),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, N, H_out) = (4, 5, 8), but got "
            "(2, 5, 8). Hint: the layer is bidirectional, so h_0 needs one row per layer and "
            "direction: D·num_layers = 2·2 = 4, not num_layers = 2; e.g. "
            "torch.zeros(4, 5, 8)."
        ),
    ),
    Case(
        "h_0_with_directions_for_unidirectional_layer",
        lambda: Call(rnn(num_layers=2), zeros(5, 7, 28), zeros(4, 5, 8)),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, N, H_out) = (2, 5, 8), but got "
            "(4, 5, 8). Hint: h_0 has 2·num_layers = 4 rows, but the layer is not "
            "bidirectional (D = 1): it needs num_layers = 2 rows."
        ),
    ),
    Case(
        "h_0_without_layer_dimension",
        lambda: Call(rnn(), zeros(5, 7, 28), zeros(5, 8)),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, N, H_out) = (1, 5, 8), but got "
            "(5, 8). Hint: h_0 lacks the layer dimension; add it with h_0.unsqueeze(0)."
        ),
    ),
    Case(
        "h_0_without_layer_dimension_stacked",
        lambda: Call(nn.GRU(28, 8, num_layers=3, batch_first=True), zeros(5, 7, 28), zeros(5, 8)),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, N, H_out) = (3, 5, 8), but got "
            "(5, 8). Hint: h_0 lacks the layer dimension; it needs D·num_layers = 3 rows, "
            "e.g. h_0.unsqueeze(0).repeat(3, 1, 1)."
        ),
    ),
    Case(
        "h_0_batch_first",
        lambda: Call(
            nn.GRU(28, 8, num_layers=3, batch_first=True), zeros(5, 7, 28), zeros(5, 3, 8)
        ),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, N, H_out) = (3, 5, 8), but got "
            "(5, 3, 8). Hint: h_0 is batch first, (N, D·num_layers, H_out); states are "
            "(D·num_layers, N, H_out) even when batch_first=True: use "
            "h_0.transpose(0, 1).contiguous()."
        ),
    ),
    Case(
        "h_0_for_a_bigger_batch",
        lambda: Call(rnn(), zeros(5, 7, 28), zeros(1, 64, 8)),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, N, H_out) = (1, 5, 8), but got "
            "(1, 64, 8). Hint: h_0 was made for N = 64 sequences but x holds 5 "
            "(the last batch of an epoch is often smaller); size it from x: "
            "torch.zeros(1, x.size(0), 8)."
        ),
    ),
    Case(
        "h_0_with_wrong_hidden_size",
        lambda: Call(rnn(), zeros(5, 7, 28), zeros(1, 5, 16)),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, N, H_out) = (1, 5, 8), but got "
            "(1, 5, 16). Hint: the last dimension of h_0 is H_out = hidden_size = 8."
        ),
    ),
    Case(
        "h_0_float64",
        lambda: Call(rnn(), zeros(5, 7, 28), zeros(1, 5, 8, dtype=torch.float64)),
        "raises",
        (
            "Expected `h_0` to be a torch.float32 tensor (like x) of shape "
            "(D·num_layers, N, H_out) = (1, 5, 8), but got a torch.float64 tensor of shape "
            "(1, 5, 8). Hint: convert it with h_0.float()."
        ),
    ),
    Case(
        "batched_h_0_for_unbatched_x",
        lambda: Call(rnn(), zeros(7, 28), zeros(1, 1, 8)),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, H_out) = (1, 8), but got (1, 1, 8). "
            "Hint: h_0 is batched (N = 1) but x is unbatched (L, H_in); add the batch "
            "dimension to x with x.unsqueeze(0), or drop it from h_0 with h_0.squeeze(1)."
        ),
    ),
    Case(
        "h_0_of_4_sequences_for_one_unbatched_x",
        lambda: Call(rnn(), zeros(7, 28), zeros(1, 4, 8)),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, H_out) = (1, 8), but got (1, 4, 8). "
            "Hint: h_0 holds the states of N = 4 sequences but x is one unbatched sequence "
            "(L, H_in); pass one sequence's state, h_0[:, k], or a batch of 4 sequences as x."
        ),
    ),
    Case(
        "unbatched_h_0_for_a_batch",
        lambda: Call(rnn(), zeros(5, 7, 28), zeros(1, 8)),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, N, H_out) = (1, 5, 8), but got (1, 8). "
            "Hint: h_0 lacks the batch dimension; to start all N = 5 sequences from it, use "
            "h_0.unsqueeze(1).expand(-1, 5, -1).contiguous()."
        ),
    ),
    Case(
        "one_step_of_a_batch_without_time_dimension",
        lambda: Call(rnn(), zeros(5, 28), zeros(1, 5, 8)),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, H_out) = (1, 8), but got (1, 5, 8). "
            "Hint: h_0 is batched with N = 5, and x, (5, 28), looks like one step of that "
            "batch; add the time dimension with x.unsqueeze(1)."
        ),
    ),
    Case(
        "lstm_given_a_bare_tensor",
        lambda: Call(nn.LSTM(28, 8, batch_first=True), zeros(5, 7, 28), zeros(1, 5, 8)),
        "raises",
        (
            "Expected `h_0` to be a tuple (h_0, c_0) of shapes (D·num_layers, N, H_out) = "
            "(1, 5, 8) and (D·num_layers, N, H_cell) = (1, 5, 8), but got a tensor of shape "
            "(1, 5, 8). Hint: an LSTM carries two states, h and c; pass (h_0, c_0), e.g. c_0 "
            "= torch.zeros(1, 5, 8)."
        ),
    ),
    Case(
        "lstm_given_three_states",
        lambda: Call(nn.LSTM(28, 8, batch_first=True), zeros(5, 7, 28), (zeros(1, 5, 8),) * 3),
        "raises",
        (
            "Expected `h_0` to be a tuple (h_0, c_0) of shapes (D·num_layers, N, H_out) = "
            "(1, 5, 8) and (D·num_layers, N, H_cell) = (1, 5, 8), but got a tuple of 3 "
            "items. Hint: pass exactly two tensors, (h_0, c_0)."
        ),
    ),
    Case(
        "gru_given_a_pair",
        lambda: Call(
            nn.GRU(28, 8, batch_first=True), zeros(5, 7, 28), (zeros(1, 5, 8), zeros(1, 5, 8))
        ),
        "raises",
        (
            "Expected `h_0` to be a tensor of shape (D·num_layers, N, H_out) = (1, 5, 8), "
            "but got a tuple of 2 items. Hint: only an LSTM takes a pair (h_0, c_0); a GRU "
            "has one state: pass h_0 alone."
        ),
    ),
    Case(
        "projected_lstm_h_0_uses_hidden_size",
        lambda: Call(
            nn.LSTM(28, 8, proj_size=3, batch_first=True),
            zeros(5, 7, 28),
            (zeros(1, 5, 8), zeros(1, 5, 8)),
        ),
        "raises",
        (
            "Expected `h_0` to have shape (D·num_layers, N, H_out) = (1, 5, 3), but got "
            "(1, 5, 8). Hint: with proj_size = 3, h has H_out = proj_size = 3; only c uses "
            "hidden_size = 8."
        ),
    ),
    Case(
        "projected_lstm_c_0_uses_proj_size",
        lambda: Call(
            nn.LSTM(28, 8, proj_size=3, batch_first=True),
            zeros(5, 7, 28),
            (zeros(1, 5, 3), zeros(1, 5, 3)),
        ),
        "raises",
        (
            "Expected `c_0` to have shape (D·num_layers, N, H_cell) = (1, 5, 8), but got "
            "(1, 5, 3). Hint: c uses H_cell = hidden_size = 8, even with proj_size = 3."
        ),
    ),
    # -- lengths --------------------------------------------------------------------------
    Case(
        "lengths_longer_than_L",
        lengths_case(torch.tensor([7, 7, 8, 3, 2])),
        "raises",
        (
            "Expected `lengths` to be a 1-D integer CPU tensor of shape (N,) = (5,) with "
            "values in 1..L = 1..7, but got lengths[2] = 8 (shape (5,)). Hint: no sequence "
            "can be longer than x's time dimension (dimension 1, L = 7); were the lengths "
            "measured before truncating?"
        ),
    ),
    Case(
        "lengths_zero",
        lengths_case(torch.tensor([7, 7, 0, 3, 2])),
        "raises",
        (
            "Expected `lengths` to be a 1-D integer CPU tensor of shape (N,) = (5,) with "
            "values in 1..L = 1..7, but got lengths[2] = 0 (shape (5,)). Hint: every "
            "sequence needs at least one step; drop empty sequences before batching."
        ),
    ),
    Case(
        "lengths_float",
        lengths_case(torch.tensor([7.0, 7.0, 6.5, 3.0, 2.0])),
        "silent",
        (
            "Expected `lengths` to be a 1-D integer CPU tensor of shape (N,) = (5,) with "
            "values in 1..L = 1..7, but got a torch.float32 tensor of shape (5,). Hint: "
            "lengths count time steps; convert them with lengths.long()."
        ),
    ),
    Case(
        "lengths_boolean_mask_row",
        lengths_case(torch.ones(5, dtype=torch.bool)),
        "silent",
        (
            "Expected `lengths` to be a 1-D integer CPU tensor of shape (N,) = (5,) with "
            "values in 1..L = 1..7, but got a torch.bool tensor of shape (5,). Hint: lengths "
            "holds booleans; pass the number of real steps per sequence, e.g. "
            "mask.sum(dim=1)."
        ),
    ),
    Case(
        "lengths_as_a_column",
        lengths_case(torch.tensor([[7], [7], [6], [3], [2]])),
        "raises",
        (
            "Expected `lengths` to be a 1-D integer CPU tensor of shape (N,) = (5,) with "
            "values in 1..L = 1..7, but got a tensor of shape (5, 1). Hint: flatten it with "
            "lengths.reshape(-1)."
        ),
    ),
    Case(
        "lengths_as_a_mask",
        lengths_case(lambda: torch.ones(5, 7, dtype=torch.int64)),
        "raises",
        (
            "Expected `lengths` to be a 1-D integer CPU tensor of shape (N,) = (5,) with "
            "values in 1..L = 1..7, but got a tensor of shape (5, 7). Hint: lengths looks "
            "like a (N, L) mask; pass the steps per sequence, lengths.sum(dim=1)."
        ),
    ),
    Case(
        "lengths_not_on_cpu",
        lengths_case(lambda: torch.ones(5, dtype=torch.int64, device="meta")),
        "raises",
        (
            "Expected `lengths` to be a 1-D integer CPU tensor of shape (N,) = (5,) with "
            "values in 1..L = 1..7, but got a tensor on meta of shape (5,). Hint: "
            "pack_padded_sequence needs the lengths on the CPU, even when x is on a GPU: use "
            "lengths.cpu()."
        ),
    ),
    Case(
        "lengths_wrong_count",
        lengths_case(torch.tensor([7, 7, 6, 3])),
        "silent",
        (
            "Expected `lengths` to be a 1-D integer CPU tensor of shape (N,) = (5,) with "
            "values in 1..L = 1..7, but got a tensor of shape (4,). Hint: lengths needs one "
            "entry per sequence of x, which holds N = 5 (dimension 0)."
        ),
    ),
    Case(
        "lengths_for_unbatched_x",
        lambda: Call(rnn(), zeros(7, 28), None, torch.tensor([7])),
        "raises",
        (
            "Expected `lengths` to be None for an unbatched `x` of shape (L, H_in) = "
            "(7, 28), but got a tensor of shape (1,). Hint: an unbatched x is one sequence "
            "of L = 7 steps; slice it (x[:length]) instead, or add the batch dimension with "
            "x.unsqueeze(0)."
        ),
    ),
]


def layer_dtype_device(layer: nn.RNNBase) -> tuple[torch.dtype, torch.device]:
    weight = next(layer.parameters())
    return weight.dtype, weight.device


def run_torch(call: Call) -> object:
    """What a plain torch user writes: pack when there are lengths, then call the layer."""
    x = call.x
    if call.lengths is not None:
        x = pack_padded_sequence(
            x, call.lengths, batch_first=call.layer.batch_first, enforce_sorted=False
        )
    return call.layer(x, call.state)


def run_checked(call: Call) -> object:
    """The same call, validated first (as rnnkit's models do)."""
    dtype, device = layer_dtype_device(call.layer)
    RecurrentSpec.from_module(call.layer).validate(
        call.x, call.state, call.lengths, dtype=dtype, device=device
    )
    return run_torch(call)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_invalid_call_raises_a_pinned_message_before_torch_runs(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = case.make()

    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("the invalid input reached torch")

    monkeypatch.setattr(call.layer, "forward", reached)
    monkeypatch.setattr(f"{__name__}.pack_padded_sequence", reached)
    with pytest.raises(ShapeError) as error:
        run_checked(call)
    assert str(error.value) == case.message


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_torch_alone_fails_or_misbehaves_on_the_same_input(case: Case) -> None:
    call = case.make()
    if case.torch == "raises":
        with pytest.raises(
            (RuntimeError, ValueError, IndexError, AttributeError, NotImplementedError)
        ):
            run_torch(call)
    else:
        result = run_torch(call)
        assert isinstance(result, tuple)
        SILENT_RESULTS[case.name](result[0], result[1])


def _empty_output(output: Any, state: Tensor) -> None:
    assert output.shape == (0, 7, 8)  # nothing computed; the batch's mean loss is NaN
    assert torch.isnan(output.mean())


def _float_lengths_truncated(output: Any, state: Tensor) -> None:
    assert isinstance(output, PackedSequence)
    assert int(output.batch_sizes.sum()) == 7 + 7 + 6 + 3 + 2  # 6.5 became 6 steps


def _mask_row_taken_as_one_step_each(output: Any, state: Tensor) -> None:
    assert isinstance(output, PackedSequence)
    assert output.batch_sizes.tolist() == [5]  # True == 1: every sequence cut to one step


def _fifth_sequence_dropped(output: Any, state: Tensor) -> None:
    assert isinstance(output, PackedSequence)
    assert state.shape == (1, 4, 8)  # 4 lengths for 5 sequences: the last one vanishes


SILENT_RESULTS: dict[str, Callable[[Any, Tensor], None]] = {
    "empty_batch": _empty_output,
    "lengths_float": _float_lengths_truncated,
    "lengths_boolean_mask_row": _mask_row_taken_as_one_step_each,
    "lengths_wrong_count": _fifth_sequence_dropped,
}
"""The specific wrong result torch gives for each input it accepts silently."""


# -- targets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetCase:
    name: str
    check: Callable[[], None]
    loss: Callable[[], Tensor]
    torch: Literal["raises", "warns", "silent"]
    message: str


def class_case(
    y: Tensor, n: int = 4, classes: int = 10
) -> tuple[Callable[[], None], Callable[[], Tensor]]:
    return (
        lambda: validate_class_targets(y, batch_size=n, num_classes=classes),
        lambda: F.cross_entropy(torch.zeros(n, classes), y),
    )


def step_case(y: Tensor) -> tuple[Callable[[], None], Callable[[], Tensor]]:
    return (
        lambda: validate_step_targets(y, batch_size=4, seq_len=7, size=1),
        lambda: F.mse_loss(torch.zeros(4, 7, 1), y),
    )


TARGET_CASES: list[TargetCase] = [
    TargetCase(
        "class_targets_as_a_column",
        *class_case(torch.tensor([[1], [2], [3], [4]])),
        "raises",
        (
            "Expected `y` to be an int64 tensor of shape (N,) = (4,) with class indices in "
            "0..C-1 = 0..9, but got a tensor of shape (4, 1). Hint: remove the trailing "
            "dimension with y.squeeze(1)."
        ),
    ),
    TargetCase(
        "class_targets_float",
        *class_case(torch.tensor([1.0, 2.0, 3.0, 4.0])),
        "raises",
        (
            "Expected `y` to be an int64 tensor of shape (N,) = (4,) with class indices in "
            "0..C-1 = 0..9, but got a torch.float32 tensor of shape (4,). Hint: class "
            "indices are integers; convert them with y.long()."
        ),
    ),
    TargetCase(
        "class_targets_one_hot",
        *class_case(torch.eye(10)[:4]),
        "silent",
        (
            "Expected `y` to be an int64 tensor of shape (N,) = (4,) with class indices in "
            "0..C-1 = 0..9, but got a torch.float32 tensor of shape (4, 10). Hint: y looks "
            "like one-hot or probability rows (N, C); take the class indices with "
            "y.argmax(dim=1)."
        ),
    ),
    TargetCase(
        "class_targets_int32",
        *class_case(torch.tensor([1, 2, 3, 4], dtype=torch.int32)),
        "raises",
        (
            "Expected `y` to be an int64 tensor of shape (N,) = (4,) with class indices in "
            "0..C-1 = 0..9, but got a torch.int32 tensor of shape (4,). Hint: cross_entropy "
            "takes int64 class indices; convert them with y.long()."
        ),
    ),
    TargetCase(
        "class_targets_out_of_range",
        *class_case(torch.tensor([1, 12, 3, 4])),
        "raises",
        (
            "Expected `y` to be an int64 tensor of shape (N,) = (4,) with class indices in "
            "0..C-1 = 0..9, but got y[1] = 12. Hint: the model has num_classes = 10; build "
            "it with num_classes = 13 to cover label 12, or fix the labels."
        ),
    ),
    TargetCase(
        "class_targets_one_based",
        *class_case(torch.tensor([1, 10, 3, 4])),
        "raises",
        (
            "Expected `y` to be an int64 tensor of shape (N,) = (4,) with class indices in "
            "0..C-1 = 0..9, but got y[1] = 10. Hint: the labels seem to run 1..C; shift them "
            "with y - 1."
        ),
    ),
    TargetCase(
        "class_targets_negative",
        *class_case(torch.tensor([1, -1, 3, 4])),
        "raises",
        (
            "Expected `y` to be an int64 tensor of shape (N,) = (4,) with class indices in "
            "0..C-1 = 0..9, but got y[1] = -1. Hint: class indices cannot be negative."
        ),
    ),
    TargetCase(
        "class_targets_wrong_count",
        *class_case(torch.tensor([1, 2, 3])),
        "raises",
        (
            "Expected `y` to be an int64 tensor of shape (N,) = (4,) with class indices in "
            "0..C-1 = 0..9, but got a tensor of shape (3,). Hint: y holds 3 labels for a "
            "batch of N = 4 sequences; keep each label with its sequence "
            "(one dataset, one sampler)."
        ),
    ),
    TargetCase(
        "step_targets_without_feature_dimension",
        *step_case(torch.zeros(4, 7)),
        "warns",
        (
            "Expected `y` to be a real-valued tensor of shape (N, L, H_y) = (4, 7, 1), but "
            "got a tensor of shape (4, 7). Hint: y lacks the feature dimension "
            "(mse_loss would broadcast it against the predictions); add it with "
            "y.unsqueeze(-1)."
        ),
    ),
    TargetCase(
        "step_targets_time_first",
        *step_case(torch.zeros(7, 4, 1)),
        "raises",
        (
            "Expected `y` to be a real-valued tensor of shape (N, L, H_y) = (4, 7, 1), but "
            "got a tensor of shape (7, 4, 1). Hint: y is time first, (L, N, H_y); targets "
            "are batch first: use y.transpose(0, 1)."
        ),
    ),
    TargetCase(
        "step_targets_one_step_short",
        *step_case(torch.zeros(4, 6, 1)),
        "raises",
        (
            "Expected `y` to be a real-valued tensor of shape (N, L, H_y) = (4, 7, 1), but "
            "got a tensor of shape (4, 6, 1). Hint: y has 6 steps but x has L = 7; for "
            "next-step prediction cut both from one series s of L + 1 steps: x = s[:, :-1], "
            "y = s[:, 1:]."
        ),
    ),
    TargetCase(
        "step_targets_with_more_values_per_step",
        *step_case(torch.zeros(4, 7, 2)),
        "warns",
        (
            "Expected `y` to be a real-valued tensor of shape (N, L, H_y) = (4, 7, 1), but "
            "got a tensor of shape (4, 7, 2). Hint: y has H_y = 2 values per step but the "
            "model predicts 1."
        ),
    ),
]


@pytest.mark.parametrize("case", TARGET_CASES, ids=[case.name for case in TARGET_CASES])
def test_invalid_targets_raise_a_pinned_message(case: TargetCase) -> None:
    with pytest.raises(ShapeError) as error:
        case.check()
    assert str(error.value) == case.message


@pytest.mark.parametrize("case", TARGET_CASES, ids=[case.name for case in TARGET_CASES])
def test_the_loss_alone_fails_or_misbehaves_on_the_same_targets(case: TargetCase) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error" if case.torch == "warns" else "ignore")
        if case.torch == "silent":
            case.loss()
            return
        with pytest.raises((RuntimeError, ValueError, IndexError, UserWarning)):
            case.loss()


# -- cuDNN ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_strided_states_are_rejected_where_cudnn_would_reject_them(
    cell: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cuDNN raises "rnn: hx is not contiguous"; simulate its device on the CPU."""
    spec = RecurrentSpec(cell, 28, 8, num_layers=2, batch_first=True)  # type: ignore[arg-type]
    x, h = zeros(5, 7, 28), zeros(5, 2, 8).transpose(0, 1)  # a strided (2, 5, 8) view
    state = (h, zeros(2, 5, 8)) if cell == "lstm" else h
    spec.validate(x, state)  # the CPU kernels take strided states
    monkeypatch.setattr("rnnkit.shapes._checks.cudnn_needs_contiguous", lambda value: True)
    with pytest.raises(ShapeError) as error:
        spec.validate(x, state)
    assert str(error.value) == (
        "Expected `h_0` to be a contiguous tensor of shape (D·num_layers, N, H_out) = "
        "(2, 5, 8) (cuDNN needs it), but got a non-contiguous tensor of shape (2, 5, 8). "
        "Hint: a transposed or sliced state is a strided view; pass h_0.contiguous()."
    )
    spec.validate(x, state, torch.tensor([7, 7, 6, 3, 2]))  # packing copies the state
    spec.validate(x, (h.contiguous(), zeros(2, 5, 8)) if cell == "lstm" else h.contiguous())


def test_cudnn_needs_contiguous_only_on_cuda() -> None:
    from rnnkit.shapes._checks import cudnn_needs_contiguous

    assert cudnn_needs_contiguous(zeros(2, 3)) is False
    assert cudnn_needs_contiguous(zeros(2, 3, device="meta")) is False


def test_there_are_at_least_30_distinct_cases() -> None:
    messages = [case.message for case in CASES] + [case.message for case in TARGET_CASES]
    assert len(set(messages)) == len(messages) >= 30
