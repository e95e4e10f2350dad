// Courier against the official CloudEvents SDK for JavaScript (`cloudevents` on npm, v10).
//
// Sends events to a running proxy with the SDK's HTTP binding in every mode Courier takes —
// binary (`HTTP.binary`: JSON data, binary data, no data, extensions, partitionkey), structured
// (`HTTP.structured`), and a batch (the SDK reads batches but writes none: a JSON array of its
// structured events, sent as application/cloudevents-batch+json) — checks each answer is 200,
// then reads the records back from Kafka (kafkajs, with lz4js for Courier's LZ4 batches) and decodes every one with the SDK's Kafka
// binding (`Kafka.toEvent`). Each decoded event must equal the one sent: id, source, type,
// subject, time, datacontenttype, data, partitionkey and extensions. The Kafka binary mode does
// not carry extension types, so extensions are compared as text; a JSON event sent without
// datacontenttype comes back as application/json (the implied default, written out); Courier
// adds one extension of its own, `category` ("event").
//
// Usage: node conformance.mjs --proxy http://127.0.0.1:8080 --bootstrap 127.0.0.1:9092
//        [--service NAME]   (or COURIER_PROXY_URL, COURIER_TEST_BOOTSTRAP)
// The last line printed is the summary:
//   SUMMARY sdk=javascript cloudevents=10.0.0 sent=N checked=N mismatches=M
// and the exit status is 0 only when every event was answered 200 and read back equal.

import { createRequire } from "node:module";
import { randomUUID } from "node:crypto";
import { isDeepStrictEqual, parseArgs } from "node:util";

import { CloudEvent, HTTP, Kafka } from "cloudevents";
import kafkajs from "kafkajs";
import lz4 from "lz4js";

const require = createRequire(import.meta.url);
const SDK_VERSION = require("cloudevents/package.json").version;
const BATCH_CONTENT_TYPE = "application/cloudevents-batch+json";
// What Courier adds to every record: the event's category (`event`, `log` or `error`).
const COURIER_EXTENSIONS = { category: "event" };
// Courier produces LZ4 batches (kafka.compression); kafkajs reads them with a codec plugged in.
kafkajs.CompressionCodecs[kafkajs.CompressionTypes.LZ4] = () => ({
  compress: async (encoder) => Buffer.from(lz4.compress(encoder.buffer)),
  decompress: async (buffer) => Buffer.from(lz4.decompress(buffer)),
});
const ATTRIBUTES = new Set(["id", "source", "type", "specversion", "time", "subject", "dataschema"]);

const { values: args } = parseArgs({
  options: {
    proxy: { type: "string", default: process.env.COURIER_PROXY_URL },
    bootstrap: { type: "string", default: process.env.COURIER_TEST_BOOTSTRAP },
    service: { type: "string", default: `sdkjs${randomUUID().replaceAll("-", "").slice(0, 10)}` },
    timeout: { type: "string", default: "60" },
  },
});
if (!args.proxy || !args.bootstrap) {
  console.error("usage: conformance.mjs --proxy URL --bootstrap HOST:PORT [--service NAME]");
  process.exit(2);
}

function buildEvents(service) {
  const source = `/${service}/api`;
  const time = new Date().toISOString();
  const event = (name, fields) =>
    new CloudEvent({ id: `${service}-${name}`, source, type: `courier.sdk.${name}`, time, ...fields });
  // HTTP.binary writes attribute values into headers as they are (no percent-encoding), so
  // binary-mode values stay printable ASCII here; structured mode carries the others.
  const binary = [
    event("bin-json", {
      datacontenttype: "application/json",
      subject: "invoice 7 (paid)",
      partitionkey: "cust-7",
      region: "eu",
      data: { amount: 5, currency: "EUR", lines: [1, 2] },
    }),
    event("bin-octets", {
      datacontenttype: "application/octet-stream",
      subject: "octets",
      data: new Uint8Array([0, 159, 146, 150, 255]),
    }),
    event("bin-none", { subject: "no data" }),
    event("bin-ext", {
      datacontenttype: "application/json",
      priority: 5,
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      data: { ok: true },
    }),
    event("bin-text", { datacontenttype: "text/plain", data: "plain text" }),
  ];
  const structured = [
    event("st-json", {
      datacontenttype: "application/json",
      subject: "café ☕ 100% \"quoted\"",
      partitionkey: "cust-9",
      region: "us",
      data: { amount: 7 },
    }),
    event("st-implied-json", { data: { implied: "application/json" } }),
    event("st-octets", {
      datacontenttype: "application/octet-stream",
      data: new Uint8Array([1, 2, 254, 255]),
    }),
    event("st-none", {}),
    event("st-text", { datacontenttype: "text/plain", data: "hello" }),
  ];
  const batch = [
    event("batch-1", { datacontenttype: "application/json", region: "eu", data: { n: 1 } }),
    event("batch-2", { subject: "nothing" }),
    event("batch-3", {
      datacontenttype: "application/octet-stream",
      data: new Uint8Array([7, 8, 9, 200]),
    }),
  ];
  return { binary, structured, batch };
}

async function post(url, message) {
  const headers = {};
  for (const [k, v] of Object.entries(message.headers)) headers[k] = String(v);
  const response = await fetch(url, { method: "POST", headers, body: message.body });
  const text = await response.text();
  let answer = text;
  try {
    answer = JSON.parse(text);
  } catch {
    // a non-JSON answer is shown as it is
  }
  return { status: response.status, answer };
}

async function send(proxy, { binary, structured, batch }) {
  const url = `${proxy.replace(/\/$/, "")}/v1/events`;
  const problems = [];
  const topics = new Set();
  for (const [mode, events, serialize] of [
    ["binary", binary, HTTP.binary],
    ["structured", structured, HTTP.structured],
  ]) {
    for (const e of events) {
      const { status, answer } = await post(url, serialize(e));
      if (status !== 200) problems.push(`${mode} ${e.id}: HTTP ${status}: ${JSON.stringify(answer)}`);
      else topics.add(answer.topic);
    }
  }
  // HTTP.binary does not percent-encode (the HTTP binding's 3.1.3.2 asks for it): "café" goes
  // out as the Latin-1 byte E9, not UTF-8, and fetch refuses anything past U+00FF. The proxy
  // must refuse such a header with a 422 problem, never take a mangled value.
  const latin1 = HTTP.binary(
    new CloudEvent({ source: "/sdk-probe", type: "courier.sdk.latin1", subject: "café" }),
  );
  const probe = await post(url, latin1);
  if (probe.status !== 422 || !String(probe.answer?.detail).includes("ce-subject")) {
    problems.push(`binary, unencoded non-ASCII subject: want 422 naming ce-subject, got HTTP ${probe.status}: ${JSON.stringify(probe.answer)}`);
  } else {
    console.log(`note: HTTP.binary sends "café" unencoded (Latin-1); refused as it should be: ${probe.answer.detail}`);
  }
  const body = `[${batch.map((e) => HTTP.structured(e).body).join(",")}]`;
  const { status, answer } = await post(url, { headers: { "content-type": BATCH_CONTENT_TYPE }, body });
  if (status !== 200) problems.push(`batch: HTTP ${status}: ${JSON.stringify(answer)}`);
  else for (const r of answer.results) topics.add(r.topic);
  return { problems, topics };
}

/** Reads `topics` from the beginning until every id was seen (first record of each). */
async function readRecords(bootstrap, topics, ids, timeoutSecs) {
  const kafka = new kafkajs.Kafka({
    clientId: "courier-sdk-conformance",
    brokers: bootstrap.split(","),
    logLevel: kafkajs.logLevel.ERROR,
  });
  const consumer = kafka.consumer({ groupId: `courier-sdk-reader-${randomUUID()}` });
  const records = new Map();
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [...topics], fromBeginning: true });
    let done;
    const allSeen = new Promise((resolve) => (done = resolve));
    await consumer.run({
      eachMessage: async ({ topic, message }) => {
        const id = message.headers?.ce_id?.toString("utf8");
        if (ids.has(id) && !records.has(id)) records.set(id, { topic, ...message });
        if (records.size === ids.size) done();
      },
    });
    let timer;
    await Promise.race([allSeen, new Promise((resolve) => (timer = setTimeout(resolve, timeoutSecs * 1000)))]);
    clearTimeout(timer);
  } finally {
    await consumer.disconnect();
  }
  return records;
}

/** A kafkajs record as the SDK's Kafka binding reads it: text headers, the key as text. */
function kafkaMessage(record) {
  const headers = {};
  for (const [k, v] of Object.entries(record.headers ?? {})) headers[k] = v?.toString("utf8");
  return {
    headers,
    key: record.key === null ? undefined : record.key.toString("utf8"),
    value: record.value,
    body: record.value,
    timestamp: record.timestamp,
  };
}

const isBytes = (v) => v instanceof Uint8Array;
const noData = (v) => v === undefined || v === null || (isBytes(v) && v.length === 0);

function sameData(sent, got) {
  if (noData(sent)) return noData(got);
  if (isBytes(sent)) return isBytes(got) && Buffer.from(sent).equals(Buffer.from(got));
  // The binding hands text data over as the record's bytes.
  if (typeof sent === "string" && isBytes(got)) return Buffer.from(got).toString("utf8") === sent;
  return isDeepStrictEqual(sent, got);
}

function expectedContentType(sent) {
  if (sent.datacontenttype !== undefined) return sent.datacontenttype;
  return typeof sent.data === "object" && !isBytes(sent.data) ? "application/json" : undefined;
}

/** The differences between an event sent and the record's decoding, as text. */
function check(sent, record) {
  const problems = [];
  if (record.value === null) problems.push("record value is null (a tombstone), not empty");
  let got;
  try {
    got = Kafka.toEvent(kafkaMessage(record));
  } catch (e) {
    return [`Kafka.toEvent failed: ${e}`];
  }
  const gotCt = got.datacontenttype;
  if (gotCt !== expectedContentType(sent)) {
    problems.push(`datacontenttype: sent ${expectedContentType(sent)}, read ${gotCt}`);
  }
  const skip = new Set(["data", "data_base64", "datacontenttype"]);
  const want = {};
  for (const [k, v] of Object.entries(sent)) if (!skip.has(k) && v !== undefined) want[k] = v;
  const have = {};
  for (const [k, v] of Object.entries(got)) if (!skip.has(k) && v !== undefined && v !== null) have[k] = v;
  for (const [k, v] of Object.entries(COURIER_EXTENSIONS)) {
    if (have[k] !== v) problems.push(`extension ${k}: expected ${JSON.stringify(v)} from Courier`);
    delete have[k];
  }
  for (const k of new Set([...Object.keys(want), ...Object.keys(have)])) {
    const w = want[k] === undefined ? undefined : String(want[k]);
    const h = have[k] === undefined ? undefined : String(have[k]);
    if (w !== h) problems.push(`${ATTRIBUTES.has(k) ? "" : "extension "}${k}: sent ${w}, read ${h}`);
  }
  if (!sameData(sent.data, got.data)) {
    problems.push(`data: sent ${JSON.stringify(sent.data)}, read ${JSON.stringify(got.data)}`);
  }
  if (sent.partitionkey !== undefined && record.key?.toString("utf8") !== sent.partitionkey) {
    problems.push(`key: ${record.key}, want the partitionkey`);
  }
  return problems;
}

function describe(record) {
  const headers = Object.fromEntries(
    Object.entries(record.headers ?? {}).map(([k, v]) => [k, v?.toString("utf8")]),
  );
  return `topic=${record.topic} key=${record.key} value=${JSON.stringify(record.value?.toString("utf8"))} headers=${JSON.stringify(headers)}`;
}

const groups = buildEvents(args.service);
const events = [...groups.binary, ...groups.structured, ...groups.batch];
const { problems, topics } = await send(args.proxy, groups);
for (const p of problems) console.log(`MISMATCH ${p}`);
let mismatches = problems.length;
let checked = 0;
if (topics.size > 0) {
  const records = await readRecords(args.bootstrap, topics, new Set(events.map((e) => e.id)), Number(args.timeout));
  for (const e of events) {
    const record = records.get(e.id);
    if (!record) {
      console.log(`MISMATCH ${e.id}: no record in ${[...topics].join(", ")}`);
      mismatches += 1;
      continue;
    }
    checked += 1;
    const diffs = check(e, record);
    if (diffs.length > 0) {
      mismatches += 1;
      console.log(`MISMATCH ${e.id}: ${diffs.join("; ")}\n    record: ${describe(record)}`);
    } else {
      console.log(`ok ${e.id}`);
    }
  }
}
console.log(
  `SUMMARY sdk=javascript cloudevents=${SDK_VERSION} sent=${events.length} checked=${checked} mismatches=${mismatches}`,
);
process.exit(mismatches === 0 && checked === events.length ? 0 : 1);
