"""Measure policy decisions of the embedded engine (regopy) beside a trivial Rego rule, cached and not.

    .venv/bin/python -m bench.policy_decision                  # 2,000 decisions per input, writes JSON
    .venv/bin/python -m bench.policy_decision -n 500 --traffic 5000
    .venv/bin/python -m bench.policy_decision --policy-dir /tmp/old/policies   # another revision

Fixed inputs: a share to three recipients (allowed under samenloop), a request, a case transition,
and a share shared on from received data (origin). For each it reports median and p99 of

- ``evaluate``: one query on the compiled bundle, the input handed over as JSON text, output read
  (what regopy itself costs: ``CompiledPolicy.evaluate``);
- ``uncached``: ``EmbeddedEngine.decide`` as the gateway calls it, with the decision cache off: JSON
  encoding, the hop to a worker process that bounds the evaluation (``engine_timeout``), evaluation,
  rendering the reasons, checking the result;
- ``decide``: the same with the cache on (the gateway's default) and the same input again and again,
  so every call after the first is a hit: what a repeated decision costs.

The trivial rule (a constant deny with one reason) is measured the same three ways, in the same run.

Then ``--traffic`` decisions as real traffic varies: many cases (flows, steps, tracks, subjects,
who took part), each agency of a step sharing, asking, reading and moving its cases from one of its
systems (three client ids per agency), inputs built as gateway/services/policy_input.py builds them.
They go through the engine as the gateway runs it (the decision cache keyed by the input's projection
on the paths the policy reads, `gateway.policy._readpaths`), through an uncached engine, and through
the trivial rule uncached, each decision timed on its own; it reports the median and p99 of each, for
all decisions and for the shares to three recipients, the cache's hit rate, and the hit rate the same
cache would have had keyed by the whole input (replayed on the same traffic). Results go to
bench/results/policy_decision-<date>.json with the machine's description. Not a test: the numbers
depend on the machine and its load (the load average is recorded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._machine import describe, write_results
from gateway.policy import EmbeddedEngine
from gateway.settings import REPO_ROOT

POLICIES = REPO_ROOT / "policies"
TRIVIAL = (
    "package veiligdelen.decision\n\n"
    'result := {"allowed": false, "reasons": [{"template": "denied_by_default", "args": []}], '
    '"legalBasis": null, "obligations": [], "recipients": {}}\n'
)


def _actor(agency: str) -> dict[str, str]:
    return {"agency": agency, "clientId": f"{agency}-system", "role": "agency_system"}


def _case(flow: str, step: str, *, samenloop: bool = False) -> dict[str, Any]:
    return {
        "flow": flow,
        "step": step,
        "tracks": {"zorg": True, "straf": samenloop},
        "subjectRoles": ["slachtoffer", "pleger", "kind"],
        "involved": ["politie", "veilig_thuis"],
    }


SHARE_3 = {
    "action": "share",
    "actor": _actor("veilig_thuis"),
    "case": _case("structureel", "veiligheidsplan", samenloop=True),
    "informationType": "veiligheidsvoorwaarden",
    "purpose": "zorg_en_straf_afstemmen",
    "recipients": ["om", "reclassering", "rvdk"],
    "payloadFields": [
        "opgesteldOp",
        "voorwaardenPleger",
        "voorwaardenSlachtoffer",
        "medischeGegevensSlachtoffer",
    ],
}
INPUTS: dict[str, dict[str, Any]] = {
    "share, 3 recipients": SHARE_3,
    "request": {
        "action": "request",
        "actor": _actor("veilig_thuis"),
        "case": _case("acuut", "motorkapoverleg"),
        "informationType": "strafrechtelijke_informatie",
        "purpose": "veiligheid_beoordelen",
        "holder": "politie",
    },
    "transition": {
        "action": "case.transition",
        "actor": _actor("politie"),
        "case": _case("acuut", "fysieke_veiligheid"),
        "transition": {"step": "motorkapoverleg"},
    },
    "share on (origin)": {
        "action": "share",
        "actor": _actor("veilig_thuis"),
        "case": _case("acuut", "onderzoek"),
        "informationType": "melding",
        "purpose": "onderzoek_kinderbescherming",
        "recipients": ["rvdk"],
        "payloadFields": ["aard", "locatie"],
        "origin": [
            {
                "messageId": "m-1",
                "purpose": "melding_behandelen",
                "informationType": "melding",
                "sender": "politie",
            }
        ],
    },
}


def _times(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(100, n)):  # warm up
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1e3, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 3),
    }


def _trivial_policy(into: Path, policy_dir: Path) -> Path:
    """The same data.json (so the same templates) with a one-rule policy: a constant deny."""
    target = into / "trivial"
    facts = policy_dir / "veiligdelen" / "facts"
    shutil.copytree(facts, target / "veiligdelen" / "facts")
    (target / "veiligdelen" / "decision").mkdir(parents=True)
    (target / "veiligdelen" / "decision" / "decision.rego").write_text(TRIVIAL, encoding="utf-8")
    return target


def _measure(policy_dir: Path, inputs: dict[str, dict[str, Any]], n: int) -> dict[str, Any]:
    """``evaluate``, ``uncached`` and ``decide`` for each input on the policy in ``policy_dir``."""
    from gateway.policy._embedded import input_term

    cached = EmbeddedEngine(policy_dir, pool_size=1)
    uncached = EmbeddedEngine(policy_dir, pool_size=1, cache_size=0)
    raw = EmbeddedEngine(policy_dir, pool_size=1, timeout=None, cache_size=0)
    compiled = raw._pool.get()  # the one interpreter, used directly for the raw evaluation
    figures: dict[str, Any] = {}
    try:
        for name, policy_input in inputs.items():
            decision = cached.decide(policy_input)
            if decision.engine_failure:
                raise SystemExit(f"{name}: the engine failed: {decision.codes}")
            term = input_term(policy_input)
            figures[name] = {
                "evaluate": _summary(_times(lambda t=term: compiled.evaluate(t), n)),  # type: ignore[misc]
                "uncached": _summary(_times(lambda p=policy_input: uncached.decide(p), n)),  # type: ignore[misc]
                "decide": _summary(_times(lambda p=policy_input: cached.decide(p), n)),  # type: ignore[misc]
            }
    finally:
        cached.close()
        uncached.close()
    return figures


# --- traffic as it varies ---------------------------------------------------------------------------


def _traffic(facts: dict[str, Any], size: int, cases: int, seed: int = 8) -> list[dict[str, Any]]:
    """``size`` decision inputs over ``cases`` cases, most active cases drawn most often (Zipf-like).

    Each case has a flow and step, tracks, subject roles and the agencies that took part so far; the
    decisions on it are what the agencies of its step do: shares of the information types a grant lets
    them provide in that step, to one to three of its recipients, with the fields their systems send
    (the type's fields, now and then fewer); requests; reads; moves to the next step; tracks.
    """
    rng = random.Random(seed)
    agencies = sorted(facts["agencies"])
    steps = [(f, s) for f, v in sorted(facts["flows"].items()) for s in v["order"]]
    rows: dict[tuple[str, str], list[tuple[str, str, str, dict[str, Any]]]] = {}
    for t, by_receiver in facts["grants"].items():
        for receiver, by_sender in by_receiver.items():
            for sender, row in by_sender.items():
                for flow, step in steps:
                    if "steps" not in row or f"{flow}/{step}" in row["steps"]:
                        rows.setdefault((flow, step), []).append((t, receiver, sender, row))
    role_sets = [["kind", "pleger", "slachtoffer"], ["pleger", "slachtoffer"], ["kind", "pleger"]]
    the_cases = []
    for _ in range(cases):
        flow, step = rng.choice(steps)
        the_cases.append(
            {
                "flow": flow,
                "step": step,
                "tracks": {"zorg": rng.random() < 0.7, "straf": rng.random() < 0.5},
                "subjectRoles": rng.choice(role_sets),
                "involved": rng.sample(agencies, rng.randint(1, 3)),
            }
        )
    weights = [1 / (k + 1) for k in range(cases)]

    def actor(agency: str) -> dict[str, str]:
        # An agency has several systems (a registration each, as in bench.share_http): its client id.
        system = rng.choice(["system", "portal", "crm"])
        return {"agency": agency, "clientId": f"{agency}-{system}", "role": "agency_system"}

    out: list[dict[str, Any]] = []
    while len(out) < size:
        c = rng.choices(the_cases, weights)[0]
        available = rows.get((c["flow"], c["step"]), [])
        roll = rng.random()
        if roll < 0.55 and available:
            t, receiver, sender, row = rng.choice(available)
            others = sorted({r for (tt, r, s, _) in available if tt == t and s == sender} - {receiver})
            recipients = [receiver, *rng.sample(others, min(len(others), rng.randint(0, 2)))]
            fields = sorted(facts["informationTypes"][t].get("fields", []))
            if rng.random() < 0.2 and len(fields) > 1:
                fields = sorted(rng.sample(fields, len(fields) - 1))
            purpose = (
                rng.choice(row["purposes"]) if rng.random() < 0.9 else rng.choice(sorted(facts["purposes"]))
            )
            out.append(
                {
                    "action": "share",
                    "actor": actor(sender),
                    "case": c,
                    "informationType": t,
                    "purpose": purpose,
                    "recipients": recipients,
                    "payloadFields": fields,
                }
            )
        elif roll < 0.7 and available:
            t, receiver, sender, row = rng.choice(available)
            out.append(
                {
                    "action": "request",
                    "actor": actor(receiver),
                    "case": c,
                    "informationType": t,
                    "purpose": rng.choice(row["purposes"]),
                    "holder": sender,
                }
            )
        elif roll < 0.9:
            out.append({"action": "case.read", "actor": actor(rng.choice(agencies)), "case": c})
        elif roll < 0.96:
            order = facts["flows"][c["flow"]]["order"]
            nxt = order[min(order.index(c["step"]) + 1, len(order) - 1)]
            transition = {"flow": c["flow"], "step": nxt}
            out.append(
                {
                    "action": "case.transition",
                    "actor": actor(rng.choice(agencies)),
                    "case": c,
                    "transition": transition,
                }
            )
        else:
            track = {"name": rng.choice(["zorg", "straf"]), "open": rng.random() < 0.7}
            out.append(
                {"action": "case.track", "actor": actor(rng.choice(agencies)), "case": c, "track": track}
            )
    return out


def _traffic_figures(policy_dir: Path, trivial_dir: Path, traffic: list[dict[str, Any]]) -> dict[str, Any]:
    """The traffic through the engine as the gateway runs it (cached by read paths), uncached, and the
    trivial rule uncached: median and p99 of each, for all decisions and the shares to three recipients,
    and the hit rates of the read-path key and (replayed) of a whole-input key."""
    from gateway.policy._cache import DecisionCache
    from gateway.policy._embedded import input_term

    cached = EmbeddedEngine(policy_dir, pool_size=1)
    uncached = EmbeddedEngine(policy_dir, pool_size=1, cache_size=0)
    trivial = EmbeddedEngine(trivial_dir, pool_size=1, cache_size=0)
    engines = (("decide", cached), ("uncached", uncached), ("trivial rule", trivial))
    try:
        samples: dict[str, list[float]] = {name: [] for name, _ in engines}
        for policy_input in traffic:
            for name, engine in engines:
                t0 = time.perf_counter()
                engine.decide(policy_input)
                samples[name].append(time.perf_counter() - t0)
        stats = cached.cache.stats() if cached.cache is not None else {}
        read_paths = cached.read_paths
    finally:
        for _, engine in engines:
            engine.close()
    # The same bounded LRU keyed by the whole input, replayed on the same traffic: what the key gains.
    whole = DecisionCache("replay", int(stats.get("size", 4096)))
    for policy_input in traffic:
        term = input_term(policy_input)
        if whole.get(term) is None:
            whole.put(term, "")
    projected = {input_term(read_paths.project(x)) for x in traffic}
    shares = [i for i, x in enumerate(traffic) if x["action"] == "share"]
    three = [i for i in shares if len(traffic[i]["recipients"]) == 3]
    figures: dict[str, Any] = {
        "decisions": len(traffic),
        "distinct inputs": len({input_term(x) for x in traffic}),
        "distinct projections": len(projected),
        "shares": len(shares),
        "shares to three recipients": len(three),
        "actions": {
            a: sum(x["action"] == a for x in traffic) for a in sorted({x["action"] for x in traffic})
        },
        "cache": stats,
        "cache keyed by the whole input (replayed)": whole.stats() | {"keysOn": "whole input"},
        "read paths": read_paths.dotted(),
    }
    for name, _ in engines:
        figures[name] = _summary(samples[name])
        figures[f"{name} (shares)"] = _summary([samples[name][i] for i in shares])
        figures[f"{name} (shares to three recipients)"] = _summary([samples[name][i] for i in three])
    return figures


def machine() -> dict[str, Any]:
    """The machine and the code measured (bench._machine), with regopy's version and the date."""
    return describe(["regopy"]) | {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def run(n: int, traffic_size: int, cases: int, policy_dir: Path = POLICIES) -> dict[str, Any]:
    """Measure every input (and the trivial rule) ``n`` times, then the traffic; returns the figures."""
    probe = EmbeddedEngine(policy_dir, pool_size=1, timeout=None, cache_size=0)
    facts = probe.facts()
    figures: dict[str, Any] = {"machine": machine(), "revision": probe.revision, "iterations": n}
    with tempfile.TemporaryDirectory() as tmp:
        trivial = _trivial_policy(Path(tmp), policy_dir)
        figures["trivial rule (share, 3 recipients)"] = _measure(trivial, {"share": SHARE_3}, n)["share"]
        figures["inputs"] = _measure(policy_dir, INPUTS, n)
        figures["traffic"] = _traffic_figures(policy_dir, trivial, _traffic(facts, traffic_size, cases))
    figures["machine"]["loadAverageAfter"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def _line(name: str, f: dict[str, Any]) -> str:
    cells = [f"{name:34}"]
    for key in ("evaluate", "uncached", "decide"):
        if key in f:
            cells.append(f"{f[key]['median_ms']:>8.3f} {f[key]['p99_ms']:>8.3f}")
        else:
            cells.append(" " * 17)
    return " ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--iterations", type=int, default=2000, help="decisions per input (2000)")
    parser.add_argument("--traffic", type=int, default=20_000, help="decisions of varied traffic (20000)")
    parser.add_argument("--cases", type=int, default=2000, help="cases the traffic is spread over (2000)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    parser.add_argument("--policy-dir", type=Path, default=POLICIES, help="the policy directory to measure")
    args = parser.parse_args()
    figures = run(args.iterations, args.traffic, args.cases, args.policy_dir)
    if not args.no_save:
        write_results("policy_decision", figures, indent=2)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    m = figures["machine"]
    print(f"policy {figures['revision'][:19]}..., {m['cpu']}, {m['cores']} cores, load {m['loadAverage']}")
    print(f"{args.iterations} decisions per input, one worker; milliseconds, median and p99")
    print(f"{'input':34} {'evaluate':>17} {'uncached decide':>17} {'decide (cached)':>17}")
    print(_line("trivial rule (share, 3 recipients)", figures["trivial rule (share, 3 recipients)"]))
    for name, f in figures["inputs"].items():
        print(_line(name, f))
    t = figures["traffic"]
    c, w = t["cache"], t["cache keyed by the whole input (replayed)"]
    print(
        f"\ntraffic: {t['decisions']} decisions over {args.cases} cases, {t['distinct inputs']} distinct "
        f"inputs, {t['distinct projections']} distinct on the {c.get('readPaths')} paths the policy reads; "
        f"{t['shares to three recipients']} shares to three recipients"
    )
    print(
        f"cache hit rate {c.get('hitRate')} keyed on {c.get('keysOn')} "
        f"(the whole input as key, replayed on the same traffic: {w.get('hitRate')})"
    )
    if c.get("fallback"):
        print(f"  the key is the whole input: {c['fallback']}")
    print(f"{'':34} {'decide (cached)':>17} {'uncached decide':>17} {'trivial rule':>17}")
    for suffix in ("", " (shares)", " (shares to three recipients)"):
        cells = [f"{('all' + suffix):34}"]
        for name in ("decide", "uncached", "trivial rule"):
            f = t[name + suffix]
            cells.append(f"{f['median_ms']:>8.3f} {f['p99_ms']:>8.3f}")
        print(" ".join(cells))
    print(f"load average after: {m['loadAverageAfter']} (the machine is shared with other work)")


if __name__ == "__main__":
    main()
