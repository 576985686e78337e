"""Replicas follow the active policy revision in the database (gateway/policy/follow.py), on SQLite and
on PostgreSQL (``db_url``): two runtimes on one database stand for two replicas.

The activation here is what a reload on another replica writes (`archive_revision`, as its audit
entry's transaction does); the reload itself over HTTP across three processes is in
tests/e2e/test_replicas_shared.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.models import PolicyRevision
from gateway.policy import PolicySource, read_policy
from gateway.policy._source import source_from_bytes
from gateway.policy.follow import PolicyFollower
from gateway.runtime import Runtime
from gateway.services.policy_archive import active_revision, archive_revision
from gateway.settings import REPO_ROOT, Settings

POLICIES = REPO_ROOT / "policies"


def changed(source: PolicySource) -> PolicySource:
    """``source`` with one comment more: another revision, the same decisions."""
    texts = dict(source.texts)
    first = sorted(p for p in texts if p.endswith(".rego") and not p.endswith("_test.rego"))[0]
    texts[first] += "\n# a comment: another revision, the same rules\n"
    return source_from_bytes(Path("elsewhere"), [(p, t.encode()) for p, t in texts.items()])


@pytest.fixture(scope="module")
def replica(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("replica"), database_url=db_url, policy_follow=True)
    rt = Runtime(settings)
    yield rt
    rt.close()


def test_a_revision_activated_elsewhere_is_served_after_one_poll(replica: Runtime) -> None:
    start = replica.policy.current.revision
    assert active_revision(replica.db) == start  # a new revision on disk at start: activated
    follower = PolicyFollower(replica, interval=60)
    assert follower.check() is None  # nothing to do

    other = changed(read_policy(POLICIES))
    archive_revision(replica.db, other)  # what a reload on another replica commits
    assert follower.check() == other.revision
    assert replica.policy.current.revision == other.revision
    decision = replica.decide(
        {"action": "share", "actor": {"agency": "politie"}, "recipient": "rvdk", "purpose": "x"}
    )
    assert decision.policy_revision == other.revision
    assert follower.check() is None and follower.swaps == 1

    archive_revision(replica.db, read_policy(POLICIES))  # and back: a reload of the original files
    assert follower.check() == start
    assert replica.policy.current.revision == start


def test_an_altered_archived_revision_is_not_followed(
    replica: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    serving = replica.policy.current.revision
    other = changed(changed(read_policy(POLICIES)))
    archive_revision(replica.db, other)
    with replica.db.begin() as conn:  # someone edits the archived files behind the gateway's back
        conn.execute(
            sa.update(PolicyRevision)
            .where(PolicyRevision.revision == other.revision)
            .values(files=sa.func.replace(PolicyRevision.files, "another revision", "a changed rule"))
        )
    follower = PolicyFollower(replica, interval=60)
    with caplog.at_level(logging.ERROR, logger="gateway.policy"):
        assert follower.check() is None
        assert follower.check() is None  # said once, not at every poll
    assert replica.policy.current.revision == serving  # the old one keeps serving
    [said] = [r.getMessage() for r in caplog.records if "cannot follow" in r.getMessage()]
    assert other.revision in said and serving in said
    archive_revision(replica.db, read_policy(POLICIES))  # leave the original active for the next test


def test_a_replica_starting_on_stale_files_serves_the_active_revision(
    replica: Runtime, db_url: str, tmp_path: Path
) -> None:
    newer = changed(read_policy(POLICIES))
    archive_revision(replica.db, newer)  # activated after the files on disk were
    late = Runtime(Settings(data_dir=tmp_path, database_url=db_url, policy_follow=True))
    try:
        assert late.policy.current.revision == newer.revision
        assert active_revision(late.db) == newer.revision  # the stale files did not take it back
    finally:
        late.close()
    archive_revision(replica.db, read_policy(POLICIES))
