// Courier's admin page: plain DOM, no framework, no outside network. Every figure comes from
// the admin API; every value from the server is rendered as text, never as markup.

const $ = (id) => document.getElementById(id);
const session = {
  get token() { return sessionStorage.getItem("courier.token") || ""; },
  get name() { return sessionStorage.getItem("courier.name") || ""; },
  set(token, name) { sessionStorage.setItem("courier.token", token); sessionStorage.setItem("courier.name", name); },
  clear() { sessionStorage.removeItem("courier.token"); sessionStorage.removeItem("courier.name"); },
};

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : String(c ?? ""));
  return el;
}

function toast(message, error = false) {
  const t = $("toast");
  t.textContent = message;
  t.className = error ? "show error" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, 5000);
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${session.token}`, "x-courier-actor": session.name };
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(`/admin/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (resp.status === 401) { showLogin("The admin token was refused."); }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

const number = (n) => (typeof n === "number" ? n.toLocaleString("en") : "–");
const when = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");

// ---- sign in ----

function showLogin(message = "") {
  $("app").hidden = true; $("tabs").hidden = true; $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  stopPolling();
}

async function signIn(token, name) {
  session.set(token, name);
  try {
    await api("GET", "/policy");
  } catch (e) {
    session.clear();
    showLogin(e.status === 401 ? "The admin token was refused." : e.message);
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false; $("tabs").hidden = false; $("who").hidden = false;
  $("who-name").textContent = session.name;
  startPolling();
  show("topics");
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn($("login-token").value, $("login-name").value.trim());
});
$("sign-out").addEventListener("click", () => { session.clear(); showLogin(); });

// ---- tabs ----

const loaders = { topics: loadTopics, policy: loadPolicy, dlq: loadDlq, keys: loadKeys, schemas: loadSchemas, audit: loadAudit };

function show(tab) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${tab}`;
  loaders[tab]().catch((e) => toast(e.message, true));
}
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.tab));

// ---- live stats ----

let poller = null;
function startPolling() { stopPolling(); refreshStats(); poller = setInterval(refreshStats, 2000); }
function stopPolling() { if (poller) clearInterval(poller); poller = null; }

async function refreshStats() {
  let stats;
  try { stats = await api("GET", "/stats"); } catch { return; }
  const history = stats.history;
  const rates = [];
  for (let i = 1; i < history.length; i++) {
    const dt = Math.max((history[i].at_ms - history[i - 1].at_ms) / 1000, 0.001);
    const rate = (k) => Math.max(0, (history[i][k] - history[i - 1][k]) / dt);
    rates.push({ received: rate("received"), delivered: rate("delivered") + rate("redelivered"), stored: rate("stored"), refused: rate("refused") });
  }
  const last = rates[rates.length - 1] || { received: 0, delivered: 0, stored: 0, refused: 0 };
  for (const k of ["received", "delivered", "stored", "refused"]) $(`rate-${k}`).textContent = number(Math.round(last[k]));
  $("dlq-pending").textContent = number(stats.dlq.pending);
  $("dlq-parked").textContent = number(stats.dlq.parked);
  const peak = Math.max(1, ...rates.map((r) => Math.max(r.received, r.delivered, r.stored)));
  $("chart-peak").textContent = number(Math.round(peak));
  for (const k of ["received", "delivered", "stored"]) {
    const span = Math.max(rates.length - 1, 59);
    const points = rates.map((r, i) => `${(i / span) * 600},${120 - (r[k] / peak) * 115}`).join(" ");
    $(`line-${k}`).setAttribute("points", points);
  }
}

// ---- topics ----

let templates = [];
let topics = [];

async function loadTopics() {
  const [list, policy] = await Promise.all([api("GET", "/topics"), api("GET", "/policy")]);
  topics = list.topics;
  templates = policy.policy.templates;
  const select = $("create-template");
  const chosen = select.value;
  select.replaceChildren(h("option", { value: "" }, "by name (pattern match)"),
    ...templates.map((t) => h("option", { value: t.name }, `${t.name} — ${t.pattern}, ${t.partitions} partitions`)));
  select.value = chosen;
  renderTopics();
}

function renderTopics() {
  const filter = $("topic-filter").value.trim();
  const internal = $("show-internal").checked;
  const rows = topics
    .filter((t) => (internal || !t.internal) && t.name.includes(filter))
    .map((t) => h("tr", { "data-topic": t.name, onclick: () => loadDetail(t.name).catch((e) => toast(e.message, true)) },
      h("td", {}, h("a", { href: `#topic/${t.name}` }, t.name)),
      h("td", { class: "num" }, t.partitions),
      h("td", { class: "num" }, t.replication_factor),
      h("td", { class: "num" }, t.min_insync_replicas ?? "–"),
      h("td", {}, h("span", { class: `health ${t.health}` }, t.health)),
      h("td", { class: "num" }, number(t.end_offsets)),
      h("td", { class: "num" }, number(t.messages))));
  $("topics-table").tBodies[0].replaceChildren(...rows);
}
$("topic-filter").addEventListener("input", renderTopics);
$("show-internal").addEventListener("change", renderTopics);
$("refresh-topics").addEventListener("click", () => loadTopics().catch((e) => toast(e.message, true)));

$("create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { name: $("create-name").value.trim() };
  if ($("create-template").value) body.template = $("create-template").value;
  if ($("create-partitions").value) body.partitions = Number($("create-partitions").value);
  if ($("create-rf").value) body.replication_factor = Number($("create-rf").value);
  try {
    const created = await api("POST", "/topics", body);
    toast(`Created ${created.name}: ${created.partitions} partitions × ${created.replication_factor} replicas (template ${created.template})`);
    $("create-form").reset();
    await loadTopics();
    await loadDetail(created.name);
  } catch (e) { toast(e.message, true); }
});

let detailTopic = null;
async function loadDetail(name) {
  const { topic, template } = await api("GET", `/topics/${encodeURIComponent(name)}`);
  detailTopic = name;
  $("topic-detail").hidden = false;
  $("detail-name").textContent = topic.name;
  $("detail-summary").textContent = `${topic.partitions} partitions × ${topic.replication_factor} replicas, min ISR ${topic.min_insync_replicas ?? "?"}, ${topic.health}; ${number(topic.end_offsets)} records written, ${number(topic.messages)} kept; new topics of this name follow template “${template ?? "none"}”.`;
  $("detail-partitions").tBodies[0].replaceChildren(...topic.partition_list.map((p) => h("tr", {},
    h("td", { class: "num" }, p.partition), h("td", { class: "num" }, p.leader),
    h("td", {}, p.replicas.join(", ")), h("td", { class: p.isr.length < p.replicas.length ? "warn" : "" }, p.isr.join(", ")),
    h("td", { class: "num" }, number(p.start_offset)), h("td", { class: "num" }, number(p.end_offset)))));
  $("detail-groups").tBodies[0].replaceChildren(...(topic.groups.length ? topic.groups.map((g) => h("tr", {},
    h("td", {}, g.group), h("td", {}, g.state), h("td", { class: "num" }, g.members), h("td", { class: "num" }, number(g.lag))))
    : [h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No group has committed offsets on this topic."))]));
  $("detail-configs").tBodies[0].replaceChildren(...topic.configs.filter((c) => c.source === "topic").map((c) => h("tr", {},
    h("td", {}, c.name), h("td", {}, c.value ?? "(hidden)"))));
  $("delete-confirm").hidden = true;
  $("topic-detail").scrollIntoView({ behavior: "smooth", block: "start" });
}

$("alter-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const value = $("alter-value").value;
  try {
    await api("PATCH", `/topics/${encodeURIComponent(detailTopic)}/configs`, { configs: { [$("alter-key").value.trim()]: value === "" ? null : value } });
    toast(`Updated ${detailTopic}`);
    $("alter-form").reset();
    await loadDetail(detailTopic);
  } catch (e) { toast(e.message, true); }
});

$("delete-topic").addEventListener("click", () => { $("delete-confirm").hidden = false; $("delete-name").focus(); });
$("delete-go").addEventListener("click", async () => {
  if ($("delete-name").value !== detailTopic) { toast("The name typed is not this topic's.", true); return; }
  try {
    const { token } = await api("POST", `/topics/${encodeURIComponent(detailTopic)}/delete-token`);
    await api("DELETE", `/topics/${encodeURIComponent(detailTopic)}?confirm=${encodeURIComponent(token)}`);
    toast(`Deleted ${detailTopic}`);
    $("topic-detail").hidden = true;
    $("delete-name").value = "";
    await loadTopics();
  } catch (e) { toast(e.message, true); }
});

// ---- policy ----

let policyVersion = 0;
async function loadPolicy() {
  const { version, policy, persisted } = await api("GET", "/policy");
  policyVersion = version;
  $("policy-version").textContent = `version ${version}${persisted ? "" : " (not persisted: no store)"}`;
  $("policy-text").value = JSON.stringify(policy, null, 2);
  $("policy-error").textContent = "";
}
function draftPolicy() {
  try { return JSON.parse($("policy-text").value); } catch (e) { throw new Error(`The policy is not valid JSON: ${e.message}`); }
}
$("policy-reload").addEventListener("click", () => loadPolicy().catch((e) => toast(e.message, true)));
$("policy-save").addEventListener("click", async () => {
  $("policy-error").textContent = "";
  try {
    const saved = await api("PUT", "/policy", { version: policyVersion, policy: draftPolicy() });
    toast(`Policy saved as version ${saved.version}; in force for the next event.`);
    await loadPolicy();
  } catch (e) { $("policy-error").textContent = e.message; }
});
$("preview-go").addEventListener("click", async () => {
  const out = $("preview-result");
  try {
    const event = JSON.parse($("preview-event").value);
    const { preview, template } = await api("POST", "/policy/preview", { event, policy: draftPolicy() });
    const rows = [["Service", preview.service], ["Topic", preview.topic],
      ["Template", template ? `${template.name} (${template.partitions} partitions${template.replication_factor ? ` × ${template.replication_factor}` : ""})` : "none"],
      ["Allowed", preview.refusal ? `no — ${preview.refusal}` : "yes"]];
    out.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k.toLowerCase() }, v)]));
  } catch (e) {
    out.replaceChildren(h("dt", {}, "Error"), h("dd", { class: "error", "data-field": "error" }, e.message));
  }
});

// ---- dead letters ----

async function loadDlq() {
  const params = new URLSearchParams();
  if ($("dlq-state").value) params.set("state", $("dlq-state").value);
  if ($("dlq-topic").value.trim()) params.set("topic", $("dlq-topic").value.trim());
  params.set("limit", "500");
  const { events } = await api("GET", `/dlq?${params}`);
  $("dlq-all").checked = false;
  $("dlq-table").tBodies[0].replaceChildren(...(events.length ? events.map((e) => h("tr", { "data-seq": e.seq },
    h("td", {}, h("input", { type: "checkbox", class: "pick", value: e.seq, "aria-label": `Select ${e.event_id}` })),
    h("td", { class: "num" }, h("a", { href: `#dlq/${e.seq}`, onclick: (ev) => { ev.preventDefault(); inspect(e.seq); } }, e.seq)),
    h("td", {}, e.event_id), h("td", {}, e.topic), h("td", {}, h("span", { class: `state ${e.state}` }, e.state)),
    h("td", { class: "num" }, e.attempts), h("td", { class: "error-text" }, e.last_error ?? ""), h("td", {}, when(e.created_ms))))
    : [h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No stored events match."))]));
}
async function inspect(seq) {
  const e = await api("GET", `/dlq/${seq}`);
  const pre = $("dlq-inspect");
  pre.hidden = false;
  pre.textContent = JSON.stringify(e, null, 2);
}
const picked = () => [...document.querySelectorAll("#dlq-table .pick:checked")].map((c) => Number(c.value));
$("dlq-all").addEventListener("change", () => { for (const c of document.querySelectorAll("#dlq-table .pick")) c.checked = $("dlq-all").checked; });
$("dlq-refresh").addEventListener("click", () => loadDlq().catch((e) => toast(e.message, true)));
$("dlq-state").addEventListener("change", () => loadDlq().catch((e) => toast(e.message, true)));
$("dlq-replay").addEventListener("click", async () => {
  const seqs = picked();
  if (!seqs.length) { toast("Select events to replay.", true); return; }
  try {
    const r = await api("POST", "/dlq/replay", { seqs });
    toast(`Replayed ${r.replayed} event(s); the retry scheduler delivers them now.`);
    await loadDlq();
  } catch (e) { toast(e.message, true); }
});
$("dlq-discard").addEventListener("click", async () => {
  const seqs = picked();
  const reason = $("dlq-reason").value.trim();
  if (!seqs.length || !reason) { toast("Select events and give a reason to discard them.", true); return; }
  try {
    const r = await api("POST", "/dlq/discard", { seqs, reason });
    toast(`Discarded ${r.discarded} event(s); their content is kept in the audit log.`);
    await loadDlq();
  } catch (e) { toast(e.message, true); }
});

// ---- API keys ----

function showSecret(what, key) {
  $("key-once-what").textContent = what;
  $("key-secret").textContent = key;
  $("key-once").hidden = false;
}
$("key-once-close").addEventListener("click", () => { $("key-secret").textContent = ""; $("key-once").hidden = true; });

async function loadKeys() {
  const { keys } = await api("GET", `/keys${$("keys-revoked").checked ? "?revoked=true" : ""}`);
  $("keys-table").tBodies[0].replaceChildren(...(keys.length ? keys.map((k) => h("tr", { "data-key": k.id },
    h("td", {}, k.service), h("td", {}, k.label), h("td", {}, h("code", {}, k.hint)),
    h("td", {}, h("span", { class: `state ${k.state}` }, k.state),
      k.previous_until_ms ? h("small", {}, ` old secret until ${when(k.previous_until_ms)}`) : ""),
    h("td", {}, `${when(k.created_ms)} by ${k.created_by}`),
    h("td", {}, k.rotated_ms ? when(k.rotated_ms) : "–"),
    h("td", {}, k.state === "active" ? h("span", { class: "actions" },
      h("button", { type: "button", class: "rotate", onclick: () => rotateKey(k) }, "Rotate"),
      h("button", { type: "button", class: "revoke", onclick: () => revokeKey(k) }, "Revoke")) : "")))
    : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No API key yet."))]));
}
async function rotateKey(k) {
  const grace_secs = Math.max(0, Number($("key-grace").value) || 0);
  try {
    const r = await api("POST", `/keys/${encodeURIComponent(k.id)}/rotate`, { grace_secs });
    showSecret(`New secret of ${k.service}'s key ${k.label ? `(${k.label})` : ""}; the old one is ${grace_secs ? `accepted for ${grace_secs} s more` : "refused from now on"}.`, r.key);
    await loadKeys();
  } catch (e) { toast(e.message, true); }
}
async function revokeKey(k) {
  if (!window.confirm(`Revoke ${k.service}'s key ${k.hint}? Requests with it are refused at once.`)) return;
  try {
    await api("POST", `/keys/${encodeURIComponent(k.id)}/revoke`);
    toast(`Revoked ${k.service}'s key ${k.hint}.`);
    await loadKeys();
  } catch (e) { toast(e.message, true); }
}
$("key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await api("POST", "/keys", { service: $("key-service").value.trim(), label: $("key-label").value.trim() });
    showSecret(`Key of service ${r.api_key.service}.`, r.key);
    $("key-form").reset();
    await loadKeys();
  } catch (e) { toast(e.message, true); }
});
$("keys-refresh").addEventListener("click", () => loadKeys().catch((e) => toast(e.message, true)));
$("keys-revoked").addEventListener("change", () => loadKeys().catch((e) => toast(e.message, true)));

// ---- schemas ----

const schemaPath = (service, type) => `/schemas/${encodeURIComponent(service)}/${encodeURIComponent(type)}`;

async function loadSchemas() {
  const { types, policy, bounds } = await api("GET", "/schemas");
  $("schema-bounds").textContent = `${number(bounds.max_schema_bytes)} bytes per schema, ${bounds.max_versions} versions per type, ${number(bounds.max_types)} types`;
  $("schemas-table").tBodies[0].replaceChildren(...(types.length ? types.map((t) => {
    const onInvalid = policy.on_invalid[t.service] || "reject";
    const select = h("select", { class: "on-invalid", "aria-label": `Invalid events of ${t.service}`, onchange: (ev) => setOnInvalid(t.service, ev.target.value) },
      h("option", { value: "reject" }, "refused (422)"),
      h("option", { value: "error-topic" }, `to ${t.service}'s error topic`));
    select.value = onInvalid;
    return h("tr", { "data-service": t.service, "data-type": t.type },
      h("td", {}, t.service), h("td", {}, t.type), h("td", { class: "versions" }, t.versions.join(", ")),
      h("td", {}, h("code", {}, t.dataschema)), h("td", {}, when(t.updated_ms)), h("td", {}, select),
      h("td", {}, h("span", { class: "actions" },
        h("button", { type: "button", class: "view", onclick: () => viewSchemas(t) }, "View"),
        h("button", { type: "button", class: "revoke delete", onclick: () => deleteSchemas(t) }, "Delete"))));
  }) : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No schema yet: events pass unchecked."))]));
}
async function viewSchemas(t) {
  const { versions } = await api("GET", schemaPath(t.service, t.type));
  const pre = $("schema-view");
  pre.hidden = false;
  pre.textContent = versions.map((v) => `# version ${v.version} — ${v.dataschema}, by ${v.created_by} at ${when(v.created_ms)}\n${JSON.stringify(v.schema, null, 2)}`).join("\n\n");
}
async function deleteSchemas(t) {
  if (!window.confirm(`Delete every schema version of ${t.service}'s ${t.type}? Its events are no longer checked.`)) return;
  try {
    const r = await api("DELETE", schemaPath(t.service, t.type));
    toast(`Deleted ${r.deleted} version(s) of ${t.service}'s ${t.type}.`);
    $("schema-view").hidden = true;
    await loadSchemas();
  } catch (e) { toast(e.message, true); }
}
async function setOnInvalid(service, on_invalid) {
  try {
    await api("PUT", `/schemas-policy/${encodeURIComponent(service)}`, { on_invalid });
    toast(on_invalid === "reject" ? `Invalid events of ${service} are refused (422).` : `Invalid events of ${service} go to its error topic.`);
  } catch (e) { toast(e.message, true); }
  await loadSchemas();
}
$("schema-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("schema-error").textContent = "";
  try {
    let schema;
    try { schema = JSON.parse($("schema-text").value); } catch (e) { throw new Error(`The schema is not valid JSON: ${e.message}`); }
    const v = await api("POST", schemaPath($("schema-service").value.trim(), $("schema-type").value.trim()), { schema });
    toast(`Registered version ${v.version}: ${v.dataschema}`);
    await loadSchemas();
  } catch (e) { $("schema-error").textContent = e.message; }
});
$("schemas-refresh").addEventListener("click", () => loadSchemas().catch((e) => toast(e.message, true)));

// ---- audit log ----

function change(entry) {
  if (!entry.before && !entry.after) return "";
  return h("details", {}, h("summary", {}, "before / after"),
    h("div", { class: "diff" },
      h("pre", {}, entry.before ? JSON.stringify(entry.before, null, 2) : "—"),
      h("pre", {}, entry.after ? JSON.stringify(entry.after, null, 2) : "—")));
}
async function loadAudit() {
  const action = $("audit-action").value.trim();
  const { entries } = await api("GET", `/audit?limit=200${action ? `&action=${encodeURIComponent(action)}` : ""}`);
  $("audit-table").tBodies[0].replaceChildren(...(entries.length ? entries.map((e) => h("tr", {},
    h("td", {}, when(e.at_ms)), h("td", {}, e.actor), h("td", {}, e.action), h("td", {}, e.target),
    h("td", { class: e.outcome === "ok" ? "" : "error-text" }, e.outcome), h("td", {}, change(e))))
    : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No admin action yet."))]));
}
$("audit-refresh").addEventListener("click", () => loadAudit().catch((e) => toast(e.message, true)));
$("audit-action").addEventListener("change", () => loadAudit().catch((e) => toast(e.message, true)));

// ---- start ----

if (session.token) signIn(session.token, session.name); else showLogin();
