"""The decision cache: a hit is the same Decision the engine gives, bounded, per revision, thread-safe,
and an engine failure is never kept."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest

from gateway.policy import ENGINE_ERROR, EmbeddedEngine
from gateway.policy._cache import DecisionCache
from tests.policy.conftest import POLICIES, actor, case, share

SHARE = share("politie", case(), "melding", "veiligheid_herstellen", ["veilig_thuis", "om"], ["aard"])


def test_a_hit_is_the_same_decision_and_a_new_object() -> None:
    with EmbeddedEngine(POLICIES, pool_size=1, timeout=None) as engine:
        uncached = EmbeddedEngine(POLICIES, pool_size=1, timeout=None, cache_size=0)
        first = engine.decide(copy.deepcopy(SHARE))
        second = engine.decide(copy.deepcopy(SHARE))
        assert first == second == uncached.decide(SHARE)
        assert first is not second and first.recipients is not second.recipients
        assert engine.cache is not None and uncached.cache is None
        assert engine.cache.stats()["hits"] == 1 and engine.cache.stats()["misses"] == 1


def test_the_key_is_the_whole_input_in_canonical_form() -> None:
    with EmbeddedEngine(POLICIES, pool_size=1, timeout=None) as engine:
        reordered = dict(reversed(list(SHARE.items())))
        a, b = engine.decide(SHARE), engine.decide(reordered)
        assert a == b and engine.cache is not None and engine.cache.hits == 1
        # Any change of any field is another entry, decided anew.
        other = copy.deepcopy(SHARE)
        other["recipients"] = ["veilig_thuis"]
        assert set(engine.decide(other).recipients) == {"veilig_thuis"}
        other["actor"] = actor("om")
        assert engine.decide(other) != a
        assert engine.cache.hits == 1 and len(engine.cache) == 3


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = DecisionCache("sha256:r", size=2)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("c", "C")
    assert cache.get("b") is None and cache.get("a") == "A" and cache.get("c") == "C"
    assert len(cache) == 2
    cache.put("x" * 20_000, "X")  # too long to keep
    assert cache.get("x" * 20_000) is None
    with pytest.raises(ValueError):
        DecisionCache("sha256:r", size=0)


def test_each_revision_has_its_own_cache(policy_copy: Path) -> None:
    path = policy_copy / "veiligdelen" / "facts" / "data.json"
    text = path.read_text(encoding="utf-8")
    old_basis = "Wmo 2015 art. 5.2.6 (meldrecht)"
    with EmbeddedEngine(POLICIES, pool_size=1, timeout=None) as old:
        before = old.decide(SHARE)
        path.write_text(text.replace(old_basis, "Testwet art. 9"), encoding="utf-8")
        with EmbeddedEngine(policy_copy, pool_size=1, timeout=None) as new:
            assert new.revision != old.revision
            after = new.decide(SHARE)
            assert new.cache is not None and new.cache.misses == 1 and new.cache.hits == 0
            assert after.policy_revision == new.revision
            assert (
                after.recipients["veilig_thuis"].legal_basis != before.recipients["veilig_thuis"].legal_basis
            )


def test_an_engine_failure_is_not_cached_and_a_closed_engine_answers_nothing_from_it() -> None:
    engine = EmbeddedEngine(POLICIES, pool_size=1)
    bad = {"action": "share", "purpose": "\ud800"}  # not UTF-8 (in a path the policy reads): engine_error
    assert engine.decide(bad).codes == [ENGINE_ERROR]
    assert engine.cache is not None and len(engine.cache) == 0
    # in a part the policy does not read, so not in the projection: still the input is refused whole
    unread = {**SHARE, "x": "\ud800"}
    assert engine.decide(unread).codes == [ENGINE_ERROR] and len(engine.cache) == 0
    assert engine.decide(SHARE).allowed and len(engine.cache) == 1
    engine.close()
    assert engine.decide(SHARE).engine_failure  # closed: fails closed, not from memory


def test_concurrent_lookups_agree_and_count_every_one() -> None:
    with EmbeddedEngine(POLICIES, pool_size=2, timeout=None, cache_size=8) as engine:
        inputs = [
            share("politie", case(), "melding", p, [r], ["aard"])
            for p in ["veiligheid_herstellen", "melding_behandelen", "overdracht"]
            for r in ["veilig_thuis", "om", "rvdk", "reclassering"]
        ]
        expected = [
            EmbeddedEngine(POLICIES, pool_size=1, timeout=None, cache_size=0).decide(x) for x in inputs
        ]
        wrong: list[int] = []

        def work(k: int) -> None:
            for i in range(60):
                j = (i * 7 + k) % len(inputs)
                if engine.decide(inputs[j]) != expected[j]:
                    wrong.append(j)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wrong == []
        assert engine.cache is not None
        stats = engine.cache.stats()
        assert stats["hits"] + stats["misses"] == 240
        assert stats["entries"] <= 8
