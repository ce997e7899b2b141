"""Shared test configuration.

Tests run on the CPU with one intra-op thread: results are then deterministic and two test
processes on a small machine do not fight over cores.
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)
