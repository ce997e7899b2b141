"""RecurrentEncoder: the tutorial's recurrence, states, layouts, length paths and init schemes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import pytest
import torch
from torch import Tensor, nn

from rnnkit.errors import ShapeError
from rnnkit.models.encoder import RecurrentEncoder
from rnnkit.models.initializers import init_recurrent_
from rnnkit.shapes import CellType

CELLS: tuple[CellType, ...] = ("rnn", "lstm", "gru")
LAYERS: dict[str, Callable[..., nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def weight(module: nn.Module, name: str) -> Tensor:
    value = getattr(module, name)
    assert isinstance(value, Tensor)
    return value


def tutorial_recurrence(x: Tensor, rnn: nn.RNNBase, activation: Any) -> list[Tensor]:
    """H_t = f(U X_t + W H_{t-1} + b) for every layer, written out step by step (N, L, ·)."""
    layer_input = x
    finals: list[Tensor] = []
    for layer in range(rnn.num_layers):
        directions = [""] + (["_reverse"] if rnn.bidirectional else [])
        outputs = []
        for suffix in directions:
            u = getattr(rnn, f"weight_ih_l{layer}{suffix}")
            w = getattr(rnn, f"weight_hh_l{layer}{suffix}")
            b = getattr(rnn, f"bias_ih_l{layer}{suffix}") + getattr(
                rnn, f"bias_hh_l{layer}{suffix}"
            )
            steps = range(x.shape[1])
            order = reversed(steps) if suffix else steps
            h = torch.zeros(x.shape[0], rnn.hidden_size)
            states: dict[int, Tensor] = {}
            for t in order:
                h = activation(layer_input[:, t] @ u.T + h @ w.T + b)
                states[t] = h
            finals.append(h)
            outputs.append(torch.stack([states[t] for t in steps], dim=1))
        layer_input = torch.cat(outputs, dim=-1)
    return [layer_input, torch.stack(finals)]


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_is_the_tutorials_recurrence(
    bidirectional: bool, num_layers: int, nonlinearity: Literal["tanh", "relu"]
) -> None:
    torch.manual_seed(0)
    encoder = RecurrentEncoder(
        3, 5, num_layers=num_layers, bidirectional=bidirectional, nonlinearity=nonlinearity
    )
    x = torch.randn(4, 6, 3)
    output, h_n = encoder(x)
    assert isinstance(encoder.rnn, nn.RNN)
    activation = torch.tanh if nonlinearity == "tanh" else torch.relu
    expected_output, expected_h_n = tutorial_recurrence(x, encoder.rnn, activation)
    torch.testing.assert_close(output, expected_output)
    torch.testing.assert_close(h_n, expected_h_n)


def test_bidirectional_output_concatenates_forward_and_reversed_runs() -> None:
    torch.manual_seed(1)
    encoder = RecurrentEncoder(2, 4, bidirectional=True)
    x = torch.randn(3, 5, 2)
    output, _ = encoder(x)
    forward_half = tutorial_recurrence(x, _single_direction(encoder.rnn, ""), torch.tanh)[0]
    backward_run = tutorial_recurrence(
        x.flip(1), _single_direction(encoder.rnn, "_reverse"), torch.tanh
    )[0]
    torch.testing.assert_close(output[..., :4], forward_half)
    torch.testing.assert_close(output[..., 4:], backward_run.flip(1))


def _single_direction(rnn: nn.RNNBase, suffix: str) -> nn.RNN:
    single = nn.RNN(rnn.input_size, rnn.hidden_size, batch_first=True)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(single, f"{name}_l0").data.copy_(getattr(rnn, f"{name}_l0{suffix}"))
    return single


@pytest.mark.parametrize("cell", CELLS)
def test_default_state_is_zeros_and_explicit_state_is_used(cell: CellType) -> None:
    torch.manual_seed(2)
    encoder = RecurrentEncoder(3, 4, cell=cell, num_layers=2)
    x = torch.randn(2, 5, 3)
    zeros = torch.zeros(2, 2, 4)
    h0: Any = (zeros, zeros) if cell == "lstm" else zeros
    torch.testing.assert_close(encoder(x)[0], encoder(x, h0)[0], rtol=0, atol=0)
    random = torch.randn(2, 2, 4)
    h0 = (random, random.flip(0)) if cell == "lstm" else random
    reference = LAYERS[cell](3, 4, num_layers=2, batch_first=True)
    reference.load_state_dict(encoder.rnn.state_dict())
    output, _ = encoder(x, h0)
    torch.testing.assert_close(output, reference(x, h0)[0])
    assert not torch.allclose(output, encoder(x)[0])


def test_float64_model_runs_in_float64() -> None:
    encoder = RecurrentEncoder(3, 4, cell="lstm").double()
    output, (h_n, c_n) = encoder(torch.randn(2, 5, 3, dtype=torch.float64))
    assert output.dtype == h_n.dtype == c_n.dtype == torch.float64


@pytest.mark.parametrize("cell", CELLS)
def test_time_major_layout_matches_batch_first(cell: CellType) -> None:
    torch.manual_seed(3)
    first = RecurrentEncoder(3, 4, cell=cell, bidirectional=True)
    time_major = RecurrentEncoder(3, 4, cell=cell, bidirectional=True, batch_first=False)
    time_major.load_state_dict(first.state_dict())
    x = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 2])
    out_first, state_first = first(x, lengths=lengths)
    out_time, state_time = time_major(x.transpose(0, 1), lengths=lengths)
    torch.testing.assert_close(out_time, out_first.transpose(0, 1))
    torch.testing.assert_close(state_time, state_first)


@pytest.mark.parametrize("cell", CELLS)
def test_unbatched_input_matches_a_batch_of_one(cell: CellType) -> None:
    torch.manual_seed(4)
    encoder = RecurrentEncoder(3, 4, cell=cell, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3)
    output, state = encoder(x)
    batch_output, batch_state = encoder(x.unsqueeze(0))
    assert output.shape == (5, 8)
    torch.testing.assert_close(output, batch_output[0])
    if isinstance(state, tuple):
        assert isinstance(batch_state, tuple)
        torch.testing.assert_close(state[1], batch_state[1][:, 0])
        state, batch_state = state[0], batch_state[0]
    assert isinstance(batch_state, Tensor)
    torch.testing.assert_close(state, batch_state[:, 0])


@pytest.mark.parametrize(
    ("cell", "num_layers", "bidirectional"),
    [("rnn", 1, False), ("gru", 1, False), ("lstm", 1, False), ("rnn", 2, False),
     ("gru", 1, True), ("lstm", 2, True)],
)  # fmt: skip
def test_every_length_path_matches_running_each_sequence_alone(
    cell: CellType, num_layers: int, bidirectional: bool
) -> None:
    torch.manual_seed(5)
    encoder = RecurrentEncoder(3, 4, cell=cell, num_layers=num_layers, bidirectional=bidirectional)
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 2, 4, 1])
    output, state = encoder(x, lengths=lengths)
    top_only = encoder.run_outputs(x, None, lengths)
    torch.testing.assert_close(top_only, output)
    for n, length in enumerate(lengths.tolist()):
        alone_output, alone_state = encoder(x[n : n + 1, :length])
        torch.testing.assert_close(output[n, :length], alone_output[0])
        assert torch.count_nonzero(output[n, length:]) == 0
        for got, expected in zip(_states(state), _states(alone_state), strict=True):
            torch.testing.assert_close(got[:, n], expected[:, 0])


def _states(state: Any) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("cell", CELLS)
def test_equal_lengths_skip_packing_and_match(cell: CellType) -> None:
    torch.manual_seed(6)
    encoder = RecurrentEncoder(3, 4, cell=cell, bidirectional=True)
    x = torch.randn(3, 5, 3)
    full, _ = encoder(x, lengths=torch.full((3,), 5))
    plain, _ = encoder(x)
    assert torch.equal(full, plain)
    short, short_state = encoder(x, lengths=torch.full((3,), 3))
    cut, cut_state = encoder(x[:, :3])
    assert torch.equal(short[:, :3], cut)
    assert torch.count_nonzero(short[:, 3:]) == 0
    for got, expected in zip(_states(short_state), _states(cut_state), strict=True):
        assert torch.equal(got, expected)


def test_packing_is_skipped_when_every_length_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    import rnnkit.models.encoder as encoder_module

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("packed although every length equals L")

    monkeypatch.setattr(encoder_module, "pack_padded_sequence", fail)
    encoder = RecurrentEncoder(3, 4, cell="lstm", num_layers=2, bidirectional=True)
    encoder(torch.randn(2, 5, 3), lengths=torch.tensor([5, 5]))
    encoder(torch.randn(2, 5, 3), lengths=torch.tensor([2, 2]))  # equal: cut, not packed
    uni = RecurrentEncoder(3, 4, cell="lstm", num_layers=2)
    uni.run_outputs(torch.randn(2, 5, 3), None, torch.tensor([5, 2]))  # padded + gather path
    with pytest.raises(AssertionError, match="packed"):
        encoder(torch.randn(2, 5, 3), lengths=torch.tensor([5, 2]))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_orthogonal_init_makes_every_recurrent_gate_block_orthogonal(
    cell: CellType, bidirectional: bool
) -> None:
    torch.manual_seed(7)
    encoder = RecurrentEncoder(
        3, 6, cell=cell, num_layers=2, bidirectional=bidirectional, init="orthogonal"
    )
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    recurrent = [p for n, p in encoder.rnn.named_parameters() if n.startswith("weight_hh")]
    assert len(recurrent) == 2 * (2 if bidirectional else 1)
    for weight in recurrent:
        for block in weight.detach().chunk(gates, dim=0):
            torch.testing.assert_close(block @ block.T, torch.eye(6), atol=1e-5, rtol=0)


def test_orthogonal_init_with_lstm_projection_has_orthonormal_columns() -> None:
    torch.manual_seed(8)
    encoder = RecurrentEncoder(3, 6, cell="lstm", proj_size=2, init="orthogonal")
    for block in weight(encoder.rnn, "weight_hh_l0").detach().chunk(4, dim=0):
        assert block.shape == (6, 2)
        torch.testing.assert_close(block.T @ block, torch.eye(2), atol=1e-5, rtol=0)


def test_orthogonal_init_keeps_input_weights_default() -> None:
    torch.manual_seed(9)
    default = RecurrentEncoder(3, 6, cell="gru")
    torch.manual_seed(9)
    orthogonal = RecurrentEncoder(3, 6, cell="gru", init="orthogonal")
    for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
        assert torch.equal(weight(default.rnn, name), weight(orthogonal.rnn, name))
    assert not torch.equal(
        weight(default.rnn, "weight_hh_l0"), weight(orthogonal.rnn, "weight_hh_l0")
    )


def test_identity_init_is_the_irnn() -> None:
    torch.manual_seed(10)
    encoder = RecurrentEncoder(
        3, 5, nonlinearity="relu", num_layers=2, bidirectional=True, init="identity"
    )
    for name, param in encoder.rnn.named_parameters():
        if name.startswith("weight_hh"):
            assert torch.equal(param, torch.eye(5))
        elif name.startswith("bias"):
            assert torch.count_nonzero(param) == 0
    # With W = I and b = 0 a relu state carries over unchanged when the input adds nothing.
    with torch.no_grad():
        weight(encoder.rnn, "weight_ih_l0").zero_()
        weight(encoder.rnn, "weight_ih_l0_reverse").zero_()
    h0 = torch.rand(4, 1, 5)
    _, h_n = encoder(torch.randn(1, 7, 3), h0)
    torch.testing.assert_close(h_n[:2], h0[:2])


def test_default_init_is_torchs_uniform_rule() -> None:
    torch.manual_seed(11)
    encoder = RecurrentEncoder(3, 16, cell="lstm", num_layers=2)
    torch.manual_seed(11)
    reference = nn.LSTM(3, 16, num_layers=2, batch_first=True)
    bound = math.sqrt(1 / 16)
    for (name, param), ref in zip(
        encoder.rnn.named_parameters(), reference.parameters(), strict=True
    ):
        assert torch.equal(param, ref), name
        assert param.abs().max() <= bound
    init_recurrent_(encoder.rnn, "default")  # re-draws from the same rule
    assert all(p.abs().max() <= bound for p in encoder.rnn.parameters())


@pytest.mark.parametrize(
    ("options", "error", "argument"),
    [
        ({"dropout": 0.5}, ValueError, "dropout"),
        ({"dropout": 1.0, "num_layers": 2}, ValueError, "dropout"),
        ({"dropout": "0.1", "num_layers": 2}, TypeError, "dropout"),
        ({"cell": "lstm", "nonlinearity": "relu"}, ValueError, "nonlinearity"),
        ({"nonlinearity": "sigmoid"}, ValueError, "nonlinearity"),
        ({"init": "xavier"}, ValueError, "init"),
        ({"init": "identity"}, ValueError, "init"),
        ({"init": "identity", "cell": "gru"}, ValueError, "init"),
    ],
)
def test_bad_options_name_the_argument(
    options: dict[str, Any], error: type[Exception], argument: str
) -> None:
    with pytest.raises(error, match=f"`{argument}"):
        RecurrentEncoder(3, 4, **options)


def test_repr_shows_the_layouts_with_sizes() -> None:
    text = repr(RecurrentEncoder(28, 128, bidirectional=True, batch_first=False))
    assert "x (L, N, H_in) = (L, N, 28)" in text
    assert "output (L, N, D·H_out) = (L, N, 256)" in text
    assert "h_n (D·num_layers, N, H_out) = (2, N, 128)" in text


@pytest.mark.parametrize("kernel", ["auto", "torch"])
@pytest.mark.parametrize("grad", [True, False])
def test_an_lstm_state_given_as_a_list_is_refused_on_every_path(kernel: str, grad: bool) -> None:
    encoder = RecurrentEncoder(3, 4, cell="lstm", kernel=kernel)  # type: ignore[arg-type]
    message = r"`h_0` to be a tuple \(h_0, c_0\).*but got a list of 2 items\. Hint: .*tuple\(h_0\)"
    with torch.set_grad_enabled(grad):
        with pytest.raises(ShapeError, match=message):
            encoder(torch.randn(2, 5, 3), [torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)])
        with pytest.raises(ShapeError, match=message):
            encoder(torch.randn(5, 3), [torch.zeros(1, 4), torch.zeros(1, 4)])
