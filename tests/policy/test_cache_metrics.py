"""The serving engine's decision cache in ``/metrics``: ``gateway_cache_{hits,misses}_total`` with
``cache="policy_decision"`` beside the verified-token cache, in one metric family."""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path

from prometheus_client import generate_latest

from gateway.policy._cache import cache_counts
from tests.e2e.conftest import start_gateway
from tests.policy.conftest import case, share


def _count(text: str, kind: str, cache: str) -> float:
    found = re.search(rf'^gateway_cache_{kind}_total\{{cache="{cache}"\}} (\S+)$', text, re.M)
    assert found is not None, f"no gateway_cache_{kind}_total for {cache}"
    return float(found.group(1))


def test_the_policy_decision_cache_is_counted_in_the_metrics(tmp_path: Path) -> None:
    runtime, sock = start_gateway(tmp_path)
    sock.close()
    try:
        engine = runtime.policy.current
        before = generate_latest(runtime.metrics.registry).decode()
        # A value nobody decided before (the engine may be shared with other tests of this process).
        unseen = share("politie", case(), "melding", "veiligheid_herstellen", ["om"], [f"x-{uuid.uuid4()}"])
        twin = copy.deepcopy(unseen)
        twin["actor"]["clientId"] = "politie-other-system"  # not read: the same entry
        engine.decide(unseen)
        engine.decide(twin)
        after = generate_latest(runtime.metrics.registry).decode()
        assert _count(after, "hits", "policy_decision") - _count(before, "hits", "policy_decision") == 1
        assert _count(after, "misses", "policy_decision") - _count(before, "misses", "policy_decision") == 1
        assert _count(after, "hits", "verified_token") == 0
        assert after.count("# TYPE gateway_cache_hits_total counter") == 1
        assert cache_counts(object()) is None  # an engine without a decision cache (OPA) shows nothing
    finally:
        runtime.close()
