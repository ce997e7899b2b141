"""Images to sequences: `image_sequences` reads an image set as ``(N, L, H_in)`` sequences.

A classic recurrent MNIST model reads each 28×28 digit top to bottom, one row per step. Any image
set becomes a :class:`~rnnkit.data.SequenceDataset` in one of four orders, read straight from the
arrays a torchvision dataset holds (``.data`` and ``.targets``) instead of through one PIL image
and one ``ToTensor`` call per sample. Pixels stay ``uint8`` in memory and are scaled to [0, 1]
(and normalised) one batch at a time, exactly as ``ToTensor`` and ``Normalize`` would.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Subset

from rnnkit._validate import check_int, is_int
from rnnkit.data._checks import as_tensor, check_finite, fmt_shape, require_dims
from rnnkit.data._prepare import COLUMN_HINT, _is_integer
from rnnkit.data.dataset import SequenceDataset
from rnnkit.errors import ShapeError

__all__ = ["IMAGE_ORDERS", "NORMALIZE_PRESETS", "ImageOrder", "image_sequences"]

ImageOrder = Literal["rows", "columns", "pixels", "pixels_permuted"]
"""How an image becomes a sequence; see :func:`image_sequences`."""

IMAGE_ORDERS: tuple[str, ...] = ("rows", "columns", "pixels", "pixels_permuted")
"""The orders :func:`image_sequences` accepts."""

NORMALIZE_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
}
"""Named ``(mean, std)`` pairs for ``normalize=``: ``"mnist"`` is the customary
``Normalize((0.1307,), (0.3081,))``, the mean and standard deviation of MNIST's training pixels
scaled to [0, 1]."""

_Normalize = str | tuple[float | Sequence[float], float | Sequence[float]] | None
_Images = tuple[Tensor, Tensor | None, int | None]  # (N, H, W, C) images, labels, class count
_CHANNEL_COUNTS = (1, 3, 4)
_LABEL_HINT = (
    "encode other labels with rnnkit.data.encode_labels, which returns the class indices and "
    "the classes that decode them."
)

# Datasets read through __getitem__ are read once: later calls reuse the stacked arrays.
_read_cache: weakref.WeakKeyDictionary[Any, _Images] = weakref.WeakKeyDictionary()


def image_sequences(
    source: Any,
    order: ImageOrder = "rows",
    normalize: _Normalize = None,
    *,
    targets: Tensor | Any | None = None,
    seed: int = 0,
    num_classes: int | None = None,
) -> SequenceDataset:
    """Read images as sequences, one row (or column, or pixel) per time step.

    With ``H×W`` images of C channels, the orders are:

    ===========================  =====  =====  ==========================================
    ``order``                    L      H_in   step ``t`` holds
    ===========================  =====  =====  ==========================================
    ``"rows"``                   H      W·C    row ``t``, pixel by pixel, channels inner
    ``"columns"``                W      H·C    column ``t``, top to bottom
    ``"pixels"``                 H·W    C      pixel ``t`` in raster (row-major) order
    ``"pixels_permuted"``        H·W    C      pixel ``perm[t]``, a fixed permutation
    ===========================  =====  =====  ==========================================

    The permutation is ``torch.randperm(H * W, generator=torch.Generator().manual_seed(seed))``,
    the same for every image and for every call with the same ``seed`` (use one seed for the
    training and the test set).

    Args:
        source: Images as a :class:`torch.Tensor` or :class:`numpy.ndarray` of shape
            ``(N, H, W)`` or ``(N, C, H, W)`` (a 4-D array whose last axis alone has 1, 3 or 4
            entries is read as ``(N, H, W, C)``); or a torchvision dataset exposing ``.data``
            and ``.targets`` (MNIST, FashionMNIST, KMNIST, EMNIST, CIFAR-10/100, ...) or
            ``.labels`` (SVHN), read straight from those arrays; or a
            ``torch.utils.data.Subset`` of one; or any other map-style dataset of
            ``(image, label)`` pairs or images (PIL images, ``(H, W[, C])`` arrays or
            ``(C, H, W)`` tensors), read once through ``__getitem__`` and cached.
        order: ``"rows"``, ``"columns"``, ``"pixels"`` or ``"pixels_permuted"``.
        normalize: ``None``; a preset name from :data:`NORMALIZE_PRESETS` (``"mnist"``); or
            ``(mean, std)``, each one number or one per channel, applied after scaling to
            [0, 1] like ``torchvision.transforms.Normalize``.
        targets: Integer class indices for a tensor or array ``source``, shape ``(N,)`` (a
            tensor, array or list); datasets bring their own, also integers.
        seed: Seed of the ``"pixels_permuted"`` permutation.
        num_classes: The class count C; by default ``len(source.classes)`` when the dataset
            has one, else the largest label plus one.

    Returns:
        A :class:`~rnnkit.data.SequenceDataset` holding ``uint8`` pixels (``float32`` for
        floating-point images, which are taken as already scaled) and ``int64`` labels.

    Raises:
        rnnkit.errors.ShapeError: Images of the wrong dimensionality or of mixed sizes.
        ValueError: An unknown ``order`` or preset, an empty source, a ``normalize`` of the
            wrong length, NaN or infinite pixels, or labels outside ``[0, num_classes)``.
        TypeError: A source that is neither an array nor a dataset, pixels that are
            neither ``uint8`` nor floating point, or labels that are not integers (encode
            them with :func:`~rnnkit.data.encode_labels`).

    Note:
        A torchvision dataset's own ``transform`` is not applied: the pixels are read raw,
        scaled like ``ToTensor`` and normalised by ``normalize``. Augmentations belong in a
        DataLoader pipeline instead.

    Shapes:
        - ``source``: ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)``.
        - ``targets``: ``(N,)``.
        - returns: a dataset with ``x`` of shape ``(N, L, H_in)`` (table above), ``y`` ``(N,)``.

    Example:
        >>> import torch
        >>> from rnnkit.data import image_sequences
        >>> digits = torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8)
        >>> data = image_sequences(digits, "rows", "mnist", targets=torch.arange(8))
        >>> data.seq_len, data.input_size, data.batch(torch.arange(4)).x.shape
        (28, 28, torch.Size([4, 28, 28]))
    """
    if order not in IMAGE_ORDERS:
        raise ValueError(f"Expected `order` to be one of {IMAGE_ORDERS}, but got {order!r}.")
    seed = check_int("seed", seed, 0)
    images, labels, classes = _read_source(source, targets)
    mean, std = _per_feature(normalize, images.shape, order)
    return SequenceDataset(
        _arrange(images, order, seed),
        labels,
        scale=1 / 255 if images.dtype == torch.uint8 else None,
        mean=mean,
        std=std,
        num_classes=num_classes if num_classes is not None else classes,
    )


# -- reading sources ----------------------------------------------------------------------------


def _read_source(source: Any, targets: Any) -> _Images:
    """The images as ``(N, H, W, C)`` (``uint8`` or ``float32``), labels and class count."""
    if isinstance(source, (Tensor, np.ndarray)):
        images = _from_array(as_tensor(source, "source"), "source")
        return images, _targets(targets, len(images)), None
    if targets is not None:
        raise ValueError(
            "Expected `targets` only with a tensor or array `source`; a dataset brings its own "
            "labels."
        )
    if isinstance(source, Subset):
        images, labels, classes = _read_source(source.dataset, None)
        idx = torch.as_tensor(list(source.indices), dtype=torch.long)
        return images[idx], None if labels is None else labels[idx], classes
    fast = _from_attributes(source)
    if fast is not None:
        return fast
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        return _from_items_cached(source)
    raise TypeError(
        "Expected `source` to be a tensor, an array or a map-style dataset, but got "
        f"{type(source).__name__}."
    )


def _from_array(t: Tensor, name: str) -> Tensor:
    """``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` images as ``(N, H, W, C)``."""
    require_dims(
        t,
        name,
        (3, 4),
        "(N, H, W) or (N, C, H, W)",
        "a single image needs a batch axis: `img.unsqueeze(0)`.",
    )
    t = _checked_pixels(t, name)
    if t.dim() == 3:
        return t.unsqueeze(-1)
    return t if _is_channels_last(t.shape) else t.permute(0, 2, 3, 1)


def _checked_pixels(t: Tensor, name: str) -> Tensor:
    """``t`` as ``uint8`` or ``float32``, checked to be non-empty and finite."""
    if not _is_pixel_dtype(t.dtype):
        raise TypeError(
            f"Expected `{name}` to hold uint8 pixels (0..255) or floats (0..1), but got dtype "
            f"{t.dtype}. Hint: convert 0..255 integers with `.to(torch.uint8)`."
        )
    if t.shape[0] == 0:
        raise ValueError(f"Expected a non-empty `{name}`, but got shape {fmt_shape(t)}.")
    t = t.float() if t.is_floating_point() else t
    check_finite(t, name)
    return t


def _is_pixel_dtype(dtype: torch.dtype) -> bool:
    return dtype == torch.uint8 or dtype.is_floating_point


def _is_channels_last(shape: torch.Size | tuple[int, ...]) -> bool:
    return shape[-1] in _CHANNEL_COUNTS and shape[1] not in _CHANNEL_COUNTS


def _from_attributes(source: Any) -> _Images | None:
    """Read a dataset's ``.data`` and ``.targets`` (or ``.labels``), or ``None`` if unusable."""
    data = getattr(source, "data", None)
    labels = getattr(source, "targets", getattr(source, "labels", None))
    if not isinstance(data, (Tensor, np.ndarray)) or data.ndim not in (3, 4):
        return None
    data = as_tensor(data, "source.data")
    if not _is_pixel_dtype(data.dtype):
        return None
    if labels is not None:
        labels = torch.as_tensor(np.asarray(labels) if isinstance(labels, list) else labels)
        if labels.dim() != 1 or labels.shape[0] != data.shape[0]:
            return None  # e.g. QMNIST's (N, 8) targets: let __getitem__ decide
    return _from_array(data, "source.data"), labels, _classes(source)


def _classes(source: Any) -> int | None:
    classes = getattr(source, "classes", None)
    return len(classes) if isinstance(classes, Sequence) and len(classes) > 0 else None


def _from_items_cached(source: Any) -> _Images:
    try:
        return _read_cache[source]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable or not hashable: read without caching
        return _from_items(source)
    read = _from_items(source)
    _read_cache[source] = read
    return read


def _from_items(source: Any) -> _Images:
    """Read every item of a map-style dataset once and stack the images."""
    if len(source) == 0:
        raise ValueError("Expected a non-empty `source` dataset, but it has no items.")
    images: list[Tensor] = []
    labels: list[int] = []
    for i in range(len(source)):
        item = source[i]
        image, label = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
        images.append(_item_image(image, i))
        if label is not None:
            labels.append(_class_index(label, f"source[{i}][1]"))
    if labels and len(labels) != len(images):
        raise ValueError("Expected every item of `source` to carry a label, or none to.")
    stacked = _checked_pixels(_stack(images), "source")
    return stacked, torch.tensor(labels) if labels else None, _classes(source)


def _targets(targets: Any, n: int) -> Tensor | None:
    """``targets`` as ``(N,)`` integer class indices, checked against the image count."""
    if targets is None:
        return None
    if isinstance(targets, (list, tuple)):
        codes = [_class_index(label, f"targets[{i}]") for i, label in enumerate(targets)]
        t = torch.tensor(codes, dtype=torch.int64)
    elif isinstance(targets, np.ndarray) and targets.dtype.kind not in "iu":
        raise _not_indices(targets.dtype)
    else:
        t = as_tensor(targets, "targets")
        if not _is_integer(t):
            raise _not_indices(t.dtype)
    if tuple(t.shape) != (n,):
        hint = (
            COLUMN_HINT.replace("`y.", "`targets.")
            if t.shape == (n, 1)
            else ("one class index per image, in the images' order.")
        )
        raise ShapeError(
            f"Expected `targets` to have shape (N,) = ({n},), one label per image, but got "
            f"{fmt_shape(t)}. Hint: {hint}"
        )
    return t


def _class_index(label: Any, where: str) -> int:
    """One label as an int class index; a string or 2.5 is refused by name.

    A one-element tensor or array and a whole float (3.0) count, as ``int()`` read them.
    """
    value = label
    if isinstance(value, Tensor | np.ndarray) and math.prod(value.shape) == 1:
        value = value.reshape(()).item()
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if is_int(value):
        return int(value)
    raise TypeError(
        f"Expected `{where}` to be an integer class index, but got {value!r}. Hint: {_LABEL_HINT}"
    )


def _not_indices(dtype: Any) -> TypeError:
    return TypeError(
        f"Expected `targets` to hold integer class indices, but got dtype {dtype}. Hint: "
        f"{_LABEL_HINT}"
    )


def _item_image(image: Any, i: int) -> Tensor:
    """One item's image as ``(H, W, C)``: tensors are read as ``(C, H, W)``, others as PIL's."""
    if isinstance(image, Tensor):
        t = image if image.dim() != 2 else image.unsqueeze(0)
        require_dims(t, f"source[{i}][0]", (3,), "(C, H, W)", "torch images are channels-first.")
        return t.permute(1, 2, 0)
    a = np.asarray(image)  # PIL images and arrays: (H, W) or (H, W, C)
    if a.ndim not in (2, 3):
        raise ShapeError(
            f"Expected `source[{i}][0]` to be an image of shape (H, W) or (H, W, C), but got "
            f"{fmt_shape(a.shape)}."
        )
    return torch.from_numpy(np.array(a if a.ndim == 3 else a[..., None]))


def _stack(images: list[Tensor]) -> Tensor:
    first = images[0]
    for i, image in enumerate(images):
        if image.shape != first.shape or image.dtype != first.dtype:
            raise ShapeError(
                f"Expected every image of `source` to match the first, {fmt_shape(first)} "
                f"{first.dtype}, but item {i} is {fmt_shape(image)} {image.dtype}. Hint: "
                "resize or crop the images to one size first."
            )
    return torch.stack(images)  # (N, H, W, C)


# -- layout and normalisation -------------------------------------------------------------------


def _arrange(images: Tensor, order: str, seed: int) -> Tensor:
    """``(N, H, W, C)`` images as ``(N, L, H_in)`` sequences in ``order``."""
    n, h, w, c = images.shape
    if order == "rows":
        return images.reshape(n, h, w * c)
    if order == "columns":
        return images.permute(0, 2, 1, 3).reshape(n, w, h * c)
    pixels = images.reshape(n, h * w, c)
    if order == "pixels":
        return pixels
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))
    return pixels.index_select(1, perm.to(pixels.device))


def _per_feature(
    normalize: _Normalize, shape: torch.Size, order: str
) -> tuple[Tensor | None, Tensor | None]:
    """Per-channel ``(mean, std)`` laid out along H_in for ``order``."""
    if normalize is None:
        return None, None
    mean, std = _resolve(normalize)
    _, h, w, c = shape
    repeat = {"rows": w, "columns": h}.get(order, 1)
    return _channels(mean, "mean", c).repeat(repeat), _channels(std, "std", c).repeat(repeat)


def _resolve(normalize: Any) -> tuple[Any, Any]:
    if isinstance(normalize, str):
        if normalize.lower() not in NORMALIZE_PRESETS:
            raise ValueError(
                f"Expected `normalize` to be None, (mean, std) or one of "
                f"{tuple(NORMALIZE_PRESETS)}, but got {normalize!r}."
            )
        return NORMALIZE_PRESETS[normalize.lower()]
    if isinstance(normalize, (tuple, list)) and len(normalize) == 2:
        return normalize[0], normalize[1]
    raise TypeError(
        "Expected `normalize` to be None, a preset name or a (mean, std) pair, but got "
        f"{normalize!r}."
    )


def _channels(value: Any, name: str, channels: int) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() not in (1, channels):
        raise ValueError(
            f"Expected the normalize {name} to be one number or C = {channels} numbers (one "
            f"per channel), but got {t.numel()}: {t.tolist()}."
        )
    return t.expand(channels)
