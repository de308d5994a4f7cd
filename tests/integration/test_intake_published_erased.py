"""A report whose identity intake erases (its case closed or archived for
LAPOR_INTAKE_IDENTITY_RETENTION_DAYS, or received LAPOR_INTAKE_IDENTITY_MAX_DAYS ago) also
loses the copy of what it published kept for an outbox replay (``_published``: its title,
body and the reporter's texts), so a replay no longer republishes it; against the real
database process (docs/intake-api.md, "Identity retention")."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from services.common.clock import ManualClock
from services.common.outbox import PENDING, PUBLISHED, OutboxRelay, queue_for
from services.intake.channel_wiring import forget_expired
from services.intake.domain import Privacy
from tests.integration.test_identity_retention import SETTINGS, T0
from tests.integration.test_identity_traces import WEB, add, close, docs, erased
from tests.integration.test_intake_store_channels import make_store
from tests.support import RecordingPublisher

NAMED = [{"id": "e1", "name": "KTP_Budi.pdf", "type": "application/pdf", "size": 1}]


async def test_erased_reports_keep_no_published_events(db: Any) -> None:
    store = await make_store(db)
    complaints = db["complaints"]
    anonymous_web = replace(WEB, privacy=Privacy.ANONYMOUS)
    closed, with_files = await add(store, WEB), await add(store, WEB)
    anonymous, anonymous_files = await add(store, anonymous_web), await add(store, anonymous_web)
    stale = await add(store, WEB)  # received long ago, never closed
    recent_closed = await add(store, WEB, at=T0 + timedelta(days=1000))
    recent_open = await add(store, WEB, at=T0 + timedelta(days=1000))
    for tid in (with_files, anonymous_files):
        await complaints.update_one({"_id": tid}, {"$set": {"evidence": NAMED}})
    await close(complaints, closed, with_files, anonymous, anonymous_files)
    await complaints.update_one(
        {"_id": recent_closed}, {"$set": {"retention_from": T0 + timedelta(days=1000)}}
    )
    assert all(d[PUBLISHED] for d in (await docs(complaints)).values())

    settings = replace(SETTINGS, identity_max_age=timedelta(days=1095))
    await forget_expired(settings, store, ManualClock(T0 + timedelta(days=1096)))
    kept = await docs(complaints)
    for tid in (closed, with_files, anonymous, anonymous_files, stale):
        assert PUBLISHED not in kept[tid], tid
        assert "reporter" not in kept[tid]
    for tid in (recent_closed, recent_open):
        assert kept[tid][PUBLISHED] and "reporter" in kept[tid], tid

    publisher = RecordingPublisher()
    await OutboxRelay([complaints], publisher, queues=[queue_for(complaints)]).replay()
    assert {m.key for m in publisher.sent} == {recent_closed, recent_open}
    await store.close()


async def test_a_report_whose_events_wait_gives_up_its_replay_copy_once_they_are_out(
    db: Any,
) -> None:
    """The identity goes at once; the replay copy waits for the events still in the report's
    outbox, which the relay would push back into it after publishing them."""
    store = await make_store(db)
    complaints = db["complaints"]
    public_web = replace(WEB, privacy=Privacy.PUBLIC)
    closed, stale = await add(store, public_web), await add(store, public_web)
    await close(complaints, closed)
    # Both reporters raise their report's privacy; the events wait (the broker is away).
    for tid in (closed, stale):
        assert await store.raise_privacy(tid, Privacy.PUBLIC, Privacy.CONFIDENTIAL, T0)
    settings = replace(SETTINGS, identity_max_age=timedelta(days=1095))
    clock = ManualClock(T0 + timedelta(days=1096))
    before = erased("final"), erased("age")

    for _round in range(2):  # nothing more goes while the events wait
        await forget_expired(settings, store, clock)
        kept = await docs(complaints)
        for tid in (closed, stale):
            assert "reporter" not in kept[tid] and kept[tid]["reachable"] is False, tid
            assert kept[tid][PUBLISHED] and kept[tid][PENDING] is True, tid
        assert kept[closed]["retention_from"] == T0  # still due: a later round comes back
        assert kept[stale]["identity_since"] == T0  # the age backstop's
    assert (erased("final"), erased("age")) == (before[0] + 1, before[1] + 1)

    publisher = RecordingPublisher()
    relay = OutboxRelay([complaints], publisher, queues=[queue_for(complaints)])
    await relay.relay_once()
    kept = await docs(complaints)
    for tid in (closed, stale):  # the relay put the events back into the replay copy
        assert kept[tid][PENDING] is False and len(kept[tid][PUBLISHED]) == 2, tid

    await forget_expired(settings, store, clock)
    kept = await docs(complaints)
    for tid in (closed, stale):
        assert not {PUBLISHED, "retention_from", "identity_since"} & set(kept[tid]), tid
    assert (erased("final"), erased("age")) == (before[0] + 1, before[1] + 1)  # counted once
    publisher.sent.clear()
    await relay.replay()
    assert not publisher.sent
    await store.close()
