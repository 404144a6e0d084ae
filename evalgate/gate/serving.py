"""What the servers' behaviour means for the numbers: warnings for a run's report.

A server that answers fewer requests at once than the run sends (llama.cpp, Ollama: one by
default) queues the rest, and the gate then measures its own queue: in the load profile,
latency rises with concurrency while throughput stays flat. An account out of credit fails
every call the same way. A gateway's cost header and the price table should agree."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from evalgate.results import LoadReport, Record

COST_TOLERANCE = 0.05   # header vs price table, relative
RISING_LATENCY = 1.5    # p50 at the higher level over the lower one: rising


def in_flight_peak(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one time (an end before a start at the same instant)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = level = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def run_peak(records: Sequence[Record]) -> int:
    """The most calls of one config in flight at once in the run (calls made, not cached)."""
    return in_flight_peak([(r.started_s, r.started_s + r.latency_ms / 1000) for r in records
                           if not r.cached and r.latency_ms is not None])


@dataclass(frozen=True)
class Saturation:
    """Where a config's server stopped keeping up in the load profile: from `low` to `level`
    in flight, throughput grew only x`gain` while p50 latency rose x`rise`; it sustains
    about `sustained` requests at once (`low` x `gain`)."""

    config: str
    low: int
    level: int
    throughput_rps: float
    gain: float
    rise: float

    @property
    def sustained(self) -> int:
        return max(self.low, round(self.low * self.gain))


def saturation(load: LoadReport | None, config: str) -> Saturation | None:
    """The first step up in the load profile's levels that queued instead of serving more.
    At one level a queue and a slow server look alike; only a change of concurrency tells.
    In flight = throughput x latency (Little), so a step up of x`ratio` in concurrency splits
    into throughput gained and latency added: a queue when less than half of it (in log
    terms) became throughput."""
    levels = sorted((lv for lv in (load.levels if load else []) if lv.config == config
                     and lv.p50_ms and lv.throughput_rps > 0), key=lambda lv: lv.concurrency)
    for low, high in itertools.pairwise(levels):
        gain = high.throughput_rps / low.throughput_rps
        rise = (high.p50_ms or 0.0) / (low.p50_ms or 1.0)
        ratio = high.concurrency / low.concurrency
        if gain < ratio ** 0.5 and rise >= RISING_LATENCY:
            return Saturation(config, low.concurrency, high.concurrency, high.throughput_rps,
                              gain, rise)
    return None


def saturation_warnings(load: LoadReport | None, records: dict[str, Sequence[Record]]
                        ) -> list[str]:
    """A warning per config whose server queued in the load profile, with the main run's
    in-flight peak when that was above what the server sustained."""
    notes = []
    for config, recs in records.items():
        found = saturation(load, config)
        if found is None:
            continue
        peak = run_peak(recs)
        run_note = (f"; the run had up to {peak} calls in flight, so its latency includes "
                    "the server's queue" if peak > found.sustained else "")
        notes.append(
            f"{config}: from concurrency {found.low} to {found.level} throughput grew only "
            f"x{found.gain:.2f} (to {found.throughput_rps:.2f} calls/s) while p50 latency rose "
            f"x{found.rise:.1f}: the server sustains about {found.sustained} request(s) at once "
            f"(llama.cpp and Ollama answer one at a time by default){run_note}. Set "
            f"max_concurrency: {found.sustained} in its model config, or give the server more "
            "slots")
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
    notes = quota_warning(who, records) + cost_warning(who, records)
    answered = [r for r in records if r.ok]
    if from_header and answered and all(r.cost_source != "header" for r in answered):
        notes.append(f"{who}: pricing.from_header is {from_header!r}, but no answer carried "
                     "that header: every answer was priced from the model config's pricing")
    return notes
