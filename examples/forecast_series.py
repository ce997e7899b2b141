"""Forecast a monthly series free-running with a recurrent network, against simple baselines
=========================================================================================

The default series is the airline passengers (monthly totals 1949-1960, Box & Jenkins, in
thousands; the same numbers as ``aeon.datasets.load_airline()``); ``--csv PATH --column NAME``
reads another one. The last ``--horizon`` values are held out; everything is fitted on the
values before them.

The recipe (a trend-aware target):

1. ``z = log(y)``: the seasonal swings grow with the level, the log makes them additive;
2. ``d[t] = z[t] - z[t - s]`` (``s = --season``, 12 for months): the year-on-year growth,
   free of the seasonal pattern and of most of the trend;
3. ``--target diff`` (the default) models ``d`` itself; ``--target diff2`` goes one step
   further, ``d[t] - d[t - 1]``, the change of the growth (its free-running errors add up
   twice, so small biases grow into a drifting trend); ``--target detrend`` instead models
   ``z`` minus the straight line fitted to ``z`` over the history, so that the line carries the
   trend into the horizon and the network the seasonal pattern and the swings around the line;
4. standardised with statistics of the history only (:class:`rnnkit.data.Standardizer`);
5. a :class:`rnnkit.Seq2SeqRegressor` learns next-step prediction on sliding windows
   (:func:`rnnkit.data.windows`), then :meth:`~rnnkit.Seq2SeqRegressor.generate` runs it over
   the whole history and feeds its predictions back for ``--horizon`` steps;
6. ``--target diff`` and ``--epochs`` 30 with the learning rate decaying to zero along a
   cosine, chosen with ``--backtest`` from three origins (the three years before the holdout,
   and the same window ``--shift 6`` and ``--shift 12`` months earlier, each forecast from the
   years before it; seeds 0-4; the lowest mean over the origins of the median MAPE, first
   among 10, 20, 30 or 60 epochs with 1 or 5 networks per seed, then among the ``diff`` or
   ``detrend`` target with 30 or 60 epochs and 1 or 5 networks);
7. the differences are undone step by step (each forecast month builds on the forecast of the
   month a season before it), or the line is added back, and ``exp`` returns to the original
   units.

The same run scores the seasonal-naive forecast (the last season repeated), the growth-naive
forecast (the last season grown by the last year-on-year growth, month after month: what the
``diff2`` network forecasts when it predicts no change at all) and, when statsmodels is
installed, Holt-Winters (additive trend, multiplicative season). Metrics on the
holdout: MAPE (%), RMSE, MASE (the error relative to the in-sample seasonal-naive error) and
the bias per season of the horizon (the mean signed percentage error over each season, each
forecast year for monthly data; positive: too high), which shows whether a forecast drifts.

Run ``python examples/forecast_series.py --dataset airline --horizon 36`` (seeds 0-4). Prints
one line per method and seed and a final ``summary:`` line; saves ``forecast_NAME.png``
(history, holdout and forecasts) into ``--out``. ``--smoke`` trains a few epochs: a quick check
that everything runs.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from rnnkit import Seq2SeqRegressor, Trainer
from rnnkit.data import Standardizer, windows
from rnnkit.shapes import CellType

Target = Literal["diff", "diff2", "detrend"]
SMOKE_EPOCHS = 3

AIRLINE = (
    "112 118 132 129 121 135 148 148 136 119 104 118 115 126 141 135 125 149 170 170 158 133 "
    "114 140 145 150 178 163 172 178 199 199 184 162 146 166 171 180 193 181 183 218 230 242 "
    "209 191 172 194 196 196 236 235 229 243 264 272 237 211 180 201 204 188 235 227 234 264 "
    "302 293 259 229 203 229 242 233 267 269 270 315 364 347 312 274 237 278 284 277 317 313 "
    "318 374 413 405 355 306 271 306 315 301 356 348 355 422 465 467 404 347 305 336 340 318 "
    "362 348 363 435 491 505 404 359 310 337 360 342 406 396 420 472 548 559 463 407 362 405 "
    "417 391 419 461 472 535 622 606 508 461 390 432"
)
"""Monthly international airline passengers (thousands), January 1949 to December 1960."""


@dataclass(frozen=True)
class Forecast:
    """One method's forecast of the holdout and its errors.

    ``bias`` is the mean signed percentage error over each season of the horizon (the first
    ``season`` steps, the next ``season``, ...; positive: too high).

    Shapes:
        - ``values``: ``(horizon,)``; ``bias``: ``(ceil(horizon / season),)``.
    """

    method: str
    values: np.ndarray
    mape: float
    rmse: float
    mase: float
    bias: tuple[float, ...] = ()
    seconds: float = 0.0

    def report(self) -> str:
        """One line with the method's errors."""
        return (
            f"method={self.method} mape={self.mape:.2f}% rmse={self.rmse:.2f} "
            f"mase={self.mase:.3f} bias_by_season=[{','.join(f'{b:+.1f}' for b in self.bias)}]% "
            f"sec={self.seconds:.1f}"
        )


def load_series(dataset: str, csv_path: str | None, column: str | None) -> np.ndarray:
    """The series to forecast: the bundled airline numbers, or a column of a CSV file.

    Shapes:
        - returns: ``(T,)``, ``float64``.
    """
    if csv_path is None:
        if dataset != "airline":
            raise SystemExit(f"unknown --dataset {dataset!r}: use airline, or --csv and --column")
        return np.array([float(v) for v in AIRLINE.split()])
    try:  # utf-8-sig: spreadsheet exports often start with a byte-order mark
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True)
            rows = [(reader.line_num, row) for row in reader]  # the line each row ends on
            columns = [name.strip() for name in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise SystemExit(f"cannot read --csv {csv_path} (UTF-8 text): {reason}") from None
    name = (column or "").strip()
    if name not in columns:
        raise SystemExit(f"--column {column!r} is not a column of {csv_path}; it has {columns}")
    if not rows:
        raise SystemExit(f"{csv_path} has a header but no rows")
    return np.array([_value(row, name, line) for line, row in rows])


def _value(row: dict[Any, Any], column: str, line: int) -> float:
    """One cell as a finite number, or an exit naming the line and the cell."""
    # DictReader puts a long row's extra cells under the key None
    cell = {key.strip(): value for key, value in row.items() if key is not None}.get(column)
    try:
        value = float(cell or "")
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise SystemExit(
            f"line {line} of the CSV has {cell!r} in --column {column!r}: not a number"
        )
    return value


def score(
    method: str, values: np.ndarray, history: np.ndarray, holdout: np.ndarray, season: int
) -> Forecast:
    """MAPE (%), RMSE, MASE and the bias per season (%) of ``values`` on ``holdout``.

    MASE divides the mean absolute error by the mean absolute error of the seasonal-naive
    one-season-ahead forecast within ``history``.

    Shapes:
        - ``values``, ``holdout``: ``(H,)``; ``history``: ``(T,)``.
    """
    error = values - holdout
    scale = float(np.mean(np.abs(history[season:] - history[:-season])))
    return Forecast(
        method,
        values,
        mape=float(100 * np.mean(np.abs(error) / np.abs(holdout))),
        rmse=float(np.sqrt(np.mean(error**2))),
        mase=float(np.mean(np.abs(error)) / scale),
        bias=tuple(
            float(100 * np.mean(error[k : k + season] / holdout[k : k + season]))
            for k in range(0, len(holdout), season)
        ),
    )


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The last season of ``history`` repeated over the horizon."""
    last = history[-season:]
    return np.array([last[k % season] for k in range(horizon)])


def holt_winters(history: np.ndarray, horizon: int, season: int) -> np.ndarray | None:
    """Holt-Winters (additive trend, multiplicative season); ``None`` without statsmodels."""
    try:
        holtwinters = importlib.import_module("statsmodels.tsa.holtwinters")
    except ImportError:
        return None
    model = holtwinters.ExponentialSmoothing(
        history, trend="add", seasonal="mul", seasonal_periods=season
    ).fit()
    return np.asarray(model.forecast(horizon))


def log_trend(history: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of the least-squares line through ``log(history)`` (step 0, 1, ...)."""
    slope, intercept = np.polyfit(np.arange(len(history)), np.log(history), 1)
    return float(intercept), float(slope)


def to_target(history: np.ndarray, season: int, target: Target) -> np.ndarray:
    """The differenced or detrended log series the network models (see the module's recipe).

    Shapes:
        - returns: ``(T - season,)`` for ``diff``, ``(T - season - 1,)`` for ``diff2``,
          ``(T,)`` for ``detrend``.
    """
    z = np.log(history)
    if target == "detrend":
        intercept, slope = log_trend(history)
        detrended: np.ndarray = z - (intercept + slope * np.arange(len(z)))
        return detrended
    d = z[season:] - z[:-season]
    return d if target == "diff" else np.diff(d)


def from_target(
    predicted: np.ndarray, history: np.ndarray, season: int, target: Target
) -> np.ndarray:
    """Undo :func:`to_target` for the ``H`` predicted values that follow ``history``.

    Shapes:
        - ``predicted``: ``(H,)``; returns ``(H,)`` in the series' units.
    """
    if target == "detrend":
        intercept, slope = log_trend(history)
        steps = np.arange(len(history), len(history) + len(predicted))
        level: np.ndarray = np.exp(intercept + slope * steps + predicted)
        return level
    z = list(np.log(history))
    growth = z[-1] - z[-1 - season]
    for step in predicted:
        growth = float(step) if target == "diff" else growth + float(step)
        z.append(growth + z[-season])
    forecast: np.ndarray = np.exp(np.array(z[len(history) :]))
    return forecast


def network_forecast(
    history: np.ndarray,
    horizon: int,
    *,
    season: int,
    target: Target,
    seed: int,
    cell: CellType,
    hidden_size: int,
    epochs: int,
    window: int,
) -> np.ndarray:
    """Train on windows of the history's target, then generate ``horizon`` steps free-running.

    Shapes:
        - returns: ``(horizon,)`` in the series' units.
    """
    series = torch.from_numpy(to_target(history, season, target)).float().unsqueeze(-1)
    scaler = Standardizer().fit(series)  # the history only
    scaled = scaler.transform(series)
    data = windows(scaled, length=min(window, len(scaled) - 1))
    torch.manual_seed(seed)
    model = Seq2SeqRegressor(1, hidden_size=hidden_size, cell=cell)
    trainer = Trainer(
        max_epochs=epochs,
        batch_size=16,
        lr=1e-2,
        scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs),
        grad_clip_norm=1.0,
        seed=seed,
        progress=False,
        metrics=[],
    )
    model.input_scaler = model.target_scaler = scaler  # saved with any checkpoint of it
    trainer.fit(model, data)
    steps = model.forecast(series.unsqueeze(0), horizon)[0].flatten().numpy()  # target units
    return from_target(steps.astype(np.float64), history, season, target)


def plot_forecasts(
    history: np.ndarray, holdout: np.ndarray, forecasts: Sequence[Forecast], path: Path
) -> Path:
    """History, holdout and every forecast on one time axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), dpi=90)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    t_hist = np.arange(len(history))
    t_hold = np.arange(len(history), len(history) + len(holdout))
    ax.plot(t_hist, history, color="black", label="history")
    ax.plot(t_hold, holdout, color="black", linestyle="--", label="holdout")
    for forecast in forecasts:
        ax.plot(t_hold, forecast.values, label=f"{forecast.method} ({forecast.mape:.1f}%)")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def main(
    dataset: str = "airline",
    horizon: int = 36,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    csv_path: str | None = None,
    column: str | None = None,
    season: int = 12,
    target: Target = "diff",
    cell: CellType = "gru",
    hidden_size: int = 16,
    epochs: int = 30,
    window: int = 36,
    ensemble: int = 1,
    backtest: bool = False,
    shift: int = 0,
    out: str | Path = "runs/forecast_series",
    smoke: bool = False,
) -> list[Forecast]:
    """Forecast the holdout with the network (per seed) and the baselines; print and plot.

    Args:
        dataset: ``"airline"`` (bundled), unless ``csv_path`` is given.
        horizon: How many final values to hold out and forecast.
        seeds: One network per seed.
        csv_path: A CSV file with a header row; ``column`` names the series.
        column: The CSV column to forecast.
        season: The season length s (12 for monthly data).
        target: ``"diff"``, ``"diff2"`` or ``"detrend"``, see the module's recipe.
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        hidden_size: Hidden units.
        epochs: Training epochs per network (cosine decay of the learning rate).
        window: Steps per training window.
        ensemble: Networks per seed (seeds ``seed * 1000 + k``); their forecasts are
            averaged (geometric mean).
        backtest: Leave the holdout out entirely and forecast the ``horizon`` values before
            it from the values before those: for choosing settings without the holdout.
        shift: With ``backtest``, also leave out this many values before the backtest's
            horizon: a backtest from an earlier origin (several shifts give several origins).
        out: Folder for the plot.
        smoke: A few epochs and one seed: a quick check that everything runs.

    Returns:
        Every method's :class:`Forecast` (baselines first, then one per seed).
    """
    check_counts(horizon=horizon, season=season, ensemble=ensemble, epochs=epochs)
    y = load_series(dataset, csv_path, column)
    if shift < 0 or (shift and not backtest):
        raise SystemExit("--shift takes a count of values >= 0, and only with --backtest")
    y = y[: len(y) - horizon - shift] if backtest else y
    if np.any(y <= 0):
        raise SystemExit("need a positive series: the network and the baselines model its log")
    if len(y) <= horizon + 2 * season + 2:
        raise SystemExit(
            f"need more than horizon + 2 seasons + 2 = {horizon + 2 * season + 2} values, "
            f"but the series has {len(y)}"
        )
    history, holdout = y[:-horizon], y[-horizon:]
    origin = f"_shift{shift}" if shift else ""
    name = (Path(csv_path).stem if csv_path else dataset) + (
        f"_backtest{origin}" if backtest else ""
    )
    forecasts = [
        score("seasonal_naive", seasonal_naive(history, horizon, season), history, holdout, season),
        # the last year-on-year growth kept: what the network gives when it predicts no change
        score(
            "growth_naive",
            from_target(np.zeros(horizon), history, season, "diff2"),
            history,
            holdout,
            season,
        ),
    ]
    hw = holt_winters(history, horizon, season)
    if hw is not None:
        forecasts.append(score("holt_winters", hw, history, holdout, season))
    for forecast in forecasts:
        print(forecast.report(), flush=True)
    seeds, epochs = (seeds[:1], SMOKE_EPOCHS) if smoke else (seeds, epochs)
    mapes = []
    for seed in seeds:
        started = time.perf_counter()
        members = [
            network_forecast(
                history,
                horizon,
                season=season,
                target=target,
                seed=seed * 1000 + k if ensemble > 1 else seed,
                cell=cell,
                hidden_size=hidden_size,
                epochs=epochs,
                window=window,
            )
            for k in range(ensemble)
        ]
        values = np.exp(np.mean(np.log(np.stack(members)), axis=0))
        result = score(f"rnnkit_{cell}_seed{seed}", values, history, holdout, season)
        result = Forecast(**{**result.__dict__, "seconds": time.perf_counter() - started})
        print(result.report(), flush=True)
        forecasts.append(result)
        mapes.append(result.mape)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"plot: {plot_forecasts(history, holdout, forecasts, folder / f'forecast_{name}.png')}")
    baselines = " ".join(
        f"{f.method}_mape={f.mape:.2f}" for f in forecasts[: len(forecasts) - len(seeds)]
    )
    print(
        f"summary: forecast_series dataset={name} horizon={horizon} target={target} cell={cell} "
        f"epochs={epochs} hidden={hidden_size} ensemble={ensemble} "
        f"rnnkit_mape=[{','.join(f'{m:.2f}' for m in mapes)}] "
        f"rnnkit_median_mape={statistics.median(mapes):.2f} rnnkit_worst_mape={max(mapes):.2f} "
        f"{baselines}"
    )
    return forecasts


def check_counts(**counts: int) -> None:
    """Exit unless every count is >= 1, and ``season`` >= 2 (a season repeats)."""
    for name, value in counts.items():
        least = 2 if name == "season" else 1
        if value < least:
            raise SystemExit(f"--{name} takes a count >= {least}, but got {value}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dataset", default="airline")
    parser.add_argument("--csv", default=None, help="a CSV file with a header row")
    parser.add_argument("--column", default=None, help="the CSV column to forecast")
    parser.add_argument("--horizon", type=int, default=36)
    parser.add_argument("--season", type=int, default=12)
    parser.add_argument("--target", choices=("diff", "diff2", "detrend"), default="diff")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="gru")
    parser.add_argument("--hidden-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--window", type=int, default=36)
    parser.add_argument("--ensemble", type=int, default=1, help="networks averaged per seed")
    parser.add_argument(
        "--backtest",
        action="store_true",
        help="never read the holdout: forecast the horizon before it, to choose settings",
    )
    parser.add_argument(
        "--shift",
        type=int,
        default=0,
        help="with --backtest: also leave out this many values, for an earlier origin",
    )
    parser.add_argument("--out", default="runs/forecast_series")
    parser.add_argument(
        "--smoke", action="store_true", help="a few epochs, one seed: a quick check"
    )
    return parser.parse_args(argv)


def cli(argv: Sequence[str] | None = None) -> list[Forecast]:
    """Run :func:`main` with the command line's options (``argv``: ``sys.argv[1:]`` if None)."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    return main(
        args.dataset,
        args.horizon,
        args.seeds,
        csv_path=args.csv,
        column=args.column,
        season=args.season,
        target=args.target,
        cell=args.cell,
        hidden_size=args.hidden_size,
        epochs=args.epochs,
        window=args.window,
        ensemble=args.ensemble,
        backtest=args.backtest,
        shift=args.shift,
        out=args.out,
        smoke=args.smoke,
    )


if __name__ == "__main__":
    cli()
