"""Data adapters: images, series and variable-length sequences as ``(N, L, H_in)`` datasets.

Arrays in aeon's and sktime's ``(N, C, L)`` layout, lists of unequal-length series and long
pandas tables come in through :func:`from_arrays` and :func:`from_dataframe`. Every adapter
returns a :class:`SequenceDataset`: compact storage (``uint8`` pixels stay
``uint8``), conversion to ``float32`` one batch at a time, and :meth:`SequenceDataset.batch` to
draw whole batches by index with no per-sample Python. See the guide page "From data to
sequences" for each adapter's output shapes.

This layer may import only ``rnnkit.errors`` (and torch, numpy); it knows nothing of
models or training.
"""

from __future__ import annotations

from rnnkit.data._prepare import IGNORE_INDEX
from rnnkit.data.arrays import SeriesLayout, from_arrays
from rnnkit.data.dataset import Batch, SequenceDataset, TargetKind
from rnnkit.data.frames import from_dataframe
from rnnkit.data.images import IMAGE_ORDERS, NORMALIZE_PRESETS, ImageOrder, image_sequences
from rnnkit.data.labels import LABEL_TYPES, decode_labels, encode_labels, plain_label
from rnnkit.data.masks import valid_mask
from rnnkit.data.missing import MissingPolicy
from rnnkit.data.padding import BucketBatchSampler, collate_padded, pad
from rnnkit.data.series import WindowMode, as_series_batch, next_step, sine_wave, windows
from rnnkit.data.standardize import Standardizer, statistics_problem
from rnnkit.data.streaming import StreamBatches, streams

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_ORDERS",
    "LABEL_TYPES",
    "NORMALIZE_PRESETS",
    "Batch",
    "BucketBatchSampler",
    "ImageOrder",
    "MissingPolicy",
    "SequenceDataset",
    "SeriesLayout",
    "Standardizer",
    "StreamBatches",
    "TargetKind",
    "WindowMode",
    "as_series_batch",
    "collate_padded",
    "decode_labels",
    "encode_labels",
    "from_arrays",
    "from_dataframe",
    "image_sequences",
    "next_step",
    "pad",
    "plain_label",
    "sine_wave",
    "statistics_problem",
    "streams",
    "valid_mask",
    "windows",
]
