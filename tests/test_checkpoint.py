"""The checkpoint format, loading with its distinct errors, compatibility and load_model."""

from __future__ import annotations

import errno
import itertools
import math
import random
import re
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import rnnkit
import rnnkit.io._safe_load as safe_load_module
from rnnkit.errors import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointValueError,
    CheckpointVersionError,
    CheckpointWriteError,
    CorruptCheckpointError,
    ForeignCheckpointError,
)
from rnnkit.io.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    atomic_save,
    check_compatible,
    load_checkpoint,
    load_model,
    make_checkpoint,
)
from rnnkit.models import Seq2SeqRegressor, SequenceClassifier


def assert_same(saved: Any, loaded: Any, where: str = "checkpoint") -> None:
    """Recursive equality: same types, tensors bitwise equal (dtype too), NaN equal to NaN."""
    assert type(loaded) is type(saved), where
    if isinstance(saved, torch.Tensor):
        assert saved.dtype == loaded.dtype, where
        assert torch.equal(saved.cpu(), loaded), where
    elif isinstance(saved, dict):
        assert list(saved) == list(loaded), where
        for key in saved:
            assert_same(saved[key], loaded[key], f"{where}[{key!r}]")
    elif isinstance(saved, (list, tuple)):
        assert len(saved) == len(loaded), where
        for i, (a, b) in enumerate(zip(saved, loaded, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(saved, float) and math.isnan(saved):
        assert math.isnan(loaded), where
    else:
        assert saved == loaded, where


def trained_state(model: nn.Module) -> dict[str, Any]:
    """A trainer-like state after one Adam step: int-keyed optimizer state, RNG, history."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(4, 5, 3)
    loss = model(x).square().mean()
    loss.backward()
    optimizer.step()
    return {
        "epoch": 1,
        "global_step": 7,
        "optimizer": optimizer.state_dict(),
        "rng": {"python": random.getstate(), "torch": torch.get_rng_state()},
        "history": [{"epoch": 0.0, "loss": 0.5, "val_loss": math.nan}],
        "permutation": torch.randperm(10),
    }


@pytest.fixture
def model() -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(3, 4, 8, cell="lstm")


@pytest.fixture
def saved(tmp_path: Path, model: SequenceClassifier) -> tuple[Path, dict[str, Any]]:
    checkpoint = make_checkpoint(
        model, trained_state(model), {"EarlyStopping": {"best": 0.25, "wait": 1}}
    )
    path = tmp_path / "run.ckpt"
    atomic_save(checkpoint, path)
    return path, checkpoint


# -- the format -----------------------------------------------------------------------------


def test_make_checkpoint_records_format_version_class_config_and_state(
    model: SequenceClassifier,
) -> None:
    checkpoint = make_checkpoint(model, {"epoch": 3}, {"EarlyStopping": {"wait": 2}})
    assert list(checkpoint) == [
        "format",
        "format_version",
        "rnnkit_version",
        "model",
        "trainer",
        "callbacks",
    ]
    assert checkpoint["format"] == FORMAT == "rnnkit-checkpoint"
    assert checkpoint["format_version"] == FORMAT_VERSION == 1
    assert checkpoint["rnnkit_version"] == rnnkit.__version__
    assert checkpoint["model"]["class"] == "SequenceClassifier"
    assert checkpoint["model"]["config"] == model.config.to_dict()
    assert checkpoint["trainer"] == {"epoch": 3}
    assert checkpoint["callbacks"] == {"EarlyStopping": {"wait": 2}}
    assert_same(dict(model.state_dict()), dict(checkpoint["model"]["state_dict"]))


class CompiledLike(nn.Module):
    """The layout of ``torch.compile``'s wrapper (``_orig_mod``), without dynamo's import time."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self._orig_mod = inner


@pytest.mark.parametrize("wrap", ["compiled", "data_parallel", "both"])
def test_make_checkpoint_unwraps_wrapped_models(model: SequenceClassifier, wrap: str) -> None:
    wrapped: nn.Module
    if wrap == "compiled":
        wrapped = CompiledLike(model)
    elif wrap == "data_parallel":
        wrapped = nn.DataParallel(model)
    else:
        wrapped = CompiledLike(nn.DataParallel(model))
    assert list(wrapped.state_dict()) != list(model.state_dict())  # prefixed keys
    checkpoint = make_checkpoint(wrapped, {}, {})
    assert checkpoint["model"]["class"] == "SequenceClassifier"
    assert checkpoint["model"]["config"] == model.config.to_dict()
    assert list(checkpoint["model"]["state_dict"]) == list(model.state_dict())


def test_make_checkpoint_of_a_model_without_config_records_none() -> None:
    checkpoint = make_checkpoint(nn.Linear(2, 3), {}, {})
    assert checkpoint["model"]["class"] == "Linear"
    assert checkpoint["model"]["config"] is None


def test_round_trip_returns_every_saved_value(saved: tuple[Path, dict[str, Any]]) -> None:
    path, checkpoint = saved
    loaded = load_checkpoint(path)
    assert_same(checkpoint, loaded)
    # the optimizer state keeps its int keys and loads back into a fresh optimizer
    assert list(loaded["trainer"]["optimizer"]["state"]) == [0, 1, 2, 3, 4, 5]
    fresh = SequenceClassifier(3, 4, 8, cell="lstm")
    optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    optimizer.load_state_dict(loaded["trainer"]["optimizer"])
    random.setstate(loaded["trainer"]["rng"]["python"])


def test_load_checkpoint_maps_tensors_to_map_location(
    saved: tuple[Path, dict[str, Any]],
) -> None:
    loaded = load_checkpoint(saved[0], map_location="meta")
    weight = loaded["model"]["state_dict"]["encoder.rnn.weight_ih_l0"]
    assert weight.device.type == "meta"


# -- load_model -----------------------------------------------------------------------------

MODELS = {
    "lstm": lambda: SequenceClassifier(3, 4, 8, cell="lstm"),
    "gru-2-bi": lambda: SequenceClassifier(3, 5, 6, cell="gru", num_layers=2, bidirectional=True),
    "lstm-dropout-mean": lambda: SequenceClassifier(
        3, 2, 8, cell="lstm", num_layers=2, dropout=0.3, readout="mean"
    ),
    "regressor-relu": lambda: Seq2SeqRegressor(3, 2, 7, cell="rnn", nonlinearity="relu"),
}


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_load_model_rebuilds_a_model_with_equal_outputs(tmp_path: Path, build: Any) -> None:
    torch.manual_seed(1)
    original = build()
    atomic_save(make_checkpoint(original, {}, {}), tmp_path / "m.ckpt")
    torch.manual_seed(2)  # the rebuilt model's fresh init differs; the loaded weights win
    rebuilt = load_model(tmp_path / "m.ckpt")
    assert type(rebuilt) is type(original)
    assert rebuilt.config == original.config
    assert not rebuilt.training
    x = torch.randn(4, 6, 3)
    original.eval()
    with torch.no_grad():
        expected, got = original(x), rebuilt(x)
    if isinstance(expected, tuple):
        expected, got = expected[0], got[0]
    assert torch.equal(expected, got)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float32])
def test_load_model_keeps_the_dtype_the_weights_were_saved_in(
    tmp_path: Path, dtype: torch.dtype
) -> None:
    torch.manual_seed(1)
    original = SequenceClassifier(3, 4, 8, cell="gru").to(dtype).eval()
    atomic_save(make_checkpoint(original, {}, {}), tmp_path / "m.ckpt")
    rebuilt = load_model(tmp_path / "m.ckpt")
    assert {p.dtype for p in rebuilt.parameters()} == {dtype}
    x = torch.randn(4, 6, 3, dtype=dtype)
    with torch.no_grad():
        assert torch.equal(original(x), rebuilt(x))


def test_load_model_puts_the_model_where_map_location_puts_the_weights(tmp_path: Path) -> None:
    # The meta device stands in for an accelerator: the model must follow map_location.
    atomic_save(make_checkpoint(SequenceClassifier(3, 4, 8), {}, {}), tmp_path / "m.ckpt")
    rebuilt = load_model(tmp_path / "m.ckpt", map_location="meta")
    assert {p.device.type for p in rebuilt.parameters()} == {"meta"}


def test_load_model_refuses_a_class_that_is_not_an_rnnkit_model(tmp_path: Path) -> None:
    atomic_save(make_checkpoint(nn.Linear(2, 3), {}, {}), tmp_path / "lin.ckpt")
    with pytest.raises(CheckpointMismatchError) as info:
        load_model(tmp_path / "lin.ckpt")
    message = str(info.value)
    assert "holds a Linear, which load_model cannot rebuild" in message
    assert "Seq2SeqRegressor, SequenceClassifier" in message
    assert "model.load_state_dict(load_checkpoint(path)['model']['state_dict'])" in message


# -- distinct errors ------------------------------------------------------------------------

ERRORS = [
    CheckpointNotFoundError,
    CorruptCheckpointError,
    ForeignCheckpointError,
    CheckpointVersionError,
    CheckpointMismatchError,
    CheckpointWriteError,
    CheckpointValueError,
]


def test_error_classes_are_distinct_checkpoint_errors() -> None:
    for error in ERRORS:
        assert issubclass(error, rnnkit.CheckpointError)
        assert issubclass(error, ValueError)
    for a, b in itertools.permutations(ERRORS, 2):
        assert not issubclass(a, b)


def test_missing_file_and_folder_give_not_found(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match=r"but nothing is there"):
        load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointNotFoundError, match=r"but it is a folder.*last\.ckpt"):
        load_checkpoint(tmp_path)


def test_unreadable_file_says_so(
    saved: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(safe_load_module, "open", denied, raising=False)
    with pytest.raises(rnnkit.CheckpointError) as info:
        load_checkpoint(saved[0])
    assert type(info.value) is rnnkit.CheckpointError
    assert "Permission denied. Hint: check that this user may read it." in str(info.value)


def test_empty_file_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "e.ckpt").write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match=r"but it is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "e.ckpt")


def test_random_bytes_are_corrupt_not_a_pytorch_file(tmp_path: Path) -> None:
    generator = random.Random(0)
    data = bytes(generator.randrange(256) for _ in range(4096))
    data = b"\x13" + data[1:]  # neither a zip nor a pickle header
    (tmp_path / "r.ckpt").write_bytes(data)
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint(tmp_path / "r.ckpt")
    assert "but it is not a PyTorch file (it starts with the bytes" in str(info.value)
    assert "Hint: check that the path names a checkpoint" in str(info.value)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95, 0.999])
def test_truncated_file_is_corrupt(saved: tuple[Path, dict[str, Any]], fraction: float) -> None:
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint(path)
    assert "but it is truncated or damaged" in str(info.value)
    assert "Hint: use an earlier checkpoint" in str(info.value)


def test_flipped_bytes_inside_a_tensor_fail_the_crc_check(
    saved: tuple[Path, dict[str, Any]],
) -> None:
    path = saved[0]
    with zipfile.ZipFile(path) as archive:
        member = next(info for info in archive.infolist() if "/data/" in info.filename)
    data = bytearray(path.read_bytes())
    # a zip local header is 30 bytes, then the name and the extra field, then the data
    offset = member.header_offset
    name_length, extra_length = struct.unpack("<HH", data[offset + 26 : offset + 30])
    start = offset + 30 + name_length + extra_length
    assert member.file_size >= 8
    for i in range(start, start + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=r"fails its CRC check"):
        load_checkpoint(path)
    # torch alone would have returned the damaged values without complaint
    assert isinstance(torch.load(path, weights_only=True), dict)


def test_bare_state_dict_is_foreign_and_says_how_to_load_it(
    tmp_path: Path, model: SequenceClassifier
) -> None:
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ForeignCheckpointError) as info:
        load_checkpoint(tmp_path / "weights.pt")
    message = str(info.value)
    assert "to be an rnnkit checkpoint (a dict with 'format': 'rnnkit-checkpoint')" in message
    assert f"a dict of {len(model.state_dict())} tensors" in message
    assert "a bare model state_dict" in message
    assert "model.load_state_dict(torch.load(path, weights_only=True))" in message
    # and that advice works
    fresh = SequenceClassifier(3, 4, 8, cell="lstm")
    fresh.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))


def test_dict_without_format_is_foreign(tmp_path: Path, model: SequenceClassifier) -> None:
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ForeignCheckpointError) as info:
        load_checkpoint(tmp_path / "other.pt")
    message = str(info.value)
    assert "holds a dict with keys 'epoch', 'state_dict' and no 'format' entry" in message
    assert "its weights are probably under ['state_dict']" in message


def test_other_format_and_non_dict_are_foreign(tmp_path: Path) -> None:
    torch.save({"format": "someone-else"}, tmp_path / "a.pt")
    with pytest.raises(ForeignCheckpointError, match=r"but it has 'someone-else'"):
        load_checkpoint(tmp_path / "a.pt")
    torch.save(torch.zeros(3), tmp_path / "b.pt")
    with pytest.raises(ForeignCheckpointError, match=r"but it holds a torch\.Tensor"):
        load_checkpoint(tmp_path / "b.pt")


def test_zip_archive_that_is_not_a_torch_file_is_foreign(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "z.ckpt", "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ForeignCheckpointError, match=r"a zip archive without PyTorch's data"):
        load_checkpoint(tmp_path / "z.ckpt")


class _CreatesFile:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_pickled_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"format": FORMAT, "payload": _CreatesFile(marker)}, tmp_path / "evil.ckpt")
    with pytest.raises(ForeignCheckpointError) as info:
        load_checkpoint(tmp_path / "evil.ckpt")
    assert "it holds pickled Python objects (io.open)" in str(info.value)
    assert "only if you trust its source" in str(info.value)
    assert not marker.exists()


def test_pickled_module_is_foreign(tmp_path: Path) -> None:
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(ForeignCheckpointError, match=r"torch\.nn\.modules\.linear\.Linear"):
        load_checkpoint(tmp_path / "module.pt")


def test_legacy_torch_format_is_read(tmp_path: Path, model: SequenceClassifier) -> None:
    checkpoint = make_checkpoint(model, {"epoch": 1}, {})
    torch.save(checkpoint, tmp_path / "old.ckpt", _use_new_zipfile_serialization=False)
    assert_same(checkpoint, load_checkpoint(tmp_path / "old.ckpt"))


def test_newer_format_version_gives_version_error(
    tmp_path: Path, model: SequenceClassifier
) -> None:
    checkpoint = make_checkpoint(model, {}, {})
    checkpoint.update(format_version=FORMAT_VERSION + 1, rnnkit_version="9.0")
    atomic_save(checkpoint, tmp_path / "new.ckpt")
    with pytest.raises(CheckpointVersionError) as info:
        load_checkpoint(tmp_path / "new.ckpt")
    message = str(info.value)
    assert "has format version 2 (written by rnnkit 9.0)" in message
    assert f"this rnnkit {rnnkit.__version__} reads versions up to 1" in message
    assert "Hint: update rnnkit (pull its clone" in message


@pytest.mark.parametrize(
    ("keys", "value", "expected"),
    [
        (("format_version",), "1", "its 'format_version' is '1'"),
        (("model", "state_dict"), None, "checkpoint['model']['state_dict'] is a NoneType"),
        (("trainer",), [], "checkpoint['trainer'] is a list"),
        (("model", "class"), 3, "checkpoint['model']['class'] is a int"),
    ],
)
def test_malformed_layout_is_corrupt_and_names_the_key(
    tmp_path: Path, model: SequenceClassifier, keys: tuple[str, ...], value: object, expected: str
) -> None:
    checkpoint = make_checkpoint(model, {}, {})
    parent = checkpoint
    for key in keys[:-1]:
        parent = parent[key]
    parent[keys[-1]] = value
    atomic_save(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(CorruptCheckpointError, match=rf"malformed \({re.escape(expected)}"):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_missing_section_is_corrupt(tmp_path: Path, model: SequenceClassifier) -> None:
    checkpoint = make_checkpoint(model, {}, {})
    del checkpoint["callbacks"]
    atomic_save(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(CorruptCheckpointError, match=r"checkpoint\['callbacks'\] is missing"):
        load_checkpoint(tmp_path / "bad.ckpt")


# -- compatibility --------------------------------------------------------------------------


def test_check_compatible_accepts_the_same_config(saved: tuple[Path, dict[str, Any]]) -> None:
    check_compatible(load_checkpoint(saved[0]), SequenceClassifier(3, 4, 8, cell="lstm"))


def test_mismatched_config_names_each_differing_field(
    saved: tuple[Path, dict[str, Any]],
) -> None:
    other = SequenceClassifier(3, 4, 16, cell="gru")
    with pytest.raises(CheckpointMismatchError) as info:
        check_compatible(load_checkpoint(saved[0]), other)
    assert str(info.value) == (
        "Expected the model to match the checkpoint's SequenceClassifier, but its config "
        "differs: cell (checkpoint 'lstm', model 'gru'), hidden_size (checkpoint 8, model 16). "
        "Hint: rebuild the model from the checkpoint with rnnkit.load_model(path), or with "
        "SequenceClassifier.from_config(checkpoint['model']['config'])."
    )


def test_a_config_value_of_another_kind_is_a_mismatch_not_a_crash(
    saved: tuple[Path, dict[str, Any]],
) -> None:
    checkpoint = load_checkpoint(saved[0])
    checkpoint["model"]["config"]["hidden_size"] = torch.tensor([8, 8])
    checkpoint["model"]["config"]["dropout"] = 0  # an int for 0.0: the same value
    with pytest.raises(CheckpointMismatchError, match=r"config differs: hidden_size \(checkpoint"):
        check_compatible(checkpoint, SequenceClassifier(3, 4, 8, cell="lstm"))


def test_mismatched_class_is_named(saved: tuple[Path, dict[str, Any]]) -> None:
    with pytest.raises(CheckpointMismatchError) as info:
        check_compatible(load_checkpoint(saved[0]), Seq2SeqRegressor(3, 4, 8))
    assert str(info.value) == (
        "Expected a checkpoint of a Seq2SeqRegressor, but it was saved from a "
        "SequenceClassifier. Hint: rebuild the saved model with rnnkit.load_model(path)."
    )


def test_models_without_config_are_compared_by_parameter_shapes(tmp_path: Path) -> None:
    atomic_save(make_checkpoint(nn.Linear(3, 4), {}, {}), tmp_path / "lin.ckpt")
    checkpoint = load_checkpoint(tmp_path / "lin.ckpt")
    check_compatible(checkpoint, nn.Linear(3, 4))
    with pytest.raises(CheckpointMismatchError) as info:
        check_compatible(checkpoint, nn.Linear(3, 5))
    assert str(info.value) == (
        "Expected the model to match the checkpoint's Linear, but its parameters differ: "
        "weight (checkpoint (4, 3), model (5, 3)), bias (checkpoint (4,), model (5,)). "
        "Hint: build the Linear as it was when saved."
    )
    with pytest.raises(CheckpointMismatchError, match=r"bias \(missing from the model\)"):
        check_compatible(checkpoint, nn.Linear(3, 4, bias=False))


def test_state_dict_ordered_dict_survives(tmp_path: Path) -> None:
    state = OrderedDict([("b", torch.ones(1)), ("a", torch.zeros(1))])
    atomic_save({"format": FORMAT, "x": state}, tmp_path / "o.ckpt")
    loaded = torch.load(tmp_path / "o.ckpt", weights_only=True)["x"]
    assert type(loaded) is OrderedDict
    assert list(loaded) == ["b", "a"]
