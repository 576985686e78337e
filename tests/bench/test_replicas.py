"""bench.replicas' merge of wrk runs that ran at the same time (one a replica): pure arithmetic, no wrk."""

from __future__ import annotations

from typing import Any

from bench.replicas import merge, percentile, split


def _run(requests: int, seconds: float, histogram: list[tuple[int, int]], statuses: dict[str, int]) -> Any:
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds,
        "statuses": statuses,
        "allowed": requests,
        "refused": 1,
        "engineTimeouts": 0,
        "socketErrors": {"connect": 0, "read": 1, "write": 0, "timeout": 0, "status": 0},
        "latencyUs": {"max": max(v for v, _ in histogram)},
        "histogram": histogram,
    }


def test_split_spreads_the_connections_as_evenly_as_they_go() -> None:
    assert split(16, 3) == [6, 5, 5]
    assert split(16, 1) == [16]
    assert sum(split(17, 3)) == 17


def test_percentile_uses_wrks_rank() -> None:
    # wrk: rank = round(p/100 * count + 0.5) in C (half away from zero); the first value whose
    # cumulative count reaches the rank.
    histogram = [(30, 1), (10, 50), (20, 49)]
    assert percentile(histogram, 49) == 10  # rank 50
    assert percentile(histogram, 50) == 20  # rank 51 (Python's round(50.5) would give 50)
    assert percentile(histogram, 98) == 20  # rank 99
    assert percentile(histogram, 99) == 30  # rank 100


def test_merge_sums_counts_and_takes_percentiles_from_both_histograms() -> None:
    fast = _run(95, 10.0, [(1_000, 95)], {"200": 95})
    slow = _run(5, 10.5, [(50_000, 5)], {"200": 4, "503": 1})
    merged = merge([fast, slow])
    assert merged["requests"] == 100
    assert merged["seconds"] == 10.5
    assert merged["rps"] == 100 / 10.5
    assert merged["statuses"] == {"200": 99, "503": 1}
    assert merged["socketErrors"]["read"] == 2
    assert merged["latencyUs"]["p50"] == 1_000
    assert merged["latencyUs"]["p90"] == 1_000
    assert merged["latencyUs"]["p99"] == 50_000  # rank 100 of 100
    assert merged["latencyUs"]["max"] == 50_000
    assert merged["latencyUs"]["mean"] == (95 * 1_000 + 5 * 50_000) / 100
    assert [p["requests"] for p in merged["perProcess"]] == [95, 5]
