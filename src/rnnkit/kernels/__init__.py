"""Recurrent kernels: rnnkit's own implementations of torch's recurrent layers.

Each kernel is a private module (``_rnn`` for the plain RNN) that computes exactly what torch's
layer computes, faster on the CPU, and says through ``applies`` when it can stand in for the
layer. :class:`rnnkit.RecurrentEncoder` chooses between a kernel and torch's layer. May import
torch only.
"""
