"""Embedding arithmetic every stage shares: embeddings are compared as unit-length vectors (cosine similarity)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def unit_rows(vectors: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """``vectors`` (one vector or a stack of rows) scaled to unit length along the last axis, as float32.
    Zero vectors stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def unit_mean(vectors: Sequence[np.ndarray] | np.ndarray) -> Optional[np.ndarray]:
    """The unit-length mean direction of some vectors (how a person's or a track's embeddings are pooled);
    None when there are none."""
    if len(vectors) == 0:
        return None
    return unit_rows(np.mean(np.asarray(vectors, dtype=np.float32), axis=0))
