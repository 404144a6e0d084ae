"""From real traffic to reviewed canaries: import logs (PII scrubbed, near-duplicates removed,
a seeded stratified sample), and the local review page that writes verified canaries and
labels back to disk. Files in and out only; it calls no model."""

from __future__ import annotations

__all__: list[str] = []
