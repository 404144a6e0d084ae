"""What the gate says about streaming when there is nothing to measure: a config that does not
stream has no time to first token, and a server that ignored `stream` sent none. Its TTFT
guardrails are undecidable with that reason, never a 0 ms that would pass."""

from __future__ import annotations

from collections.abc import Sequence

from evalgate.results import Record

# guardrail metrics that only streamed calls have
STREAM_METRICS = frozenset({"ttft_ms", "ttft_p95_ms", "tokens_per_s"})


def _why(who: str, records: Sequence[Record], what: str) -> str | None:
    answered = [r for r in records if r.ok]
    if not answered or any(r.streamed for r in answered):
        return None
    if any(r.streamed is False for r in answered):
        return (f"the {who}'s server ignored `stream: true` and answered with plain JSON, so "
                f"its {what} cannot be measured")
    return (f"the {who} does not stream (set `stream: true` in its model config), so it has "
            f"no {what}")


def no_stream_reason(metric: str, records: Sequence[Record],
                     base_records: Sequence[Record] | None) -> str | None:
    """Why a streaming guardrail has no data, when that is the reason; else None."""
    if metric not in STREAM_METRICS:
        return None
    what = "output rate (tokens/s)" if metric == "tokens_per_s" else "time to first token"
    return _why("candidate", records, what) or (
        _why("baseline", base_records, what) if base_records is not None else None)


def stream_warnings(records: Sequence[Record], base_records: Sequence[Record] | None = None
                    ) -> list[str]:
    """The run-level warning that a server answered streaming requests with plain JSON."""
    out = []
    for who, recs in (("candidate", records), ("baseline", base_records or [])):
        plain = sum(1 for r in recs if r.ok and r.streamed is False)
        if plain:
            asked = sum(1 for r in recs if r.ok and r.streamed is not None)
            out.append(f"{plain} of {asked} {who} answers asked to stream came as plain JSON "
                       "(the server ignored `stream`): they have no time to first token")
    return out
