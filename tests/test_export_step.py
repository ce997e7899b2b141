"""model.step(): one step at a time equals the whole-sequence forward."""

from __future__ import annotations

import pytest
import torch

from rnnkit import Seq2SeqRegressor, SequenceClassifier, ShapeError
from rnnkit.shapes import State

CELLS = ["rnn", "lstm", "gru"]


def _stream(model: Seq2SeqRegressor | SequenceClassifier, x: torch.Tensor) -> torch.Tensor:
    state: State | None = None
    outputs = []
    for t in range(x.shape[1]):
        y_t, state = model.step(x[:, t], state)
        outputs.append(y_t)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_regressor_steps_equal_the_forward(cell: str, num_layers: int) -> None:
    torch.manual_seed(0)
    model = Seq2SeqRegressor(3, 2, 6, cell=cell, num_layers=num_layers)  # type: ignore[arg-type]
    x = torch.randn(4, 9, 3)
    y, _ = model(x)
    streamed = _stream(model, x)
    torch.testing.assert_close(streamed, y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_regressor_step_returns_the_forward_state(cell: str) -> None:
    torch.manual_seed(1)
    model = Seq2SeqRegressor(2, 2, 5, cell=cell, num_layers=2)  # type: ignore[arg-type]
    x = torch.randn(3, 6, 2)
    _, h_n = model(x)
    state: State | None = None
    for t in range(6):
        _, state = model.step(x[:, t], state)
    assert state is not None
    torch.testing.assert_close(state, h_n, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("readout", ["last", "output_last"])
def test_classifier_step_gives_the_logits_of_every_prefix(cell: str, readout: str) -> None:
    torch.manual_seed(2)
    model = SequenceClassifier(
        3,
        4,
        5,
        cell=cell,  # type: ignore[arg-type]
        num_layers=2,
        readout=readout,  # type: ignore[arg-type]
    )
    x = torch.randn(2, 7, 3)
    streamed = _stream(model, x)
    prefixes = torch.stack([model(x[:, : t + 1]) for t in range(7)], dim=1)
    torch.testing.assert_close(streamed, prefixes, rtol=0, atol=1e-6)


def test_step_unbatched_and_time_first() -> None:
    torch.manual_seed(3)
    model = Seq2SeqRegressor(2, 1, 4, cell="lstm", batch_first=False)
    x = torch.randn(5, 2)  # one unbatched sequence (L, H_in)
    y, _ = model(x)
    state: State | None = None
    for t in range(5):
        y_t, state = model.step(x[t], state)
        assert y_t.shape == (1,)
        torch.testing.assert_close(y_t, y[t], rtol=0, atol=1e-6)
    assert isinstance(state, tuple)
    assert state[0].shape == (1, 4)


def test_bidirectional_model_cannot_step() -> None:
    model = Seq2SeqRegressor(2, 2, 4, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        model.step(torch.zeros(1, 2))


@pytest.mark.parametrize("readout", ["mean", "max"])
def test_pooled_readout_cannot_step(readout: str) -> None:
    model = SequenceClassifier(2, 3, 4, readout=readout)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"readout={readout!r}"):
        model.step(torch.zeros(1, 2))


def test_step_rejects_a_whole_sequence() -> None:
    model = Seq2SeqRegressor(2, 2, 4)
    with pytest.raises(ShapeError, match=r"Expected `x_t` to have shape \(N, H_in\) = \(\?, 2\)"):
        model.step(torch.zeros(3, 5, 2))


def test_step_checks_the_state_and_names_its_argument() -> None:
    model = Seq2SeqRegressor(2, 2, 4, cell="lstm")
    with pytest.raises(ShapeError, match=r"^Expected `state` to be a tuple \(h_0, c_0\)"):
        model.step(torch.zeros(3, 2), torch.zeros(1, 3, 4))
    with pytest.raises(
        ShapeError,
        match=r"^Expected `state\[1\]` to have shape \(D·num_layers, N, H_cell\) = \(1, 3, 4\), "
        r"but got \(1, 2, 4\)\.",
    ):
        model.step(torch.zeros(3, 2), (torch.zeros(1, 3, 4), torch.zeros(1, 2, 4)))
    gru = Seq2SeqRegressor(2, 2, 4, cell="gru")
    with pytest.raises(ShapeError, match=r"^Expected `state` to have shape"):
        gru.step(torch.zeros(3, 2), torch.zeros(1, 2, 4))


@pytest.mark.parametrize("batch_first", [True, False])
def test_step_names_x_t_and_its_own_shape_for_dtype_and_empty_batches(batch_first: bool) -> None:
    model = Seq2SeqRegressor(28, 1, 4, batch_first=batch_first)
    message = (
        r"^Expected `x_t` to be a torch\.float32 tensor \(the layer's dtype\) of shape "
        r"\(N, H_in\) = \(\?, 28\), but got a "
        r"torch\.float64 tensor of shape \(4, 28\)\. Hint: convert it with "
        r"x_t\.to\(torch\.float32\), or the model with model\.to\(torch\.float64\)\.$"
    )
    with pytest.raises(ShapeError, match=message):
        model.step(torch.zeros(4, 28, dtype=torch.float64))
    with pytest.raises(ShapeError, match=r"got a torch\.int64 tensor of shape \(28,\)\. Hint: "):
        model.step(torch.zeros(28, dtype=torch.int64))
    empty = r"^Expected `x_t` to have shape \(N, H_in\) = \(\?, 28\) with N >= 1, but got \(0, 28\)"
    with pytest.raises(ShapeError, match=empty):
        model.step(torch.zeros(0, 28))
    assert model.step(torch.zeros(4, 28))[0].shape == (4, 1)


def test_the_public_export_helpers_refuse_what_they_cannot_describe() -> None:
    from rnnkit.export import check_streamable, inputs_of, outputs_of

    model = Seq2SeqRegressor(2, 2, 4)
    with pytest.raises(TypeError, match="but got RecurrentEncoder"):
        check_streamable(model.encoder)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"`mode` to be one of \('sequence', 'step'\), but got 'Step'"
    ):
        inputs_of(model, "Step", lengths=True, initial_state=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="but got 'bogus'"):
        outputs_of(model, "bogus")  # type: ignore[arg-type]
    assert [t.name for t in inputs_of(model, "step", lengths=False, initial_state=False)] == [
        "x_t",
        "h",
    ]


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("n_state", [1, 4])
def test_a_state_for_another_batch_size_is_named_against_x_t(
    batch_first: bool, n_state: int
) -> None:
    model = Seq2SeqRegressor(2, 2, 4, batch_first=batch_first)
    message = (
        r"^Expected `state` to have shape \(D·num_layers, N, H_out\) = \(1, 3, 4\), but got "
        rf"\(1, {n_state}, 4\)\. Hint: `x_t` \(3, 2\) holds N = 3 sequences"
    )
    with pytest.raises(ShapeError, match=message):
        model.step(torch.randn(3, 2), torch.zeros(1, n_state, 4))


def test_an_lstm_state_list_for_another_batch_size_is_named_against_x_t() -> None:
    model = Seq2SeqRegressor(2, 2, 4, cell="lstm")
    state = [torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)]
    with pytest.raises(ShapeError, match=r"^Expected `state\[0\]` to have shape .* `x_t` \(3, 2\)"):
        model.step(torch.randn(3, 2), state)  # type: ignore[arg-type]
