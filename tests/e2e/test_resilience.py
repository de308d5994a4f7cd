"""Nothing lost, nothing doubled: services restarted or killed mid-stream, the database
or the broker gone for a while (intake keeps taking complaints without the broker)."""

from __future__ import annotations

import signal
import urllib.request
from collections.abc import Callable

from pymongo import MongoClient

from services.common import topics
from services.common.mongo import Doc
from services.intake.projection import TIMELINES, with_timeline
from services.stack.supervisor import SERVICES, Stack, health_status
from tests.kafka_offsets import committed, end_offsets
from tests.support import eventually, intake_stub, marker, submit_request

#: Each topic's consumer groups: the services' group names (services/*/bootstrap.py), each
#: consumer's group being "<group>.<topic>" (services/common/kafka.py).
CONSUMERS = {
    topics.COMPLAINTS_RECEIVED: ["lapor-routing", "lapor-sla"],
    topics.COMPLAINTS_ROUTED: ["lapor-sla", "lapor-notify", "lapor-intake-tracking"],
    topics.SLA_EVENTS: ["lapor-routing", "lapor-notify", "lapor-intake-tracking"],
    topics.NOTIFICATIONS: ["lapor-intake-tracking"],
    topics.ESCALATIONS: ["lapor-notify", "lapor-intake-tracking"],
    topics.CASE_ACTIONS: ["lapor-sla", "lapor-notify", "lapor-intake-tracking"],
    topics.REPORTER_ACTIONS: ["lapor-routing"],
}
DATABASES = ("lapor_intake", "lapor_routing", "lapor_sla", "lapor_notify")


def _waiting_in_outboxes(db: MongoClient) -> dict[str, int]:  # type: ignore[type-arg]
    """Events stored but not yet published (or not yet marked published), per collection:
    queue entries, documents with pending events, sla's pending sweep batches."""
    waiting = {}
    for name in DATABASES:
        for collection in db[name].list_collection_names():
            if collection == "sla_outbox":
                query: Doc = {"pending": True}
            elif collection.endswith("_outbox"):
                query = {}
            else:
                query = {"_outbox_pending": True}
            count = db[name][collection].count_documents(query)
            if count:
                waiting[f"{name}.{collection}"] = count
    return waiting


def _settled(stack: Stack, db: MongoClient) -> None:  # type: ignore[type-arg]
    """Wait until nothing more can arrive: every consumer group has committed (after its
    work) up to the end of every partition of its topics, no outbox holds an event, and no
    message was added meanwhile. A redelivered or republished copy then has been handled
    (it is in the counts), and none is still on its way."""
    bootstrap = stack.bootstrap_servers

    def ends() -> dict[str, dict[int, int]]:
        return {topic: end_offsets(bootstrap, topic) for topic in CONSUMERS}

    def quiet() -> bool:
        before = ends()
        for topic, groups in CONSUMERS.items():
            filled = {p: end for p, end in before[topic].items() if end > 0}
            for group in groups:
                offsets = committed(bootstrap, f"{group}.{topic}", topic, filled)
                if any(offsets.get(p, -1) < end for p, end in filled.items()):
                    return False
        return not _waiting_in_outboxes(db) and ends() == before

    eventually(quiet, timeout=120, interval=0.5, what="every event published and handled")


def _submit_many(stack: Stack, count: int, tag: str) -> list[str]:
    channel, stub = intake_stub(stack.services["intake"].grpc_address)
    with channel:
        return [
            stub.SubmitComplaint(
                submit_request(title=f"Lampu jalan mati {tag} {i}"), timeout=10
            ).tracking_id
            for i in range(count)
        ]


def _assert_each_processed_once(stack: Stack, ids: list[str]) -> None:
    db = MongoClient(stack.mongodb_uri, tz_aware=True)
    try:
        complaints = db["lapor_intake"]["complaints"]
        timelines = db["lapor_intake"][TIMELINES]

        def views() -> list[Doc]:
            """Each complaint as its readers see it: with its timeline merged in."""
            lines = {t["_id"]: t for t in timelines.find({"_id": {"$in": ids}})}
            docs = complaints.find({"_id": {"$in": ids}})
            return [with_timeline(d, lines.get(d["_id"])) or d for d in docs]

        def all_done() -> bool:
            docs = views()
            return len(docs) == len(ids) and all(
                d["deadlines"]
                and d["notifications"]
                and any(h["action"] == "routed" for h in d["history"])
                for d in docs
            )

        eventually(all_done, timeout=60, what="every complaint routed, with deadlines and notified")
        # Copies that come late (republished by a relay that had not marked them, replayed
        # by a consumer from an uncommitted offset) are handled before the counts below.
        _settled(stack, db)
        for doc in views():
            actions = [h["action"] for h in doc["history"]]
            assert actions.count("received") == 1, doc["_id"]
            assert actions.count("routed") == 1, doc["_id"]
            assert actions.count("deadlines_set") == 1, doc["_id"]
            assert len(doc["notifications"]) == 1, doc["_id"]
        assert db["lapor_routing"]["cases"].count_documents({"_id": {"$in": ids}}) == len(ids)
        assert db["lapor_sla"]["clocks"].count_documents({"_id": {"$in": ids}}) == len(ids)
        assert db["lapor_notify"]["notifications"].count_documents(
            {"tracking_id": {"$in": ids}}
        ) == len(ids)
    finally:
        db.close()


def test_services_restarted_between_submit_and_track(fresh_stack: Callable[..., Stack]) -> None:
    stack = fresh_stack()
    ids = _submit_many(stack, 20, marker())
    for name in SERVICES:  # stop everything but the database and broker, at once
        stack.services[name].popen.send_signal(signal.SIGTERM)
    for name in SERVICES:
        assert stack.stop_service(name) == 0
        stack.start_service(name)
    stack.wait_serving()
    _assert_each_processed_once(stack, ids)


def test_services_killed_mid_stream(fresh_stack: Callable[..., Stack]) -> None:
    stack = fresh_stack()
    tag = marker()
    ids = _submit_many(stack, 30, tag)
    for name in ("routing", "sla", "notify"):
        stack.stop_service(name, signal.SIGKILL)
    ids += _submit_many(stack, 10, tag)
    stack.stop_service("intake", signal.SIGKILL)
    for name in SERVICES:
        stack.start_service(name)
    stack.wait_serving()
    _assert_each_processed_once(stack, ids)


def test_health_follows_the_database_and_recovers(fresh_stack: Callable[..., Stack]) -> None:
    stack = fresh_stack(persistent=True)
    assert stack.mongo is not None
    port = stack.mongo.ports["mongodb"]
    stack.mongo.popen.send_signal(signal.SIGTERM)
    stack.mongo.popen.wait(30)
    for name in SERVICES:
        address = stack.services[name].grpc_address
        eventually(
            lambda a=address: health_status(a) == "NOT_SERVING",
            timeout=20,
            what=f"{name} NOT_SERVING",
        )
    stack.start_mongo(port)
    stack.wait_serving(timeout=60)
    _assert_each_processed_once(stack, _submit_many(stack, 3, marker()))


# Their gRPC APIs need MongoDB only (events wait in the outbox): they stay SERVING without
# the broker. notify has no API and needs both.
SERVE_WITHOUT_BROKER = ("intake", "routing", "sla")


def _metric(stack: Stack, name: str, series: str) -> str | None:
    url = f"http://127.0.0.1:{stack.services[name].ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - local
        text = reply.read().decode()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return line.split()[-1]
    return None


def test_a_broker_outage_keeps_intake_taking_complaints_and_loses_none(
    fresh_stack: Callable[..., Stack],
) -> None:
    stack = fresh_stack()
    tag = marker()
    stack.kafka_control("down 1")
    for name in SERVICES:
        address = stack.services[name].grpc_address
        eventually(
            lambda a=address: health_status(a, "kafka") == "NOT_SERVING",
            timeout=30,
            what=f"{name} reports the broker down",
        )
    eventually(
        lambda: health_status(stack.services["notify"].grpc_address) == "NOT_SERVING",
        timeout=30,
        what="notify NOT_SERVING",
    )
    for name in SERVE_WITHOUT_BROKER:  # the readiness probe keeps the pods in their Service
        assert health_status(stack.services[name].grpc_address) == "SERVING", name
        assert health_status(stack.services[name].grpc_address, "mongodb") == "SERVING", name
    series = 'lapor_dependency_up{dependency="kafka"}'
    assert _metric(stack, "intake", series) == "0.0"

    # Complaints are taken while the broker is away: their events wait in the outbox.
    ids = _submit_many(stack, 3, tag)
    # An intake (re)started during the outage serves as soon as MongoDB is connected.
    assert stack.stop_service("intake", timeout=30) == 0
    stack.start_service("intake")
    stack.wait_serving(("intake",), timeout=60)
    assert health_status(stack.services["intake"].grpc_address, "kafka") == "NOT_SERVING"
    ids += _submit_many(stack, 2, tag)
    db = MongoClient(stack.mongodb_uri, tz_aware=True)
    try:
        waiting = db["lapor_intake"]["complaints_outbox"].count_documents({})
        assert waiting >= len(ids)  # nothing published yet
        assert not db["lapor_routing"]["cases"].count_documents({"_id": {"$in": ids}})
    finally:
        db.close()

    stack.kafka_control("up 1")
    stack.wait_serving(timeout=60)
    for name in SERVICES:  # each service's own probe notices the broker within seconds
        eventually(
            lambda n=name: health_status(stack.services[n].grpc_address, "kafka") == "SERVING",  # type: ignore[misc]
            timeout=30,
            what=f"{name} sees the broker again",
        )
    eventually(lambda: _metric(stack, "intake", series) == "1.0", timeout=10, what="kafka up")
    # Every event was published after the broker returned: each complaint routed, given
    # deadlines and notified, once.
    _assert_each_processed_once(stack, ids)
    _assert_each_processed_once(stack, _submit_many(stack, 3, marker()))
