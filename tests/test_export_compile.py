"""torch.compile and tracing: rnnkit's checks do not split the graph, eager still raises."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from rnnkit import RecurrentSpec, Seq2SeqRegressor, SequenceClassifier, ShapeError
from rnnkit.models import RecurrentModel

SPEC = RecurrentSpec("lstm", 3, 5, num_layers=2)


def _validate(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    SPEC.validate(x, None, lengths)
    return x * 2


def test_the_lengths_check_compiles_into_one_graph() -> None:
    torch._dynamo.reset()
    compiled = torch.compile(_validate, fullgraph=True, backend="eager")
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(compiled(x, torch.tensor([4, 2])), x * 2)


def test_a_size_check_still_raises_when_compiled() -> None:
    torch._dynamo.reset()
    compiled = torch.compile(_validate, backend="eager")
    with pytest.raises(ShapeError, match=r"Expected `lengths` to be a 1-D integer CPU tensor"):
        compiled(torch.randn(2, 4, 3), torch.tensor([4, 2, 1]))


@pytest.mark.parametrize("bad", [0, 5])
def test_eager_still_rejects_lengths_out_of_range(bad: int) -> None:
    with pytest.raises(ShapeError, match=rf"lengths\[1\] = {bad}"):
        SPEC.validate(torch.randn(2, 4, 3), None, torch.tensor([4, bad]))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:FutureWarning")
def test_tracing_skips_the_value_check_that_eager_runs() -> None:
    def run(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        SPEC.validate(x, None, lengths)
        return x.sum() + lengths.sum()

    out_of_range = (torch.randn(2, 4, 3), torch.tensor([4, 9]))
    with pytest.raises(ShapeError, match=r"lengths\[1\] = 9"):
        run(*out_of_range)
    # check_trace=False: the check would rerun `run` eagerly, where the value check raises
    traced = torch.jit.trace(run, out_of_range, check_trace=False)  # type: ignore[no-untyped-call]
    torch.testing.assert_close(traced(*out_of_range), out_of_range[0].sum() + 13)


# torch warns from inside its own tracer when it resumes after the break at its layer
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_compiled_models_break_only_at_torchs_recurrent_layers(kind: str, cell: str) -> None:
    torch._dynamo.reset()
    counters.clear()
    model: RecurrentModel = (
        SequenceClassifier(3, 4, 5, cell=cell)  # type: ignore[arg-type]
        if kind == "classifier"
        else Seq2SeqRegressor(3, 2, 5, cell=cell)  # type: ignore[arg-type]
    )
    x = torch.randn(2, 6, 3)
    out = torch.compile(model, backend="eager")(x)
    expected = model(x)
    torch.testing.assert_close(out, expected)
    reasons = {reason.splitlines()[0] for reason in counters["graph_break"]}
    assert reasons <= {"Attempted to wrap RNN, GRU, or LSTM"}, reasons


# dynamo itself reads `.grad` of the RNN's output when it resumes after torch's layer
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_compiled_models_with_lengths_break_only_in_torch(cell: str) -> None:
    torch._dynamo.reset()
    counters.clear()
    model = SequenceClassifier(3, 4, 5, cell=cell)  # type: ignore[arg-type]
    x = torch.randn(3, 6, 3)
    lengths = torch.tensor([6, 2, 4])
    out = torch.compile(model, backend="eager")(x, lengths)
    torch.testing.assert_close(out, model(x, lengths))
    reasons = {reason.splitlines()[0] for reason in counters["graph_break"]}
    assert reasons <= {"Attempted to wrap RNN, GRU, or LSTM"}, reasons
