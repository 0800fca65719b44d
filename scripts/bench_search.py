"""Benchmark nearest-neighbour search: FAISS (as configured in the ``index`` section) against exact search.

For each size and dimension it generates random-but-clustered unit vectors (identities with about 100 observations
each, spread like real embeddings: identity centres have cosine about 0.3 to each other, two observations of one
identity about 0.8), builds the approximate index,
and reports single-query latency (p50, p99), recall@10 against exact search, exact search latency and build time.
Queries are fresh points from the same identities, not stored vectors. Memory: the vectors (n x d float32, 1 GB at
1M x 256) are held once for the exact search and once inside the FAISS index.

    python scripts/bench_search.py                        # 10k, 100k, 1M at 128-D and 256-D
    python scripts/bench_search.py --sizes 100000 --dims 128 --nprobe 8 16 64   # sweep nprobe
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from avid.config import load_config
from avid.library.index import ExactIndex, FaissIndex

POINTS_PER_IDENTITY = 100
# Noise norm relative to the unit identity centre: a point's cosine to its centre is ~ 1/sqrt(1 + NOISE^2) = 0.89, so
# two observations of one identity have cosine ~0.8, as same-person dlib faces and Resemblyzer voices do.
NOISE = 0.5
CENTRE_COSINE = 0.3    # identity centres share a common direction, as real embeddings do (not spread over the sphere)
BLOCK = 100_000


def identity_centres(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors whose pairwise cosine is about CENTRE_COSINE."""
    common = rng.standard_normal(dim).astype(np.float32)
    spread = rng.standard_normal((n, dim), dtype=np.float32)
    centres = np.sqrt(CENTRE_COSINE) * common / np.linalg.norm(common)
    centres = centres + np.sqrt(1 - CENTRE_COSINE) * spread / np.linalg.norm(spread, axis=1, keepdims=True)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def clustered_vectors(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator, noise: float = NOISE
                      ) -> np.ndarray:
    """``n`` unit vectors, each an identity centre plus isotropic noise, generated block by block."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        labels = rng.integers(0, len(centres), stop - start)
        block = rng.standard_normal((stop - start, dim), dtype=np.float32) * (noise / np.sqrt(dim))
        block += centres[labels]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


def timed_single_queries(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Latency of one query at a time (what a user's search does), in milliseconds, and the ids found."""
    latencies, found = np.empty(len(queries)), np.empty((len(queries), k), dtype=np.int64)
    for i, query in enumerate(queries):
        t0 = time.perf_counter()
        _, ids = index.search(query[None, :], k)
        latencies[i] = (time.perf_counter() - t0) * 1000
        found[i] = ids[0]
    return latencies, found


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def bench(n: int, dim: int, icfg, n_queries: int, n_exact_timed: int, k: int, seed: int,
          nprobes: list[int], noise: float = NOISE) -> list[dict]:
    """One row per search setting (each nprobe for IVF) on one built index."""
    rng = np.random.default_rng(seed)
    centres = identity_centres(max(10, n // POINTS_PER_IDENTITY), dim, rng)
    vectors = clustered_vectors(n, dim, centres, rng, noise)
    queries = clustered_vectors(n_queries, dim, centres, rng, noise)
    exact = ExactIndex(vectors)
    _, truth = exact.search(queries, k)
    exact_latencies, _ = timed_single_queries(exact, queries[:n_exact_timed], k)

    t0 = time.perf_counter()
    index = FaissIndex(dim, n, icfg)
    sample = vectors[np.sort(rng.choice(n, min(n, icfg.ivf_train_size), replace=False))]
    index.train(sample)
    del sample
    index.add(vectors, np.arange(n, dtype=np.int64))
    build_s = time.perf_counter() - t0

    rows = []
    for nprobe in nprobes if icfg.type == "ivf" else [None]:
        if nprobe is not None:
            index.index.nprobe = min(nprobe, index.n_lists)
        index.search(queries[:10], k)   # warm-up: first calls allocate
        latencies, found = timed_single_queries(index, queries, k)
        rows.append({"n": n, "dim": dim, "build_s": build_s,
                     "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
                     "recall": recall_at_k(found, truth),
                     "exact_p50_ms": float(np.percentile(exact_latencies, 50)),
                     "configured": nprobe is None or nprobe == icfg.ivf_nprobe,
                     "params": f"ivf lists={index.n_lists} nprobe={index.index.nprobe}" if nprobe is not None
                     else f"hnsw M={icfg.hnsw_m} efSearch={icfg.hnsw_ef_search}"})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--queries", type=int, default=1000, help="queries timed one at a time and scored for recall")
    parser.add_argument("--exact-queries", type=int, default=50, help="queries timed against exact search")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--type", choices=["ivf", "hnsw"], help="override index.type")
    parser.add_argument("--nprobe", type=int, nargs="+", help="IVF lists scanned per query (several: a sweep on "
                        "one index); default index.ivf_nprobe")
    parser.add_argument("--noise", type=float, default=NOISE, help="spread of an identity's points (larger is "
                        "harder: at 1.2 two observations of one identity have cosine ~0.4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    icfg = load_config(overrides={"index": {"type": args.type}} if args.type else None).index
    nprobes = sorted(set(args.nprobe or []) | {icfg.ivf_nprobe})
    print(f"{'n':>9} {'dim':>4}  {'build s':>8}  {'p50 ms':>7}  {'p99 ms':>7}  {'recall@' + str(args.k):>9}  "
          f"{'exact p50 ms':>12}  params", flush=True)
    ok = True
    for n in args.sizes:
        for dim in args.dims:
            for r in bench(n, dim, icfg, args.queries, args.exact_queries, args.k, args.seed, nprobes, args.noise):
                print(f"{r['n']:>9} {r['dim']:>4}  {r['build_s']:>8.1f}  {r['p50_ms']:>7.2f}  {r['p99_ms']:>7.2f}  "
                      f"{r['recall']:>9.3f}  {r['exact_p50_ms']:>12.2f}  {r['params']}"
                      f"{'  (configured)' if r['configured'] else ''}", flush=True)
                if n >= 1_000_000 and r["configured"]:
                    passed = r["p50_ms"] <= 20 and r["recall"] >= 0.95
                    ok &= passed
                    print(f"  acceptance at {n} x {dim}, configured index: p50 <= 20 ms and recall@10 >= 0.95: "
                          f"{'PASS' if passed else 'FAIL'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
