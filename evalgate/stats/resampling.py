"""Bootstrap resampling in cache-sized chunks, threaded when the matrix is large enough."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Rows of the bootstrap resample matrix handled per chunk: ~2**16 cells keeps each chunk in L2.
_CHUNK_CELLS = 1 << 16
# Below this many resample cells threads cost more than they save.
_THREAD_MIN_CELLS = 4_000_000


def _resample_counts(gen: np.random.Generator, m: int, n: int) -> np.ndarray:
    """m bootstrap resamples of n canaries as an (m, n) matrix: how often each was drawn."""
    idx = gen.integers(0, n, size=(m, n))
    idx += (np.arange(m) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=m * n).reshape(m, n)


def _run_chunks(work: Callable[[int], None], chunks: int, cells: int) -> None:
    """Run work(0..chunks-1): on two threads when the resampling is large (numpy releases the
    GIL in bincount and matmul), inline otherwise."""
    workers = min(2, os.cpu_count() or 1)
    if workers > 1 and cells >= _THREAD_MIN_CELLS:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(chunks)))
    else:
        for i in range(chunks):
            work(i)


def _resample_sums(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Column sums of `resamples` paired bootstrap resamples of the (n, k) matrix `values`.

    Each chunk draws its canary indices, turns them into multiplicity counts (bincount) and
    multiplies: one BLAS product instead of gathering B x n x k values. Chunks have their own
    generators spawned from `seed`, so threading does not change the result.
    """
    n = values.shape[0]
    rows = max(1, (16 * _CHUNK_CELLS) // n)  # ~8 MB of indices a chunk: few, cheap tasks
    starts = list(range(0, resamples, rows))
    gens = np.random.default_rng(seed).spawn(len(starts))
    out = np.empty((resamples, values.shape[1]))

    def work(i: int) -> None:
        start = starts[i]
        m = min(rows, resamples - start)
        out[start:start + m] = _resample_counts(gens[i], m, n) @ values

    _run_chunks(work, len(starts), resamples * n)
    return out
