"""Nearest-neighbour search over embeddings: exact (numpy) for small sets, FAISS once a set is large.

Every vector is L2-normalised, so the inner product is the cosine similarity and higher is closer. Below
``index.faiss_min_size`` vectors an exact search is both fast and free of approximation; above it, an approximate
FAISS index (IVF-Flat or HNSW, parameters from avid/configs/default.yaml) keeps a query in milliseconds at a million
vectors. Both kinds answer ``search(queries, k) -> (scores, ids)`` with ids of -1 where fewer than k vectors exist.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np

from ..config import Config, load_config
from ..private import private_output

_BLOCK = 65536   # rows handled at a time when normalising or scanning, so temporary memory stays small


class Index(Protocol):
    dim: int

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, C-ordered); zero rows stay zero. The input is not modified."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.allclose(norms[norms > 0], 1.0, atol=1e-4):
        return vectors
    return vectors / np.where(norms > 0, norms, 1.0)


class ExactIndex:
    """Brute-force inner-product search: every query against every vector, in blocks."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray | None = None):
        self.vectors = normalise(vectors)
        self.dim = self.vectors.shape[1]
        self.ids = np.arange(len(self.vectors), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if len(self.ids) != len(self.vectors):
            raise ValueError("ids and vectors differ in length")

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = normalise(queries)
        n_queries = len(queries)
        best_scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
        best_rows = np.full((n_queries, k), -1, dtype=np.int64)
        for start in range(0, len(self.vectors), _BLOCK):
            scores = queries @ self.vectors[start:start + _BLOCK].T
            rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
            scores = np.concatenate([best_scores, scores], axis=1)
            rows = np.concatenate([best_rows, rows], axis=1)
            keep = _top_k(scores, k)
            best_scores = np.take_along_axis(scores, keep, axis=1)
            best_rows = np.take_along_axis(rows, keep, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        best_scores = np.take_along_axis(best_scores, order, axis=1)
        best_rows = np.take_along_axis(best_rows, order, axis=1)
        ids = np.where(best_rows >= 0, self.ids[np.clip(best_rows, 0, None)], -1)
        return best_scores, ids


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    if scores.shape[1] <= k:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


class FaissIndex:
    """An approximate FAISS index (inner product on normalised vectors) that maps its answers back to our ids."""

    def __init__(self, dim: int, n_expected: int, cfg: Config, threads: int = 0):
        """``cfg`` is the ``index`` section; ``threads`` FAISS's OpenMP threads (0: its default, all cores)."""
        import faiss  # imported here: exact search must work without loading FAISS

        self._faiss = faiss
        self.dim, self.cfg = dim, cfg
        if threads:
            faiss.omp_set_num_threads(threads)
        if cfg.type == "ivf":
            self.n_lists = max(1, min(int(cfg.ivf_lists_per_sqrt * math.sqrt(max(n_expected, 1))), n_expected // 39))
            quantizer = faiss.IndexFlatIP(dim)
            self.index = faiss.IndexIVFFlat(quantizer, dim, self.n_lists, faiss.METRIC_INNER_PRODUCT)
            self.index.nprobe = min(cfg.ivf_nprobe, self.n_lists)
        elif cfg.type == "hnsw":
            hnsw = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = cfg.hnsw_ef_construction
            hnsw.hnsw.efSearch = cfg.hnsw_ef_search
            self.index = faiss.IndexIDMap(hnsw)
        else:
            raise ValueError(f"index.type must be 'ivf' or 'hnsw', not {cfg.type!r}")

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, sample: np.ndarray) -> None:
        """Fit the IVF coarse quantiser (k-means) on a sample of the vectors; HNSW needs no training."""
        if self.needs_training:
            self.index.train(normalise(sample))

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        for start in range(0, len(vectors), _BLOCK):
            block = normalise(vectors[start:start + _BLOCK])
            self.index.add_with_ids(block, np.asarray(ids[start:start + _BLOCK], dtype=np.int64))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (private to the user: it holds the vectors), atomically."""
        with private_output(path) as tmp:
            self._faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: str | Path, cfg: Config) -> "FaissIndex":
        """An index written by ``save``, with the search settings of ``cfg`` (the ``index`` section)."""
        import faiss

        self = cls.__new__(cls)
        self._faiss, self.cfg = faiss, cfg
        self.index = faiss.read_index(str(path))
        self.dim = self.index.d
        if cfg.type == "ivf":
            ivf = faiss.extract_index_ivf(self.index)
            self.n_lists = ivf.nlist
            ivf.nprobe = min(cfg.ivf_nprobe, ivf.nlist)
        else:
            faiss.downcast_index(self.index.index).hnsw.efSearch = cfg.hnsw_ef_search
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(normalise(queries), k)
        return np.where(ids >= 0, scores, -np.inf).astype(np.float32), ids


def index_config(cfg: Config | None) -> Config:
    """The ``index`` section, from a whole config or given directly."""
    cfg = cfg if cfg is not None else load_config()
    return cfg.index if "index" in cfg else cfg


def build_index(vectors: np.ndarray, ids: np.ndarray | None = None, cfg: Config | None = None,
                exact: bool | None = None) -> ExactIndex | FaissIndex:
    """An index over ``vectors`` (n x d): exact below ``index.faiss_min_size`` vectors, FAISS at or above it.

    ``exact`` forces one kind. ``ids`` (int64) are what searches return; row numbers by default.
    """
    icfg = index_config(cfg)
    threads = int(cfg.threads.faiss) if cfg is not None and "threads" in cfg else 0
    n = len(vectors)
    if exact if exact is not None else n < icfg.faiss_min_size:
        return ExactIndex(vectors, ids)
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    index = FaissIndex(vectors.shape[1], n, icfg, threads)
    index.train(_training_sample(vectors, icfg))
    index.add(vectors, ids)
    return index


def _training_sample(vectors: np.ndarray, icfg: Config) -> np.ndarray:
    if len(vectors) <= icfg.ivf_train_size:
        return vectors
    rows = np.sort(np.random.default_rng(icfg.seed).choice(len(vectors), icfg.ivf_train_size, replace=False))
    return vectors[rows]

