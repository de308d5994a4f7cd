"""The lease's settings and wiring: LAPOR_LEASE_TTL_SECONDS and LAPOR_OUTBOX_POLL_SECONDS
(services/common/settings.py), the holder id, and every service's relay (and sla's sweep)
running under a lease. The lease itself is tested against the real database in
tests/integration/test_lease.py."""

from __future__ import annotations

import importlib
import os
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.common.clock import ManualClock
from services.common.lease import DEFAULT_TTL, Lease, instance_id
from services.common.outbox import RELAY_LEASE, OutboxRelay
from services.common.settings import SettingsError
from services.routing.retention import TRIM_LEASE, ClosedCaseTrim
from services.sla.relay import SlaRelay
from services.sla.sweep import SWEEP_LEASE, Sweeper
from services.stack.devsecrets import generate, service_env
from tests.unit.test_dead_letter_settings import settings

BASE = {
    "LAPOR_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "LAPOR_MONGODB_URI": "mongodb://127.0.0.1:1",
    "LAPOR_GRPC_PORT": "0",
    "LAPOR_METRICS_PORT": "0",
}


def test_defaults_poll_twice_a_second_and_fail_over_in_ten_seconds() -> None:
    s = settings()
    assert (s.outbox_poll_seconds, s.lease_ttl_seconds) == (0.5, 10.0)
    assert timedelta(seconds=s.lease_ttl_seconds) == DEFAULT_TTL


def test_the_settings_are_read() -> None:
    s = settings(LAPOR_OUTBOX_POLL_SECONDS="0.1", LAPOR_LEASE_TTL_SECONDS="30")
    assert (s.outbox_poll_seconds, s.lease_ttl_seconds) == (0.1, 30.0)


@pytest.mark.parametrize(
    "name,value,rule",
    [
        ("LAPOR_LEASE_TTL_SECONDS", "0.5", "is outside 1.0..600.0"),
        ("LAPOR_LEASE_TTL_SECONDS", "ten", "is not a number"),
        ("LAPOR_OUTBOX_POLL_SECONDS", "0", "is outside 0.01..60.0"),
        ("LAPOR_OUTBOX_POLL_SECONDS", "3", "must be at most a quarter of LAPOR_LEASE_TTL_SECONDS"),
    ],
)
def test_a_bad_value_is_named_with_its_rule(name: str, value: str, rule: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}=.*{rule}"):
        settings(**{name: value})


def test_the_instance_id_is_read_and_optional() -> None:
    assert settings().instance_id is None
    assert settings(LAPOR_INSTANCE_ID="  ").instance_id is None
    assert settings(LAPOR_INSTANCE_ID=" intake-5d8f-x2 ").instance_id == "intake-5d8f-x2"


def test_the_embedded_stack_names_each_process_by_service_and_port(tmp_path: Any) -> None:
    from services.stack.supervisor import Stack

    sup = Stack(tmp_path)  # nothing started: service_env only composes the environment
    first = sup.service_env("sla", 5001, 6001, {})["LAPOR_INSTANCE_ID"]
    again = sup.service_env("sla", 5001, 6001, {})["LAPOR_INSTANCE_ID"]  # a restart
    second = sup.service_env("sla", 5002, 6002, {})["LAPOR_INSTANCE_ID"]  # a second replica
    assert first == again == "sla@5001" and second == "sla@5002"


def test_a_longer_ttl_allows_a_longer_poll() -> None:
    assert (
        settings(LAPOR_OUTBOX_POLL_SECONDS="3", LAPOR_LEASE_TTL_SECONDS="12").lease_ttl_seconds
        == 12
    )


async def test_the_holder_id_is_this_process() -> None:
    assert instance_id() == instance_id()
    assert f":{os.getpid()}:" in instance_id()
    client: AsyncMongoClient[Any] = AsyncMongoClient(BASE["LAPOR_MONGODB_URI"])  # not contacted
    lease = Lease(client["lapor_test"], "job", ManualClock())
    assert lease.holder == instance_id() and not lease.holding
    await client.close()


def _found(obj: Any, kind: type) -> Any:
    """The `kind` instance a worker is bound to or closes over."""
    if isinstance(getattr(obj, "__self__", None), kind):
        return obj.__self__
    for cell in getattr(obj, "__closure__", None) or ():
        if isinstance(cell.cell_contents, kind):
            return cell.cell_contents
    return None


@pytest.mark.parametrize("service", ["intake", "routing", "sla", "notify"])
async def test_every_service_relays_under_its_lease(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **BASE,
        **service_env(service, generate()),
        "LAPOR_OUTBOX_POLL_SECONDS": "0.1",
        "LAPOR_LEASE_TTL_SECONDS": "20",
        "LAPOR_INSTANCE_ID": f"{service}-7f9c-2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parts = importlib.import_module(f"services.{service}.bootstrap").bootstrap()
    try:
        relays = [r for w in parts.workers if (r := _found(w, (OutboxRelay, SlaRelay)))]
        assert len(relays) == 1
        relay = relays[0]
        assert relay.lease is not None and relay.lease.name == RELAY_LEASE
        assert relay.lease._ttl == timedelta(seconds=20)
        assert relay._poll_interval == 0.1
        assert relay.lease.holder == f"{service}-7f9c-2"
        if service == "routing":  # the hourly trim of closed cases: one replica too
            trims = [t for w in parts.mongo_workers if (t := _found(w, ClosedCaseTrim))]
            assert len(trims) == 1 and trims[0].lease is not None
            assert trims[0].lease.name == TRIM_LEASE
            assert trims[0].lease.holder == "routing-7f9c-2"
            assert trims[0].lease.ttl == timedelta(seconds=20)
        if isinstance(relay, SlaRelay):  # one lease for both of its loops
            assert relay.documents.lease is relay.lease
            assert relay.documents._poll_interval == 0.1
            sweepers = [s for w in parts.workers if (s := _found(w, Sweeper))]
            assert len(sweepers) == 1 and sweepers[0].lease is not None
            assert sweepers[0].lease.name == SWEEP_LEASE
            assert sweepers[0].lease._ttl == timedelta(seconds=20)
            assert sweepers[0].lease.holder == "sla-7f9c-2"
    finally:
        for close in parts.close:
            await close()
