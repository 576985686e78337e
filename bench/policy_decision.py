"""Measure one policy decision of the embedded engine (regopy) against a trivial Rego rule.

    .venv/bin/python -m bench.policy_decision                  # 2,000 decisions per input
    .venv/bin/python -m bench.policy_decision -n 500 --json    # fewer, as JSON
    .venv/bin/python -m bench.policy_decision --policy-dir /tmp/old/policies   # another revision

Inputs: a share to three recipients (allowed under samenloop), a request, a case transition, and a
share shared on from received data (origin). For each it reports median and p99 of

- ``evaluate``: one query on the compiled bundle, the input handed over as JSON text, output read
  (what regopy itself costs: ``CompiledPolicy.evaluate``);
- ``decide``: the engine as the gateway calls it (``EmbeddedEngine.decide``): JSON encoding, the
  hop to a worker process that bounds the evaluation (``engine_timeout``), evaluation, parsing and
  checking the result;
- ``in-thread``: the same decision evaluated in the calling thread (``timeout=None``), so the
  difference from ``decide`` is what the worker process costs.

Beside them, in the same run, the baseline: a trivial rule (``result := {"allowed": input.action ==
"share"}``) compiled and queried the same way with the same share input, so the difference is what
the policy costs. Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import regopy

from gateway.policy import EmbeddedEngine
from gateway.policy._embedded import input_term, new_interpreter
from gateway.settings import REPO_ROOT

POLICIES = REPO_ROOT / "policies"
TRIVIAL = 'package bench.trivial\n\nresult := {"allowed": input.action == "share"}\n'


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


def _trivial() -> Callable[[str], str]:
    interp = new_interpreter()
    interp.add_module("bench/trivial.rego", TRIVIAL)
    bundle = interp.build(None, ["bench/trivial/result"])

    def evaluate(term: str) -> str:
        interp.set_input_term(term)
        output = interp.query_bundle_entrypoint(bundle, "bench/trivial/result")
        if not output.ok():
            raise regopy.RegoError(str(output))
        return str(output)

    return evaluate


def run(n: int, policy_dir: Path = POLICIES) -> dict[str, Any]:
    """Measure every input (and the baseline) ``n`` times; returns the figures."""
    engine = EmbeddedEngine(policy_dir, pool_size=1)
    in_thread = EmbeddedEngine(policy_dir, pool_size=1, timeout=None)
    compiled = in_thread._pool.get()  # the one interpreter, used directly for the raw evaluation
    in_thread._pool.put(compiled)
    trivial = _trivial()
    share_term = input_term(SHARE_3)
    figures: dict[str, Any] = {
        "revision": engine.revision,
        "iterations": n,
        "baseline (trivial rule, share input)": {
            "evaluate": _summary(_times(lambda: trivial(share_term), n))
        },
    }
    for name, policy_input in INPUTS.items():
        decision = engine.decide(policy_input)
        if decision.engine_failure:
            raise SystemExit(f"{name}: the engine failed: {decision.codes}")
        term = input_term(policy_input)
        figures[name] = {
            "evaluate": _summary(_times(lambda term=term: compiled.evaluate(term), n)),  # type: ignore[misc]
            "decide": _summary(_times(lambda p=policy_input: engine.decide(p), n)),  # type: ignore[misc]
            "in-thread": _summary(_times(lambda p=policy_input: in_thread.decide(p), n)),  # type: ignore[misc]
        }
    engine.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-n", "--iterations", type=int, default=2000, help="decisions per input (default 2000)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--policy-dir", type=Path, default=POLICIES, help="the policy directory to measure")
    args = parser.parse_args()
    figures = run(args.iterations, args.policy_dir)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"policy {figures['revision'][:19]}..., {args.iterations} decisions per input, one interpreter")
    print(
        f"{'input':38} {'evaluate median':>16} {'p99':>8} {'decide median':>14} {'p99':>8}"
        f" {'in-thread median':>17} {'p99':>8}"
    )
    for name, f in figures.items():
        if not isinstance(f, dict):
            continue
        ev, de, th = f["evaluate"], f.get("decide"), f.get("in-thread")
        line = f"{name:38} {ev['median_ms']:>13.3f} ms {ev['p99_ms']:>5.3f} ms"
        if de and th:
            line += f" {de['median_ms']:>11.3f} ms {de['p99_ms']:>5.3f} ms"
            line += f" {th['median_ms']:>14.3f} ms {th['p99_ms']:>5.3f} ms"
        print(line)


if __name__ == "__main__":
    main()
