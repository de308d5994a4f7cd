"""Benchmark of intake's acknowledgement path on the embedded stack.

Run from the repository root: ``python -m bench.intake [--complaints N] [--concurrency C]``.
Starts its own broker, database and intake (the other services are not started, so they do
not compete for the cores), then prints:

* a burst of C concurrent submitters (grpc.aio): complaints/s acknowledged, and
  acknowledged *and* published (until the burst's last event has left the outbox), p50/p99
  acknowledgement latency, intake CPU-ms per complaint (psutil on the intake process);
* the raw single-document ``insert_one`` rate against the same database once it is quiet
  (the relay done with the burst), sequential and with the same concurrency, and the ratio
  intake (acknowledged) / raw (target: at least 1.5x);
* p50/p99 at half of the sustained rate, paced open-loop, after the outbox relay has
  caught up with the burst (target: p99 under 100 ms);
* intake SIGKILLed mid-burst: acknowledged ids counted against stored ones (target: 0 lost).

``--no-limits`` switches rate limits and duplicate detection off, to see what they cost;
``--env NAME=VALUE`` passes any other intake setting. Always exits 0: the figures are the
result, not a gate. The embedded database is a Python process on the same cores as intake
and this client: on a busy machine the figures swing widely between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import grpc
import psutil
from lapor.v1 import common_pb2, intake_pb2, intake_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from services.intake.devenv import dev_api_key
from services.stack.devsecrets import generate, service_env
from services.stack.supervisor import Stack


@dataclass
class Burst:
    acked: list[str]
    latencies: list[float]
    seconds: float
    errors: int


def request(i: int, run: str) -> intake_pb2.SubmitComplaintRequest:
    r = intake_pb2.SubmitComplaintRequest(
        channel=common_pb2.CHANNEL_WEB,
        privacy=common_pb2.PRIVACY_PUBLIC,
        classification=common_pb2.CLASSIFICATION_COMPLAINT,
        title=f"Jalan berlubang {run} {i}",
        body="Sudah tiga bulan jalan di depan pasar rusak dan berlubang, membahayakan pengendara.",
        region_code="51.08",
        idempotency_key=f"{run}-{i}",
    )
    if i % 2:  # half with a contact: sealed identity, contact limiter, dedupe keys
        r.privacy = common_pb2.PRIVACY_CONFIDENTIAL
        r.reporter.name = "Pelapor Bench"
        r.reporter.phone = f"0812{i:08d}"
    return r


async def burst(
    stub: intake_pb2_grpc.IntakeServiceStub,
    key: str,
    count: int,
    concurrency: int,
    run: str,
    pace: float = 0.0,
) -> Burst:
    """`count` submissions, `concurrency` in flight; with `pace` > 0, open-loop at that rate."""
    acked: list[str] = []
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    started = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal errors
        t0 = time.perf_counter()
        try:
            reply = await stub.SubmitComplaint(
                request(i, run), timeout=30, metadata=(("x-api-key", key),)
            )
        except grpc.aio.AioRpcError:
            errors += 1
            return
        latencies.append(time.perf_counter() - t0)
        acked.append(reply.tracking_id)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    if pace > 0:
        tasks = []
        for i in range(count):
            delay = started + i / pace - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    else:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Burst(acked, latencies, time.perf_counter() - started, errors)


def _client(
    address: str, key: str, count: int, concurrency: int, run: str, pace: float, shard: int
) -> Burst:
    """One load-generating process (spawned): its own channel, its share of the burst."""

    async def go() -> Burst:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = intake_pb2_grpc.IntakeServiceStub(channel)
            return await burst(stub, key, count, concurrency, f"{run}-{shard}", pace)

    return asyncio.run(go())


def parallel_burst(
    pool: ProcessPoolExecutor,
    clients: int,
    address: str,
    key: str,
    count: int,
    concurrency: int,
    run: str,
    pace: float = 0.0,
) -> Burst:
    """The burst split over `clients` processes, so the Python client is not the limit."""
    started = time.perf_counter()
    futures = [
        pool.submit(
            _client,
            address,
            key,
            count // clients,
            max(concurrency // clients, 1),
            run,
            pace / clients,
            shard,
        )
        for shard in range(clients)
    ]
    parts = [f.result() for f in futures]
    return Burst(
        [i for p in parts for i in p.acked],
        [x for p in parts for x in p.latencies],
        time.perf_counter() - started,
        sum(p.errors for p in parts),
    )


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


async def raw_inserts(uri: str, count: int, concurrency: int) -> tuple[float, float]:
    client: AsyncMongoClient = AsyncMongoClient(uri, w="majority")  # type: ignore[type-arg]
    coll = client["bench_raw"][f"c{uuid.uuid4().hex[:6]}"]

    def doc(i: int) -> dict[str, object]:
        return {"_id": uuid.uuid4().hex, "title": f"Jalan {i}", "body": "x" * 90, "n": i}

    await coll.insert_one(doc(-1))
    t0 = time.perf_counter()
    for i in range(count):
        await coll.insert_one(doc(i))
    sequential = count / (time.perf_counter() - t0)
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            await coll.insert_one(doc(queue.pop()))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    concurrent = count / (time.perf_counter() - t0)
    await client.drop_database("bench_raw")
    await client.close()
    return sequential, concurrent


def group_commit(metrics_port: int) -> str:
    """Mean complaints per shared write and mean write time, from intake's own metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        samples = {
            s.name: s.value
            for family in text_string_to_metric_families(r.read().decode())
            for s in family.samples
            if "le" not in s.labels
        }
    writes = samples.get("lapor_intake_group_commit_size_count", 0) or 1
    size = samples.get("lapor_intake_group_commit_size_sum", 0) / writes
    ms = samples.get("lapor_intake_group_commit_seconds_sum", 0) * 1000 / writes
    return f"{size:.1f} complaints per insert_many on average, {ms:.1f} ms per write"


async def outbox_drained(uri: str, patience: float = 120) -> None:
    client: AsyncMongoClient = AsyncMongoClient(uri)  # type: ignore[type-arg]
    complaints = client["lapor_intake"]["complaints"]
    queue = client["lapor_intake"]["complaints_outbox"]
    for _ in range(int(patience / 0.5)):
        if not await complaints.count_documents(
            {"_outbox_pending": True}, limit=1
        ) and not await queue.count_documents({}, limit=1):
            break
        await asyncio.sleep(0.5)  # noqa: ASYNC110 - polling another process's database
    await client.close()


async def stored_ids(uri: str, ids: list[str]) -> int:
    client: AsyncMongoClient = AsyncMongoClient(uri)  # type: ignore[type-arg]
    n = await client["lapor_intake"]["complaints"].count_documents({"_id": {"$in": ids}})
    await client.close()
    return n


async def measure(
    stack: Stack, key: str, count: int, concurrency: int, pool: ProcessPoolExecutor, clients: int
) -> None:
    intake = stack.services["intake"]
    process = psutil.Process(intake.popen.pid)
    address = intake.grpc_address
    loop = asyncio.get_running_loop()

    def parallel(n: int, pace: float = 0.0) -> Awaitable[Burst]:
        run = uuid.uuid4().hex[:8]
        return loop.run_in_executor(
            None, parallel_burst, pool, clients, address, key, n, concurrency, run, pace
        )

    async with grpc.aio.insecure_channel(address) as channel:
        stub = intake_pb2_grpc.IntakeServiceStub(channel)
        await parallel(clients * 100)  # warm up the client processes and intake
        cpu0 = sum(process.cpu_times()[:2])
        began = time.perf_counter()
        b = await parallel(count)
        # Sustained means the relay keeps up too: the burst counts as done when the last
        # of its events has left the outbox.
        await outbox_drained(stack.mongodb_uri)
        published = len(b.acked) / (time.perf_counter() - began)
        cpu_ms = (sum(process.cpu_times()[:2]) - cpu0) * 1000 / max(len(b.acked), 1)
        rate = len(b.acked) / b.seconds
        print(
            f"burst         : {len(b.acked)} acknowledged, {b.errors} errors, {concurrency} in "
            f"flight from {clients} client processes"
        )
        print(
            f"sustained     : {rate:8.0f} complaints/s acknowledged, {published:.0f}/s "
            "acknowledged and published (the burst's last event out of the outbox)"
        )
        print(
            f"latency       : p50 {pct(b.latencies, 0.5):6.1f} ms   p99 {pct(b.latencies, 0.99):6.1f} ms"
        )
        print(f"intake CPU    : {cpu_ms:8.2f} ms per complaint (acknowledged and published)")
        # The raw rate on a quiet database, the relay done with the burst (an earlier version
        # measured it while the relay still worked through the burst: a third of this rate).
        seq, conc = await raw_inserts(stack.mongodb_uri, min(count, 2000), concurrency)
        print(
            f"raw insert_one: {seq:8.0f} /s sequential   {conc:8.0f} /s with {concurrency} in flight"
        )
        best = max(seq, conc)
        verdict = "meets" if rate >= 1.5 * best else "MISSES"
        print(
            f"ratio         : {rate / best:8.2f}x the better raw rate ({verdict} the 1.5x target)"
        )
        await outbox_drained(stack.mongodb_uri)  # steady state: nothing left from the raw run
        half = await parallel(max(int(rate / 2 * 8), 200), pace=rate / 2)
        p99 = pct(half.latencies, 0.99)
        print(
            f"half load     : {rate / 2:8.0f} /s paced, p50 {pct(half.latencies, 0.5):5.1f} ms"
            f"   p99 {p99:5.1f} ms ({'meets' if p99 < 100 else 'MISSES'} the 100 ms target)"
        )
        print(f"group commit  : {group_commit(intake.ports['metrics'])}")
        # SIGKILL mid-burst: every acknowledged id must be stored
        run = uuid.uuid4().hex[:8]
        task = asyncio.create_task(burst(stub, key, count, concurrency, run))
        await asyncio.sleep(max(count / rate / 3, 0.5))
        intake.popen.send_signal(signal.SIGKILL)
        killed = await task
    intake.popen.wait()
    stored = await stored_ids(stack.mongodb_uri, killed.acked)
    lost = len(killed.acked) - stored
    print(
        f"SIGKILL       : {len(killed.acked)} acknowledged before the kill, {stored} stored, "
        f"{lost} lost ({'meets' if lost == 0 else 'MISSES'} the none-lost target)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--complaints", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--clients", type=int, default=4, help="load-generating processes")
    parser.add_argument(
        "--no-limits",
        action="store_true",
        help="rate limits and duplicate detection off (to see what they cost)",
    )
    parser.add_argument(
        "--env", action="append", default=[], help="an extra intake setting NAME=VALUE"
    )
    args = parser.parse_args()
    secrets = generate()
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as work:
        stack = Stack(Path(work))
        try:
            stack.start_kafka()
            stack.start_mongo()
            env = service_env("intake", secrets)
            if args.no_limits:
                env["LAPOR_INTAKE_LIMIT_PER_CONTACT"] = "0"
                env["LAPOR_INTAKE_LIMIT_PER_CLIENT"] = "0"
                env["LAPOR_INTAKE_DEDUPE_WINDOW_SECONDS"] = "0"
            env.update(item.split("=", 1) for item in args.env)
            stack.start_service("intake", env)
            stack.wait_serving(("intake",), timeout=90)
            with ProcessPoolExecutor(args.clients, mp_context=get_context("spawn")) as pool:
                asyncio.run(
                    measure(
                        stack,
                        dev_api_key(secrets),
                        args.complaints,
                        args.concurrency,
                        pool,
                        args.clients,
                    )
                )
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
