"""A reporter's sealed identity is erased once their report has been closed or archived for
LAPOR_INTAKE_IDENTITY_RETENTION_DAYS: the case action that closes it starts the retention
(``retention_from``), intake's forget round erases it afterwards, against the real
database process. The follow-up code keeps opening the report."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from lapor.v1 import common_pb2, events_pb2
from prometheus_client import REGISTRY

from services.common.clock import ManualClock
from services.common.kafka import Delivery
from services.common.settings import Env
from services.intake.case_view import CaseActionProjection
from services.intake.channel_auth import config_entry
from services.intake.channel_wiring import ChannelSettings, forget_expired
from services.intake.domain import Channel, Privacy
from tests.integration.test_intake_store_channels import CMD, complaint, make_store

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
SETTINGS = replace(
    ChannelSettings.from_env(
        Env(
            {
                "LAPOR_ABUSE_HASH_KEY": "k" * 32,
                "LAPOR_INTAKE_CLIENTS": config_entry("web-portal", [Channel.WEB], "s" * 40),
            }
        )
    ),
    identity_retention=timedelta(days=365),
    identity_max_age=timedelta(0),  # the backstop is test_identity_traces.py's
)


def action(tid: str, name: str, from_state: str, to_state: str, at: datetime) -> Delivery[Any]:
    meta = common_pb2.EventMeta(event_id=f"{tid}:{name}", tracking_id=tid, producer="routing")
    meta.occurred_at.FromDatetime(at)
    e = events_pb2.CaseAction(
        meta=meta, action=name, actor_role="system", from_state=from_state, to_state=to_state
    )
    return Delivery(e, tid, 0, 0)


def erased_total() -> float:
    name, final = "lapor_intake_identities_erased_total", {"reason": "final"}
    return REGISTRY.get_sample_value(name, final) or 0.0


async def test_identities_are_erased_a_retention_after_the_case_closed(db: Any) -> None:
    store = await make_store(db)
    complaints = db["complaints"]
    closed, archived, resolved, recent = [
        await store.add(complaint(f"ret-{n}", ()))  # type: ignore[arg-type]
        for n in range(4)
    ]
    anonymous = await store.add(
        replace(complaint("ret-anon", ()), privacy=Privacy.ANONYMOUS, reporter=None)  # type: ignore[type-var]
    )
    cases = CaseActionProjection(complaints)
    await cases.apply(
        [
            action(closed.tracking_id, "confirmed", "resolved", "closed", T0),
            action(archived.tracking_id, "archived", "in_verification", "archived", T0),
            action(resolved.tracking_id, "resolved", "in_progress", "resolved", T0),
            action(anonymous.tracking_id, "auto_closed", "resolved", "closed", T0),
            action(
                recent.tracking_id, "auto_closed", "resolved", "closed", T0 + timedelta(days=300)
            ),
        ]
    )
    before = erased_total()

    clock = ManualClock(T0 + timedelta(days=364))
    await forget_expired(SETTINGS, store, clock)
    assert await complaints.count_documents({"reporter": {"$exists": True}}) == 4

    clock.advance(timedelta(days=2))  # a year and a day after the first closures
    await forget_expired(SETTINGS, store, clock)
    kept = {d["_id"]: d async for d in complaints.find({})}
    for gone in (closed, archived):
        doc = kept[gone.tracking_id]
        assert "reporter" not in doc and doc["reachable"] is False
        assert "retention_from" not in doc  # nothing left waiting in the sparse index
        assert CMD.reporter is not None and CMD.reporter.phone not in repr(doc)
        assert doc["follow_up_codes"]  # the follow-up code still opens the report
    assert "reporter" in kept[resolved.tracking_id]  # resolved is not final: it may reopen
    assert "retention_from" not in kept[resolved.tracking_id]
    assert "reporter" in kept[recent.tracking_id]
    assert kept[recent.tracking_id]["retention_from"] == T0 + timedelta(days=300)
    assert "retention_from" not in kept[anonymous.tracking_id]  # had none to erase
    assert erased_total() - before == 2  # the anonymous report had no identity to erase

    await forget_expired(SETTINGS, store, clock)  # again: nothing more
    assert erased_total() - before == 2
    await forget_expired(
        replace(SETTINGS, identity_retention=timedelta(0)),
        store,
        ManualClock(T0 + timedelta(days=999)),
    )
    assert "reporter" in await complaints.find_one({"_id": recent.tracking_id})  # 0 keeps
    await store.close()


async def test_reports_closed_before_the_upgrade_count_from_it(db: Any) -> None:
    store = await make_store(db)
    complaints = db["complaints"]
    old = await store.add(complaint("ret-old", ()))  # type: ignore[arg-type]
    open_ = await store.add(complaint("ret-open", ()))  # type: ignore[arg-type]
    await complaints.update_one({"_id": old.tracking_id}, {"$set": {"state": "closed"}})
    upgrade = T0 + timedelta(days=1000)
    assert await store.date_undated_closures(upgrade) == 1
    assert await store.date_undated_closures(upgrade + timedelta(days=1)) == 0  # idempotent
    doc = await complaints.find_one({"_id": old.tracking_id})
    assert doc["retention_from"] == upgrade and "reporter" in doc
    assert "retention_from" not in await complaints.find_one({"_id": open_.tracking_id})
    clock = ManualClock(upgrade + timedelta(days=366))
    await forget_expired(SETTINGS, store, clock)
    assert "reporter" not in await complaints.find_one({"_id": old.tracking_id})
    assert "reporter" in await complaints.find_one({"_id": open_.tracking_id})
    await store.close()
