"""Classify time series from the UCR/UEA archive (or your own arrays) with a recurrent network
===========================================================================================

Any classification data set aeon can load goes in by name (``--dataset JapaneseVowels``): equal
or unequal lengths, one channel or many. aeon ships a few small ones (JapaneseVowels,
BasicMotions, GunPoint, ArrowHead, ItalyPowerDemand, OSULeaf, ...) that load offline; others are
downloaded by aeon where a network exists.

The protocol keeps the test split out of every choice:

- the archive's default train/test split;
- a fixed budget of ``--epochs`` with the learning rate decaying to zero along a cosine, and
  the last epoch's weights (the default); or, with ``--val-fraction``, a validation set of that
  share of the training split (stratified by class), whose lowest validation loss picks the
  weights kept;
- per-channel standardisation fitted on the training part only (:class:`rnnkit.data.Standardizer`);
- with ``--ensemble K``, K networks per seed (seeds ``seed * 1000 + k``) whose class
  probabilities are averaged;
- with ``--noise S``, Gaussian noise of standard deviation ``S`` added to the standardised
  inputs of every training batch (``InputNoiseTrainer`` in ``_input_noise.py``), and with
  ``--weight-decay W``, AdamW with that weight decay: regularisation for small training splits;
- the test split is evaluated once, after training, and its accuracy only reported.

For choosing settings, ``--cv K`` never loads the test split: it cuts the training split into
K folds (each class's series shuffled per seed and dealt out in turn, so the first folds may
hold one more), trains on K - 1 of them and scores the one left out, K times, and prints each
seed's mean accuracy and log loss over the folds (the log loss, the mean of
``-log p(true class)``, still tells settings apart when both classify every fold right).
``examples/results/classify_*_cv*.txt`` shows it choosing among a few settings.

Long series are read as frames of ``--frame`` consecutive steps (one step of ``frame · C``
values), which shortens the recurrence; ``auto`` picks the smallest frame giving at most 50
steps. ``--readout max`` classifies from each feature's maximum over the steps instead of the
final states, for series told apart by a shape anywhere along them rather than by how they end.

Run ``python examples/classify_series.py --dataset JapaneseVowels`` (seeds 0-4). Prints one line
per seed with its test accuracy and a final ``summary:`` line (median and worst seed), and saves
``classify_NAME.png`` (training loss per epoch, one curve per seed) into ``--out``.
``--smoke`` trains two epochs on BasicMotions (or, without aeon, on a generated stand-in): a
quick check that everything runs.
Needs aeon for the archive: ``pip install -e '.[datasets]'`` in rnnkit's clone.
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _input_noise import InputNoiseTrainer
from torch import Tensor

from rnnkit import EarlyStopping, SequenceClassifier, Trainer
from rnnkit.data import SequenceDataset, Standardizer, from_arrays
from rnnkit.models.readouts import Readout
from rnnkit.shapes import CellType

SMOKE_DATASET, SMOKE_EPOCHS = "BasicMotions", 2
MAX_STEPS = 50


@dataclass
class SeedRun:
    """One seed's result.

    Attributes:
        seed: The seed of the weights, the validation split and the batch order (an
            ensemble's networks use ``seed * 1000 + k``).
        test_accuracy: Accuracy on the test split with the kept weights (with ``--cv``, the
            mean accuracy over the held-out folds).
        kept_epoch: The epoch (1-based) whose weights were kept (the first network's).
        train_loss: The training loss of every epoch (the first network's).
        seconds: Training time.
        log_loss: The mean negative log-probability of the true class on the test split (with
            ``--cv``, over the held-out folds): finer than the accuracy, it tells apart settings
            that classify the same series right by how sure they are.
    """

    seed: int
    test_accuracy: float
    kept_epoch: int
    train_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    log_loss: float = math.nan

    def report(self, name: str) -> str:
        """One line with the seed's figures."""
        return (
            f"{name} seed={self.seed} test_accuracy={self.test_accuracy:.4f} "
            f"kept_epoch={self.kept_epoch} sec={self.seconds:.1f}"
        )


def load_archive(name: str, split: str) -> tuple[Any, np.ndarray[Any, Any]]:
    """One split of an aeon classification data set: ``(X, y)`` in aeon's layout.

    Shapes:
        - ``X``: ``(N, C, L)``, or a list of ``(C, L_i)`` for unequal lengths; ``y``: ``(N,)``.
    """
    datasets = importlib.import_module("aeon.datasets")  # optional: the datasets extra
    try:
        x, y = datasets.load_classification(name, split=split)
    except (ValueError, OSError) as error:  # an unknown name, or a download without network
        reason = (str(error).splitlines() or [repr(error)])[0]
        raise SystemExit(
            f"cannot load --dataset {name!r}: {reason}\n(names are case-sensitive, e.g. "
            "GunPoint; only the sets shipped with aeon load without a network)"
        ) from None
    return x, np.asarray(y)


def standin(split: str, seed: int = 0) -> tuple[list[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    """A generated stand-in: 3 classes of noisy 2-channel waves of unequal lengths, aeon's layout.

    Shapes:
        - returns: a list of ``(2, L_i)`` arrays and ``(N,)`` string labels.
    """
    rng = np.random.default_rng(seed + (split == "test"))
    names = np.array(["slow", "fast", "flat"])
    labels = names[np.arange(36) % 3]
    series = []
    for label in labels:
        t = np.linspace(0, 6, int(rng.integers(30, 60)))
        freq = {"slow": 1.0, "fast": 3.0, "flat": 0.0}[str(label)]
        wave = np.stack([np.sin(freq * t), np.cos(freq * t)])
        series.append(wave + 0.2 * rng.standard_normal(wave.shape))
    return series, labels


def load_splits(name: str, *, smoke: bool, test: bool = True) -> tuple[Any, Any, Any, Any, bool]:
    """Train and test ``(X, y)`` of ``name``, the test split ``(None, None)`` unless ``test``;
    in smoke mode the stand-in when aeon is missing.
    """
    try:
        importlib.import_module("aeon")
    except ImportError:
        if not smoke:
            raise SystemExit(
                "classify_series.py needs aeon for the archive: pip install aeon "
                "(rnnkit's datasets extra)"
            ) from None
        return (*standin("train"), *(standin("test") if test else (None, None)), True)
    held_out = load_archive(name, "test") if test else (None, None)
    return (*load_archive(name, "train"), *held_out, False)


def _frame_ok(frame: str | int) -> bool:
    """``auto``, or anything ``int()`` reads as a count >= 1."""
    if frame == "auto":
        return True
    try:
        return int(frame) >= 1
    except (TypeError, ValueError):
        return False


def resolve_frame(frame: str, seq_len: int) -> int:
    """The frame size: ``auto`` gives at most :data:`MAX_STEPS` steps."""
    return max(1, math.ceil(seq_len / MAX_STEPS)) if frame == "auto" else int(frame)


def to_frames(data: SequenceDataset, frame: int) -> SequenceDataset:
    """Read ``frame`` consecutive steps as one: ``(N, L, C)`` -> ``(N, ceil(L/frame), frame·C)``.

    Padding is zero and lengths round up, so a frame partly past a sequence's end carries zeros.
    """
    if frame == 1:
        return data
    n, steps, channels = data.x.shape
    padded = torch.nn.functional.pad(data.x, (0, 0, 0, -steps % frame))
    x = padded.reshape(n, -1, frame * channels)
    lengths = None if data.lengths is None else (data.lengths + frame - 1) // frame
    return SequenceDataset(x, data.y, lengths, classes=data.classes)


def stratified_split(
    data: SequenceDataset, fraction: float, seed: int
) -> tuple[SequenceDataset, SequenceDataset]:
    """Split into (train, validation), with about ``fraction`` of every class in validation."""
    assert data.y is not None
    generator = torch.Generator().manual_seed(seed)
    val: list[int] = []
    for label in torch.unique(data.y).tolist():
        members = torch.nonzero(data.y == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        take = min(len(members) - 1, max(1, round(fraction * len(members))))
        val.extend(members[:take].tolist())
    chosen = torch.zeros(len(data), dtype=torch.bool)
    chosen[val] = True
    return data.subset(torch.nonzero(~chosen).flatten()), data.subset(torch.tensor(val))


def stratified_folds(data: SequenceDataset, folds: int, seed: int) -> list[Tensor]:
    """The indices of ``folds`` parts of ``data``, every class dealt out evenly over them."""
    assert data.y is not None
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in range(folds)]
    for label in torch.unique(data.y).tolist():
        members = torch.nonzero(data.y == label).flatten()
        for rank, index in enumerate(members[torch.randperm(len(members), generator=generator)]):
            parts[rank % folds].append(int(index))
    return [torch.tensor(sorted(part), dtype=torch.int64) for part in parts]


def cross_validate(seed: int, train: SequenceDataset, folds: int, **settings: Any) -> SeedRun:
    """Mean accuracy and log loss over ``folds`` folds of the training split."""
    parts = stratified_folds(train, folds, seed)
    everything = torch.arange(len(train))
    runs = []
    for held_out in parts:
        rest = everything[~torch.isin(everything, held_out)]
        runs.append(run_seed(seed, train.subset(rest), train.subset(held_out), **settings))
    return SeedRun(
        seed,
        statistics.fmean(run.test_accuracy for run in runs),
        settings["epochs"],
        seconds=sum(run.seconds for run in runs),
        log_loss=statistics.fmean(run.log_loss for run in runs),
    )


def run_seed(
    seed: int,
    train: SequenceDataset,
    test: SequenceDataset,
    *,
    options: dict[str, Any],
    epochs: int,
    val_fraction: float,
    ensemble: int = 1,
) -> SeedRun:
    """Train ``ensemble`` models and score their averaged probabilities on the test set.

    With ``val_fraction`` 0 each model trains on the whole training split and keeps its last
    weights; otherwise a stratified share of the training split validates every epoch and the
    weights of the lowest validation loss are kept. The curve and kept epoch are the first
    model's.
    """
    members = [
        _train_one(
            seed * 1000 + k if ensemble > 1 else seed, train, test, options, epochs, val_fraction
        )
        for k in range(ensemble)
    ]
    probabilities = torch.stack([probs for probs, _ in members]).mean(0)
    assert test.y is not None
    accuracy = float((probabilities.argmax(-1) == test.y).double().mean())
    first = members[0][1]
    seconds = sum(run.seconds for _, run in members)
    return SeedRun(
        seed, accuracy, first.kept_epoch, first.train_loss, seconds, log_loss(probabilities, test.y)
    )


def log_loss(probabilities: Tensor, labels: Tensor) -> float:
    """The mean of ``-log p(true class)``, each probability floored at 1e-7.

    Shapes:
        - ``probabilities``: ``(N, num_classes)``; ``labels``: ``(N,)``.
    """
    picked = probabilities.gather(1, labels.unsqueeze(1)).clamp_min(1e-7)
    return float(-picked.double().log().mean())


def _train_one(
    seed: int,
    train: SequenceDataset,
    test: SequenceDataset,
    options: dict[str, Any],
    epochs: int,
    val_fraction: float,
) -> tuple[Tensor, SeedRun]:
    """One model: its class probabilities on ``test`` and its run (accuracy left at 0)."""
    fit_part, val = (
        (train, None) if val_fraction == 0 else stratified_split(train, val_fraction, seed)
    )
    scaler = Standardizer().fit(fit_part)  # training data only: no statistic of val or test
    fit_part, test = scaler.apply(fit_part), scaler.apply(test)
    val = None if val is None else scaler.apply(val)
    torch.manual_seed(seed)
    assert train.num_classes is not None
    model = SequenceClassifier(train.input_size, train.num_classes, **options["model"])
    keep_best = EarlyStopping("val_loss", patience=epochs, restore_best_weights=True)
    noise = options.get("noise", 0.0)
    trainer = (InputNoiseTrainer if noise else Trainer)(
        max_epochs=epochs,
        callbacks=[] if val is None else [keep_best],
        scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs),
        seed=seed,
        **({"noise_std": noise} if noise else {}),
        **options["trainer"],
    )
    started = time.perf_counter()
    history = trainer.fit(model, fit_part, val)
    seconds = time.perf_counter() - started
    probabilities = trainer.predict(model, test).softmax(-1)
    curve = [float(record["loss"]) for record in history]
    kept = epochs if val is None else keep_best.best_epoch + 1
    return probabilities, SeedRun(seed, 0.0, kept, curve, seconds)


def plot_runs(runs: Sequence[SeedRun], name: str, path: Path) -> Path:
    """Training loss per epoch, one curve per seed, with the test accuracy in the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=90)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    for run in runs:
        epochs = range(1, len(run.train_loss) + 1)
        label = f"seed {run.seed} (test accuracy {run.test_accuracy:.3f})"
        ax.plot(epochs, run.train_loss, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(f"{name}: training loss", fontsize=10)
    ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def summarize(name: str, runs: Sequence[SeedRun], info: str) -> str:
    """The final line: every seed's accuracy, the median and the worst."""
    accuracies = [run.test_accuracy for run in runs]
    return (
        f"summary: classify_series dataset={name} {info} "
        f"test_accuracy=[{','.join(f'{a:.4f}' for a in accuracies)}] "
        f"median={statistics.median(accuracies):.4f} worst={min(accuracies):.4f} "
        f"sec={sum(run.seconds for run in runs):.1f}"
    )


def main(
    dataset: str = "JapaneseVowels",
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    cell: CellType = "gru",
    hidden_size: int = 64,
    bidirectional: bool = True,
    epochs: int = 100,
    batch_size: int = 16,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    noise: float = 0.0,
    frame: str = "auto",
    val_fraction: float = 0.0,
    ensemble: int = 1,
    readout: Readout = "last",
    cv: int = 0,
    out: str | Path = "runs/classify_series",
    smoke: bool = False,
) -> list[SeedRun]:
    """Train one model per seed on the training split and report the test accuracies.

    Args:
        dataset: An aeon classification data set's name.
        seeds: One run per seed.
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        hidden_size: Hidden units per direction.
        bidirectional: Read every series both ways.
        epochs: Epochs per run (the learning rate follows a cosine to zero).
        batch_size: Sequences per batch.
        lr: Adam's initial learning rate.
        weight_decay: With more than 0, AdamW with this decoupled weight decay instead of Adam.
        noise: The standard deviation of the Gaussian noise added to every training batch's
            standardised inputs at the steps within its lengths (the zeros ``frame`` adds inside
            a series' last frame count as part of it); 0 for none, with the plain Trainer.
        frame: Steps per frame (``"auto"``: at most 50 steps).
        val_fraction: Share of every class of the training split held out for validation
            (0: none; train on the whole split and keep the last epoch's weights).
        ensemble: Networks per seed, their class probabilities averaged.
        readout: What the classifier's head reads: each direction's final state (``"last"``),
            or every step's output averaged (``"mean"``) or its maximum taken per feature
            (``"max"``); see :mod:`rnnkit.models.readouts`.
        cv: With 2 or more, cross-validate inside the training split with this many folds
            instead of training on it and testing (the test split is not used); 0 to test.
        out: Folder for the plot.
        smoke: A quick check that everything runs: BasicMotions (or a stand-in), one seed, two
            epochs.

    Returns:
        One :class:`SeedRun` per seed (with ``cv``, its ``test_accuracy`` is the mean accuracy
        over the folds).
    """
    if cv == 1 or cv < 0 or ensemble < 1 or weight_decay < 0 or noise < 0:
        raise SystemExit(
            "--cv takes 0 (test) or a count of folds >= 2; --ensemble a count >= 1; "
            "--weight-decay and --noise a value >= 0"
        )
    if epochs < 1:
        raise SystemExit(f"--epochs takes a count >= 1, but got {epochs}")
    if not 0 <= val_fraction < 1 or not _frame_ok(frame):
        raise SystemExit("--val-fraction takes a share in [0, 1); --frame 'auto' or a count >= 1")
    name, seeds, epochs = (
        (SMOKE_DATASET, seeds[:1], SMOKE_EPOCHS) if smoke else (dataset, seeds, epochs)
    )
    x_train, y_train, x_test, y_test, is_standin = load_splits(name, smoke=smoke, test=not cv)
    train = from_arrays(x_train, y_train, layout="NCL", missing="ffill")
    size = resolve_frame(frame, train.seq_len)
    train = to_frames(train, size)
    name = "standin" if is_standin else name
    info = (
        f"N_train={len(train)} N_test={'(not loaded)' if x_test is None else len(x_test)} "
        f"C={train.input_size // size} "
        f"L={train.seq_len * size} frame={size} classes={train.num_classes} cell={cell}"
    )
    print(f"data: {name} {info} padded={'yes' if train.lengths is not None else 'no'}")
    options = {
        "model": {
            "hidden_size": hidden_size,
            "cell": cell,
            "bidirectional": bidirectional,
            "readout": readout,
        },
        "trainer": {
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": "adamw" if weight_decay else "adam",
            "weight_decay": weight_decay if weight_decay else None,
            "grad_clip_norm": 1.0,
            "progress": False,
        },
        "noise": noise,
    }
    settings: dict[str, Any] = {
        "options": options,
        "epochs": epochs,
        "val_fraction": val_fraction,
        "ensemble": ensemble,
    }
    described = f"cell={cell} epochs={epochs} hidden={hidden_size} ensemble={ensemble}"
    described += "" if readout == "last" else f" readout={readout}"
    described += f" weight_decay={weight_decay:g}" if weight_decay else ""
    described += f" noise={noise:g}" if noise else ""
    assert train.y is not None
    if cv > int(torch.bincount(train.y).max()):
        raise SystemExit(f"--cv {cv} leaves folds empty: no class has {cv} training series")
    if cv:
        return _cross_validated(name, train, seeds, cv, settings, described)
    test = from_arrays(x_test, y_test, layout="NCL", missing="ffill", classes=train.classes)
    test = to_frames(test, size)
    runs = []
    for seed in seeds:
        run = run_seed(seed, train, test, **settings)
        print(run.report(name), flush=True)
        runs.append(run)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"plot: {plot_runs(runs, name, folder / f'classify_{name}.png')}")
    print(summarize(name, runs, described))
    return runs


def _cross_validated(
    name: str,
    train: SequenceDataset,
    seeds: Sequence[int],
    folds: int,
    settings: dict[str, Any],
    described: str,
) -> list[SeedRun]:
    """:func:`cross_validate` per seed; prints a line each and a summary."""
    runs = []
    for seed in seeds:
        run = cross_validate(seed, train, folds, **settings)
        print(
            f"{name} seed={seed} cv_accuracy={run.test_accuracy:.4f} "
            f"cv_log_loss={run.log_loss:.4f} sec={run.seconds:.1f}",
            flush=True,
        )
        runs.append(run)
    accuracies = [run.test_accuracy for run in runs]
    losses = [run.log_loss for run in runs]
    print(
        f"summary: classify_series dataset={name} cv={folds} {described} "
        f"cv_accuracy=[{','.join(f'{a:.4f}' for a in accuracies)}] "
        f"median={statistics.median(accuracies):.4f} worst={min(accuracies):.4f} "
        f"cv_log_loss=[{','.join(f'{v:.4f}' for v in losses)}] "
        f"median_log_loss={statistics.median(losses):.4f}"
    )
    return runs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dataset", default="JapaneseVowels", help="an aeon data set's name")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="gru")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--unidirectional", action="store_true", help="read forwards only")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        help="train with AdamW and this decoupled weight decay (default 0: Adam)",
    )
    parser.add_argument(
        "--noise", type=float, default=0.0, help="Gaussian jitter on the training inputs (std)"
    )
    parser.add_argument("--frame", default="auto", help="steps per frame, or auto")
    parser.add_argument(
        "--val-fraction", type=float, default=0.0, help="hold out for validation (default none)"
    )
    parser.add_argument("--ensemble", type=int, default=1, help="networks averaged per seed")
    parser.add_argument(
        "--readout", choices=("last", "mean", "max"), default="last", help="what the head reads"
    )
    parser.add_argument(
        "--cv",
        type=int,
        default=0,
        help="cross-validate with this many folds inside the training split (no test)",
    )
    parser.add_argument("--out", default="runs/classify_series")
    parser.add_argument("--smoke", action="store_true", help="two epochs, one seed: a quick check")
    return parser.parse_args(argv)


def cli(argv: Sequence[str] | None = None) -> list[SeedRun]:
    """Run :func:`main` with the command line's options (``argv``: ``sys.argv[1:]`` if None)."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    return main(
        args.dataset,
        args.seeds,
        cell=args.cell,
        hidden_size=args.hidden_size,
        bidirectional=not args.unidirectional,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        noise=args.noise,
        frame=args.frame,
        val_fraction=args.val_fraction,
        ensemble=args.ensemble,
        readout=args.readout,
        cv=args.cv,
        out=args.out,
        smoke=args.smoke,
    )


if __name__ == "__main__":
    cli()
