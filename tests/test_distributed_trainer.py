"""``Trainer(strategy=...)`` in the pytest process: strategy resolution, rank 0's duties, and
DDP on a real one-rank gloo group against a plain single-process run (bitwise equal).

Two and more ranks under ``torchrun`` are in tests/test_distributed_launch.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from rnnkit.callbacks import Callback
from rnnkit.callbacks.model_checkpoint import ModelCheckpoint
from rnnkit.distributed import DistributedContext, LaunchEnv, unwrap_model
from rnnkit.errors import CheckpointError
from rnnkit.io.checkpoint import load_checkpoint
from rnnkit.models import Seq2SeqRegressor, SequenceClassifier
from rnnkit.training.trainer import Trainer

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available",
)


def launch_env(world_size: int, rank: int = 0, port: int = 29500) -> dict[str, str]:
    """The variables torchrun sets for one worker on this machine."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def one_rank_launch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """torchrun's environment for a job of one process; its group is destroyed afterwards."""
    for name, value in launch_env(1, port=free_port()).items():
        monkeypatch.setenv(name, value)
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def classification_data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, 3, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def fit_classifier(strategy: str, folder: Path) -> tuple[Trainer, SequenceClassifier]:
    """A small seeded fit with validation and checkpoints; the trainer and its model."""
    torch.manual_seed(0)
    model = SequenceClassifier(3, 3, 8, cell="gru", dropout=0.0)
    trainer = Trainer(
        max_epochs=3,
        batch_size=8,
        seed=3,
        progress=False,
        strategy=strategy,
        callbacks=[ModelCheckpoint(folder)],
    )
    trainer.fit(model, classification_data(30, 0), classification_data(11, 1))
    return trainer, model


def untimed(trainer: Trainer) -> list[dict[str, float]]:
    return [{k: v for k, v in record.items() if k != "time"} for record in trainer.history]


# --- strategy resolution ----------------------------------------------------------------------


def test_outside_torchrun_the_trainer_runs_one_process() -> None:
    trainer = Trainer(batch_size=8, progress=False)
    assert trainer.distributed.strategy == "single"
    assert (trainer.world_size, trainer.global_batch_size, trainer.is_global_zero) == (1, 8, True)


def test_auto_is_ddp_under_a_multi_process_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in launch_env(4, rank=2).items():
        monkeypatch.setenv(name, value)
    trainer = Trainer(batch_size=8, device="cpu", progress=False)  # joins no group yet
    assert trainer.distributed.strategy == "ddp"
    assert (trainer.world_size, trainer.global_batch_size, trainer.is_global_zero) == (4, 32, False)
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match=r"`strategy='single'` in a single process, but WORLD"):
        Trainer(strategy="single", progress=False)


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ("ddp", r"`strategy='ddp'` to run under torchrun .* Hint: launch with `torchrun"),
        ("mirrored", r"`strategy` to be one of \('auto', 'ddp', 'single'\), but got 'mirrored'"),
    ],
)
def test_a_bad_strategy_fails_in_the_constructor(strategy: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Trainer(strategy=strategy, progress=False)


def test_a_context_gives_its_device_and_rank_to_the_trainer(tmp_path: Path) -> None:
    env = LaunchEnv.from_environ(launch_env(2, rank=1))
    context = DistributedContext("ddp", device="cpu", env=env)
    trainer = Trainer(strategy=context, progress=False)
    assert trainer.distributed is context
    assert trainer.device == torch.device("cpu")
    assert not trainer.is_global_zero
    trainer.model = SequenceClassifier(3, 2, 4)
    trainer.save_checkpoint(tmp_path / "rank1.ckpt")  # only rank 0 writes
    assert list(tmp_path.iterdir()) == []


# --- DDP on one rank (a real gloo group) against one plain process ----------------------------


def test_ddp_on_one_rank_trains_like_one_process(one_rank_launch: None, tmp_path: Path) -> None:
    single, single_model = fit_classifier("single", tmp_path / "single")
    assert single.train_model is single_model
    ddp, ddp_model = fit_classifier("ddp", tmp_path / "ddp")
    assert isinstance(ddp.train_model, DistributedDataParallel)
    assert unwrap_model(ddp.train_model) is ddp_model
    torch.testing.assert_close(ddp_model.state_dict(), single_model.state_dict(), rtol=0, atol=0)
    assert untimed(ddp) == untimed(single)
    saved = load_checkpoint(tmp_path / "ddp" / "last.ckpt")
    assert saved["model"]["state_dict"].keys() == single_model.state_dict().keys()  # no module.
    assert saved["trainer"]["world_size"] == 1
    val = classification_data(11, 1)
    assert ddp.evaluate(ddp_model, val) == pytest.approx(single.evaluate(single_model, val))
    torch.testing.assert_close(ddp.predict(ddp_model, val[0]), single.predict(single_model, val[0]))


def test_ddp_refuses_a_dataloader_before_training(one_rank_launch: None) -> None:
    x, y = classification_data(16, 0)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    trainer = Trainer(strategy="ddp", progress=False)
    model = SequenceClassifier(3, 3, 8)
    before = [p.detach().clone() for p in model.parameters()]
    message = r"Expected `val` to be a SequenceDataset or an \(x, y\) pair .* under DDP"
    with pytest.raises(ValueError, match=message):
        trainer.fit(model, (x, y), loader)
    with pytest.raises(ValueError, match=r"Expected `data` to be a SequenceDataset"):
        trainer.evaluate(model, loader)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_ddp_refuses_tbptt_over_padded_sequences(one_rank_launch: None) -> None:
    x, y = torch.randn(8, 6, 1), torch.randn(8, 6, 1)
    lengths = torch.tensor([6, 5, 6, 3, 6, 6, 2, 6])
    trainer = Trainer(strategy="ddp", tbptt_steps=2, progress=False)
    with pytest.raises(ValueError, match=r"one length in `train` with tbptt_steps=2 under DDP"):
        trainer.fit(Seq2SeqRegressor(1, hidden_size=4), (x, y, lengths))


# --- resuming under another number of processes -----------------------------------------------


class InterruptAt(Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) after the given global step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer: Any, batch_idx: int, outputs: dict[str, Any]) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def saved_by_two_processes(path: Path, tmp_path: Path) -> Path:
    """The checkpoint at ``path`` as if two processes had written it."""
    checkpoint = load_checkpoint(path)
    checkpoint["trainer"]["world_size"] = 2
    torch.save(checkpoint, tmp_path / "two.ckpt")
    return tmp_path / "two.ckpt"


def test_resuming_mid_epoch_under_another_world_size_is_refused(tmp_path: Path) -> None:
    interrupted = Trainer(
        batch_size=8, progress=False, callbacks=[InterruptAt(5)], default_root_dir=tmp_path
    )
    interrupted.fit(SequenceClassifier(3, 3, 8), classification_data(30, 0))
    assert interrupted.interrupt_checkpoint is not None
    path = saved_by_two_processes(interrupted.interrupt_checkpoint, tmp_path)
    trainer = Trainer(batch_size=8, progress=False)
    message = r"Expected 2 process\(es\) to resume in the middle of an epoch .* this run has 1"
    with pytest.raises(CheckpointError, match=message):
        trainer.fit(SequenceClassifier(3, 3, 8), classification_data(30, 0), resume_from=path)


def test_resuming_at_an_epoch_end_under_another_world_size_continues(tmp_path: Path) -> None:
    first, _ = fit_classifier("single", tmp_path / "run")
    path = saved_by_two_processes(tmp_path / "run" / "last.ckpt", tmp_path)
    resumed = Trainer(max_epochs=4, batch_size=8, progress=False)
    torch.manual_seed(123)  # other weights than the first run's: only the resume restores them
    model = SequenceClassifier(3, 3, 8, cell="gru")
    resumed.fit(model, classification_data(30, 0), resume_from=path)
    assert [record["epoch"] for record in resumed.history] == [0, 1, 2, 3]
    assert untimed(resumed)[:3] == untimed(first)  # the saved epochs, not a fresh start's
    assert resumed.global_step == first.global_step + 4  # one more epoch of 4 batches
