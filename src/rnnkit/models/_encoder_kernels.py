"""Which of rnnkit's kernels runs an encoder's layer, and the dispatch to it.

:class:`~rnnkit.RecurrentEncoder` asks :data:`REFUSALS` (why a kernel cannot run a call) or
:data:`APPLIES` (whether ``kernel="auto"`` should run it), then calls :func:`run_kernel`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from rnnkit.kernels import gru as _gru_kernel
from rnnkit.kernels import lstm as _lstm_kernel
from rnnkit.kernels import rnn as _rnn_kernel
from rnnkit.shapes import State

REFUSALS: dict[str, Callable[[nn.RNNBase, object], str | None]] = {
    "rnn": _rnn_kernel.refusal_reason,
    "gru": _gru_kernel.refusal_reason,
    "lstm": _lstm_kernel.refusal_reason,
}
APPLIES: dict[str, Callable[[nn.RNNBase, object], bool]] = {
    "rnn": _rnn_kernel.applies,
    "gru": _gru_kernel.applies,
    "lstm": _lstm_kernel.applies,
}


def run_kernel(rnn: nn.RNNBase, x: Tensor, h0: State | None) -> tuple[Tensor, State]:
    """Run ``rnn``'s whole stack through the rnnkit kernel of its cell.

    An empty batch (N = 0) of a GRU or LSTM goes to torch's layer: there is nothing to compute,
    and the GRU and LSTM kernels size their buffers by N.
    """
    if isinstance(rnn, (nn.GRU, nn.LSTM)) and x.shape[0] == 0:  # x is batch-first here
        output, state = rnn(x, h0)
        return output, state
    if isinstance(rnn, nn.LSTM):
        assert h0 is None or isinstance(h0, tuple)
        return _lstm_kernel.run_stack(rnn, x, h0)
    assert not isinstance(h0, tuple)
    if isinstance(rnn, nn.GRU):
        return _gru_kernel.run_stack(rnn, x, h0)
    assert isinstance(rnn, nn.RNN)
    return _rnn_kernel.run_stack(rnn, x, h0)


def shares_saved_states(output: Tensor) -> bool:
    """Whether ``output`` is a kernel's states buffer saved for backward (hand out a copy)."""
    return (
        _rnn_kernel.shares_saved_states(output)
        or _gru_kernel.shares_saved_states(output)
        or _lstm_kernel.shares_saved_states(output)
    )
