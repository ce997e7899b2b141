"""Tests for rnnkit.metrics: against hand computations and torch's own losses."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.errors import ShapeError
from rnnkit.metrics import (
    METRIC_NAMES,
    MetricAccumulator,
    accuracy,
    get_metric,
    mae,
    mse,
    rollout_error,
    top_k_accuracy,
)


def _lengths_mask(lengths: Tensor, seq_len: int) -> Tensor:
    return torch.arange(seq_len) < lengths[:, None]


def _hand_top_k(logits: Tensor, targets: Tensor, k: int) -> float:
    hits = 0
    for row, target in zip(logits.tolist(), targets.tolist(), strict=True):
        ranked = sorted(range(len(row)), key=lambda c: -row[c])
        hits += int(target in ranked[:k])
    return hits / len(targets)


def test_accuracy_matches_hand_count() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(50, 7), torch.randint(0, 7, (50,))
    rows = zip(logits.tolist(), targets.tolist(), strict=True)
    expected = sum(int(max(range(7), key=lambda c: row[c]) == t) for row, t in rows) / 50
    assert accuracy(logits, targets).item() == pytest.approx(expected)
    assert accuracy(logits, logits.argmax(-1)).item() == 1.0


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_top_k_accuracy_matches_hand_ranking(k: int) -> None:
    torch.manual_seed(1)
    logits, targets = torch.randn(40, 6), torch.randint(0, 6, (40,))
    assert top_k_accuracy(logits, targets, k).item() == pytest.approx(
        _hand_top_k(logits, targets, k)
    )
    if k == 1:
        assert top_k_accuracy(logits, targets, 1).item() == accuracy(logits, targets).item()
    if k == 6:
        assert top_k_accuracy(logits, targets, k).item() == 1.0


def test_per_step_accuracy_with_mask_equals_unpadded_pieces() -> None:
    torch.manual_seed(2)
    lengths = torch.tensor([5, 2, 4])
    logits, targets = torch.randn(3, 5, 4), torch.randint(0, 4, (3, 5))
    mask = _lengths_mask(lengths, 5)
    pieces_logits = torch.cat([logits[i, :n] for i, n in enumerate(lengths.tolist())])
    pieces_targets = torch.cat([targets[i, :n] for i, n in enumerate(lengths.tolist())])
    got = accuracy(logits, targets, mask)
    assert got.item() == pytest.approx(accuracy(pieces_logits, pieces_targets).item())
    got_top2 = top_k_accuracy(logits, targets, 2, mask)
    assert got_top2.item() == pytest.approx(_hand_top_k(pieces_logits, pieces_targets, 2))


def test_mse_and_mae_equal_torch_losses() -> None:
    torch.manual_seed(3)
    pred, target = torch.randn(4, 9, 3), torch.randn(4, 9, 3)
    torch.testing.assert_close(mse(pred, target), F.mse_loss(pred, target))
    torch.testing.assert_close(mae(pred, target), F.l1_loss(pred, target))


@pytest.mark.parametrize(("fn", "ref"), [(mse, F.mse_loss), (mae, F.l1_loss)])
def test_masked_error_equals_loss_over_unpadded_pieces(
    fn: Callable[[Tensor, Tensor, Tensor], Tensor], ref: Callable[[Tensor, Tensor], Tensor]
) -> None:
    torch.manual_seed(4)
    lengths = torch.tensor([6, 1, 3, 4])
    pred, target = torch.randn(4, 6, 2), torch.randn(4, 6, 2)
    mask = _lengths_mask(lengths, 6)
    pred[~mask] = math.nan  # padding must not leak, even as NaN
    target[~mask] = 1e6
    pieces = [(pred[i, :n], target[i, :n]) for i, n in enumerate(lengths.tolist())]
    expected = ref(torch.cat([p for p, _ in pieces]), torch.cat([t for _, t in pieces]))
    torch.testing.assert_close(fn(pred, target, mask), expected)


def test_low_precision_inputs_are_upcast() -> None:
    torch.manual_seed(5)
    pred, target = torch.randn(8, 5, 1), torch.randn(8, 5, 1)
    got = mse(pred.bfloat16(), target.bfloat16())
    assert got.dtype == torch.float32
    ref = F.mse_loss(pred.bfloat16().float(), target.bfloat16().float())
    torch.testing.assert_close(got, ref)


def test_shape_errors_follow_the_template() -> None:
    with pytest.raises(ShapeError, match=r"^Expected `target` to have shape \(N, L, H_y\) = "):
        mse(torch.zeros(2, 3, 1), torch.zeros(2, 3))
    with pytest.raises(ShapeError, match=r"Expected `mask` to have shape \(N, L\) = \(2, 3\)"):
        mse(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ShapeError, match=r"Expected `logits` to have shape \(N, C\) = \(4, \?\)"):
        accuracy(torch.zeros(5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer class indices"):
        accuracy(torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="k = 4"):
        top_k_accuracy(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), k=4)


def test_shape_errors_name_the_per_step_layouts() -> None:
    tags = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ShapeError, match=r"shape \(N, L, C\) = \(2, 4, \?\).*indices \(N, L\),"):
        accuracy(torch.zeros(2, 3, 5), tags)
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ShapeError, match=r"`mask` to have shape \(N,\) = \(4,\)"):
        accuracy(torch.zeros(4, 3), labels, torch.ones(2, dtype=torch.bool))
    with pytest.raises(ShapeError, match=r"shape \(4, 5\), the shape of `pred`.*element for"):
        mse(torch.zeros(4, 5), torch.zeros(4, 6))


def test_a_single_logit_is_refused_not_scored_as_class_0() -> None:
    with pytest.raises(ValueError, match=r"C >= 2 classes in `logits`, but got \(4, 1\)"):
        accuracy(torch.randn(4, 1), torch.ones(4, dtype=torch.long))


def test_registry_resolves_names() -> None:
    torch.manual_seed(6)
    logits, targets = torch.randn(30, 8), torch.randint(0, 8, (30,))
    pred, target = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    assert get_metric("accuracy")(logits, targets) == accuracy(logits, targets)
    assert get_metric("top5_accuracy")(logits, targets) == top_k_accuracy(logits, targets, 5)
    assert get_metric("top_k")(logits, targets) == top_k_accuracy(logits, targets, 5)
    assert get_metric("top3_accuracy")(logits, targets) == top_k_accuracy(logits, targets, 3)
    assert get_metric("mse")(pred, target) == mse(pred, target)
    assert get_metric("mae")(pred, target) == mae(pred, target)
    assert all(get_metric(name).name == name for name in METRIC_NAMES)
    assert get_metric("accuracy").higher_is_better
    assert not get_metric("mse").higher_is_better
    assert get_metric("mae").target_kind == "step"
    with pytest.raises(ValueError, match="'mse'"):
        get_metric("rmse")
    with pytest.raises(ValueError, match="top0_accuracy"):
        get_metric("top0_accuracy")


def test_accumulator_over_batches_equals_full_data() -> None:
    torch.manual_seed(7)
    logits, targets = torch.randn(37, 5), torch.randint(0, 5, (37,))
    pred, target = torch.randn(37, 6, 2), torch.randn(37, 6, 2)
    mask = _lengths_mask(torch.randint(1, 7, (37,)), 6)
    losses = []
    acc = MetricAccumulator()
    for start in range(0, 37, 8):  # uneven last batch of 5
        sl = slice(start, start + 8)
        acc.update_metric("accuracy", logits[sl], targets[sl])
        acc.update_metric("top_k", logits[sl], targets[sl])
        acc.update_metric("mse", pred[sl], target[sl], mask[sl])
        batch_loss = F.cross_entropy(logits[sl], targets[sl])
        acc.update("loss", batch_loss, weight=len(targets[sl]))
        losses.append(batch_loss)
    got = acc.compute()
    assert list(got) == ["accuracy", "top_k", "mse", "loss"] == acc.names
    hits = int((logits.argmax(-1) == targets).sum())
    assert got["accuracy"] == hits / 37  # float64 sums: exact
    assert got["accuracy"] == pytest.approx(accuracy(logits, targets).item(), rel=1e-6)
    assert got["top_k"] == pytest.approx(top_k_accuracy(logits, targets, 5).item(), rel=1e-6)
    assert got["mse"] == pytest.approx(mse(pred, target, mask).item(), rel=1e-6)
    assert got["loss"] == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-6)
    assert acc.counts["mse"].item() == mask.sum().item() * 2


def test_accumulator_pack_sums_across_ranks() -> None:
    torch.manual_seed(8)
    logits, targets = torch.randn(20, 3), torch.randint(0, 3, (20,))
    ranks = [MetricAccumulator(["accuracy"]), MetricAccumulator(["accuracy"])]
    ranks[0].update_metric("accuracy", logits[:13], targets[:13])
    ranks[1].update_metric("accuracy", logits[13:], targets[13:])
    summed = ranks[0].pack() + ranks[1].pack()  # what an all-reduce(SUM) computes
    assert summed.shape == (2, 1)
    for rank in ranks:
        rank.load_packed(summed)
        assert rank.compute()["accuracy"] == pytest.approx(accuracy(logits, targets).item())
    with pytest.raises(ShapeError, match=r"\(2, M\) = \(2, 1\)"):
        ranks[0].load_packed(torch.zeros(2, 3))
    ranks[0].all_reduce()  # no process group: a no-op
    assert ranks[0].compute()["accuracy"] == pytest.approx(accuracy(logits, targets).item())


def test_accumulator_keeps_no_graph_and_handles_empty() -> None:
    pred = torch.randn(4, 3, 1, requires_grad=True)
    acc = MetricAccumulator(["mse", "never"])
    acc.update_metric("mse", pred, torch.zeros(4, 3, 1))
    acc.update("loss", (pred**2).mean())
    assert not any(t.requires_grad for t in [*acc.sums.values(), *acc.counts.values()])
    got = acc.compute()
    assert math.isnan(got["never"])
    assert got["mse"] == pytest.approx((pred**2).mean().item())
    assert torch.isnan(acc.compute_tensors()["never"])
    acc.reset()
    assert acc.names == ["mse", "never"]  # the names it was made with stay, in their order
    assert torch.equal(acc.pack(), torch.zeros(2, 2, dtype=torch.float64))
    assert all(math.isnan(v) for v in acc.compute().values())
    MetricAccumulator().reset()
    assert MetricAccumulator(["a"]).pack().shape == (2, 1)
    bare = MetricAccumulator()
    bare.update("loss", 1.0)
    bare.reset()
    assert bare.compute() == {}


@pytest.mark.parametrize("number_first", [False, True])
def test_accumulator_keeps_every_sum_on_the_first_tensors_device(number_first: bool) -> None:
    # the meta device stands in for an accelerator: a mix of devices fails to stack
    logits = torch.tensor([[2.0, 1.0]], device="meta")
    acc = MetricAccumulator()
    if number_first:
        acc.update("loss", 0.5, weight=1)
    acc.update_metric("accuracy", logits, torch.tensor([0], device="meta"))
    acc.update("loss", 0.5, weight=1)
    assert acc.device == torch.device("meta")
    assert {t.device.type for t in [*acc.sums.values(), *acc.counts.values()]} == {"meta"}
    assert acc.pack().shape == (2, 2)


def test_accumulator_mean_of_a_zero_count_is_nan_not_inf() -> None:
    acc = MetricAccumulator()
    acc.add("odd", torch.tensor(3.0), torch.tensor(0.0))
    assert torch.isnan(acc.compute_tensors()["odd"])
    assert math.isnan(acc.compute()["odd"])


class _GeometricOracle(torch.nn.Module):
    """Generates x_{t+1} = factor * x_t from the prime's last value (a perfect model if 2.0)."""

    def __init__(self, factor: float, batch_first: bool = True) -> None:
        super().__init__()
        self.factor, self.batch_first = factor, batch_first
        self.seen_grad_enabled: bool | None = None
        self.seen_training: bool | None = None

    def generate(self, prime: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        self.seen_grad_enabled, self.seen_training = torch.is_grad_enabled(), self.training
        last = prime[:, -1] if self.batch_first else prime[-1]
        powers = self.factor ** torch.arange(1, steps + 1, dtype=prime.dtype)
        out = last.unsqueeze(1) * powers[None, :, None]
        return (out if self.batch_first else out.transpose(0, 1)), last


def _geometric(n: int, seq_len: int) -> tuple[Tensor, Tensor]:
    series = torch.rand(n, 1, 1) * 2.0 ** torch.arange(seq_len + 1).view(1, -1, 1)
    return series[:, :-1], series[:, 1:]  # y is the next step of x


@pytest.mark.parametrize("batch_first", [True, False])
def test_rollout_error_is_zero_for_a_perfect_generator(batch_first: bool) -> None:
    torch.manual_seed(9)
    x, y = _geometric(3, 8)
    oracle = _GeometricOracle(2.0, batch_first)
    for horizon in (1, 4, 8):
        assert rollout_error(oracle, x, y, horizon).item() == pytest.approx(0.0, abs=1e-6)
    assert oracle.seen_grad_enabled is False
    assert oracle.seen_training is False
    assert oracle.training  # mode restored


def test_rollout_error_matches_hand_computation() -> None:
    torch.manual_seed(10)
    x, y = _geometric(2, 6)
    oracle = _GeometricOracle(1.5)
    prime_len, horizon = 2, 3
    last = x[:, prime_len - 1, 0]
    expected = sum(
        ((last * 1.5**j - last * 2.0**j) ** 2).sum().item() for j in range(1, horizon + 1)
    ) / (2 * horizon)
    got = rollout_error(oracle, x, y, horizon, prime_len=prime_len)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="prime_len <= L - horizon"):
        rollout_error(oracle, x, y, 6, prime_len=2)
    with pytest.raises(ShapeError, match="same N and L"):
        rollout_error(oracle, x, y[:, :5], 2)


def test_rollout_error_with_seq2seq_regressor_equals_step_loop() -> None:
    from rnnkit.models.regressor import Seq2SeqRegressor

    torch.manual_seed(11)
    model = Seq2SeqRegressor(input_size=1, hidden_size=8)
    t = torch.linspace(0, 6, 21)
    series = torch.stack([torch.sin(t), torch.cos(t)]).unsqueeze(-1)
    x, y = series[:, :-1], series[:, 1:]
    prime_len, horizon = 12, 6
    with torch.no_grad():
        out, state = model(x[:, :prime_len])
        preds = [out[:, -1:]]
        for _ in range(horizon - 1):
            out, state = model(preds[-1], state)
            preds.append(out)
    expected = F.mse_loss(torch.cat(preds, dim=1), y[:, prime_len - 1 : prime_len - 1 + horizon])
    got = rollout_error(model, x, y, horizon, prime_len=prime_len)
    torch.testing.assert_close(got, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_accumulator_causes_no_host_sync_on_cuda() -> None:
    logits = torch.randn(64, 10, device="cuda")
    targets = torch.randint(0, 10, (64,), device="cuda")
    pred = torch.randn(64, 5, 2, device="cuda")
    mask = torch.rand(64, 5, device="cuda") > 0.3
    acc = MetricAccumulator()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            acc.update_metric("accuracy", logits, targets)
            acc.update_metric("top5_accuracy", logits, targets)
            acc.update_metric("mse", pred, torch.zeros_like(pred), mask)
            acc.update("loss", F.cross_entropy(logits, targets), weight=64)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert acc.compute()["accuracy"] == pytest.approx(accuracy(logits, targets).item())
