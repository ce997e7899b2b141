"""SequenceClassifier: readouts against h_n and hand computations, lengths, shapes, bad input."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rnnkit import ShapeError
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.readouts import Readout
from rnnkit.shapes import CellType

CELLS: tuple[CellType, ...] = ("rnn", "lstm", "gru")
READOUTS = ("last", "mean", "max", "output_last")


def top_h_n(model: SequenceClassifier, x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """The top layer's final state from the encoder: h_n[-1], or cat(h_n[-2], h_n[-1])."""
    _, state = model.encoder(x, lengths=lengths)
    h_n = state[0] if isinstance(state, tuple) else state
    if model.spec.bidirectional:
        return torch.cat([h_n[-2], h_n[-1]], dim=-1)
    last: Tensor = h_n[-1]
    return last


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_last_readout_is_the_top_layers_h_n(
    cell: CellType, bidirectional: bool, num_layers: int
) -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(
        3, 4, 5, cell=cell, bidirectional=bidirectional, num_layers=num_layers
    )
    x = torch.randn(3, 6, 3)
    torch.testing.assert_close(model.features(x), top_h_n(model, x))
    torch.testing.assert_close(model(x), model.head(top_h_n(model, x)))
    lengths = torch.tensor([6, 2, 4])
    torch.testing.assert_close(model.features(x, lengths), top_h_n(model, x, lengths))


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_last_readout_with_lstm_projection_is_h_n() -> None:
    torch.manual_seed(1)
    model = SequenceClassifier(3, 4, 6, cell="lstm", proj_size=2, bidirectional=True)
    x = torch.randn(2, 5, 3)
    lengths = torch.tensor([3, 5])
    features = model.features(x, lengths)
    assert features.shape == (2, 4)
    torch.testing.assert_close(features, top_h_n(model, x, lengths))


@pytest.mark.parametrize(
    ("cell", "bidirectional", "readout"),
    list(itertools.product(CELLS, [False, True], ["last", "mean", "max"])),
)
def test_padded_batch_equals_each_sequence_alone(
    cell: CellType, bidirectional: bool, readout: Readout
) -> None:
    torch.manual_seed(2)
    model = SequenceClassifier(
        3, 4, 5, cell=cell, bidirectional=bidirectional, num_layers=2, readout=readout
    )
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([2, 6, 1, 4])
    x[0, 2:] = 100.0  # padding values must not matter
    logits = model(x, lengths)
    for n, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(logits[n], model(x[n, :length]))


def test_mean_and_max_readouts_match_a_hand_computation_over_valid_steps() -> None:
    torch.manual_seed(3)
    mean_model = SequenceClassifier(3, 4, 5, cell="gru", bidirectional=True, readout="mean")
    max_model = SequenceClassifier(3, 4, 5, cell="gru", bidirectional=True, readout="max")
    max_model.load_state_dict(mean_model.state_dict())
    x = torch.randn(3, 6, 3) - 5.0
    lengths = torch.tensor([6, 3, 1])
    output, _ = mean_model.encoder(x, lengths=lengths)
    for n, length in enumerate(lengths.tolist()):
        valid = output[n, :length]
        torch.testing.assert_close(mean_model.features(x, lengths)[n], valid.mean(dim=0))
        torch.testing.assert_close(max_model.features(x, lengths)[n], valid.max(dim=0).values)


def test_output_last_is_the_tutorials_readout() -> None:
    torch.manual_seed(4)
    model = SequenceClassifier(3, 4, 5, bidirectional=True, readout="output_last")
    x = torch.randn(2, 6, 3)
    output, _ = model.encoder(x)
    torch.testing.assert_close(model(x), model.head(output[:, -1, :]))
    # Bidirectional: its backward half has seen only step L - 1, unlike h_n.
    h_n = top_h_n(model, x)
    torch.testing.assert_close(model.features(x)[:, :5], h_n[:, :5])
    assert not torch.allclose(model.features(x)[:, 5:], h_n[:, 5:])


def test_output_last_refuses_padding_but_accepts_full_lengths() -> None:
    model = SequenceClassifier(3, 4, 5, readout="output_last")
    x = torch.randn(2, 6, 3)
    torch.testing.assert_close(model(x, torch.tensor([6, 6])), model(x))
    with pytest.raises(ShapeError, match=r"`lengths`.*output_last"):
        model(x, torch.tensor([6, 2]))


class TutorialRNN(nn.Module):
    """The reference recipe's MNIST classifier, as printed (device handling left out)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, n_class: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.rnn = nn.RNN(
            input_size=input_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            nonlinearity="relu",
        )
        self.linear = nn.Linear(hidden_size, n_class)

    def forward(self, x: Tensor) -> Tensor:
        h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size)
        out, _ = self.rnn(x, h0)
        out = out[:, -1, :]
        out = self.linear(out)
        return out  # type: ignore[no-any-return]


@pytest.mark.parametrize("readout", ["output_last", "last"])
def test_reproduces_the_tutorials_mnist_model(readout: Readout) -> None:
    torch.manual_seed(5)
    tutorial = TutorialRNN(28, 32, 1, 10)
    model = SequenceClassifier(28, 10, 32, nonlinearity="relu", readout=readout)
    model.encoder.rnn.load_state_dict(tutorial.rnn.state_dict())
    model.head.load_state_dict(tutorial.linear.state_dict())
    images = torch.rand(4, 28, 28)
    torch.testing.assert_close(model(images), tutorial(images))


def test_predict_proba_and_predict_run_in_eval_mode_without_graph() -> None:
    torch.manual_seed(6)
    model = SequenceClassifier(3, 4, 5, num_layers=2, dropout=0.5)
    x = torch.randn(5, 6, 3)
    model.train()
    proba = model.predict_proba(x)
    assert model.training
    assert not proba.requires_grad
    model.eval()
    expected = model(x).softmax(dim=-1)
    torch.testing.assert_close(proba, expected)
    torch.testing.assert_close(proba.sum(dim=-1), torch.ones(5))
    assert torch.equal(model.predict(x), expected.argmax(dim=-1))
    assert model.predict(x[0]).shape == ()


@pytest.mark.parametrize(
    ("cell", "bidirectional", "num_layers", "batched"),
    list(itertools.product(CELLS, [False, True], [1, 2, 3], [True, False])),
)
def test_forward_and_backward_give_documented_shapes(
    cell: CellType, bidirectional: bool, num_layers: int, batched: bool
) -> None:
    torch.manual_seed(7)
    model = SequenceClassifier(
        3, 4, 5, cell=cell, bidirectional=bidirectional, num_layers=num_layers
    )
    x = torch.randn(2, 6, 3) if batched else torch.randn(6, 3)
    logits = model(x)
    assert logits.shape == ((2, 4) if batched else (4,))
    d = 2 if bidirectional else 1
    assert model.features(x).shape == ((2, d * 5) if batched else (d * 5,))
    logits.sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all()


def test_time_major_classifier_matches_batch_first() -> None:
    torch.manual_seed(8)
    first = SequenceClassifier(3, 4, 5, cell="lstm", bidirectional=True, readout="max")
    time_major = SequenceClassifier(
        3, 4, 5, cell="lstm", bidirectional=True, readout="max", batch_first=False
    )
    time_major.load_state_dict(first.state_dict())
    x = torch.randn(3, 6, 3)
    lengths = torch.tensor([6, 1, 3])
    assert time_major.batch_first is False
    torch.testing.assert_close(time_major(x.transpose(0, 1), lengths), first(x, lengths))


BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("wrong features", {"x": torch.randn(2, 6, 4)}, "`x`"),
    ("images not sequence-ified", {"x": torch.randn(2, 1, 6, 3)}, "`x`"),
    ("a scalar", {"x": torch.tensor(1.0)}, "`x`"),
    ("integer pixels", {"x": torch.zeros(2, 6, 3, dtype=torch.uint8)}, "`x`"),
    ("float64", {"x": torch.randn(2, 6, 3, dtype=torch.float64)}, "`x`"),
    ("empty batch", {"x": torch.randn(0, 6, 3)}, "`x`"),
    ("zero length", {"x": torch.randn(2, 0, 3)}, "`x`"),
    ("lengths too long", {"x": torch.randn(2, 6, 3), "lengths": torch.tensor([7, 2])}, "`lengths`"),
    ("lengths zero", {"x": torch.randn(2, 6, 3), "lengths": torch.tensor([0, 2])}, "`lengths`"),
    (
        "lengths float",
        {"x": torch.randn(2, 6, 3), "lengths": torch.tensor([2.0, 3.0])},
        "`lengths`",
    ),
    (
        "lengths wrong N",
        {"x": torch.randn(2, 6, 3), "lengths": torch.tensor([2, 3, 4])},
        "`lengths`",
    ),
]


@pytest.mark.parametrize(("case", "inputs", "argument"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_raise_shape_error_naming_the_argument(
    case: str, inputs: dict[str, Any], argument: str
) -> None:
    model = SequenceClassifier(3, 4, 5, bidirectional=True)
    with pytest.raises(ShapeError, match=argument):
        model(**inputs)
    with pytest.raises(ShapeError, match=argument):
        model.predict(**inputs)


@pytest.mark.parametrize(
    ("options", "error", "argument"),
    [
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"num_classes": 2.0}, TypeError, "num_classes"),
        ({"readout": "first"}, ValueError, "readout"),
        ({"init": "zeros"}, ValueError, "init"),
    ],
)
def test_bad_options_name_the_argument(
    options: dict[str, Any], error: type[Exception], argument: str
) -> None:
    arguments: dict[str, Any] = {"input_size": 3, "num_classes": 4, **options}
    with pytest.raises(error, match=f"`{argument}"):
        SequenceClassifier(**arguments)


def test_repr_shows_the_shapes() -> None:
    text = repr(SequenceClassifier(28, 10, 128, bidirectional=True))
    assert "x (N, L, H_in) = (N, L, 28)" in text
    assert "readout='last' (N, D·H_out) = (N, 256)" in text
    assert "logits (N, C) = (N, 10)" in text


@pytest.mark.parametrize("readout", ["last", "output_last", "mean", "max"])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_features_may_be_edited_in_place_before_backward(readout: str, cell: str) -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(3, 2, 4, cell=cell, readout=readout)  # type: ignore[arg-type]
    x = torch.randn(5, 6, 3)
    lengths = None if readout == "output_last" else torch.tensor([6, 2, 4, 6, 1])
    features = model.features(x, lengths)
    features.mul_(2.0)  # as with torch's own layers, the result is the caller's
    features.sum().backward()  # type: ignore[no-untyped-call]
    reference = SequenceClassifier(3, 2, 4, cell=cell, readout=readout)  # type: ignore[arg-type]
    reference.load_state_dict(model.state_dict())
    reference.encoder.kernel = "torch"
    (reference.features(x, lengths) * 2.0).sum().backward()  # type: ignore[no-untyped-call]
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        if ours.grad is not None:
            torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-6)
