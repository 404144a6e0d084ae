"""Near-duplicate removal: word shingles of normalised text, MinHash signatures, LSH banding.

Traffic repeats itself ("where is my order 123?" / "Where is my order 124 ??"): canaries that
are near copies weigh one intent many times. Two texts are near duplicates when the Jaccard
similarity of their shingle sets is at least the threshold; MinHash estimates it, banding finds
the candidate pairs without comparing all pairs (5,000 logs: 12.5 M pairs), and each candidate
pair is confirmed on its exact Jaccard similarity. The first text of a group is kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

PERMUTATIONS = 128
BANDS = 32  # 4 rows a band: pairs above ~0.5 similar collide in some band with high probability
_WORD = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> list[str]:
    """Lower case, punctuation and spacing dropped: the words that make an intent."""
    return _WORD.findall(text.casefold())


def shingles(text: str, size: int = 3) -> set[str]:
    words = normalise(text)
    if len(words) < size:
        return {" ".join(words)}
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def _hash(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")


def _params(seed: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([_hash(f"a{seed}/{i}") | 1 for i in range(PERMUTATIONS)], dtype=np.uint64)
    b = np.array([_hash(f"b{seed}/{i}") for i in range(PERMUTATIONS)], dtype=np.uint64)
    return a, b


def signatures(sets: Sequence[set[str]], seed: int = 0) -> np.ndarray:
    """MinHash rows, one per set, under multiply-shift hashing ((a*h + b) mod 2^64, top 32
    bits); all sets at once, in chunks that keep memory small."""
    a, b = _params(seed)
    out = np.empty((len(sets), PERMUTATIONS), dtype=np.uint64)
    for start in range(0, len(sets), 1000):
        chunk = [sorted(s) for s in sets[start:start + 1000]]
        h = np.array([_hash(x) for items in chunk for x in items], dtype=np.uint64)[:, None]
        with np.errstate(over="ignore"):
            mixed = (h * a + b) >> np.uint64(32)
        offsets = np.cumsum([0, *(len(items) for items in chunk[:-1])])
        out[start:start + len(chunk)] = np.minimum.reduceat(mixed, offsets, axis=0)
    return out


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicates(texts: Sequence[str], threshold: float, seed: int = 0) -> dict[int, int]:
    """{index of a near duplicate: index of the earlier text it duplicates}."""
    if not 0 < threshold <= 1:
        raise ValueError(f"the similarity threshold must be in (0, 1], got {threshold}")
    sets = [shingles(t) for t in texts]
    sigs = signatures(sets, seed)
    rows = PERMUTATIONS // BANDS
    buckets: dict[tuple[int, bytes], list[int]] = {}
    dup_of: dict[int, int] = {}
    for i, items in enumerate(sets):
        sig = sigs[i]
        candidates: set[int] = set()
        for band in range(BANDS):
            key = (band, sig[band * rows:(band + 1) * rows].tobytes())
            candidates.update(buckets.setdefault(key, []))
            buckets[key].append(i)
        for j in sorted(candidates):
            if j not in dup_of and jaccard(items, sets[j]) >= threshold:
                dup_of[i] = j
                break
    return dup_of
