"""What the servers' behaviour means for the numbers: warnings for a run's report.

A server that answers fewer requests at once than the run sends (llama.cpp, Ollama: one by
default) queues the rest, and the gate then measures its own queue: latency rises with the
calls in flight while throughput stays flat. An account out of credit fails every call the
same way. A gateway's cost header and the price table should agree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from evalgate.gate.metrics import percentile
from evalgate.results import LoadReport, Record

MIN_CALLS = 10          # fewer timed calls say nothing about queueing
MIN_MEDIAN_MS = 20.0    # a queue that adds less than this is not worth a warning
RISE = 3.0              # median latency over the fastest call's, for a queue
OVERSHOOT = 2.0         # calls in flight over the concurrency the server sustained
COST_TOLERANCE = 0.05   # header vs price table, relative


@dataclass(frozen=True)
class Saturation:
    """The run's in-flight peak against the concurrency its server sustained (Little's law:
    throughput x the uncontended latency, estimated by the fastest call)."""

    peak: int
    sustained: float
    throughput_rps: float
    rise: float
    calls: int

    @property
    def saturated(self) -> bool:
        return self.rise >= RISE and self.peak >= OVERSHOOT * max(self.sustained, 1.0)


def in_flight_peak(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one time (an end before a start at the same instant)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = level = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def saturation(records: Sequence[Record]) -> Saturation | None:
    """The measurement behind the queueing warning; None with too few timed calls."""
    timed = [r for r in records if r.ok and not r.cached and len(r.attempts) == 1
             and r.latency_ms is not None and r.latency_ms > 0]
    if len(timed) < MIN_CALLS:
        return None
    intervals = [(r.started_s, r.started_s + (r.latency_ms or 0) / 1000) for r in timed]
    span = max(end for _, end in intervals) - min(start for start, _ in intervals)
    latencies = [r.latency_ms or 0.0 for r in timed]
    fastest, median = min(latencies), percentile(latencies, 50) or 0.0
    if span <= 0 or median < MIN_MEDIAN_MS:
        return None
    throughput = len(timed) / span
    return Saturation(in_flight_peak(intervals), throughput * fastest / 1000, throughput,
                      median / fastest, len(timed))


def saturation_warning(who: str, records: Sequence[Record]) -> list[str]:
    found = saturation(records)
    if found is None or not found.saturated:
        return []
    slots = max(1, math.floor(found.sustained + 0.5))
    return [f"{who}: up to {found.peak} calls were in flight at once, but its server sustained "
            f"about {found.sustained:.1f}: latency rose x{found.rise:.1f} over the fastest call "
            f"while throughput stayed at {found.throughput_rps:.2f} calls/s, so the latency "
            "measured includes the queue this run built at the server (llama.cpp and Ollama "
            f"answer one request at a time by default); set max_concurrency: {slots} in its "
            "model config, or give the server more slots"]


def load_saturation_warnings(load: LoadReport | None) -> list[str]:
    """From the load profile: a level whose throughput stayed flat while latency rose."""
    notes = []
    for config in sorted({lv.config for lv in (load.levels if load else [])}):
        levels = sorted((lv for lv in load.levels if lv.config == config and lv.p50_ms),
                        key=lambda lv: lv.concurrency) if load else []
        if len(levels) < 2:
            continue
        low = levels[0]
        flat = [lv for lv in levels[1:] if lv.throughput_rps < 1.3 * low.throughput_rps
                and (lv.p50_ms or 0) >= 1.5 * (low.p50_ms or 0)]
        if flat:
            lv = flat[0]
            notes.append(
                f"{config}: at concurrency {lv.concurrency} throughput stayed at "
                f"{lv.throughput_rps:.2f} calls/s (x{lv.throughput_rps / low.throughput_rps:.2f}"
                f" of concurrency {low.concurrency}) while p50 latency rose "
                f"x{(lv.p50_ms or 0) / (low.p50_ms or 1):.1f}: the server sustains about "
                f"{low.concurrency} request(s) at once; set max_concurrency in its model config")
    return notes


def quota_warning(who: str, records: Sequence[Record]) -> list[str]:
    out = [r for r in records if r.error_class == "quota_exhausted"]
    if not out:
        return []
    return [f"{who}: {len(out)} of {len(records)} calls failed with quota_exhausted (the "
            "account is out of credit or over its billing limit: HTTP 429 insufficient_quota "
            "or a billing error); they were not retried. Add credit or raise the limit, then "
            f"run again. The server said: {out[0].error_message or '(no message)'}"]


def cost_warning(who: str, records: Sequence[Record]) -> list[str]:
    """Cross-check the gateway's cost header against the price table where both exist."""
    both = [r for r in records if r.cost_source == "header" and r.table_cost_usd is not None]
    notes = []
    if both:
        header = sum(r.cost_usd or 0.0 for r in both)
        table = sum(r.table_cost_usd or 0.0 for r in both)
        if abs(header - table) > COST_TOLERANCE * max(header, table, 1e-12):
            notes.append(f"{who}: the gateway's cost header priced {len(both)} calls at "
                         f"${header:.6f}, the model config's pricing at ${table:.6f} "
                         f"({(header - table) / max(table, 1e-12):+.0%}); the header's price "
                         "is used: check `pricing` (cached-token prices, a changed price)")
    priced = [r for r in records if r.ok and r.cost_source is not None]
    missing = [r for r in priced if r.cost_source == "table"]
    if missing and len(missing) < len(priced):
        notes.append(f"{who}: {len(missing)} of {len(priced)} answers came without the cost "
                     "header: priced from the model config's pricing")
    return notes


def serving_warnings(who: str, records: Sequence[Record], from_header: str | None = None
                     ) -> list[str]:
    """Every serving warning for one config's records; `from_header`: the cost header the
    config trusts (a note when no answer carried it)."""
    notes = quota_warning(who, records) + cost_warning(who, records) \
        + saturation_warning(who, records)
    answered = [r for r in records if r.ok]
    if from_header and answered and all(r.cost_source != "header" for r in answered):
        notes.append(f"{who}: pricing.from_header is {from_header!r}, but no answer carried "
                     "that header: every answer was priced from the model config's pricing")
    return notes
