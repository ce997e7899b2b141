"""The recurrent layers as ONNX ``RNN``/``LSTM``/``GRU`` operators (private).

ONNX's recurrent operators take the sequence length from the input at run time and handle
right-padded batches through ``sequence_lens`` (the backward direction of each sequence starts
at its own last valid step; outputs past it are zero), which is exactly rnnkit's contract. One
operator runs one layer (both directions); layers are chained. The gate blocks are reordered
from torch's layout (LSTM ``i, f, g, o``; GRU ``r, z, n``) to ONNX's (``i, o, f, c``;
``z, r, h``), and a GRU uses ``linear_before_reset=1``, torch's form of the candidate gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn

from rnnkit.export._graph import GraphBuilder
from rnnkit.models import RecurrentEncoder

__all__ = ["StackOutputs", "add_stack"]

_GATE_ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}
_OP_TYPE = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


@dataclass(frozen=True)
class StackOutputs:
    """Value names of the stack's results.

    Attributes:
        output: The top layer's outputs, time-major ``(L, N, D·H_out)``.
        h_n: The final hidden states ``(D·num_layers, N, H_out)``.
        c_n: The final cell states (LSTM) or ``None``.
        top_h: The top layer's final states ``(D, N, H_out)``.
    """

    output: str
    h_n: str
    c_n: str | None
    top_h: str


def _array(value: Tensor) -> np.ndarray:
    return value.detach().cpu().numpy().astype(np.float32)


def _reorder(value: Tensor, cell: str) -> np.ndarray:
    blocks = np.split(_array(value), len(_GATE_ORDER[cell]), axis=0)
    return np.concatenate([blocks[i] for i in _GATE_ORDER[cell]], axis=0)


def _layer_weights(rnn: nn.RNNBase, layer: int, cell: str) -> tuple[np.ndarray, ...]:
    """ONNX ``W``, ``R`` and ``B`` of one layer, directions stacked on a leading axis."""
    suffixes = ["", "_reverse"] if rnn.bidirectional else [""]
    w, r, b = [], [], []
    for suffix in suffixes:
        name = f"l{layer}{suffix}"
        w.append(_reorder(getattr(rnn, f"weight_ih_{name}"), cell))
        r.append(_reorder(getattr(rnn, f"weight_hh_{name}"), cell))
        bias_ih = _reorder(getattr(rnn, f"bias_ih_{name}"), cell)
        bias_hh = _reorder(getattr(rnn, f"bias_hh_{name}"), cell)
        b.append(np.concatenate([bias_ih, bias_hh]))
    return np.stack(w), np.stack(r), np.stack(b)


def _slice_layer(g: GraphBuilder, state: str, layer: int, directions: int) -> str:
    start, end = layer * directions, (layer + 1) * directions
    return g.op(
        "Slice", state, g.const([start], "start", np.int64), g.const([end], "end", np.int64)
    )


def _attributes(encoder: RecurrentEncoder) -> dict[str, Any]:
    spec = encoder.spec
    attributes: dict[str, Any] = {
        "hidden_size": spec.hidden_size,
        "direction": "bidirectional" if spec.bidirectional else "forward",
    }
    if spec.cell == "gru":
        attributes["linear_before_reset"] = 1
    if spec.cell == "rnn":
        activation = "Relu" if encoder.nonlinearity == "relu" else "Tanh"
        attributes["activations"] = [activation] * spec.D
    return attributes


def add_stack(
    g: GraphBuilder,
    encoder: RecurrentEncoder,
    x: str,
    seq_lens: str | None,
    h0: str | None,
    c0: str | None,
) -> StackOutputs:
    """Add every layer of `encoder` to `g`.

    Args:
        g: The graph being built.
        encoder: The trained layers (float32, no LSTM projection).
        x: The time-major input ``(L, N, H_in)``.
        seq_lens: The valid lengths as int32 ``(N,)``, or ``None`` (all ``L``).
        h0: The initial hidden state ``(D·num_layers, N, H_out)`` or ``None`` (zeros).
        c0: The initial cell state (LSTM) or ``None`` (zeros).

    Returns:
        The names of the stack's results.
    """
    spec = encoder.spec
    attributes = _attributes(encoder)
    hs: list[str] = []
    cs: list[str] = []
    layer_input = x
    for layer in range(spec.num_layers):
        w, r, b = (
            g.const(v, stem)
            for v, stem in zip(
                _layer_weights(encoder.rnn, layer, spec.cell), ("W", "R", "B"), strict=True
            )
        )
        inputs = [layer_input, w, r, b, seq_lens or ""]
        inputs.append("" if h0 is None else _slice_layer(g, h0, layer, spec.D))
        if spec.cell == "lstm":
            inputs.append("" if c0 is None else _slice_layer(g, c0, layer, spec.D))
        outputs = 3 if spec.cell == "lstm" else 2
        results = g.op_multi(_OP_TYPE[spec.cell], *inputs, outputs=outputs, **attributes)
        hs.append(results[1])
        if spec.cell == "lstm":
            cs.append(results[2])
        # (L, D, N, H) -> (L, N, D·H): each step's directions side by side, as torch's output;
        # the width is fixed, not -1, which cannot be inferred for an empty batch (N = 0)
        steps_first = g.op("Transpose", results[0], perm=[0, 2, 1, 3])
        width = spec.D * spec.output_size
        layer_input = g.op("Reshape", steps_first, g.const([0, 0, width], "shape", np.int64))
    h_n = hs[0] if len(hs) == 1 else g.op("Concat", *hs, axis=0)
    c_n = None if not cs else cs[0] if len(cs) == 1 else g.op("Concat", *cs, axis=0)
    return StackOutputs(output=layer_input, h_n=h_n, c_n=c_n, top_h=hs[-1])
