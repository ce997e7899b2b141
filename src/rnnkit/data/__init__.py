"""Data adapters: images, series and variable-length sequences as ``(N, L, H_in)`` datasets.

Every adapter returns a :class:`SequenceDataset`: compact storage (``uint8`` pixels stay
``uint8``), conversion to ``float32`` one batch at a time, and :meth:`SequenceDataset.batch` to
draw whole batches by index with no per-sample Python. See the guide page "From data to
sequences" for each adapter's output shapes.
"""

from __future__ import annotations

from rnnkit.data.dataset import Batch, SequenceDataset, TargetKind
from rnnkit.data.images import IMAGE_ORDERS, NORMALIZE_PRESETS, ImageOrder, image_sequences
from rnnkit.data.padding import BucketBatchSampler, collate_padded, pad
from rnnkit.data.series import WindowMode, as_series_batch, next_step, sine_wave, windows
from rnnkit.data.standardize import Standardizer
from rnnkit.data.streaming import StreamBatches, streams

__all__ = [
    "IMAGE_ORDERS",
    "NORMALIZE_PRESETS",
    "Batch",
    "BucketBatchSampler",
    "ImageOrder",
    "SequenceDataset",
    "Standardizer",
    "StreamBatches",
    "TargetKind",
    "WindowMode",
    "as_series_batch",
    "collate_padded",
    "image_sequences",
    "next_step",
    "pad",
    "sine_wave",
    "streams",
    "windows",
]
