r"""Weight initialisation schemes for torch's recurrent layers.

Three schemes, chosen by name with ``init=`` on every rnnkit model:

``"default"``
    torch's own: every weight and bias drawn from :math:`U(-\sqrt{k}, \sqrt{k})` with
    :math:`k = 1/\text{hidden\_size}` (a common textbook rule). Nothing is changed.
``"orthogonal"``
    each gate's block of every recurrent matrix ``weight_hh_l*`` (:math:`W` in
    :math:`H_t = f(U X_t + W H_{t-1} + b)`) is a random orthogonal matrix, so the recurrence
    neither amplifies nor shrinks the state at initialisation; input weights (:math:`U`) and
    biases keep torch's default.
``"identity"``
    the IRNN of Le, Jaitly and Hinton (2015), for ``cell="rnn"`` with ``nonlinearity="relu"``
    only: :math:`W = I` and every bias zero, so at initialisation the state is carried
    unchanged from step to step; input weights keep torch's default.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

__all__ = ["INIT_SCHEMES", "InitScheme", "check_init", "init_recurrent_"]

InitScheme = Literal["default", "orthogonal", "identity"]
"""The names accepted by ``init=``."""

INIT_SCHEMES: tuple[str, ...] = get_args(InitScheme)
"""Every accepted ``init=`` name, in the documented order."""

_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def check_init(init: object, *, cell: str, nonlinearity: str) -> None:
    """Raise when ``init`` is not a scheme that applies to this layer.

    Args:
        init: The requested scheme name.
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        nonlinearity: ``"tanh"`` or ``"relu"`` (meaningful for ``cell="rnn"`` only).

    Raises:
        ValueError: ``init`` is unknown, or ``"identity"`` was asked for a layer that is not
            a relu RNN.
    """
    if init not in INIT_SCHEMES:
        raise ValueError(f"Expected `init` to be one of {INIT_SCHEMES}, but got {init!r}.")
    if init == "identity" and (cell != "rnn" or nonlinearity != "relu"):
        raise ValueError(
            f'Expected `init="identity"` with cell="rnn" and nonlinearity="relu" (the IRNN), '
            f"but got cell={cell!r}, nonlinearity={nonlinearity!r}. Hint: use "
            f'init="orthogonal" for gated cells or tanh RNNs.'
        )


def init_recurrent_(module: nn.RNNBase, scheme: InitScheme) -> None:
    """Initialise a torch recurrent layer in place.

    Args:
        module: A :class:`torch.nn.RNN`, :class:`torch.nn.LSTM` or :class:`torch.nn.GRU`.
        scheme: ``"default"``, ``"orthogonal"`` or ``"identity"`` (see the module docstring).
    """
    if scheme == "default":
        module.reset_parameters()
    elif scheme == "orthogonal":
        _orthogonal_recurrent_(module)
    else:
        _identity_recurrent_(module)


def _recurrent_weights(module: nn.RNNBase) -> list[nn.Parameter]:
    return [p for name, p in module.named_parameters() if name.startswith("weight_hh_l")]


def _orthogonal_recurrent_(module: nn.RNNBase) -> None:
    gates = _GATES[module.mode.split("_")[0]]
    with torch.no_grad():
        for weight in _recurrent_weights(module):
            for block in weight.chunk(gates, dim=0):
                nn.init.orthogonal_(block)


def _identity_recurrent_(module: nn.RNNBase) -> None:
    with torch.no_grad():
        for weight in _recurrent_weights(module):
            weight.copy_(torch.eye(*weight.shape, dtype=weight.dtype, device=weight.device))
        for name, param in module.named_parameters():
            if name.startswith("bias_"):
                param.zero_()
