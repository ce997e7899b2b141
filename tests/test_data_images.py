"""image_sequences against torchvision's own datasets and transforms, and explicit reshapes."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision.transforms import Normalize, ToTensor

from rnnkit import ShapeError
from rnnkit.data import NORMALIZE_PRESETS, image_sequences

MNIST_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _write_idx(folder: Path, prefix: str, images: np.ndarray[Any, Any], labels: Any) -> None:
    """Write MNIST's IDX format: a big-endian header (magic, sizes), then raw uint8 bytes."""
    n, h, w = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, h, w) + images.tobytes()
    )
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + np.asarray(labels, dtype=np.uint8).tobytes()
    )


def _fake_mnist_root(root: Path, name: str = "MNIST") -> np.ndarray[Any, Any]:
    """Tiny MNIST-format files under ``root/name/raw``; returns the training images."""
    rng = np.random.default_rng(0)
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    train = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    train[0] = 0
    train[1] = 255
    _write_idx(raw, "train", train, [5, 0, 4, 1, 9, 2])
    _write_idx(raw, "t10k", rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), [7, 2, 1])
    return train


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST", "KMNIST"])
def test_mnist_family_rows_equal_totensor_sample_for_sample(tmp_path: Path, name: str) -> None:
    _fake_mnist_root(tmp_path, name)
    mnist = getattr(datasets, name)(root=str(tmp_path), train=True, download=False)
    data = image_sequences(mnist, "rows")
    assert len(data) == len(mnist) == 6
    assert data.x.dtype == torch.uint8
    for i in range(len(mnist)):
        image, label = mnist[i]
        expected = ToTensor()(image).squeeze(0)
        x_i, y_i = data[i]
        assert torch.equal(x_i, expected)
        assert int(y_i) == label
    batch = data.batch(torch.arange(6))
    assert torch.equal(batch.x, torch.stack([ToTensor()(mnist[i][0]).squeeze(0) for i in range(6)]))
    assert data.num_classes == 10  # from mnist.classes, not the largest label seen


def test_mnist_normalisation_equals_torchvision_normalize(tmp_path: Path) -> None:
    _fake_mnist_root(tmp_path)
    mnist = datasets.MNIST(root=str(tmp_path), train=False, download=False)
    reference = Normalize((0.1307,), (0.3081,))
    for normalize in ("mnist", ((0.1307,), (0.3081,)), (0.1307, 0.3081)):
        data = image_sequences(mnist, "rows", normalize)
        for i in range(len(mnist)):
            expected = reference(ToTensor()(mnist[i][0])).squeeze(0)
            assert torch.equal(data[i][0], expected)
    assert NORMALIZE_PRESETS["mnist"] == ((0.1307,), (0.3081,))


def test_the_dataset_transform_is_not_applied(tmp_path: Path) -> None:
    _fake_mnist_root(tmp_path)
    plain = datasets.MNIST(root=str(tmp_path), download=False)
    with_transform = datasets.MNIST(root=str(tmp_path), download=False, transform=ToTensor())
    assert torch.equal(image_sequences(plain).x, image_sequences(with_transform).x)


def test_subset_of_a_dataset_reads_the_selected_samples(tmp_path: Path) -> None:
    _fake_mnist_root(tmp_path)
    mnist = datasets.MNIST(root=str(tmp_path), download=False)
    data = image_sequences(Subset(mnist, [4, 1]), "columns")
    for row, i in enumerate([4, 1]):
        image, label = mnist[i]
        assert torch.equal(data[row][0], ToTensor()(image).squeeze(0).T)
        assert int(data[row][1]) == label


def _reference(image_chw: torch.Tensor, order: str, seed: int = 0) -> torch.Tensor:
    """The documented layouts, written as explicit permutes and reshapes of (C, H, W)."""
    c, h, w = image_chw.shape
    if order == "rows":
        return image_chw.permute(1, 2, 0).reshape(h, w * c)
    if order == "columns":
        return image_chw.permute(2, 1, 0).reshape(w, h * c)
    pixels = image_chw.permute(1, 2, 0).reshape(h * w, c)
    if order == "pixels":
        return pixels
    return pixels[torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize("order", ["rows", "columns", "pixels", "pixels_permuted"])
def test_orders_match_explicit_reshapes_for_colour_images(order: str) -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 4, 6), dtype=torch.uint8)  # H != W catches mix-ups
    data = image_sequences(images, order, targets=torch.arange(5))  # type: ignore[arg-type]
    expected = torch.stack([_reference(img.float() / 255, order) for img in images])
    assert torch.equal(data.batch(torch.arange(5)).x, expected)
    shapes = {"rows": (4, 18), "columns": (6, 12), "pixels": (24, 3), "pixels_permuted": (24, 3)}
    assert (data.seq_len, data.input_size) == shapes[order]


def test_grayscale_orders_are_the_image_its_transpose_and_its_raster() -> None:
    torch.manual_seed(0)
    images = torch.rand(3, 5, 7)
    assert torch.equal(image_sequences(images, "rows").x, images)
    assert torch.equal(image_sequences(images, "columns").x, images.transpose(1, 2))
    assert torch.equal(image_sequences(images, "pixels").x, images.reshape(3, 35, 1))


def test_pixel_permutation_is_fixed_by_the_seed() -> None:
    images = torch.arange(2 * 16, dtype=torch.uint8).reshape(2, 4, 4)
    first = image_sequences(images, "pixels_permuted", seed=7).x
    assert torch.equal(first, image_sequences(images, "pixels_permuted", seed=7).x)
    assert not torch.equal(first, image_sequences(images, "pixels_permuted", seed=8).x)
    assert not torch.equal(first, image_sequences(images, "pixels").x)
    # one permutation for every image, and every pixel kept
    assert torch.equal(first[1] - first[0], torch.full((16, 1), 16, dtype=torch.uint8))
    assert torch.equal(first[0].flatten().sort().values, images[0].flatten())


def test_per_channel_normalisation_equals_normalize_in_every_order() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    reference = Normalize(mean, std)
    for order in ("rows", "columns", "pixels", "pixels_permuted"):
        data = image_sequences(images, order, (mean, std))
        expected = torch.stack([_reference(reference(img.float() / 255), order) for img in images])
        assert torch.equal(data.batch(torch.arange(4)).x, expected)


def test_channels_last_arrays_read_like_channels_first_tensors() -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    assert torch.equal(image_sequences(nhwc).x, image_sequences(nchw).x)


def _fake_cifar10(n: int = 4) -> datasets.CIFAR10:
    """A real CIFAR10 object (its own __getitem__) over random data laid out as torchvision does."""
    cifar = datasets.CIFAR10.__new__(datasets.CIFAR10)
    chw = np.random.default_rng(1).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    cifar.data = chw.transpose((0, 2, 3, 1))  # HWC, non-contiguous, as CIFAR10.__init__ leaves it
    cifar.targets = [3, 8, 0, 9][:n]
    cifar.classes = ["c"] * 10
    cifar.transform = cifar.target_transform = None
    return cifar


def test_cifar10_rows_equal_totensor_and_normalize() -> None:
    cifar = _fake_cifar10()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    data = image_sequences(cifar, "rows", (mean, std))
    assert (data.seq_len, data.input_size, data.num_classes) == (32, 96, 10)
    for i in range(len(cifar)):
        image, label = cifar[i]
        expected = _reference(Normalize(mean, std)(ToTensor()(image)), "rows")
        assert torch.equal(data[i][0], expected)
        assert int(data[i][1]) == label


def test_channels_first_data_with_labels_attribute_like_svhn() -> None:
    class SvhnLike:
        def __init__(self) -> None:
            self.data = np.random.default_rng(2).integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)
            self.labels = np.array([1, 0, 2])

    source = SvhnLike()
    data = image_sequences(source, "pixels")
    expected = torch.from_numpy(source.data).float().div(255).permute(0, 2, 3, 1).reshape(3, 64, 3)
    assert torch.equal(data.batch([0, 1, 2]).x, expected)
    assert data.y is not None
    assert data.y.tolist() == [1, 0, 2]


class _PilDataset(Dataset[tuple[Any, int]]):
    """A map-style dataset without .data: PIL images (or tensors) through __getitem__."""

    def __init__(self, images: np.ndarray[Any, Any], as_tensor: bool = False) -> None:
        self.images, self.as_tensor, self.calls = images, as_tensor, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        self.calls += 1
        image = Image.fromarray(self.images[i])
        return (ToTensor()(image) if self.as_tensor else image), i % 2


def test_other_datasets_are_read_once_through_getitem_and_cached() -> None:
    images = np.random.default_rng(3).integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    source = _PilDataset(images)
    rows = image_sequences(source, "rows")
    assert source.calls == 5
    columns = image_sequences(source, "columns")
    assert source.calls == 5  # the second call reuses the first read
    for i in range(5):
        chw = ToTensor()(Image.fromarray(images[i]))
        assert torch.equal(rows[i][0], _reference(chw, "rows"))
        assert torch.equal(columns[i][0], _reference(chw, "columns"))
        assert int(rows[i][1]) == i % 2


def test_datasets_of_float_tensors_are_taken_as_already_scaled() -> None:
    images = np.random.default_rng(4).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    data = image_sequences(_PilDataset(images, as_tensor=True), "rows")
    assert data.x.dtype == torch.float32
    assert data.scale is None
    assert torch.equal(data.x, torch.from_numpy(images).float() / 255)


@pytest.mark.parametrize(
    ("source", "kwargs", "error", "match"),
    [
        (torch.zeros(4, 4, dtype=torch.uint8), {}, ShapeError, r"\(N, H, W\) or \(N, C, H, W\)"),
        (torch.zeros(2, 4, 4, dtype=torch.int64), {}, TypeError, "uint8 pixels"),
        (torch.zeros(0, 4, 4, dtype=torch.uint8), {}, ValueError, "non-empty `source`"),
        (5, {}, TypeError, "map-style dataset"),
        (torch.zeros(2, 4, 4), {"order": "spiral"}, ValueError, "`order` to be one of"),
        (torch.zeros(2, 4, 4), {"normalize": "imagenet"}, ValueError, "one of \\('mnist',\\)"),
        (torch.zeros(2, 4, 4), {"normalize": 0.5}, TypeError, r"\(mean, std\) pair"),
        (torch.zeros(2, 3, 4, 4), {"normalize": ((0.5, 0.5), (1.0,))}, ValueError, "C = 3"),
        (torch.zeros(2, 4, 4), {"seed": -1}, ValueError, "`seed` >= 0"),
        (
            torch.zeros(2, 4, 4),
            {"targets": torch.tensor([0, 1, 2])},
            ShapeError,
            r"`targets` to have shape \(N,\) = \(2,\)",
        ),
        (
            torch.zeros(2, 4, 4),
            {"targets": torch.tensor([0, 5]), "num_classes": 5},
            ValueError,
            r"\[0, 5\)",
        ),
    ],
)
def test_bad_input_raises_clear_errors(
    source: Any, kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        image_sequences(source, **kwargs)


def test_nan_pixels_are_flagged_at_their_index() -> None:
    images = torch.rand(3, 4, 4)
    images[2, 1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"`source` to hold finite values.*index \(2, 1, 3\)"):
        image_sequences(images)


def test_targets_belong_to_array_sources_only(tmp_path: Path) -> None:
    _fake_mnist_root(tmp_path)
    mnist = datasets.MNIST(root=str(tmp_path), download=False)
    with pytest.raises(ValueError, match="dataset brings its own"):
        image_sequences(mnist, targets=torch.zeros(6, dtype=torch.long))


def test_images_of_mixed_sizes_are_rejected() -> None:
    class Mixed(Dataset[Any]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> Any:
            return np.zeros((4, 4 + i), dtype=np.uint8)

    with pytest.raises(ShapeError, match=r"item 1 is \(4, 5, 1\)"):
        image_sequences(Mixed())


@pytest.mark.mnist
@pytest.mark.skipif(not (MNIST_ROOT / "MNIST" / "raw").is_dir(), reason="real MNIST absent")
def test_real_mnist_matches_totensor_and_stays_compact() -> None:
    mnist = datasets.MNIST(root=str(MNIST_ROOT), train=True, download=False)
    data = image_sequences(mnist, "rows", "mnist")
    reference = Normalize((0.1307,), (0.3081,))
    picks = torch.randint(0, len(mnist), (32,), generator=torch.Generator().manual_seed(0))
    expected = torch.stack([reference(ToTensor()(mnist[int(i)][0])).squeeze(0) for i in picks])
    assert torch.equal(data.batch(picks).x, expected)
    assert data.nbytes < 60e6
    assert data.x.dtype == torch.uint8


def test_a_list_of_image_label_pairs_is_a_dataset_too() -> None:
    images = np.random.default_rng(5).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    pairs = [(Image.fromarray(img), i) for i, img in enumerate(images)]
    data = image_sequences(pairs, "rows")  # a list cannot be cached, but reads fine
    assert torch.equal(data.x, torch.from_numpy(images))
    assert data.y is not None
    assert data.y.tolist() == [0, 1, 2]


def test_targets_as_a_list_are_read_and_checked_by_their_own_name() -> None:
    images = torch.randint(0, 256, (5, 4, 4), dtype=torch.uint8)
    listed = image_sequences(images, targets=[0, 1, 2, 1, 0])
    assert listed.y is not None
    assert listed.y.tolist() == [0, 1, 2, 1, 0]
    from_array = image_sequences(images, targets=np.array([0, 1, 2, 1, 0])).y
    assert from_array is not None
    assert torch.equal(listed.y, from_array)
    with pytest.raises(ShapeError, match=r"`targets` to have shape \(N,\) = \(5,\), one label"):
        image_sequences(images, targets=torch.arange(4))
    hint = "Hint: encode other labels with rnnkit.data.encode_labels"
    with pytest.raises(TypeError, match=r"`targets\[2\]` to be an integer class index, but got "):
        image_sequences(images, targets=[0, 1, 2.5, 1, 0])
    with pytest.raises(TypeError, match=f"dtype <U3. {hint}"):
        image_sequences(images, targets=np.array(["cat"] * 5))
    with pytest.raises(TypeError, match=f"dtype torch.float32. {hint}"):
        image_sequences(images, targets=torch.zeros(5))


def test_a_dataset_of_string_labels_is_refused_with_the_encoding_hint() -> None:
    class Named(Dataset[tuple[torch.Tensor, str]]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
            return torch.zeros(1, 4, 4, dtype=torch.uint8), ["cat", "dog"][i]

    with pytest.raises(
        TypeError, match=r"`source\[0\]\[1\]` to be an integer class index, but got 'cat'"
    ):
        image_sequences(Named())


@pytest.mark.parametrize("label", [torch.tensor([2]), np.array([2]), np.int64(2), 2.0])
def test_dataset_labels_in_one_element_containers_or_whole_floats_are_read(label: Any) -> None:
    class Wrapped(Dataset[tuple[torch.Tensor, Any]]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
            return torch.zeros(1, 4, 4, dtype=torch.uint8), label

    data = image_sequences(Wrapped())
    assert data.y is not None
    assert data.y.tolist() == [2, 2]


def test_a_column_of_targets_gets_the_squeeze_hint() -> None:
    images = torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8)
    with pytest.raises(ShapeError, match=r"got \(3, 1\)\. Hint: .*`targets\.squeeze\(1\)`"):
        image_sequences(images, targets=torch.tensor([[0], [1], [2]]))
