"""Re-encrypting stored identities under a new key (services/intake/rekey.py), against the
real database process."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from pymongo.asynchronous.collection import AsyncCollection

from services.common.ids import new_tracking_id
from services.common.logging import JsonFormatter
from services.common.mongo import Doc
from services.intake.channel_auth import config_entry
from services.intake.domain import (
    Channel,
    Classification,
    Contact,
    Privacy,
    SubmitComplaint,
    receive,
)
from services.intake.identity import IdentityCipher
from services.intake.rekey import UNKNOWN_KEY, UNREADABLE, main, rekey_identities
from services.intake.reporter_wiring import contact_opener
from services.intake.store import MongoComplaintStore
from services.stack.supervisor import Stack

KEY_A, KEY_B, KEY_Z = os.urandom(32), os.urandom(32), os.urandom(32)
RING_A = IdentityCipher({"A": KEY_A}, "A")
RING_AB = IdentityCipher({"A": KEY_A, "B": KEY_B}, "B")  # B current, A kept for reading
RING_B = IdentityCipher({"B": KEY_B}, "B")  # A removed
RING_Z = IdentityCipher({"Z": KEY_Z}, "Z")  # a key the ring never had


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def complaints(db: object) -> AsyncCollection[Doc]:
    return db["complaints"]  # type: ignore[index,no-any-return]


def contact(i: int) -> Contact:
    return Contact(f"Pelapor Nomor {i}", f"0812000000{i:02d}", f"pelapor{i}@example.id")


async def store_reports(
    db: object, cipher: IdentityCipher, n: int, privacy: Privacy = Privacy.CONFIDENTIAL
) -> dict[str, Contact]:
    """`n` reports stored through the intake store, identities sealed by `cipher`; by
    tracking id, the contacts as the store keeps them (phone in E.164), empty for anonymous
    reports."""
    store = MongoComplaintStore(complaints(db), cipher)
    await store.ensure_indexes()
    stored: dict[str, Contact] = {}
    now = datetime.now(UTC)
    for i in range(n):
        cmd = SubmitComplaint(
            Channel.WEB,
            privacy,
            Classification.COMPLAINT,
            "Jalan rusak",
            "Berlubang besar",
            "51.08",
            contact(i),
            os.urandom(8).hex(),  # idempotency key
        )
        complaint = receive(cmd, new_tracking_id(), now)
        await store.add(complaint)
        stored[complaint.tracking_id] = complaint.reporter or Contact()
    await store.close()
    return stored


async def snapshot(db: object) -> dict[str, Doc]:
    return {d["_id"]: d async for d in complaints(db).find({})}


async def test_every_identity_moves_to_the_new_key_and_reads_without_the_old(
    db: object,
) -> None:
    identities = await store_reports(db, RING_A, 7)
    anonymous = await store_reports(db, RING_A, 2, Privacy.ANONYMOUS)
    before = await snapshot(db)
    assert len(before) == 9 and all("reporter" not in before[t] for t in anonymous)

    report = await rekey_identities(complaints(db), RING_AB, batch_size=3)  # 3 batches

    assert (report.rekeyed, report.skipped, report.failed, report.remaining) == (7, 0, {}, {})
    assert report.done
    after = await snapshot(db)
    open_b = contact_opener(RING_B)  # the service's own read path, with A gone
    for tracking_id, identity in identities.items():
        assert after[tracking_id]["reporter"]["kid"] == "B"
        assert after[tracking_id]["reporter"]["nonce"] != before[tracking_id]["reporter"]["nonce"]
        assert open_b(after[tracking_id]) == identity
        # nothing but the sealed identity changed
        rest = {k: v for k, v in after[tracking_id].items() if k != "reporter"}
        assert rest == {k: v for k, v in before[tracking_id].items() if k != "reporter"}
    for tracking_id in anonymous:
        assert after[tracking_id] == before[tracking_id]
        assert open_b(after[tracking_id]) is None

    again = await rekey_identities(complaints(db), RING_AB, batch_size=3)
    assert (again.rekeyed, again.skipped, again.failed, again.remaining) == (0, 0, {}, {})
    assert await snapshot(db) == after  # idempotent: not even re-sealed


class RacingCollection:
    """The complaints collection, with someone else's write landing between the job's read
    of a batch and its write of that batch."""

    def __init__(
        self, real: AsyncCollection[Doc], race: Callable[[list[Any]], Awaitable[None]]
    ) -> None:
        self._real = real
        self._race = race

    def find(self, *args: Any, **kwargs: Any) -> Any:
        return self._real.find(*args, **kwargs)

    async def bulk_write(self, requests: list[Any], **kwargs: Any) -> Any:
        await self._race(requests)
        return await self._real.bulk_write(requests, **kwargs)


async def test_a_concurrent_change_is_never_overwritten(db: object) -> None:
    identities = await store_reports(db, RING_A, 6)
    anonymised, resealed, replaced, *_ = sorted(identities)  # in the first two batches
    other = RING_AB.seal(identities[resealed], resealed)  # as another run would write it
    corrected = Contact("Nama Baru", "+6281299990000", "baru@example.id")
    newer = RING_A.seal(corrected, replaced)  # same kid A, another nonce
    real = complaints(db)

    async def race(requests: list[Any]) -> None:
        ids = {r._filter["_id"] for r in requests}
        if anonymised in ids:  # the reporter raised the report to anonymous
            await real.update_one(
                {"_id": anonymised}, {"$set": {"privacy": "anonymous"}, "$unset": {"reporter": ""}}
            )
        if resealed in ids:  # a second run of the job got there first
            await real.update_one(
                {"_id": resealed},
                {"$set": {"reporter": {"kid": "B", "nonce": other.nonce, "ct": other.ciphertext}}},
            )
        if replaced in ids:  # the identity was replaced, by a process still sealing with A
            await real.update_one(
                {"_id": replaced},
                {"$set": {"reporter": {"kid": "A", "nonce": newer.nonce, "ct": newer.ciphertext}}},
            )

    racing = cast(AsyncCollection[Doc], RacingCollection(real, race))
    report = await rekey_identities(racing, RING_AB, batch_size=2)

    assert (report.rekeyed, report.skipped, report.failed) == (3, 3, {})
    assert report.remaining == {"A": 1} and not report.done  # the replaced one, still under A
    after = await snapshot(db)
    assert "reporter" not in after[anonymised]  # the identity is not brought back
    assert after[resealed]["reporter"] == {"kid": "B", "nonce": other.nonce, "ct": other.ciphertext}
    assert after[replaced]["reporter"] == {"kid": "A", "nonce": newer.nonce, "ct": newer.ciphertext}
    open_b = contact_opener(RING_B)
    for tracking_id, identity in identities.items():
        if tracking_id not in (anonymised, replaced):
            assert open_b(after[tracking_id]) == identity

    again = await rekey_identities(complaints(db), RING_AB, batch_size=2)  # picks it up
    assert (again.rekeyed, again.skipped, again.failed, again.remaining) == (1, 0, {}, {})
    assert open_b((await snapshot(db))[replaced]) == corrected


async def test_an_identity_the_ring_cannot_open_is_reported_and_left_as_it_is(
    db: object, caplog: pytest.LogCaptureFixture
) -> None:
    identities = await store_reports(db, RING_A, 4)
    lost = await store_reports(db, RING_Z, 1)  # sealed with a key the ring does not hold
    (unknown,) = lost
    broken, *_ = sorted(identities)  # sealed with A, but its ciphertext was damaged
    ct = bytearray((await snapshot(db))[broken]["reporter"]["ct"])
    ct[0] ^= 1
    await complaints(db).update_one({"_id": broken}, {"$set": {"reporter.ct": bytes(ct)}})
    before = await snapshot(db)

    with caplog.at_level(logging.INFO, logger="services.intake.rekey"):
        report = await rekey_identities(complaints(db), RING_AB, batch_size=2)

    assert report.rekeyed == 3 and report.skipped == 0
    assert report.failed == {unknown: f"{UNKNOWN_KEY} (Z)", broken: f"{UNREADABLE} (A)"}
    assert report.remaining == {"A": 1, "Z": 1}
    assert not report.done
    after = await snapshot(db)
    assert after[unknown] == before[unknown] and after[broken] == before[broken]
    open_b = contact_opener(RING_B)
    for tracking_id in set(identities) - {broken}:
        assert open_b(after[tracking_id]) == identities[tracking_id]
    # reported by tracking id only: no identity, nonce or ciphertext in the log
    logged = "\n".join(JsonFormatter("intake").format(r) for r in caplog.records)
    assert unknown in logged and broken in logged
    for doc in before.values():
        sealed = doc["reporter"]
        for blob in (sealed["nonce"], sealed["ct"]):
            assert blob.hex() not in logged and str(blob) not in logged
    for identity in [*identities.values(), *lost.values()]:
        for part in (identity.name, identity.phone, identity.email, identity.phone[-6:]):
            assert part not in logged

    again = await rekey_identities(complaints(db), RING_AB, batch_size=2)
    assert (again.rekeyed, again.skipped) == (0, 0) and again.failed == report.failed


async def test_the_command_uses_the_intake_settings(
    db: object, infra: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    identities = await store_reports(db, RING_A, 3)
    env = {
        "LAPOR_MONGODB_URI": infra.mongodb_uri,
        "LAPOR_MONGODB_DATABASE": db.name,  # type: ignore[attr-defined]
        "LAPOR_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # read, never connected to
        "LAPOR_GRPC_PORT": "0",
        "LAPOR_METRICS_PORT": "0",
        "LAPOR_IDENTITY_KEYS": f"A:{b64(KEY_A)},B:{b64(KEY_B)}",
        "LAPOR_IDENTITY_ACTIVE_KEY": "B",
        "LAPOR_INTAKE_CLIENTS": config_entry("web", [Channel.WEB], "k" * 40),
        "LAPOR_ABUSE_HASH_KEY": "h" * 40,
        "LAPOR_JWT_KEY": "j" * 40,
        "LAPOR_JWT_ISSUER": "test",
    }

    assert await asyncio.to_thread(main, ["--batch-size", "2"], env) == 0
    out = capsys.readouterr().out
    assert "re-encrypted         : 3" in out and "under other keys     : none" in out
    open_b = contact_opener(RING_B)
    for tracking_id, doc in (await snapshot(db)).items():
        assert open_b(doc) == identities[tracking_id]

    assert await asyncio.to_thread(main, [], env) == 0  # again: nothing left to do
    assert "re-encrypted         : 0" in capsys.readouterr().out
    assert await asyncio.to_thread(main, [], {**env, "LAPOR_IDENTITY_ACTIVE_KEY": "C"}) == 2
    assert "LAPOR_IDENTITY_ACTIVE_KEY='C'" in capsys.readouterr().err
