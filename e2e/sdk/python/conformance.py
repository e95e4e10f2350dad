"""Courier against the official CloudEvents SDK for Python (`cloudevents` on PyPI, 2.x API).

Sends events to a running proxy with the SDK's HTTP binding in every mode Courier takes —
binary (JSON data, binary data, no data, extensions, partitionkey), structured, and a batch
(the SDK has no batch writer: a JSON array of the SDK's structured events, sent as
application/cloudevents-batch+json) — checks each answer is 200, then reads the records back
from Kafka (kafka-python) and decodes every one with the SDK's Kafka binding
(`cloudevents.core.bindings.kafka.from_binary`). Each decoded event must equal the one sent:
id, source, type, subject, time, datacontenttype, data, partitionkey and extensions. The Kafka
binary mode does not carry extension types, so extensions are compared as text; a JSON event
sent without datacontenttype comes back as application/json (the implied default, written out);
Courier adds one extension of its own, `category` ("event").

Usage: conformance.py --proxy http://127.0.0.1:8080 --bootstrap 127.0.0.1:9092 [--service NAME]
(or COURIER_PROXY_URL, COURIER_TEST_BOOTSTRAP). The last line printed is the summary:
  SUMMARY sdk=python cloudevents=2.2.0 sent=N checked=N mismatches=M
and the exit status is 0 only when every event was answered 200 and read back equal.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

import cloudevents
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from kafka import KafkaConsumer

FORMAT = JSONFormat()
# What Courier adds to every record: the event's category (`event`, `log` or `error`).
COURIER_EXTENSIONS = {"category": "event"}
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def post(url, headers, body):
    """POSTs and returns (status, parsed JSON answer or text)."""
    # No body at all for an empty one: urllib would add a form Content-Type of its own to a
    # POST with data, which the proxy would read as the event's datacontenttype.
    request = urllib.request.Request(url, data=body or None, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode("utf-8", "replace")


def expected_content_type(attributes, data):
    """The datacontenttype a reader should see: the one sent, or application/json for JSON
    data sent without one (the JSON format's implied default)."""
    ct = attributes.get("datacontenttype")
    if ct is None and isinstance(data, dict):
        return "application/json"
    return ct


def build_events(service):
    source = f"/{service}/api"
    now = datetime.now(timezone.utc)

    def event(name, data=None, **attrs):
        attributes = {
            "id": f"{service}-{name}",
            "source": source,
            "type": f"courier.sdk.{name}",
            "time": now,
        }
        attributes.update(attrs)
        return CloudEvent(attributes, data)

    binary = [
        event(
            "bin-json",
            {"amount": 5, "currency": "EUR", "lines": [1, 2]},
            datacontenttype="application/json",
            subject="café ☕ 100% \"quoted\"",
            partitionkey="cust-7",
            region="eu",
        ),
        event(
            "bin-octets",
            bytes([0, 159, 146, 150, 255]),
            datacontenttype="application/octet-stream",
            subject="octets",
        ),
        event("bin-none", None, subject="no data"),
        event(
            "bin-ext",
            {"ok": True},
            datacontenttype="application/json",
            priority=5,
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        event(
            "bin-text",
            "plain text, ünïcode",
            datacontenttype="text/plain; charset=utf-8",
        ),
    ]
    structured = [
        event(
            "st-json",
            {"amount": 7},
            datacontenttype="application/json",
            subject="Ünïcode subject",
            partitionkey="cust-9",
            region="us",
        ),
        event("st-implied-json", {"implied": "application/json"}),
        event(
            "st-octets",
            bytes([1, 2, 254, 255]),
            datacontenttype="application/octet-stream",
        ),
        event("st-none", None),
        event("st-text", "hello", datacontenttype="text/plain"),
    ]
    batch = [
        event("batch-1", {"n": 1}, datacontenttype="application/json", region="eu"),
        event("batch-2", None, subject="nothing"),
        event("batch-3", bytes([7, 8, 9, 200]), datacontenttype="application/octet-stream"),
    ]
    return binary, structured, batch


def send(proxy, binary, structured, batch):
    """Sends every event; returns the list of problems and the topics answered."""
    url = proxy.rstrip("/") + "/v1/events"
    problems, topics = [], set()
    for e in binary:
        m = ce_http.to_binary(e, FORMAT)
        status, answer = post(url, m.headers, m.body)
        if status != 200:
            problems.append(f"binary {e.get_id()}: HTTP {status}: {answer}")
        else:
            topics.add(answer["topic"])
    for e in structured:
        m = ce_http.to_structured(e, FORMAT)
        status, answer = post(url, m.headers, m.body)
        if status != 200:
            problems.append(f"structured {e.get_id()}: HTTP {status}: {answer}")
        else:
            topics.add(answer["topic"])
    body = b"[" + b",".join(ce_http.to_structured(e, FORMAT).body for e in batch) + b"]"
    status, answer = post(url, {"content-type": BATCH_CONTENT_TYPE}, body)
    if status != 200:
        problems.append(f"batch: HTTP {status}: {answer}")
    else:
        for r in answer["results"]:
            topics.add(r["topic"])
    return problems, topics


def read_records(bootstrap, topics, ids, timeout):
    """Reads `topics` from the beginning until every id in `ids` was seen (first record of
    each) or `timeout` seconds passed."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    consumer.subscribe(sorted(topics))
    records, deadline = {}, time.monotonic() + timeout
    try:
        while len(records) < len(ids) and time.monotonic() < deadline:
            for r in consumer:
                headers = dict(r.headers or [])
                rid = headers.get("ce_id", b"").decode("utf-8", "replace")
                if rid in ids and rid not in records:
                    records[rid] = r
                if len(records) == len(ids):
                    break
    finally:
        consumer.close()
    return records


def same_data(sent, got):
    if isinstance(sent, (bytes, bytearray)) and isinstance(got, str):
        # The SDK's reader gives text for a value that happens to be UTF-8.
        return bytes(sent) == got.encode("utf-8")
    return sent == got


def check(sent, record):
    """The differences between an event sent and the record's decoding, as text."""
    message = ce_kafka.KafkaMessage(
        headers={k: v for k, v in (record.headers or [])},
        key=record.key,
        value=record.value if record.value is not None else b"",
    )
    problems = []
    if record.value is None:
        problems.append("record value is null (a tombstone), not empty")
    try:
        got = ce_kafka.from_binary(message, FORMAT)
    except Exception as e:  # noqa: BLE001 - any failure to decode is a mismatch
        return [f"from_binary failed: {e!r}"]
    want_attrs = dict(sent.get_attributes())
    want_attrs.pop("datacontenttype", None)
    want_attrs = {k: v for k, v in want_attrs.items() if v is not None}
    got_attrs = dict(got.get_attributes())
    got_ct = got_attrs.pop("datacontenttype", None)
    want_ct = expected_content_type(sent.get_attributes(), sent.get_data())
    if got_ct != want_ct:
        problems.append(f"datacontenttype: sent {want_ct!r}, read {got_ct!r}")
    for name, value in COURIER_EXTENSIONS.items():
        if got_attrs.pop(name, None) != value:
            problems.append(f"extension {name}: expected {value!r} from Courier")
    for name in sorted(set(want_attrs) | set(got_attrs)):
        w, g = want_attrs.get(name), got_attrs.get(name)
        if name == "time":
            if w != g:
                problems.append(f"time: sent {w!r}, read {g!r}")
        elif (None if w is None else str(w)) != g:
            # The Kafka binary mode carries every attribute as text.
            problems.append(f"{name}: sent {w!r}, read {g!r}")
    if not same_data(sent.get_data(), got.get_data()):
        problems.append(f"data: sent {sent.get_data()!r}, read {got.get_data()!r}")
    if sent.get_extension("partitionkey") is not None and record.key != sent.get_extension(
        "partitionkey"
    ).encode("utf-8"):
        problems.append(f"key: {record.key!r}, want the partitionkey")
    return problems


def describe(record):
    headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or [])}
    return f"topic={record.topic} key={record.key!r} value={record.value!r} headers={headers}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proxy", default=os.environ.get("COURIER_PROXY_URL"))
    parser.add_argument("--bootstrap", default=os.environ.get("COURIER_TEST_BOOTSTRAP"))
    parser.add_argument("--service", default="sdkpy" + uuid.uuid4().hex[:10])
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    if not args.proxy or not args.bootstrap:
        parser.error("--proxy and --bootstrap (or COURIER_PROXY_URL, COURIER_TEST_BOOTSTRAP)")

    binary, structured, batch = build_events(args.service)
    events = binary + structured + batch
    problems, topics = send(args.proxy, binary, structured, batch)
    for p in problems:
        print(f"MISMATCH {p}")
    checked = 0
    mismatches = len(problems)
    if topics:
        ids = {e.get_id() for e in events}
        records = read_records(args.bootstrap, topics, ids, args.timeout)
        for e in events:
            record = records.get(e.get_id())
            if record is None:
                print(f"MISMATCH {e.get_id()}: no record in {sorted(topics)}")
                mismatches += 1
                continue
            checked += 1
            diffs = check(e, record)
            if diffs:
                mismatches += 1
                print(f"MISMATCH {e.get_id()}: {'; '.join(diffs)}\n    record: {describe(record)}")
            else:
                print(f"ok {e.get_id()}")
    print(
        f"SUMMARY sdk=python cloudevents={cloudevents.__version__} sent={len(events)} "
        f"checked={checked} mismatches={mismatches}"
    )
    return 0 if mismatches == 0 and checked == len(events) else 1


if __name__ == "__main__":
    sys.exit(main())
