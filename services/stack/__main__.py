"""`make run`: the whole system on the embedded stack, on this machine.

Data lives under ./data (LAPOR_DATA_DIR): the database files, a generated identity key
(kept so confidential identities stay readable across runs), logs, and stack.json with
every address. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from services.stack.devsecrets import load_or_create, service_env
from services.stack.supervisor import SERVICES, Stack, health_status

DEFAULT_PORTS = {"intake": 50051, "routing": 50052, "sla": 50053, "notify": 50054}
DEFAULT_METRICS = {"intake": 9101, "routing": 9102, "sla": 9103, "notify": 9104}


def main() -> int:
    data = Path(os.environ.get("LAPOR_DATA_DIR", "data")).resolve()
    data.mkdir(parents=True, exist_ok=True)
    stack = Stack(data, persistent_db=data / "mongodb")
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print("Starting the embedded stack ...", flush=True)
        stack.start_kafka()
        stack.start_mongo(int(os.environ.get("LAPOR_EMBEDDED_MONGODB_PORT", "27117")))
        secrets = load_or_create(data / "secrets.json")
        for name in SERVICES:
            stack.start_service(
                name,
                service_env(name, secrets),
                grpc_port=int(os.environ.get(f"LAPOR_{name.upper()}_PORT", DEFAULT_PORTS[name])),
                metrics_port=int(
                    os.environ.get(f"LAPOR_{name.upper()}_METRICS_PORT", DEFAULT_METRICS[name])
                ),
            )
        stack.wait_serving(timeout=120)
        addresses = {
            "kafka_bootstrap_servers": stack.bootstrap_servers,
            "mongodb_uri": stack.mongodb_uri,
            **{f"{n}_grpc": stack.services[n].grpc_address for n in SERVICES},
            **{
                f"{n}_metrics": f"http://127.0.0.1:{stack.services[n].ports['metrics']}/metrics"
                for n in SERVICES
            },
        }
        (data / "stack.json").write_text(json.dumps(addresses, indent=2))
        print("\nLAPOR! is running. Every service reports SERVING.\n")
        print(f"  {'Kafka (mock broker)':<22} {stack.bootstrap_servers}")
        print(f"  {'MongoDB (SecantusDB)':<22} {stack.mongodb_uri}  data: {data / 'mongodb'}")
        for n in SERVICES:
            s = stack.services[n]
            print(
                f"  {n:<22} gRPC {s.grpc_address:<18} metrics http://127.0.0.1:{s.ports['metrics']}/metrics"
            )
        print(f"\n  logs: {stack.logdir}/    addresses: {data / 'stack.json'}")
        print(
            "\nTry:  .venv/bin/lapor submit --title 'Jalan berlubang' --body 'Jalan Cipto rusak parah' --region 51.08"
        )
        print("Ctrl-C stops everything.\n", flush=True)
        while not stopping:
            for n in SERVICES:
                if stack.services[n].popen.poll() is not None:
                    print(
                        f"{n} exited ({stack.services[n].popen.returncode}); restarting", flush=True
                    )
                    stack.start_service(n)
            time.sleep(0.5)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        for n, s in stack.services.items():
            print(f"  {n}: {health_status(s.grpc_address)}", file=sys.stderr)
        return 1
    finally:
        print("Stopping ...", flush=True)
        stack.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
