// The admin page in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), against a real proxy process and the real Kafka cluster of the test run
// (COURIER_TEST_BOOTSTRAP). An operator signs in, creates a topic from a template and sees it
// listed with its partitions, raises a topic's size limit, previews the policy, discards a
// parked event with a reason, replays another (then delivered), watches the live chart draw
// real traffic, manages API keys and event schemas, deletes a topic (then gone from Kafka),
// and finds every action in the audit log.
//
// Screenshots go to COURIER_TEST_SCREENSHOT_DIR when set (the README's come from
// `scripts/screenshots.sh`), else to a temporary directory.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const TOKEN = "browser-test-token";
const bootstrap = process.env.COURIER_TEST_BOOTSTRAP;
const targetDir = process.env.CARGO_TARGET_DIR || resolve(import.meta.dirname, "../../target");
const proxyBin = process.env.COURIER_PROXY_BIN || join(targetDir, "debug", "courier-proxy");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const work = mkdtempSync(join(tmpdir(), "courier-browser-"));
const shots = process.env.COURIER_TEST_SCREENSHOT_DIR || join(work, "screenshots");
mkdirSync(shots, { recursive: true });
const service = `ui${Date.now().toString(36)}`;

let proxy;
let base;
let browser;
/** The API key of `service`, made in `before`. */
let setupKey;

function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.unref();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

/** Polls `check` every 250 ms until it returns a truthy value; fails after `ms`. */
async function until(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
      if (String(e.message).includes("exited")) break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not within ${ms} ms (last: ${last})`);
}

async function admin(method, path, body) {
  const resp = await fetch(`${base}/admin/api${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "x-courier-actor": "test-setup", "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

before(async () => {
  assert.ok(bootstrap, "COURIER_TEST_BOOTSTRAP must name the test cluster (scripts/test.sh sets it)");
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  proxy = spawn(proxyBin, [], {
    env: {
      ...process.env,
      COURIER_LISTEN: `127.0.0.1:${port}`,
      COURIER_KAFKA__BOOTSTRAP_SERVERS: bootstrap,
      COURIER_KAFKA__COMPRESSION: "none",
      COURIER_ADMIN__TOKEN: TOKEN,
      COURIER_DLQ__URL: `sqlite:${join(work, "dlq.db")}`,
      COURIER_DLQ__BACKOFF_INITIAL_MS: "100",
      // Every event misses a 1 ms acknowledgement deadline and is stored, so the test can
      // make a parked event on purpose.
      COURIER_DELIVERY__ACK_TIMEOUT_MS: "1",
      RUST_LOG: "warn",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  await until("proxy ready", 60_000, async () => {
    if (proxy.exitCode !== null) throw new Error(`the proxy exited with ${proxy.exitCode}`);
    return (await fetch(`${base}/readyz`)).ok;
  });

  // A topic that takes at most 1 kB per record, and an event too large for it: stored (202),
  // then parked by the retry scheduler as a refusal that cannot pass.
  const narrow = await admin("POST", "/topics", {
    name: `${service}.narrow`, template: "default", partitions: 1, configs: { "max.message.bytes": "1000" },
  });
  assert.equal(narrow.status, 201, JSON.stringify(narrow.body));
  // Publishing needs the service's API key.
  const made = await admin("POST", "/keys", { service, label: "browser test setup" });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  setupKey = made.body.key;
  // Two of them: one to discard, one to replay.
  for (const id of ["wide-1", "wide-2"]) {
    const event = { specversion: "1.0", id, source: `/${service}`, type: "t", data: { pad: "w".repeat(5000) } };
    await until(`the wide event ${id} is stored`, 30_000, async () => {
      const resp = await fetch(`${base}/v1/topics/${service}.narrow/events`, {
        method: "POST",
        headers: { "content-type": "application/cloudevents+json", authorization: `Bearer ${setupKey}` },
        body: JSON.stringify(event),
      });
      return resp.status === 202;
    });
  }
  await until("the wide events are parked", 60_000, async () => (await admin("GET", "/dlq/counts")).body.parked === 2);

  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
});

after(async () => {
  await browser?.close();
  if (proxy && proxy.exitCode === null) {
    proxy.kill("SIGTERM");
    await new Promise((r) => { proxy.once("exit", r); setTimeout(r, 15_000); });
  }
  rmSync(work, { recursive: true, force: true, maxRetries: 3 });
});

async function signedIn(name = "operator-ui") {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.setDefaultTimeout(20_000);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(`${base}/admin`);
  await page.fill("#login-token", TOKEN);
  await page.fill("#login-name", name);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#tab-topics:not([hidden])");
  return { page, errors };
}

test("a wrong token is refused on the sign-in form", async () => {
  const page = await browser.newPage();
  await page.goto(`${base}/admin`);
  await page.fill("#login-token", "not-the-token");
  await page.fill("#login-name", "mallory");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("login-error").textContent.includes("refused"));
  assert.equal(await page.isHidden("#app"), true);
  await page.close();
});

test("an operator creates a topic from a template and sees it listed with its partitions", async () => {
  const { page, errors } = await signedIn();
  const topic = `${service}.orders`;
  await page.fill("#create-name", topic);
  await page.selectOption("#create-template", "errors");
  await page.click("#create-form button[type=submit]");
  const row = page.locator(`#topics-table tr[data-topic="${topic}"]`);
  await row.waitFor();
  assert.equal((await row.locator("td").nth(1).textContent()).trim(), "3", "partitions of the errors template");
  assert.equal((await row.locator("td").nth(2).textContent()).trim(), "3", "replicas");
  await page.waitForSelector(`#detail-name:text("${topic}")`);
  assert.equal(await page.locator("#detail-partitions tbody tr").count(), 3);
  // The filter narrows the table to this test's topics (the cluster is shared).
  await page.fill("#topic-filter", service);
  assert.equal(await page.locator("#topics-table tbody tr").count(), 2);
  await page.screenshot({ path: join(shots, "admin-topics.png"), fullPage: true });

  // The API agrees with the page.
  const detail = await admin("GET", `/topics/${topic}`);
  assert.equal(detail.body.topic.partitions, 3);
  assert.equal(detail.body.topic.configs.find((c) => c.name === "min.insync.replicas").value, "2");
  assert.deepEqual(errors, []);
  await page.close();
});

test("the policy editor previews the topic a sample event gets", async () => {
  const { page, errors } = await signedIn();
  await page.click('#tabs button[data-tab="policy"]');
  await page.waitForFunction(() => document.getElementById("policy-text").value.includes("error_template"));
  await page.fill("#preview-event", JSON.stringify({ specversion: "1.0", id: "p", source: "/billing", type: "x", errortype: "Card Declined" }));
  await page.click("#preview-go");
  await page.waitForSelector('#preview-result dd[data-field="topic"]');
  assert.equal(await page.textContent('#preview-result dd[data-field="topic"]'), "billing.error.card-declined");
  assert.match(await page.textContent('#preview-result dd[data-field="template"]'), /^errors/);
  // An edit that breaks the policy is caught by the preview before anything is saved.
  const draft = JSON.parse(await page.inputValue("#policy-text"));
  draft.naming.error_template = "{service}.{errortype}";
  draft.naming.event_template = "{service}.events";
  await page.fill("#policy-text", JSON.stringify(draft, null, 2));
  await page.click("#preview-go");
  await page.waitForSelector('#preview-result dd[data-field="error"]');
  assert.match(await page.textContent('#preview-result dd[data-field="error"]'), /error template/);
  await page.click("#policy-reload");
  await page.click("#preview-go");
  await page.waitForSelector('#preview-result dd[data-field="topic"]');
  await page.screenshot({ path: join(shots, "admin-policy.png"), fullPage: true });
  assert.deepEqual(errors.filter((e) => !e.includes("400")), []);
  await page.close();
});

test("a parked event is discarded from the page with a reason, gone from the store and audited", async () => {
  const { page, errors } = await signedIn();
  await page.click('#tabs button[data-tab="dlq"]');
  const row = page.locator("#dlq-table tbody tr", { hasText: "wide-2" });
  await row.waitFor();
  assert.match(await row.textContent(), /parked/);
  await row.locator("input.pick").check();
  // No reason, no discard.
  await page.click("#dlq-discard");
  await page.waitForSelector('#toast:text("give a reason")');
  assert.equal(await row.count(), 1);
  await page.fill("#dlq-reason", "test payload, never meant for Kafka");
  await page.click("#dlq-discard");
  await page.waitForSelector('#toast:text("Discarded 1 event")');
  await page.locator("#dlq-table tbody tr", { hasText: "wide-2" }).waitFor({ state: "detached" });
  assert.equal(await page.locator("#dlq-table tbody tr", { hasText: "wide-1" }).count(), 1, "the other one stays");

  // Gone from the store, and the audit log keeps who, why and what.
  const stored = (await admin("GET", "/dlq?limit=1000")).body.events.map((e) => e.event_id);
  assert.ok(!stored.includes("wide-2") && stored.includes("wide-1"), JSON.stringify(stored));
  assert.equal((await admin("GET", "/dlq/counts")).body.parked, 1);
  const entry = (await admin("GET", "/audit?action=dlq.discard")).body.entries.find((e) => e.actor === "operator-ui");
  assert.ok(entry, "a dlq.discard entry by the operator");
  assert.equal(entry.after.reason, "test payload, never meant for Kafka");
  assert.equal(entry.after.discarded, 1);
  assert.match(JSON.stringify(entry.before), /wide-2/);
  await page.click('#tabs button[data-tab="audit"]');
  await page.locator("#audit-table tbody tr", { hasText: "dlq.discard" }).first().waitFor();
  assert.deepEqual(errors, []);
  await page.close();
});

test("a parked event is replayed from the page, delivered, and the audit log shows it", async () => {
  const { page, errors } = await signedIn();
  const narrow = `${service}.narrow`;

  // Raise the topic's limit from its detail view, so the replay can pass.
  await page.click(`#topics-table tr[data-topic="${narrow}"]`);
  await page.waitForSelector(`#detail-name:text("${narrow}")`);
  await page.fill("#alter-key", "max.message.bytes");
  await page.fill("#alter-value", "100000");
  await page.click("#alter-form button[type=submit]");
  await page.waitForSelector('#detail-configs td:text("100000")');

  await page.click('#tabs button[data-tab="dlq"]');
  const row = page.locator("#dlq-table tbody tr", { hasText: "wide-1" });
  await row.waitFor();
  assert.match(await row.textContent(), /parked/);
  await page.screenshot({ path: join(shots, "admin-dlq.png"), fullPage: true });
  await row.locator("input.pick").check();
  await page.click("#dlq-replay");
  await page.waitForSelector('#toast:text("Replayed 1 event")');

  await until("the replayed event is delivered", 60_000, async () => {
    const counts = (await admin("GET", "/dlq/counts")).body;
    return counts.pending === 0 && counts.parked === 0;
  });
  const detail = await admin("GET", `/topics/${narrow}`);
  assert.equal(detail.body.topic.end_offsets, 1, "the replayed event is in Kafka");

  await page.click('#tabs button[data-tab="audit"]');
  const replay = page.locator("#audit-table tbody tr", { hasText: "dlq.replay" });
  await replay.waitFor();
  assert.match(await replay.textContent(), /operator-ui/);
  assert.match(await replay.textContent(), /ok/);
  const alter = page.locator("#audit-table tbody tr", { hasText: "topic.alter" });
  assert.match(await alter.textContent(), new RegExp(narrow.replace(".", "\\.")));
  await alter.locator("summary").click();
  assert.match(await alter.locator(".diff").textContent(), /100000/);
  const created = page.locator("#audit-table tbody tr", { hasText: `${service}.orders` });
  assert.match(await created.first().textContent(), /topic\.create/);
  await page.screenshot({ path: join(shots, "admin-audit.png"), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

/** The status of a publish of one event from `svc` with `key`. */
async function publishWith(key, svc) {
  const resp = await fetch(`${base}/v1/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents+json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ specversion: "1.0", source: `/${svc}`, type: "key.checked" }),
    signal: AbortSignal.timeout(30_000),
  });
  return resp.status;
}

test("an operator creates, rotates and revokes an API key, and the proxy follows at once", async () => {
  const { page, errors } = await signedIn();
  page.on("dialog", (d) => d.accept());
  const svc = `${service}-keys`;
  await page.click('#tabs button[data-tab="keys"]');
  await page.fill("#key-service", svc);
  await page.fill("#key-label", "<b>ops</b> laptop");
  await page.click("#key-form button[type=submit]");
  await page.waitForSelector("#key-once:not([hidden])");
  const first = (await page.textContent("#key-secret")).trim();
  assert.match(first, /^ck_[A-Za-z0-9_-]{43}$/);
  const row = page.locator("#keys-table tbody tr", { hasText: svc });
  await row.waitFor();
  // Shown once, then only its last four characters; a label is text, never markup.
  assert.ok((await row.textContent()).includes(`ck_…${first.slice(-4)}`));
  assert.equal(await row.locator("b").count(), 0);
  assert.match(await row.textContent(), /<b>ops<\/b> laptop/);
  // Events are accepted (200, or 202: this proxy stores every event at once).
  assert.ok([200, 202].includes(await publishWith(first, svc)));
  await page.click("#key-once-close");

  await row.locator("button.rotate").click();
  await page.waitForSelector("#key-once:not([hidden])");
  const second = (await page.textContent("#key-secret")).trim();
  assert.notEqual(second, first);
  assert.equal(await publishWith(first, svc), 401, "the rotated-out secret");
  assert.ok([200, 202].includes(await publishWith(second, svc)));
  await page.screenshot({ path: join(shots, "admin-keys.png"), fullPage: true });

  await row.locator("button.revoke").click();
  await page.waitForSelector('#toast:text("Revoked")');
  assert.equal(await publishWith(second, svc), 401, "the revoked key");
  await page.check("#keys-revoked");
  await page.locator("#keys-table tbody tr", { hasText: svc }).locator(".state.revoked").waitFor();

  const audit = (await admin("GET", "/audit?action=key.")).body.entries.filter((e) => e.actor === "operator-ui");
  assert.deepEqual(audit.map((e) => e.action).slice(0, 3), ["key.revoke", "key.rotate", "key.create"]);
  assert.ok(!JSON.stringify(audit).includes(first.slice(3)) && !JSON.stringify(audit).includes(second.slice(3)));
  assert.deepEqual(errors, []);
  await page.close();
});

/** Publishes `n` small events of `service` with the setup key; returns their statuses. */
async function burst(n, type = "chart.tick") {
  const events = Array.from({ length: n }, () => ({ specversion: "1.0", source: `/${service}`, type, data: { n: 1 } }));
  const resp = await fetch(`${base}/v1/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json", authorization: `Bearer ${setupKey}` },
    body: JSON.stringify(events),
    signal: AbortSignal.timeout(30_000),
  });
  return resp.status;
}

/** The y values of a chart line (0 at the top, 120 at the bottom: no traffic). */
async function lineYs(page, id) {
  const points = (await page.getAttribute(`#${id}`, "points")) || "";
  return points.trim().split(/\s+/).filter(Boolean).map((p) => Number(p.split(",")[1]));
}

test("the live chart draws the traffic the proxy takes in", async () => {
  const { page, errors } = await signedIn();
  // Real events for a few seconds: the stats are sampled once a second, the page polls every 2.
  const started = Date.now();
  let sent = 0;
  while (Date.now() - started < 5_000) {
    assert.ok([200, 202].includes(await burst(25)));
    sent += 25;
    await new Promise((r) => setTimeout(r, 200));
  }
  const received = await until("the chart draws the traffic", 20_000, async () => {
    const ys = await lineYs(page, "line-received");
    return ys.length >= 2 && ys.some((y) => y < 100) ? ys : null;
  });
  assert.ok(received.every((y) => y >= 0 && y <= 120), `points inside the chart: ${received}`);
  // The peak the legend names is the traffic sent, in events per second (at most what was sent).
  const peak = Number((await page.textContent("#chart-peak")).replace(/,/g, ""));
  assert.ok(peak >= 20 && peak <= sent, `peak ${peak}/s of ${sent} events in 5 s`);
  // Events were taken in and either delivered or stored: one of those lines rose too.
  const delivered = await lineYs(page, "line-delivered");
  const stored = await lineYs(page, "line-stored");
  assert.ok([...delivered, ...stored].some((y) => y < 100), "delivered or stored drawn");
  await page.screenshot({ path: join(shots, "admin-chart.png") });
  assert.deepEqual(errors, []);
  await page.close();
});

/** Publishes one event of `type` with `data` from `service`; returns status and body. */
async function publishOne(type, data) {
  const resp = await fetch(`${base}/v1/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents+json", authorization: `Bearer ${setupKey}` },
    body: JSON.stringify({ specversion: "1.0", source: `/${service}`, type, data }),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: resp.status, body: await resp.json() };
}

test("an operator registers a schema, chooses where invalid events go, and deletes it", async () => {
  const { page, errors } = await signedIn();
  page.on("dialog", (d) => d.accept());
  await page.click('#tabs button[data-tab="schemas"]');
  await page.waitForSelector('#schema-bounds:text("65,536 bytes")');
  await page.fill("#schema-service", service);
  await page.fill("#schema-type", "ui.checked");
  // The default text: an object with a numeric amount.
  await page.click("#schema-form button[type=submit]");
  await page.waitForSelector('#toast:text("Registered version 1")');
  const row = page.locator(`#schemas-table tr[data-service="${service}"][data-type="ui.checked"]`);
  await row.waitFor();
  assert.equal((await row.locator("td.versions").textContent()).trim(), "1");
  assert.match(await row.textContent(), new RegExp(`courier:schema/${service}/ui\\.checked/1`));
  // A second version from the page; a broken schema is refused with the reason shown.
  await page.fill("#schema-text", '{"type": "object", "required": ["amount", "currency"]}');
  await page.click("#schema-form button[type=submit]");
  await page.waitForSelector('#toast:text("Registered version 2")');
  await page.waitForSelector(`#schemas-table tr[data-type="ui.checked"] td.versions:text("1, 2")`);
  await page.fill("#schema-text", '{"type": "sometimes"}');
  await page.click("#schema-form button[type=submit]");
  await page.waitForSelector('#schema-error:text("schema")');

  // The proxy checks events at once: valid accepted, invalid refused with the error.
  assert.ok([200, 202].includes((await publishOne("ui.checked", { amount: 1, currency: "EUR" })).status));
  const refused = await publishOne("ui.checked", { amount: 1 });
  assert.equal(refused.status, 422);
  assert.equal(refused.body.type, "urn:courier:problem:schema-violation");
  assert.match(refused.body.detail, /currency/);

  // Invalid events to the error topic, from the row's selector.
  await row.locator("select.on-invalid").selectOption("error-topic");
  await page.waitForSelector(`#toast:text("go to its error topic")`);
  assert.equal((await admin("GET", "/schemas")).body.policy.on_invalid[service], "error-topic");
  const kept = await publishOne("ui.checked", { amount: 1 });
  assert.ok([200, 202].includes(kept.status), JSON.stringify(kept.body));
  assert.equal(kept.body.topic, `${service}.error.schema-violation`);

  await row.locator("button.view").click();
  await page.waitForSelector('#schema-view:text("version 2")');
  assert.match(await page.textContent("#schema-view"), /currency/);
  await page.screenshot({ path: join(shots, "admin-schemas.png"), fullPage: true });

  await row.locator("button.delete").click();
  await page.waitForSelector('#toast:text("Deleted 2 version")');
  await row.waitFor({ state: "detached" });
  assert.ok([200, 202].includes((await publishOne("ui.checked", { anything: true })).status), "unchecked again");

  const audit = (await admin("GET", "/audit?action=schema.")).body.entries.filter((e) => e.actor === "operator-ui");
  assert.deepEqual(audit.map((e) => `${e.action} ${e.outcome === "ok" ? "ok" : "refused"}`),
    ["schema.delete ok", "schema.policy ok", "schema.register refused", "schema.register ok", "schema.register ok"]);
  assert.deepEqual(errors.filter((e) => !e.includes("400")), []);
  await page.close();
});

test("an operator deletes a topic from the page, and Kafka no longer has it", async () => {
  const { page, errors } = await signedIn();
  const topic = `${service}.orders`;
  await page.fill("#topic-filter", service);
  await page.click(`#topics-table tr[data-topic="${topic}"]`);
  await page.waitForSelector(`#detail-name:text("${topic}")`);
  await page.click("#delete-topic");
  // A wrong name deletes nothing.
  await page.fill("#delete-name", `${topic}x`);
  await page.click("#delete-go");
  await page.waitForSelector('#toast:text("not this topic")');
  assert.equal((await admin("GET", `/topics/${topic}`)).status, 200);
  await page.fill("#delete-name", topic);
  await page.click("#delete-go");
  await page.waitForSelector(`#toast:text("Deleted ${topic}")`);
  await page.locator(`#topics-table tr[data-topic="${topic}"]`).waitFor({ state: "detached" });
  // The brokers' metadata, read through the admin API, no longer has it.
  await until("the topic is gone from Kafka", 30_000, async () => (await admin("GET", `/topics/${topic}`)).status === 404);
  const listed = (await admin("GET", "/topics")).body.topics.map((t) => t.name);
  assert.ok(!listed.includes(topic));
  const entry = (await admin("GET", "/audit?action=topic.delete")).body.entries.find((e) => e.target === topic);
  assert.equal(entry?.actor, "operator-ui");
  assert.equal(entry?.outcome, "ok");
  assert.deepEqual(errors, []);
  await page.close();
});
