"""rnnkit.data.streams: shapes, continuity of every row across batches, and reset flags.

The references: windows cut out of the series by hand, and a stateful loop that carries an
RNN's state across batches, which must equal running the RNN over each whole stream.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn

from rnnkit.data import Batch, StreamBatches, streams
from rnnkit.errors import ShapeError
from rnnkit.models import Seq2SeqRegressor
from rnnkit.training import Trainer


def _series(steps: int, features: int = 2, offset: float = 0.0) -> Tensor:
    t = torch.arange(steps, dtype=torch.float32).unsqueeze(-1)
    return offset + t * torch.arange(1, features + 1, dtype=torch.float32)


def test_shapes_and_windows_cut_by_hand() -> None:
    s = _series(1003)  # 1002 target steps: 100 windows of 10, 25 per stream
    batches = streams(s, num_streams=4, window=10)
    assert isinstance(batches, StreamBatches)
    assert len(batches) == 25
    assert batches.num_streams == 4
    assert tuple(batches.x.shape) == tuple(batches.y.shape) == (4, 250, 2)
    assert tuple(batches.resets.shape) == (25, 4)
    for j, batch in enumerate(batches):
        assert isinstance(batch, Batch)
        assert tuple(batch.x.shape) == (4, 10, 2)
        assert batch.lengths is None
        for i in range(4):
            start = (i * 25 + j) * 10
            torch.testing.assert_close(batch.x[i], s[start : start + 10], rtol=0, atol=0)
            assert batch.y is not None
            torch.testing.assert_close(batch.y[i], s[start + 1 : start + 11], rtol=0, atol=0)


def test_row_i_continues_the_same_stream() -> None:
    batches = streams(torch.arange(200.0), num_streams=3, window=7)
    for previous, current in itertools.pairwise(batches):
        assert previous.y is not None
        # the next window's first input is the value after the previous window's last
        torch.testing.assert_close(current.x[:, 0], previous.y[:, -1], rtol=0, atol=0)
        torch.testing.assert_close(current.x[:, 0, 0], previous.x[:, -1, 0] + 1, rtol=0, atol=0)
    assert batches.resets[0].all()
    assert not batches.resets[1:].any()  # one series: only the streams' starts reset


def test_several_series_never_share_a_window_and_reset_at_their_starts() -> None:
    lengths = [41, 95, 23, 60]  # windows of 5: 8, 18, 4 and 11; 41 in all, 40 used
    series = [_series(n, 1, offset=1000.0 * k) for k, n in enumerate(lengths)]
    batches = streams(series, num_streams=4, window=5)
    assert len(batches) == 10
    firsts = [0, 8, 26, 30]  # the index of each series' first window among all windows
    for j, (batch, reset) in enumerate(batches.with_resets()):
        for i in range(4):
            owners = set((batch.x[i, :, 0] // 1000).tolist())
            assert len(owners) == 1  # one series per window
            window_index = i * 10 + j
            assert bool(reset[i]) == (j == 0 or window_index in firsts)
    assert batches.resets.sum() == 4 + 2  # 4 stream starts, 2 series starts inside streams


def test_a_stateful_loop_equals_running_each_stream_whole() -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(2, 5, batch_first=True)
    batches = streams(_series(301) / 300, num_streams=3, window=10)
    with torch.no_grad():
        expected, _ = rnn(batches.x)
        pieces, state = [], None
        for batch, reset in batches.with_resets():
            if state is not None:  # the contract: zeros where a row resets
                state = state * (~reset).view(1, -1, 1)
            output, state = rnn(batch.x, state)
            pieces.append(output)
    torch.testing.assert_close(torch.cat(pieces, dim=1), expected)


def test_indexing() -> None:
    batches = streams(torch.arange(50.0), num_streams=2, window=4)
    assert len(batches) == 6
    torch.testing.assert_close(batches[-1].x, batches[5].x)
    assert len(batches[1:3]) == 2
    with pytest.raises(IndexError):
        batches[6]
    assert "6 batches of (N, L, F) = (2, 4, 1)" in repr(batches)


def test_the_trainer_takes_the_batches_in_order() -> None:
    batches = streams(torch.sin(torch.linspace(0, 30, 401)), num_streams=4, window=20)
    torch.manual_seed(0)
    trainer = Trainer(max_epochs=1, progress=False, seed=0)
    history = trainer.fit(Seq2SeqRegressor(1, 1, 8), batches)
    assert trainer.num_training_batches == len(batches) == 5
    assert history[-1]["loss"] > 0


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least num_streams = 8 whole windows"):
        streams(torch.arange(30.0), num_streams=8, window=5)
    with pytest.raises(ValueError, match="same number of features"):
        streams([_series(20, 1), _series(20, 2)], num_streams=1, window=5)
    with pytest.raises(ValueError, match="num_streams"):
        streams(torch.arange(30.0), num_streams=0, window=5)
    with pytest.raises(TypeError, match="window"):
        streams(torch.arange(30.0), num_streams=1, window=2.5)  # type: ignore[arg-type]
    with pytest.raises(ShapeError):
        streams(torch.zeros(2, 3, 4, 5), num_streams=1, window=2)


@pytest.mark.parametrize("series", [torch.arange(101), torch.arange(101.0, dtype=torch.float64)])
def test_batches_are_float32_whatever_the_series_dtype(series: Tensor) -> None:
    batches = streams(series.numpy(), num_streams=2, window=10)
    batch = batches[0]
    assert batch.y is not None
    assert batch.x.dtype == batch.y.dtype == torch.float32
    assert batch.x[:, :, 0].tolist() == [list(range(10)), list(range(50, 60))]
    model = Seq2SeqRegressor(1, hidden_size=4, cell="gru")
    assert model(batch.x)[0].shape == (2, 10, 1)  # a model takes the batch as it comes
