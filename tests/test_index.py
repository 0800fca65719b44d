"""Vector index: exact search is exact, FAISS agrees with it on clustered data, and the size switch works."""
from __future__ import annotations

import numpy as np
import pytest

from avid.config import load_config
from avid.library.index import ExactIndex, build_index, normalise

faiss = pytest.importorskip("faiss")


def clustered(n: int, dim: int, n_groups: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((n_groups, dim)))
    vectors = normalise(centres[rng.integers(0, n_groups, n)] + 0.5 / np.sqrt(dim) * rng.standard_normal((n, dim)))
    queries = normalise(centres[rng.integers(0, n_groups, 50)] + 0.5 / np.sqrt(dim) * rng.standard_normal((50, dim)))
    return vectors, queries


def test_exact_search_matches_brute_force_and_returns_ids():
    vectors, queries = clustered(3000, 64, 30)
    ids = np.arange(3000, dtype=np.int64) * 7 + 100
    scores, found = ExactIndex(vectors, ids).search(queries, 10)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert np.array_equal(found, ids[truth])
    assert np.allclose(scores, np.take_along_axis(queries @ vectors.T, truth, axis=1), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)          # best first


def test_fewer_vectors_than_k_pads_with_minus_one():
    vectors, queries = clustered(3, 16, 2)
    scores, ids = ExactIndex(vectors).search(queries[:2], 5)
    assert ids.shape == (2, 5) and np.all(ids[:, 3:] == -1) and np.all(np.isinf(scores[:, 3:]))


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_agrees_with_exact_search(kind):
    vectors, queries = clustered(5000, 64, 100)
    cfg = load_config(overrides={"index": {"type": kind, "faiss_min_size": 1000}})
    index = build_index(vectors, cfg=cfg)
    assert type(index).__name__ == "FaissIndex" and len(index) == 5000
    _, approx = index.search(queries, 10)
    _, exact = ExactIndex(vectors).search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95
    assert np.mean(approx[:, 0] == exact[:, 0]) >= 0.95      # the nearest one is almost always the same


def test_size_threshold_picks_exact_below_and_faiss_above():
    vectors, _ = clustered(500, 32, 5)
    assert isinstance(build_index(vectors, cfg=load_config(overrides={"index": {"faiss_min_size": 501}})),
                      ExactIndex)
    assert not isinstance(build_index(vectors, cfg=load_config(overrides={"index": {"faiss_min_size": 500}})),
                          ExactIndex)
