"""rnnkit.export.to_torch_export: programs with explicit state, dynamic N and L."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rnnkit import Seq2SeqRegressor, SequenceClassifier, SequenceTagger
from rnnkit.export import _torch, to_torch_export
from rnnkit.models import RecurrentModel
from rnnkit.models.readouts import apply_readout
from rnnkit.shapes import CellType, State

CELLS = ["rnn", "lstm", "gru"]
SHAPES = [(1, 1), (3, 5), (17, 200)]


def _flat(state: State) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


@torch.no_grad()
def _reference(
    model: RecurrentModel, x: torch.Tensor, lengths: torch.Tensor, state: State
) -> list[torch.Tensor]:
    if isinstance(model, Seq2SeqRegressor):
        y, h_n = model(x, state, lengths)
        return [y, *_flat(h_n)]
    if isinstance(model, SequenceTagger):
        output, h_n = model.encoder(x, state, lengths)
        valid = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        logits = model.head(output) * valid.unsqueeze(-1)
        return [logits, *_flat(h_n)]
    assert isinstance(model, SequenceClassifier)
    output, h_n = model.encoder(x, state, lengths)
    features = apply_readout(model.readout, output, lengths, hidden=model.spec.output_size)
    return [model.head(features), *_flat(h_n)]


def _inputs(model: RecurrentModel, n: int, steps: int) -> tuple[dict[str, torch.Tensor], State]:
    spec = model.spec
    x = torch.randn(n, steps, spec.input_size)
    lengths = torch.randint(1, steps + 1, (n,))
    lengths[0] = steps
    h = torch.randn(spec.D * spec.num_layers, n, spec.output_size)
    state: State = h
    kwargs = {"x": x, "lengths": lengths, "h0": h}
    if spec.cell == "lstm":
        c = torch.randn(spec.D * spec.num_layers, n, spec.hidden_size)
        kwargs["c0"] = c
        state = (h, c)
    return kwargs, state


# Exporting traces the time loop once per layer (bidirectional) or stack, which takes seconds.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "cell", "bidirectional", "num_layers"),
    [
        ("regressor", "rnn", True, 1),
        ("regressor", "lstm", False, 2),
        ("classifier", "gru", True, 2),
        ("tagger", "gru", False, 1),
    ],
)
def test_sequence_program_round_trip_matches_eager(
    tmp_path: Path, kind: str, cell: str, bidirectional: bool, num_layers: int
) -> None:
    torch.manual_seed(0)
    options: dict[str, Any] = {
        "cell": cell,
        "num_layers": num_layers,
        "bidirectional": bidirectional,
    }
    model: RecurrentModel = {
        "regressor": Seq2SeqRegressor(3, 2, 5, **options),
        "classifier": SequenceClassifier(3, 4, 5, **options),
        "tagger": SequenceTagger(3, 4, 5, **options),
    }[kind]
    model.eval()
    path = tmp_path / "model.pt2"
    torch.export.save(to_torch_export(model), path)
    program = torch.export.load(path).module()
    for n, steps in SHAPES:
        kwargs, state = _inputs(model, n, steps)
        with torch.no_grad():
            got = program(**kwargs)
        want = _reference(model, kwargs["x"], kwargs["lengths"], state)
        assert len(got) == len(want)
        for actual, expected in zip(got, want, strict=True):
            torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_step_program_generates_like_the_model(tmp_path: Path, cell: str) -> None:
    torch.manual_seed(4)
    model = Seq2SeqRegressor(1, hidden_size=8, cell=cell, num_layers=2).eval()  # type: ignore[arg-type]
    path = tmp_path / "step.pt2"
    torch.export.save(to_torch_export(model, mode="step"), path)
    step = torch.export.load(path).module()
    expected, _ = model.generate(torch.zeros(1, 1, 1), steps=100)
    x_t = torch.zeros(1, 1)
    state = {"h": torch.zeros(2, 1, 8)} | ({"c": torch.zeros(2, 1, 8)} if cell == "lstm" else {})
    predictions = []
    with torch.no_grad():
        for _ in range(100):
            x_t, *rest = step(x_t=x_t, **state)
            state = dict(zip(state, rest, strict=True))
            predictions.append(x_t)
    torch.testing.assert_close(torch.stack(predictions, dim=1), expected, rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_projected_lstm_without_lengths_or_state() -> None:
    torch.manual_seed(5)
    model = Seq2SeqRegressor(2, 2, 6, cell="lstm", proj_size=3).eval()
    program = to_torch_export(model, lengths=False, initial_state=False).module()
    x = torch.randn(4, 7, 2)
    with torch.no_grad():
        y, h_n, c_n = program(x=x)
        want, (h_want, c_want) = model(x)
    torch.testing.assert_close(y, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(h_n, h_want, rtol=0, atol=1e-5)
    torch.testing.assert_close(c_n, c_want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["sequence", "step"])
def test_example_inputs_are_on_the_models_device_and_dtype(mode: str) -> None:
    # The traced example inputs must sit where the weights are: a CUDA model traced with CPU
    # states would mix devices. The meta device stands in for an accelerator here.
    model = Seq2SeqRegressor(3, 2, 5, cell="lstm", num_layers=2).to("meta", torch.float64)
    if mode == "sequence":
        example, _ = _torch._sequence_example(model, lengths=True, initial_state=True)
    else:
        example, _ = _torch._step_example(model)
    floating = {name: t for name, t in example.items() if t.is_floating_point()}
    assert sorted(floating) == (["c0", "h0", "x"] if mode == "sequence" else ["c", "h", "x_t"])
    assert {(t.device.type, t.dtype) for t in floating.values()} == {("meta", torch.float64)}


@pytest.mark.parametrize("cell", CELLS)
def test_an_empty_batch_gives_empty_outputs(cell: CellType) -> None:
    model = SequenceClassifier(3, 4, 5, cell=cell, num_layers=2, bidirectional=True).eval()
    program = to_torch_export(model, lengths=False, initial_state=False)
    logits, h_n, *rest = program.module()(x=torch.zeros(0, 6, 3))
    assert logits.shape == (0, 4)
    assert h_n.shape == (4, 0, 5)
    assert [c.shape for c in rest] == ([(4, 0, 5)] if cell == "lstm" else [])


@pytest.mark.parametrize("readout", ["mean", "max"])
def test_pooled_readouts_export_and_match_eager(readout: str) -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(3, 4, 5, cell="gru", readout=readout).eval()  # type: ignore[arg-type]
    program = to_torch_export(model, initial_state=False).module()
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    with torch.no_grad():
        logits, _ = program(x=x, lengths=lengths)
        torch.testing.assert_close(logits, model(x, lengths=lengths), rtol=0, atol=1e-5)
