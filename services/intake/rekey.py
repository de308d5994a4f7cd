"""Re-encrypt stored reporter identities under the active identity key.

Run after making a new key active (deploy/README.md, "Identity key rotation"), so that the
old key can leave ``LAPOR_IDENTITY_KEYS``:

    python -m services.intake.rekey [--batch-size N]

It reads the same settings as the intake service. It walks the complaints whose
``reporter.kid`` is not the active key id in ``_id`` order, a batch at a time, each query
resuming after the last ``_id`` seen. Each identity is opened with the key its id names and
sealed again with the active key (the tracking id stays the associated data); the new
sealed identity is written with a compare-and-set on the old key id and nonce. An identity
changed meanwhile (re-sealed by another run, removed when the report became anonymous) is
left as it is and counted as skipped, so a concurrent change is never overwritten and
running the job again, or twice at once, is safe. Anonymous reports have no ``reporter``
and are never touched.

An identity whose key id is not in the ring, or that its key does not open, is left as it
is and reported by tracking id (with the reason and the key id) only: no identity, nonce
or ciphertext is logged or printed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from services.common.logging import configure_logging
from services.common.mongo import Doc, create_client
from services.common.settings import Env, SettingsError
from services.intake.bootstrap import IntakeSettings
from services.intake.identity import IdentityCipher, SealedIdentity

log = logging.getLogger(__name__)

BATCH = 200  # identities read and written per round trip

UNKNOWN_KEY = "key id not in LAPOR_IDENTITY_KEYS"
UNREADABLE = "does not decrypt with its key"
MALFORMED = "malformed sealed identity"


@dataclass
class RekeyReport:
    active_key: str
    rekeyed: int = 0  # now sealed with the active key
    skipped: int = 0  # changed between read and write: left to whoever changed it
    failed: dict[str, str] = field(default_factory=dict)  # tracking id -> reason
    # After the walk: identities still sealed with another key, per key id. The failed
    # ones, and any sealed meanwhile by a process that still had the old active key.
    remaining: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """No identity is left under another key: the old keys may leave the ring."""
        return not self.failed and not self.remaining


def _not_active(active: str) -> Doc:
    return {"reporter.kid": {"$exists": True, "$ne": active}}


def _sealed(doc: Doc) -> SealedIdentity | None:
    reporter = doc.get("reporter")
    if not isinstance(reporter, dict):
        return None
    kid, nonce, ct = reporter.get("kid"), reporter.get("nonce"), reporter.get("ct")
    if not isinstance(kid, str) or not isinstance(nonce, bytes) or not isinstance(ct, bytes):
        return None
    return SealedIdentity(kid, nonce, ct)


async def rekey_identities(
    complaints: AsyncCollection[Doc], cipher: IdentityCipher, *, batch_size: int = BATCH
) -> RekeyReport:
    """Seal every stored identity not sealed with `cipher`'s active key again with it."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RekeyReport(cipher.active_key_id)
    query = _not_active(report.active_key)
    after: object = None
    while True:
        page = query if after is None else {**query, "_id": {"$gt": after}}
        docs = (
            await complaints.find(page, {"reporter": 1})
            .sort("_id", 1)
            .limit(batch_size)
            .to_list(None)
        )
        if not docs:
            break
        after = docs[-1]["_id"]
        writes: list[UpdateOne] = []
        for doc in docs:
            tracking_id = doc["_id"]
            sealed = _sealed(doc)
            if sealed is None:
                _fail(report, tracking_id, MALFORMED, None)
                continue
            try:
                contact = cipher.open(sealed, tracking_id)
            except KeyError:
                _fail(report, tracking_id, UNKNOWN_KEY, sealed.key_id)
                continue
            except (InvalidTag, ValueError):
                _fail(report, tracking_id, UNREADABLE, sealed.key_id)
                continue
            fresh = cipher.seal(contact, tracking_id)
            writes.append(
                UpdateOne(
                    {
                        "_id": tracking_id,
                        "reporter.kid": sealed.key_id,
                        "reporter.nonce": sealed.nonce,
                    },
                    {
                        "$set": {
                            "reporter": {
                                "kid": fresh.key_id,
                                "nonce": fresh.nonce,
                                "ct": fresh.ciphertext,
                            }
                        }
                    },
                )
            )
        if writes:
            result = await complaints.bulk_write(writes, ordered=False)
            report.rekeyed += result.modified_count
            report.skipped += len(writes) - result.modified_count
        log.info(
            "identities re-encrypted",
            extra={
                "active_key": report.active_key,
                "rekeyed": report.rekeyed,
                "skipped": report.skipped,
                "failed": len(report.failed),
            },
        )
        if len(docs) < batch_size:
            break
    async for doc in complaints.find(query, {"reporter.kid": 1}):
        kid = str(doc["reporter"]["kid"])
        report.remaining[kid] = report.remaining.get(kid, 0) + 1
    return report


def _fail(report: RekeyReport, tracking_id: str, reason: str, key_id: str | None) -> None:
    report.failed[tracking_id] = reason if key_id is None else f"{reason} ({key_id})"
    log.warning(
        "identity not re-encrypted",
        extra={"tracking_id": tracking_id, "reason": reason, "key_id": key_id or ""},
    )


def summary(report: RekeyReport) -> list[str]:
    lines = [
        f"active key           : {report.active_key}",
        f"re-encrypted         : {report.rekeyed}",
        f"skipped (changed)    : {report.skipped}",
        f"failed               : {len(report.failed)}",
    ]
    lines += [f"  {tracking_id}  {reason}" for tracking_id, reason in sorted(report.failed.items())]
    left = ", ".join(f"{kid}: {n}" for kid, n in sorted(report.remaining.items()))
    lines.append(f"under other keys     : {left or 'none'}")
    if report.done:
        lines.append("every stored identity is sealed with the active key")
    return lines


async def _run(settings: IntakeSettings, cipher: IdentityCipher, batch_size: int) -> RekeyReport:
    s = settings.common
    client = create_client(s.mongodb_uri, "lapor-intake-rekey")
    try:
        return await rekey_identities(
            client[s.mongodb_database]["complaints"], cipher, batch_size=batch_size
        )
    finally:
        await client.close()


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """0: every identity is sealed with the active key; 1: some are not (failed, or sealed
    meanwhile with an old key: see the summary) or the database failed; 2: a configuration
    error."""
    parser = argparse.ArgumentParser(
        prog="python -m services.intake.rekey",
        description="Re-encrypt stored reporter identities under LAPOR_IDENTITY_ACTIVE_KEY "
        "(reads the intake service's settings)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=BATCH, help=f"identities per round trip ({BATCH})"
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    try:
        settings = IntakeSettings.from_env(Env(environ))
        cipher = IdentityCipher.from_config(settings.identity_keys, settings.identity_active_key)
    except SettingsError as exc:
        print(f"intake-rekey: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        report = asyncio.run(_run(settings, cipher, args.batch_size))
    except PyMongoError as exc:
        # What was written stays written; a new run goes on with what is left.
        print(f"intake-rekey: database error, run again: {exc}", file=sys.stderr, flush=True)
        return 1
    print("\n".join(summary(report)), flush=True)
    return 0 if report.done else 1


if __name__ == "__main__":
    configure_logging("intake-rekey", os.environ.get("LAPOR_LOG_LEVEL", "INFO"))
    sys.exit(main())
