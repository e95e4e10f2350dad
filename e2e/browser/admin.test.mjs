// The admin page in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), against a real proxy process and the real Kafka cluster of the test run
// (COURIER_TEST_BOOTSTRAP). An operator signs in, creates a topic from a template and sees it
// listed with its partitions, raises a topic's size limit, previews the policy, replays a
// parked event (then delivered), and finds every action in the audit log.
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
  const event = { specversion: "1.0", id: "wide-1", source: `/${service}`, type: "t", data: { pad: "w".repeat(5000) } };
  await until("the wide event is stored", 30_000, async () => {
    const resp = await fetch(`${base}/v1/topics/${service}.narrow/events`, {
      method: "POST",
      headers: { "content-type": "application/cloudevents+json", authorization: `Bearer ${made.body.key}` },
      body: JSON.stringify(event),
    });
    return resp.status === 202;
  });
  await until("the wide event is parked", 60_000, async () => (await admin("GET", "/dlq/counts")).body.parked === 1);

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
