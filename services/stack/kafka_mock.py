"""A local Kafka-protocol broker: librdkafka's mock cluster (bundled with confluent-kafka),
reached through ctypes. In memory only: the embedded default and the test broker, never
production. Prints one JSON line with the bootstrap address, then serves until SIGTERM.

    python -m services.stack.kafka_mock --brokers 1 --partitions 4 --topic lapor.x ...
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import signal
import sys
import threading

import confluent_kafka


def _library() -> ctypes.CDLL:
    libdir = os.path.join(
        os.path.dirname(confluent_kafka.__file__), os.pardir, "confluent_kafka.libs"
    )
    candidates = sorted(glob.glob(os.path.join(libdir, "librdkafka-*.so*")))
    if not candidates:
        raise SystemExit("librdkafka from confluent-kafka not found")
    lib = ctypes.CDLL(candidates[0])
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_topic_create.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.rd_kafka_mock_broker_set_down.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_mock_broker_set_up.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    return lib


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--topic", action="append", default=[])
    args = parser.parse_args(argv)

    lib = _library()
    err = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    lib.rd_kafka_conf_set(conf, b"log_level", b"3", err, len(err))
    handle = lib.rd_kafka_new(0, conf, err, len(err))  # RD_KAFKA_PRODUCER
    if not handle:
        raise SystemExit(f"rd_kafka_new failed: {err.value.decode()}")
    cluster = lib.rd_kafka_mock_cluster_new(handle, args.brokers)
    if not cluster:
        raise SystemExit("rd_kafka_mock_cluster_new failed")
    replication = min(3, args.brokers)
    for topic in args.topic:
        code = lib.rd_kafka_mock_topic_create(cluster, topic.encode(), args.partitions, replication)
        if code != 0:
            raise SystemExit(f"creating topic {topic} failed with code {code}")
    bootstrap = lib.rd_kafka_mock_cluster_bootstraps(cluster).decode()
    print(
        json.dumps(
            {"bootstrap_servers": bootstrap, "topics": args.topic, "partitions": args.partitions}
        ),
        flush=True,
    )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Broker fault injection for tests: "down N" / "up N" lines on stdin.
    if not sys.stdin.isatty():

        def control() -> None:
            for line in sys.stdin:
                verb, _, broker = line.strip().partition(" ")
                if verb == "down":
                    lib.rd_kafka_mock_broker_set_down(cluster, int(broker))
                elif verb == "up":
                    lib.rd_kafka_mock_broker_set_up(cluster, int(broker))
                print(json.dumps({"ok": line.strip()}), flush=True)

        threading.Thread(target=control, daemon=True).start()
    stop.wait()
    os._exit(0)  # the mock cluster holds no data worth flushing


if __name__ == "__main__":
    main()
