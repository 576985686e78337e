"""The golden decisions: a fixed corpus of policy inputs and the decision each one got.

Snapshotted once, before the policy was reworked to return reason codes with their arguments (issue
8): every input of the parity corpus (`CorpusGenerator`), the inputs the engine and explanation tests
name, and a deterministic spread over actions x agencies x steps x types x purposes x recipients. The
file holds ``{"input": ..., "decision": Decision.to_json() without policyRevision}`` per line,
gzipped; ``tests/policy/test_golden.py`` asserts that every engine still decides exactly so.

    .venv/bin/python -m tests.policy.golden_corpus            # rewrite the golden file (on purpose only)
    .venv/bin/python -m tests.policy.golden_corpus --check    # compare, print the first differences

Rewrite it only for a change of the rules that is meant to change decisions, and say so in the commit.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent / "golden" / "decisions.jsonl.gz"
POLICIES = Path(__file__).resolve().parents[2] / "policies"
SPREAD_SEED = 8_2026
SPREAD_SIZE = 3000
PARITY_SIZE = 2100
ROLE_SETS: list[list[str]] = [
    ["slachtoffer", "pleger", "kind"],
    ["slachtoffer", "pleger"],
    ["kind"],
    [],
    ["getuige", "slachtoffer"],
]


def _actor(agency: str) -> dict[str, str]:
    return {"agency": agency, "clientId": f"{agency}-system", "role": "agency_system"}


def spread(facts: dict[str, Any], size: int = SPREAD_SIZE, seed: int = SPREAD_SEED) -> list[dict[str, Any]]:
    """``size`` inputs drawn deterministically from every combination of the identifiers of ``facts``:
    action x actor x (flow, step) x information type x purpose x recipients (or holder, target, track),
    each with a case whose tracks, subject roles and involvement vary too."""
    rng = random.Random(seed)
    agencies = sorted(facts["agencies"])
    steps = [(f, s) for f, v in sorted(facts["flows"].items()) for s in v["order"]]
    types = sorted(facts["informationTypes"])
    purposes = sorted(facts["purposes"])
    recipient_sets = [
        list(c) for n in range(1, len(agencies) + 1) for c in itertools.combinations(agencies, n)
    ]
    tracks = ["zorg", "straf", "beide"]
    actions = ["share", "request", "case.open", "case.read", "case.transition", "case.track"]
    # Shares and requests are most of the combinations (and of real traffic); case changes fewer.
    weights = [6, 3, 1, 1, 1, 1]
    out: list[dict[str, Any]] = []
    while len(out) < size:
        action = rng.choices(actions, weights)[0]
        agency = rng.choice(agencies)
        flow, step = rng.choice(steps)
        the_case = {
            "flow": flow,
            "step": step,
            "tracks": {"zorg": rng.random() < 0.6, "straf": rng.random() < 0.5},
            "subjectRoles": list(rng.choice(ROLE_SETS)),
            "involved": sorted(rng.sample(agencies, rng.randint(0, 3))),
        }
        policy_input: dict[str, Any] = {"action": action, "actor": _actor(agency), "case": the_case}
        if action in {"share", "request"}:
            information_type = rng.choice(types)
            known = list(facts["informationTypes"][information_type].get("fields", [])) or ["aard"]
            policy_input["informationType"] = information_type
            policy_input["purpose"] = rng.choice(purposes)
            if action == "share":
                policy_input["recipients"] = list(rng.choice(recipient_sets))
                policy_input["payloadFields"] = rng.sample(known, rng.randint(1, len(known)))
            else:
                policy_input["holder"] = rng.choice(agencies)
        elif action == "case.transition":
            target_flow, target_step = rng.choice(steps)
            policy_input["transition"] = {"step": target_step}
            if target_flow != flow or rng.random() < 0.3:
                policy_input["transition"]["flow"] = target_flow
        elif action == "case.track":
            policy_input["track"] = {"name": rng.choice(tracks), "open": rng.random() < 0.5}
        out.append(policy_input)
    return out


def corpus(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """Every input of the golden file, in order: the parity corpus, the named test inputs, the spread."""
    from tests.policy.test_engine import CASES
    from tests.policy.test_explanations import EXTRA
    from tests.policy.test_opa_parity import CorpusGenerator

    named = [policy_input for _, policy_input, _ in CASES] + list(EXTRA)
    return CorpusGenerator(facts).corpus(PARITY_SIZE) + named + spread(facts)


def comparable(decision_json: dict[str, Any]) -> dict[str, Any]:
    """A decision as the golden file holds it: ``Decision.to_json()`` without the revision."""
    return {k: v for k, v in decision_json.items() if k != "policyRevision"}


def write(path: Path, rows: Iterator[tuple[Any, dict[str, Any]]]) -> int:
    """Write ``(input, decision)`` rows as gzipped JSON lines; ASCII JSON keeps lone surrogates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    # mtime=0: the same decisions give the same bytes.
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        for policy_input, decision in rows:
            line = json.dumps({"input": policy_input, "decision": decision}, sort_keys=True)
            out.write(line.encode("ascii") + b"\n")
            n += 1
    return n


def read(path: Path = GOLDEN) -> list[tuple[Any, dict[str, Any]]]:
    """The golden ``(input, decision)`` rows."""
    with gzip.open(path, "rt", encoding="ascii") as f:
        return [(row["input"], row["decision"]) for row in map(json.loads, f)]


def main() -> None:
    from gateway.policy import EmbeddedEngine

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="compare with the golden file instead")
    parser.add_argument("--policy-dir", type=Path, default=POLICIES)
    parser.add_argument("--out", type=Path, default=GOLDEN)
    args = parser.parse_args()
    with EmbeddedEngine(args.policy_dir, pool_size=1, timeout=None) as engine:
        if args.check:
            rows = read(args.out)
            bad = [
                (x, want, got) for x, want in rows if (got := comparable(engine.decide(x).to_json())) != want
            ]
            for x, want, got in bad[:3]:
                print(f"input {json.dumps(x)}\n  golden {json.dumps(want)}\n  now    {json.dumps(got)}")
            print(f"{len(bad)} of {len(rows)} decisions differ")
            raise SystemExit(1 if bad else 0)
        inputs = corpus(engine.facts())
        n = write(args.out, ((x, comparable(engine.decide(x).to_json())) for x in inputs))
        print(f"wrote {n} decisions to {args.out}")


if __name__ == "__main__":
    main()
