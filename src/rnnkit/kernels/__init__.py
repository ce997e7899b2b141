"""Recurrent kernels: rnnkit's own implementations of torch's recurrent layers.

Each kernel is a module (``rnn``, ``gru`` and ``lstm``; what they share, such as when a
kernel must give way, is in the private ``_common``) that computes what torch's layer computes, on
the CPU, and says through ``refusal_reason`` why it cannot stand in for the layer and through
``applies`` when ``kernel="auto"`` may use it. :class:`rnnkit.RecurrentEncoder` chooses between
a kernel and torch's layer. May import torch and :mod:`rnnkit.errors` only.
"""
