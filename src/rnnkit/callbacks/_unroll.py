"""The encoder's recurrence unrolled step by step, for the gradient-flow diagnostic.

torch's fused recurrent layers hide the per-step states inside one operation. :class:`Unroll`
writes the recurrence out with torch's equations and the layer's own weights so that every
step's state is a tensor in the autograd graph, and :func:`stepwise` routes an encoder through
it for one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.data import valid_mask
from rnnkit.models.encoder import RecurrentEncoder


class Unroll:
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
    return valid_mask(lengths, steps, device=device).T


@contextmanager
def stepwise(encoder: RecurrentEncoder, unroll: Unroll) -> Iterator[None]:
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
