"""Shared pieces of the scripts that tests/test_distributed_launch.py runs under torchrun.

The scripts are run as ``python -m torch.distributed.run ... tests/_ddp_scripts/<name>.py OUT``
and write their results under the folder OUT for the test to compare; they import this module
as a sibling (the script's folder is first on ``sys.path``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

PER_RANK_BATCH = 4
NUM_CLASSES = 3


class TinyClassifier(nn.Module):
    """A one-layer RNN read at its last step: the tutorial's classifier, small.

    Shapes:
        x: ``(N, L, 3)``; returns ``(N, 3)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(3, 8, batch_first=True)
        self.head = nn.Linear(8, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        output, _ = self.rnn(x)
        logits: Tensor = self.head(output[:, -1])
        return logits


def make_model(seed: int) -> TinyClassifier:
    """A model whose initial weights depend only on ``seed``."""
    torch.manual_seed(seed)
    return TinyClassifier()


def make_data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` random sequences ``(n, 5, 3)`` with labels ``(n,)`` in ``[0, 3)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, 3, generator=g)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return x, y


def epoch_permutation(n: int, epoch: int) -> Tensor:
    """The sample order of one epoch, the same on every rank (a seeded generator)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(1000 + epoch))


class TinyRegressor(nn.Module):
    """A one-layer RNN with a per-step linear head (the tutorial's sine model, small).

    Shapes:
        x: ``(N, L, 2)``; returns ``(N, L, 1)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(2, 6, batch_first=True)
        self.head = nn.Linear(6, 1)

    def forward(self, x: Tensor) -> Tensor:
        output, _ = self.rnn(x)
        y: Tensor = self.head(output)
        return y

    def scaled(self, x: Tensor, *, factor: float) -> Tensor:
        """A method other than forward, to train through ``run_method``."""
        return factor * self.forward(x)


def make_regressor(seed: int) -> TinyRegressor:
    """A regressor whose initial weights depend only on ``seed``."""
    torch.manual_seed(seed)
    return TinyRegressor()


def make_series(n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` padded series ``(n, 6, 2)``, targets ``(n, 6, 1)`` and lengths ``(n,)`` in 1..6."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, 2, generator=g)
    y = torch.randn(n, 6, 1, generator=g)
    lengths = torch.randint(1, 7, (n,), generator=g)
    return x, y, lengths


def masked_mse(pred: Tensor, target: Tensor, lengths: Tensor) -> Tensor:
    """The mean squared error over the valid steps only (padding ignored)."""
    mask = (torch.arange(pred.shape[1]) < lengths[:, None]).unsqueeze(-1)
    squared = torch.where(mask, (pred - target).square(), torch.zeros(()))
    return squared.sum() / (mask.sum() * pred.shape[-1])
