"""rnnkit.export.to_onnx: the files run in onnxruntime and match eager PyTorch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rnnkit import Seq2SeqRegressor, SequenceClassifier, SequenceTagger, Trainer
from rnnkit.data import Standardizer, next_step, sine_wave
from rnnkit.export import sidecar_path, to_onnx
from rnnkit.models import RecurrentModel
from rnnkit.models.readouts import apply_readout
from rnnkit.shapes import State

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

CELLS = ["rnn", "lstm", "gru"]
SHAPES = [(n, steps) for n in (1, 3, 17) for steps in (1, 5, 200)]
TOLERANCE = 1e-5


def _build(kind: str, cell: str, bidirectional: bool, **options: Any) -> RecurrentModel:
    torch.manual_seed(0)
    common: dict[str, Any] = {"cell": cell, "num_layers": 2, "bidirectional": bidirectional}
    model: RecurrentModel
    if kind == "classifier":
        model = SequenceClassifier(3, 4, 5, **common, **options)
    elif kind == "tagger":
        model = SequenceTagger(3, 4, 5, **common, **options)
    else:
        model = Seq2SeqRegressor(3, 2, 5, **common, **options)
    return model.eval()


def _state(model: RecurrentModel, n: int) -> State:
    spec = model.spec
    h = torch.randn(spec.D * spec.num_layers, n, spec.output_size)
    return (h, torch.randn_like(h)) if spec.cell == "lstm" else h


def _flat(state: State) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


@torch.no_grad()
def _reference(
    model: RecurrentModel, x: torch.Tensor, lengths: torch.Tensor | None, state: State | None
) -> list[torch.Tensor]:
    """Eager results in the exported graph's output order."""
    if isinstance(model, Seq2SeqRegressor):
        y, h_n = model(x, state, lengths)
        return [y, *_flat(h_n)]
    if isinstance(model, SequenceTagger):
        output, h_n = model.encoder(x, state, lengths)
        logits = model.head(output)
        if lengths is not None:
            steps = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
            logits = torch.where(steps.unsqueeze(-1), logits, torch.zeros_like(logits))
        if state is None:  # the tagger's own forward, where it applies
            torch.testing.assert_close(logits, model(x, lengths), rtol=0, atol=1e-6)
        return [logits, *_flat(h_n)]
    assert isinstance(model, SequenceClassifier)
    output, h_n = model.encoder(x, state, lengths)
    features = apply_readout(model.readout, output, lengths, hidden=model.spec.output_size)
    logits = model.head(features)
    if state is None:  # the classifier's own forward, where it applies
        torch.testing.assert_close(logits, model(x, lengths), rtol=0, atol=1e-6)
    return [logits, *_flat(h_n)]


def _run(session: Any, feed: dict[str, torch.Tensor]) -> list[np.ndarray]:
    outputs: list[np.ndarray] = session.run(None, {k: v.numpy() for k, v in feed.items()})
    return outputs


def _assert_match(got: list[np.ndarray], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for actual, expected in zip(got, want, strict=True):
        assert actual.shape == tuple(expected.shape)
        np.testing.assert_allclose(actual, expected.numpy(), rtol=0, atol=TOLERANCE)


def _feed(
    model: RecurrentModel, x: torch.Tensor, lengths: torch.Tensor, state: State
) -> dict[str, torch.Tensor]:
    feed = {"x": x, "lengths": lengths}
    names = ["h0", "c0"]
    feed.update(zip(names, _flat(state), strict=False))
    return feed


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", ["classifier", "regressor", "tagger"])
def test_one_file_runs_every_batch_and_length(
    tmp_path: Path, kind: str, cell: str, bidirectional: bool
) -> None:
    model = _build(kind, cell, bidirectional)
    full = ort.InferenceSession(str(to_onnx(model, tmp_path / "full.onnx")))
    bare_path = to_onnx(model, tmp_path / "bare.onnx", lengths=False, initial_state=False)
    bare = ort.InferenceSession(str(bare_path))
    generator = torch.Generator().manual_seed(1)
    for n, steps in SHAPES:
        x = torch.randn(n, steps, 3, generator=generator)
        lengths = torch.randint(1, steps + 1, (n,), generator=generator)
        lengths[0] = steps  # the longest sequence fills the batch, as after padding
        state = _state(model, n)
        _assert_match(
            _run(full, _feed(model, x, lengths, state)), _reference(model, x, lengths, state)
        )
        _assert_match(_run(bare, {"x": x}), _reference(model, x, None, None))
        full_lengths = torch.full((n,), steps)
        zeros = _flat(_state(model, n))
        zero_state: State = (
            (torch.zeros_like(zeros[0]), torch.zeros_like(zeros[1]))
            if len(zeros) == 2
            else torch.zeros_like(zeros[0])
        )
        _assert_match(
            _run(full, _feed(model, x, full_lengths, zero_state)), _reference(model, x, None, None)
        )


@pytest.mark.parametrize("readout", ["mean", "max", "output_last"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_readouts(tmp_path: Path, readout: str, bidirectional: bool) -> None:
    model = _build("classifier", "gru", bidirectional, readout=readout)
    session = ort.InferenceSession(str(to_onnx(model, tmp_path / "m.onnx", initial_state=False)))
    for n, steps in [(1, 1), (3, 5), (17, 200)]:
        x = torch.randn(n, steps, 3)
        lengths = (
            torch.full((n,), steps)
            if readout == "output_last"
            else torch.randint(1, steps + 1, (n,))
        )
        _assert_match(
            _run(session, {"x": x, "lengths": lengths}), _reference(model, x, lengths, None)
        )


def test_time_first_regressor(tmp_path: Path) -> None:
    model = _build("regressor", "lstm", False, batch_first=False)
    session = ort.InferenceSession(str(to_onnx(model, tmp_path / "m.onnx", initial_state=False)))
    x = torch.randn(7, 3, 3)  # (L, N, H_in)
    lengths = torch.tensor([7, 2, 5])
    got = _run(session, {"x": x, "lengths": lengths})
    assert got[0].shape == (7, 3, 2)
    _assert_match(got, _reference(model, x, lengths, None))


@pytest.mark.parametrize("cell", CELLS)
def test_step_graph_generates_like_the_model(tmp_path: Path, cell: str) -> None:
    torch.manual_seed(4)
    model = Seq2SeqRegressor(1, hidden_size=8, cell=cell, num_layers=2)  # type: ignore[arg-type]
    # trained as the sine example trains it (next step of sin(linspace(0, 10, 101))), briefly
    Trainer(max_epochs=60, lr=0.01, seed=0, progress=False).fit(model, next_step(sine_wave()))
    model.eval()
    session = ort.InferenceSession(str(to_onnx(model, tmp_path / "step.onnx", mode="step")))
    names = [i.name for i in session.get_inputs()]
    assert names == (["x_t", "h", "c"] if cell == "lstm" else ["x_t", "h"])
    expected, final = model.generate(torch.zeros(1, 1, 1), steps=100)
    x_t = np.zeros((1, 1), dtype=np.float32)
    state = [np.zeros((2, 1, 8), dtype=np.float32) for _ in names[1:]]
    predictions = []
    for _ in range(100):
        y_t, *state = session.run(None, dict(zip(names, [x_t, *state], strict=True)))
        predictions.append(y_t)
        x_t = y_t  # feed the prediction back, as generate() does
    np.testing.assert_allclose(
        np.stack(predictions, axis=1), expected.numpy(), rtol=0, atol=TOLERANCE
    )
    np.testing.assert_allclose(state[0], _flat(final)[0].numpy(), rtol=0, atol=TOLERANCE)


def test_classifier_step_graph_streams(tmp_path: Path) -> None:
    model = _build("classifier", "lstm", False)
    session = ort.InferenceSession(str(to_onnx(model, tmp_path / "step.onnx", mode="step")))
    x = torch.randn(3, 6, 3)
    h = np.zeros((2, 3, 5), dtype=np.float32)
    c = np.zeros_like(h)
    for t in range(6):
        logits, h, c = session.run(None, {"x_t": x[:, t].numpy(), "h": h, "c": c})
        with torch.no_grad():
            np.testing.assert_allclose(logits, model(x[:, : t + 1]).numpy(), rtol=0, atol=TOLERANCE)


def test_tagger_step_graph_streams(tmp_path: Path) -> None:
    model = _build("tagger", "gru", False)
    session = ort.InferenceSession(str(to_onnx(model, tmp_path / "step.onnx", mode="step")))
    x = torch.randn(3, 6, 3)
    h = np.zeros((2, 3, 5), dtype=np.float32)
    steps = []
    for t in range(6):
        logits, h = session.run(None, {"x_t": x[:, t].numpy(), "h": h})
        steps.append(logits)
    with torch.no_grad():
        np.testing.assert_allclose(
            np.stack(steps, axis=1), model(x).numpy(), rtol=0, atol=TOLERANCE
        )


def test_sidecar_describes_the_file(tmp_path: Path) -> None:
    model = _build("regressor", "lstm", True)
    path = to_onnx(model, tmp_path / "m.onnx")
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path) == tmp_path / "m.onnx.json"
    assert sidecar["model"] == "Seq2SeqRegressor"
    assert sidecar["mode"] == "sequence"
    assert sidecar["config"] == model.config.to_dict()
    inputs = {t["name"]: t for t in sidecar["inputs"]}
    assert list(inputs) == ["x", "lengths", "h0", "c0"]
    assert inputs["x"]["layout"] == "(N, L, H_in)"
    assert inputs["x"]["shape"] == [None, None, 3]
    assert inputs["lengths"]["dtype"] == "int64"
    assert inputs["h0"]["layout"] == "(D·num_layers, N, H_out)"
    assert inputs["h0"]["shape"] == [4, None, 5]
    outputs = [t["name"] for t in sidecar["outputs"]]
    assert outputs == ["y", "h_n", "c_n"]
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == list(inputs)
    assert [o.name for o in session.get_outputs()] == outputs
    assert session.get_inputs()[0].shape == ["N", "L", 3]
    assert sidecar["data"] == {"classes": None, "input_scaler": None, "target_scaler": None}


@pytest.mark.parametrize("labels", [["cat", "dog", "eel", "fox"], [10, 20, 30, 40], [0.5, 1, 2, 3]])
def test_a_deployment_reading_only_the_sidecar_predicts_the_original_labels(
    tmp_path: Path, labels: list[Any]
) -> None:
    model = _build("classifier", "gru", False)
    assert isinstance(model, SequenceClassifier)
    raw = torch.randn(6, 7, 3) * torch.tensor([100.0, 0.01, 5.0]) + torch.tensor([50.0, 0, -3])
    model.input_scaler = Standardizer().fit(raw)
    model.classes = labels
    path = to_onnx(model, tmp_path / "m.onnx", lengths=False, initial_state=False)
    data = json.loads(sidecar_path(path).read_text())["data"]
    mean, std = (np.asarray(data["input_scaler"][k], dtype=np.float32) for k in ("mean", "std"))
    session = ort.InferenceSession(str(path))
    (logits, _h_n) = session.run(None, {"x": ((raw.numpy() - mean) / std).astype(np.float32)})
    predicted = [data["classes"][k] for k in logits.argmax(axis=-1)]
    assert predicted == model.predict_labels(raw).tolist()
    assert data["target_scaler"] is None


def test_the_sidecar_maps_a_regressors_outputs_back_to_the_original_units(tmp_path: Path) -> None:
    model = _build("regressor", "lstm", False)
    x = torch.randn(4, 6, 3)
    model.target_scaler = Standardizer().fit(torch.randn(50, 2) * 30 + 7)
    path = to_onnx(model, tmp_path / "m.onnx", mode="step")
    scaler = json.loads(sidecar_path(path).read_text())["data"]["target_scaler"]
    zeros = np.zeros((2, 4, 5), dtype=np.float32)  # (num_layers, N, H_out)
    y_t, *_ = ort.InferenceSession(str(path)).run(
        None, {"x_t": x[:, 0].numpy(), "h": zeros, "c": zeros}
    )
    original = y_t * np.asarray(scaler["std"]) + np.asarray(scaler["mean"])
    with torch.no_grad():
        expected = model.target_scaler.inverse_transform(model(x[:, :1])[0][:, 0])
    np.testing.assert_allclose(original, expected.numpy(), rtol=1e-5, atol=1e-4)


def test_labels_held_as_numpy_scalars_are_written_as_plain_json(tmp_path: Path) -> None:
    model = _build("classifier", "rnn", False)  # 4 classes
    model.classes = np.array([np.int64(v) for v in (10, 20, 30, 40)], dtype=object)
    path = to_onnx(model, tmp_path / "m.onnx")
    assert json.loads(sidecar_path(path).read_text())["data"]["classes"] == [10, 20, 30, 40]


def test_a_scaler_with_one_statistic_is_written_once_per_feature(tmp_path: Path) -> None:
    model = _build("regressor", "gru", False)  # H_in = 3, H_y = 2
    scaler = Standardizer().fit(torch.randn(100) * 5 + 2)  # one series: mean and std of shape ()
    model.input_scaler = model.target_scaler = scaler
    data = json.loads(sidecar_path(to_onnx(model, tmp_path / "m.onnx")).read_text())["data"]
    for name, features in (("input_scaler", 3), ("target_scaler", 2)):
        assert data[name]["mean"] == [pytest.approx(float(scaler.mean))] * features
        assert data[name]["std"] == [pytest.approx(float(scaler.std))] * features


def test_a_sidecar_that_cannot_be_written_leaves_the_earlier_export_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnnkit.export._sidecar import sidecar as real

    path = to_onnx(_build("classifier", "gru", False), tmp_path / "m.onnx")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    broken = lambda *a, **k: {**real(*a, **k), "x": object()}  # noqa: E731
    monkeypatch.setattr("rnnkit.export._onnx.sidecar", broken)
    with pytest.raises(TypeError, match="not JSON serializable"):
        to_onnx(_build("regressor", "gru", False), path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary left


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_an_empty_batch_runs_in_a_plain_rnn_graph(tmp_path: Path, kind: str) -> None:
    # onnxruntime's own GRU and LSTM kernels crash on N = 0 (documented), so only "rnn" here
    model = _build(kind, "rnn", True)
    session = ort.InferenceSession(str(to_onnx(model, tmp_path / "m.onnx", initial_state=False)))
    empty = {"x": np.zeros((0, 6, 3), np.float32), "lengths": np.zeros((0,), np.int64)}
    first, h_n = session.run(None, empty)
    assert first.shape == ((0, 4) if kind == "classifier" else (0, 6, 2))
    assert h_n.shape == (4, 0, 5)


def test_files_keep_or_get_permissions_and_are_written_through_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    (tmp_path / "real").mkdir()
    link = tmp_path / "link.onnx"
    link.symlink_to(tmp_path / "real" / "m.onnx")
    old = os.umask(0o022)
    try:
        path = to_onnx(_build("classifier", "gru", False), link)
    finally:
        os.umask(old)
    assert path == link
    assert link.is_symlink()
    written = tmp_path / "real" / "m.onnx"
    beside = sidecar_path(link)  # where the docs send a deployment: beside the path given
    assert [stat.S_IMODE(p.stat().st_mode) for p in (written, beside)] == [0o644] * 2
    ort.InferenceSession(str(link))  # the link reads the new graph
    os.chmod(written, 0o600)
    to_onnx(_build("classifier", "gru", False), link)
    assert stat.S_IMODE(written.stat().st_mode) == 0o600  # a re-export keeps the file's mode

    calls = [0]
    real_fsync = os.fsync

    def fail_second(fd: int) -> None:  # the sidecar's write fails, after the graph's
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setattr(os, "fsync", fail_second)
    with pytest.raises(OSError, match="No space left"):
        to_onnx(_build("regressor", "gru", False), link)
    assert {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_unsupported_models_raise_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="proj_size"):
        to_onnx(Seq2SeqRegressor(2, 2, 8, cell="lstm", proj_size=4), tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="float32"):
        to_onnx(Seq2SeqRegressor(2, 2, 8).double(), tmp_path / "b.onnx")
    with pytest.raises(ValueError, match="bidirectional"):
        to_onnx(Seq2SeqRegressor(2, 2, 8, bidirectional=True), tmp_path / "c.onnx", mode="step")
    with pytest.raises(ValueError, match="mode"):
        to_onnx(Seq2SeqRegressor(2, 2, 8), tmp_path / "d.onnx", mode="batch")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a Seq2SeqRegressor or a SequenceTagger"):
        to_onnx(torch.nn.Linear(2, 2), tmp_path / "e.onnx")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def _checkpoint(tmp_path: Path, model: RecurrentModel) -> Path:
    from rnnkit.io._atomic import atomic_save
    from rnnkit.io.checkpoint import make_checkpoint

    path = tmp_path / "run.ckpt"
    atomic_save(make_checkpoint(model, {}, {}), path)
    return path


def test_cli_exports_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rnnkit.__main__ import main

    model = _build("regressor", "gru", False)
    checkpoint = _checkpoint(tmp_path, model)
    out = tmp_path / "step.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(out), "--mode", "step"]) == 0
    assert capsys.readouterr().out.split() == ["wrote", str(out), "wrote", f"{out}.json"]
    assert json.loads(sidecar_path(out).read_text())["mode"] == "step"
    session = ort.InferenceSession(str(out))
    x_t, h = torch.randn(3, 3), torch.randn(2, 3, 5)
    y_t, h_next = session.run(None, {"x_t": x_t.numpy(), "h": h.numpy()})
    with torch.no_grad():
        want_y, want_h = model.step(x_t, h)
    assert isinstance(want_h, torch.Tensor)
    np.testing.assert_allclose(y_t, want_y.numpy(), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(h_next, want_h.numpy(), rtol=0, atol=TOLERANCE)


def _cli_path(tmp_path: Path, arg: str) -> str:
    """OUT: a file to write; DIR: an existing folder; NODIR/...: a path in a missing folder."""
    if arg == "OUT":
        return str(tmp_path / "m.onnx")
    if arg == "DIR":
        return str(tmp_path)
    return str(tmp_path / arg) if arg.startswith("NODIR/") else arg


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ([], "nothing to write"),
        (["--onnx", "OUT", "--mode", "step"], "bidirectional"),
        (["--onnx", "NODIR/m.onnx"], "does not exist. Hint: create it first"),
        (["--onnx", "DIR"], "Expected --onnx to name a file, but got the folder"),
        (["--torch-export", "NODIR/m.pt2"], "Expected --torch-export to name a file in an"),
        (["--onnx", "OUT", "--mode", "step", "--no-lengths"], "Expected --mode sequence with"),
    ],
)
def test_cli_export_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], error: str
) -> None:
    from rnnkit.__main__ import main

    checkpoint = _checkpoint(tmp_path, _build("classifier", "lstm", True))
    args = [
        "export",
        str(checkpoint),
        *[_cli_path(tmp_path, a) for a in extra],
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit export: error: ")
    assert error in err
