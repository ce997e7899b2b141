"""Seq2SeqRegressor: per-step head, lengths, generate against a hand loop, closed-loop rollout."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rnnkit import ShapeError
from rnnkit.models.regressor import Seq2SeqRegressor
from rnnkit.shapes import CellType

CELLS: tuple[CellType, ...] = ("rnn", "lstm", "gru")


def states(state: Any) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


class TutorialSineRNN(nn.Module):
    """The tutorial's sine-wave model, as printed."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, output_size: int
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, batch_first=True)
        self.linear = nn.Linear(hidden_size, output_size)

    def forward(self, inputs: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        outputs, hn = self.rnn(inputs, h0)
        outputs = outputs.view(-1, self.hidden_size)
        outputs = self.linear(outputs)
        outputs = outputs.view(inputs.size())
        return outputs, hn


def test_reproduces_the_tutorials_sine_model_and_its_generation_loop() -> None:
    torch.manual_seed(0)
    tutorial = TutorialSineRNN(1, 16, 1, 1)
    model = Seq2SeqRegressor(1)
    model.encoder.rnn.load_state_dict(tutorial.rnn.state_dict())
    model.head.load_state_dict(tutorial.linear.state_dict())
    inputs = torch.sin(torch.linspace(0, 10, 21))[:-1].view(1, 20, 1)
    h0 = torch.zeros(1, 1, 16)
    expected, expected_hn = tutorial(inputs, h0)
    y, h_n = model(inputs)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(h_n, expected_hn)
    # The tutorial's test(): feed [0], then each prediction, seq_len times.
    value, h, predictions = torch.tensor(0.0), h0, []
    for _ in range(15):
        value, h = tutorial(value.view(1, 1, 1), h)
        predictions.append(value.detach().view(1))
    generated, _ = model.generate(torch.zeros(1, 1, 1), 15)
    torch.testing.assert_close(generated.view(15), torch.cat(predictions))


def test_head_does_not_need_output_size_equal_to_input_size() -> None:
    torch.manual_seed(1)
    model = Seq2SeqRegressor(3, 2, 5, cell="gru", bidirectional=True)
    x = torch.randn(4, 6, 3)
    y, _ = model(x)
    output, _ = model.encoder(x)
    assert y.shape == (4, 6, 2)
    torch.testing.assert_close(y, output @ model.head.weight.T + model.head.bias)
    assert Seq2SeqRegressor(3).output_size == 3


@pytest.mark.parametrize(
    ("cell", "bidirectional", "num_layers"),
    list(itertools.product(CELLS, [False, True], [1, 2])),
)
def test_padded_batch_equals_each_sequence_alone(
    cell: CellType, bidirectional: bool, num_layers: int
) -> None:
    torch.manual_seed(2)
    model = Seq2SeqRegressor(3, 2, 4, cell=cell, bidirectional=bidirectional, num_layers=num_layers)
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([3, 6, 1, 5])
    y, state = model(x, lengths=lengths)
    for n, length in enumerate(lengths.tolist()):
        alone_y, alone_state = model(x[n, :length])
        torch.testing.assert_close(y[n, :length], alone_y)
        assert torch.count_nonzero(y[n, length:]) == 0
        for got, expected in zip(states(state), states(alone_state), strict=True):
            torch.testing.assert_close(got[:, n], expected)


def hand_generate(
    model: Seq2SeqRegressor, prime: Tensor, steps: int, h0: Any, feedback: Any = None
) -> tuple[Tensor, Any]:
    """Step by step with torch's own layer and head: the first prediction follows the prime."""
    output, state = model.encoder.rnn(prime, h0)
    prediction = model.head(output[:, -1])
    predictions = [prediction]
    for _ in range(steps - 1):
        next_input = prediction if feedback is None else feedback(prediction)
        output, state = model.encoder.rnn(next_input.unsqueeze(1), state)
        prediction = model.head(output[:, 0])
        predictions.append(prediction)
    return torch.stack(predictions, dim=1), state


@pytest.mark.parametrize(("cell", "num_layers"), list(itertools.product(CELLS, [1, 2])))
@pytest.mark.parametrize("prime_steps", [1, 4])
def test_generate_equals_a_hand_written_loop(
    cell: CellType, num_layers: int, prime_steps: int
) -> None:
    torch.manual_seed(3)
    model = Seq2SeqRegressor(2, hidden_size=5, cell=cell, num_layers=num_layers)
    prime = torch.randn(3, prime_steps, 2)
    h = torch.randn(num_layers, 3, 5)
    h0: Any = (h, torch.randn(num_layers, 3, 5)) if cell == "lstm" else h
    generated, state = model.generate(prime, 7, h0)
    expected, expected_state = hand_generate(model, prime, 7, h0)
    assert generated.shape == (3, 7, 2)
    torch.testing.assert_close(generated, expected)
    for got, want in zip(states(state), states(expected_state), strict=True):
        torch.testing.assert_close(got, want)
        assert not got.requires_grad
    assert not generated.requires_grad
    assert generated.grad_fn is None


def test_generate_with_a_feedback_function_and_other_layouts() -> None:
    torch.manual_seed(4)
    model = Seq2SeqRegressor(3, 1, 5, cell="gru", batch_first=False)

    def feedback(y: Tensor) -> Tensor:
        return y.expand(-1, 3) * torch.tensor([1.0, 0.5, -1.0])

    prime = torch.randn(4, 2, 3)  # (P, N, H_in)
    generated, state = model.generate(prime, 5, feedback=feedback)
    expected, expected_state = hand_generate(model, prime.transpose(0, 1), 5, None, feedback)
    assert generated.shape == (5, 2, 1)
    torch.testing.assert_close(generated, expected.transpose(0, 1))
    torch.testing.assert_close(state, expected_state)
    single, _ = model.generate(prime[:, 0], 5, feedback=feedback)
    assert single.shape == (5, 1)
    torch.testing.assert_close(single, generated[:, 0])


def test_generate_runs_in_eval_mode_and_restores_the_mode() -> None:
    torch.manual_seed(5)
    model = Seq2SeqRegressor(2, num_layers=2, dropout=0.5)
    prime = torch.randn(2, 3, 2)
    first, _ = model.generate(prime, 4)
    assert model.training
    second, _ = model.generate(prime, 4)
    torch.testing.assert_close(first, second)  # no dropout noise
    with torch.no_grad():
        expected, _ = hand_generate(model.eval(), prime, 4, None)
    torch.testing.assert_close(first, expected)


@pytest.mark.parametrize(
    ("model_options", "call", "error", "pattern"),
    [
        ({"bidirectional": True}, {"steps": 3}, ValueError, "unidirectional"),
        ({"output_size": 1}, {"steps": 3}, ValueError, "feedback"),
        ({}, {"steps": 0}, ValueError, "`steps`"),
        ({}, {"steps": 2.0}, TypeError, "`steps`"),
        ({"output_size": 1}, {"steps": 3, "feedback": lambda y: y}, ShapeError, "feedback"),
        ({}, {"steps": 3, "feedback": lambda y: y.double()}, ShapeError, "feedback"),
    ],
)
def test_generate_rejects_what_cannot_be_generated(
    model_options: dict[str, Any], call: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    model = Seq2SeqRegressor(2, hidden_size=4, **model_options)
    with pytest.raises(error, match=pattern):
        model.generate(torch.randn(1, 3, 2), **call)


def test_generate_validates_prime_and_state_through_the_contract() -> None:
    model = Seq2SeqRegressor(2, hidden_size=4, cell="lstm")
    with pytest.raises(ShapeError, match="`prime`"):
        model.generate(torch.randn(1, 3, 5), 2)
    with pytest.raises(ShapeError, match="`prime`"):
        model.generate(torch.randn(1, 3, 2, dtype=torch.float64), 2)
    with pytest.raises(ShapeError, match="h_0"):
        model.generate(torch.randn(1, 3, 2), 2, torch.zeros(1, 1, 4))


@pytest.mark.parametrize("cell", CELLS)
def test_rollout_with_ratio_one_is_teacher_forcing(cell: CellType) -> None:
    torch.manual_seed(6)
    model = Seq2SeqRegressor(2, hidden_size=4, cell=cell, num_layers=2)
    x = torch.randn(3, 6, 2)
    y, state = model.rollout(x, 1.0)
    expected, expected_state = model(x)
    assert torch.equal(y, expected)
    for got, want in zip(states(state), states(expected_state), strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("cell", CELLS)
def test_rollout_with_ratio_zero_free_runs_from_the_first_input_and_is_differentiable(
    cell: CellType,
) -> None:
    torch.manual_seed(7)
    model = Seq2SeqRegressor(2, hidden_size=4, cell=cell)
    x = torch.randn(3, 6, 2)
    y, state = model.rollout(x, 0.0)
    generated, generated_state = model.generate(x[:, :1], 6)
    torch.testing.assert_close(y, generated)
    for got, want in zip(states(state), states(generated_state), strict=True):
        torch.testing.assert_close(got, want)
    changed = x.clone()
    changed[:, 1:] = 100.0  # later inputs are never read
    torch.testing.assert_close(model.rollout(changed, 0.0)[0], y)
    torch.autograd.backward(y.square().mean())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def hand_rollout(model: Seq2SeqRegressor, x: Tensor, teacher: Tensor) -> Tensor:
    """Scheduled sampling one step at a time: x[:, t] where teacher[:, t], else y[:, t-1]."""
    state, previous, outputs = None, None, []
    for t in range(x.shape[1]):
        step = x[:, t]
        if previous is not None:
            step = torch.where(teacher[:, t : t + 1], x[:, t], previous)
        output, state = model.encoder.rnn(step.unsqueeze(1), state)
        previous = model.head(output[:, 0])
        outputs.append(previous)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("ratio", [0.25, 0.8])
def test_rollout_between_the_extremes_is_scheduled_sampling(cell: CellType, ratio: float) -> None:
    torch.manual_seed(8)
    model = Seq2SeqRegressor(2, hidden_size=4, cell=cell, num_layers=2)
    x = torch.randn(5, 9, 2)
    y, _ = model.rollout(x, ratio, generator=torch.Generator().manual_seed(3))
    teacher = torch.rand(5, 9, generator=torch.Generator().manual_seed(3)) < ratio
    torch.testing.assert_close(y, hand_rollout(model, x, teacher))
    again, _ = model.rollout(x, ratio, generator=torch.Generator().manual_seed(3))
    assert torch.equal(y, again)
    torch.autograd.backward(y.sum())
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_rollout_continued_with_previous_equals_one_rollout(ratio: float) -> None:
    # Two halves, the second continuing from the first's last prediction and state, run the
    # closed loop of the whole: step 0 of the second half is fed by its own coin.
    torch.manual_seed(4)
    model = Seq2SeqRegressor(2, hidden_size=4, cell="lstm")
    x = torch.randn(5, 8, 2)
    first, state = model.rollout(x[:, :4], ratio, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    second, _ = model.rollout(x[:, 4:], ratio, state, generator=gen, previous=first[:, -1])
    coins = torch.rand(5, 4, generator=torch.Generator().manual_seed(1)) < ratio
    more = torch.rand(5, 4, generator=torch.Generator().manual_seed(2)) < ratio
    expected = hand_rollout(model, x, torch.cat([coins, more], dim=1))
    torch.testing.assert_close(torch.cat([first, second], dim=1), expected)
    if ratio == 0.0:  # free-running throughout: what generate gives
        generated, _ = model.generate(x[:, :1], 8)
        torch.testing.assert_close(torch.cat([first, second], dim=1), generated)


def test_rollout_previous_in_every_layout_and_refused_when_malformed() -> None:
    torch.manual_seed(5)
    model = Seq2SeqRegressor(2, hidden_size=4, cell="gru")
    time_major = Seq2SeqRegressor(2, hidden_size=4, cell="gru", batch_first=False)
    time_major.load_state_dict(model.state_dict())
    x, previous = torch.randn(3, 6, 2), torch.randn(3, 2)
    y, _ = model.rollout(x, 0.0, previous=previous)
    y_t, _ = time_major.rollout(x.transpose(0, 1), 0.0, previous=previous)
    torch.testing.assert_close(y_t, y.transpose(0, 1))
    single, _ = model.rollout(x[0], 0.0, previous=previous[0])
    torch.testing.assert_close(single, y[0])
    expected = r"^Expected `previous` to have shape \(N, H_y\) = \(3, 2\), floating point on cpu"
    for bad in (torch.randn(2, 3), torch.randn(4, 2), torch.zeros(3, 2, dtype=torch.long)):
        with pytest.raises(ShapeError, match=expected):
            model.rollout(x, 0.5, previous=bad)
    with pytest.raises(ShapeError, match=r"^Expected `previous` to have shape \(H_y,\) = \(2,\)"):
        model.rollout(x[0], 0.0, previous=previous)


def test_rollout_in_other_layouts_matches_batch_first() -> None:
    torch.manual_seed(11)
    model = Seq2SeqRegressor(2, hidden_size=4, cell="gru", num_layers=2)
    time_major = Seq2SeqRegressor(2, hidden_size=4, cell="gru", num_layers=2, batch_first=False)
    time_major.load_state_dict(model.state_dict())
    x = torch.randn(3, 7, 2)
    h0 = torch.randn(2, 3, 4)
    y, h_n = model.rollout(x, 0.5, h0, generator=torch.Generator().manual_seed(0))
    y_t, h_t = time_major.rollout(
        x.transpose(0, 1), 0.5, h0, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(y_t, y.transpose(0, 1))
    torch.testing.assert_close(h_t, h_n)
    single, single_h = model.rollout(x[0], 0.0, h0[:, 0])
    alone, alone_h = model.rollout(x[:1], 0.0, h0[:, :1])
    torch.testing.assert_close(single, alone[0])
    assert isinstance(single_h, Tensor)
    assert isinstance(alone_h, Tensor)
    torch.testing.assert_close(single_h, alone_h[:, 0])


def test_rollout_feedback_and_bad_arguments() -> None:
    torch.manual_seed(9)
    model = Seq2SeqRegressor(3, 1, 4)
    x = torch.randn(2, 5, 3)
    y, _ = model.rollout(x, 0.5, feedback=lambda p: p.expand(-1, 3))
    assert y.shape == (2, 5, 1)
    with pytest.raises(ValueError, match="feedback"):
        model.rollout(x, 0.5)
    with pytest.raises(ValueError, match="`teacher_forcing_ratio`"):
        Seq2SeqRegressor(3).rollout(x, 1.5)
    with pytest.raises(ValueError, match="unidirectional"):
        Seq2SeqRegressor(3, bidirectional=True).rollout(x, 0.5)
    with pytest.raises(ShapeError, match="`x`"):
        Seq2SeqRegressor(3).rollout(torch.randn(2, 5, 4), 0.5)


@pytest.mark.parametrize(
    ("cell", "bidirectional", "num_layers", "batched"),
    list(itertools.product(CELLS, [False, True], [1, 2, 3], [True, False])),
)
def test_forward_and_backward_give_documented_shapes(
    cell: CellType, bidirectional: bool, num_layers: int, batched: bool
) -> None:
    torch.manual_seed(10)
    model = Seq2SeqRegressor(3, 2, 5, cell=cell, bidirectional=bidirectional, num_layers=num_layers)
    x = torch.randn(4, 6, 3) if batched else torch.randn(6, 3)
    y, state = model(x)
    expected = model.spec.expected_shapes(4 if batched else None, 6)
    assert y.shape == ((4, 6, 2) if batched else (6, 2))
    h_n = state[0] if isinstance(state, tuple) else state
    assert tuple(h_n.shape) == expected["h_n"]
    if isinstance(state, tuple):
        assert tuple(state[1].shape) == expected["c_n"]
    (y.sum() + h_n.sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name


def test_bad_inputs_raise_shape_error_from_the_contract() -> None:
    model = Seq2SeqRegressor(3, 2, 4, cell="lstm", num_layers=2)
    x = torch.randn(2, 5, 3)
    h = torch.zeros(2, 2, 4)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"x": torch.randn(2, 5, 2)}, "`x`"),
        ({"x": x, "h0": h}, "h_0"),  # a bare tensor for an LSTM
        ({"x": x, "h0": (h, torch.zeros(1, 2, 4))}, "c_0"),
        ({"x": x, "h0": (torch.zeros(2, 3, 4), h)}, "h_0"),
        ({"x": x, "lengths": torch.tensor([6, 1])}, "`lengths`"),
    ]
    for inputs, argument in cases:
        with pytest.raises(ShapeError, match=argument):
            model(**inputs)


def test_repr_shows_the_shapes() -> None:
    text = repr(Seq2SeqRegressor(1))
    assert "x (N, L, H_in) = (N, L, 1)" in text
    assert "output (N, L, D·H_out) = (N, L, 16)" in text
    assert "y (N, L, H_y) = (N, L, 1)" in text
