"""The recurrent cells written out as tensor equations, for exported programs (private).

torch's :class:`torch.nn.RNN`, :class:`torch.nn.LSTM` and :class:`torch.nn.GRU` specialise the
sequence length when :func:`torch.export.export` traces them, so an exported program built on
them runs only the length it was traced with. Here each layer and direction is a loop over
:func:`torch._higher_order_ops.scan.scan` of the cell's equations, which stays symbolic in
``L``; the weights are the wrapped layer's own parameters. A right-padded batch is handled by
updating a sequence's state only at its valid steps (outputs are zero elsewhere), so a
backward direction starts at each sequence's own last valid step, as in rnnkit's models.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan

__all__ = ["Carry", "cell_step", "run_stack", "step_stack"]

Carry = tuple[Tensor, Tensor]
"""One layer and direction's state ``(h, c)``; ``c`` is unused (and passed through) but for
an LSTM."""


def _weights(rnn: nn.RNNBase, layer: int, reverse: bool) -> list[Tensor]:
    name = f"l{layer}{'_reverse' if reverse else ''}"
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    if getattr(rnn, "proj_size", 0):
        names.append("weight_hr")
    return [getattr(rnn, f"{weight}_{name}") for weight in names]


def cell_step(rnn: nn.RNNBase, weights: list[Tensor], x_proj: Tensor, carry: Carry) -> Carry:
    """One step of one cell from its projected input ``x W_ih^T + b_ih`` ``(N, G·H_cell)``."""
    h, c = carry
    gates_h = h @ weights[1].T + weights[3]
    if rnn.mode == "LSTM":
        i, f, g, o = (x_proj + gates_h).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return (h @ weights[4].T if len(weights) == 5 else h), c
    if rnn.mode == "GRU":
        x_r, x_z, x_n = x_proj.chunk(3, dim=-1)
        h_r, h_z, h_n = gates_h.chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h, c
    pre = x_proj + gates_h
    return (torch.relu(pre) if rnn.mode == "RNN_RELU" else torch.tanh(pre)), c


def _masked(keep: Tensor | None, new: Carry, old: Carry) -> tuple[Carry, Tensor]:
    """The state after a step (unchanged at padded steps) and the step's output (zero there)."""
    if keep is None:  # copies: a loop's carry and outputs must not alias each other
        return (new[0], new[1].clone()), new[0].clone()
    kept = (torch.where(keep, new[0], old[0]), torch.where(keep, new[1], old[1]))
    return kept, torch.where(keep, new[0], torch.zeros_like(new[0]))


def _unidirectional(
    rnn: nn.RNNBase, xs: Tensor, h0: Tensor, c0: Tensor, valid: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Every layer in one scan: each step runs the whole stack (one loop is cheaper to trace)."""
    weights = [_weights(rnn, layer, reverse=False) for layer in range(rnn.num_layers)]
    projected = xs @ weights[0][0].T + weights[0][2]

    def combine(state: Carry, step: tuple[Tensor, Tensor]) -> tuple[Carry, Tensor]:
        x_proj, keep = step
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        for layer, layer_weights in enumerate(weights):
            if layer > 0:
                x_proj = hs[-1] @ layer_weights[0].T + layer_weights[2]
            old = (state[0][layer], state[1][layer])
            (h, c), output = _masked(
                keep if valid is not None else None,
                cell_step(rnn, layer_weights, x_proj, old),
                old,
            )
            hs.append(h)
            cs.append(c)
        return (torch.stack(hs), torch.stack(cs)), output

    keeps = valid if valid is not None else torch.ones_like(xs[..., :1], dtype=torch.bool)
    (h_n, c_n), outputs = scan(combine, (h0, c0), (projected, keeps))
    return outputs, h_n, c_n


def _bidirectional_layer(
    rnn: nn.RNNBase, layer: int, xs: Tensor, carry: tuple[Tensor, ...], valid: Tensor | None
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Both directions of one layer in one scan; the backward one over the flipped steps."""
    forward, backward = _weights(rnn, layer, False), _weights(rnn, layer, True)
    keeps = valid if valid is not None else torch.ones_like(xs[..., :1], dtype=torch.bool)
    inputs = (
        xs @ forward[0].T + forward[2],
        (xs @ backward[0].T + backward[2]).flip(0),
        keeps,
        keeps.flip(0),
    )

    def combine(
        state: tuple[Tensor, ...], step: tuple[Tensor, ...]
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, Tensor]]:
        mask_f = step[2] if valid is not None else None
        mask_b = step[3] if valid is not None else None
        old_f, old_b = (state[0], state[1]), (state[2], state[3])
        new_f, out_f = _masked(mask_f, cell_step(rnn, forward, step[0], old_f), old_f)
        new_b, out_b = _masked(mask_b, cell_step(rnn, backward, step[1], old_b), old_b)
        return (*new_f, *new_b), (out_f, out_b)

    final, (outs_f, outs_b) = scan(combine, carry, inputs)
    return torch.cat([outs_f, outs_b.flip(0)], dim=-1), final


def run_stack(
    rnn: nn.RNNBase, xs: Tensor, h0: Tensor, c0: Tensor, valid: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Run every layer over time-major ``xs``; return ``(output, h_n, c_n)``.

    Shapes:
        - ``xs``: ``(L, N, H_in)``; ``valid``: ``(L, N, 1)``.
        - ``h0``, ``h_n``: ``(D·num_layers, N, H_out)``; ``c0``, ``c_n``:
          ``(D·num_layers, N, H_cell)``.
        - ``output``: ``(L, N, D·H_out)``.
    """
    if not rnn.bidirectional:
        return _unidirectional(rnn, xs, h0, c0, valid)
    hs, cs = [], []
    for layer in range(rnn.num_layers):
        rows = (2 * layer, 2 * layer + 1)
        # copies: a view's storage offset (a multiple of N) would pin N during export
        carry = tuple(state[row].clone() for row in rows for state in (h0, c0))
        xs, final = _bidirectional_layer(rnn, layer, xs, carry, valid)
        hs.extend([final[0], final[2]])
        cs.extend([final[1], final[3]])
    return xs, torch.stack(hs), torch.stack(cs)


def step_stack(rnn: nn.RNNBase, x_t: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of a unidirectional stack; return ``(top output, h_next, c_next)``.

    Shapes:
        - ``x_t``: ``(N, H_in)``; ``h``: ``(num_layers, N, H_out)``; ``c``:
          ``(num_layers, N, H_cell)``.
    """
    hs, cs = [], []
    layer_input = x_t
    for layer in range(rnn.num_layers):
        weights = _weights(rnn, layer, reverse=False)
        projected = layer_input @ weights[0].T + weights[2]
        new_h, new_c = cell_step(rnn, weights, projected, (h[layer], c[layer]))
        hs.append(new_h)
        cs.append(new_c)
        layer_input = new_h
    return layer_input, torch.stack(hs), torch.stack(cs)
