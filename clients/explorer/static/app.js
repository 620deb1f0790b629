// The explorer page: plain JavaScript over the JSON gateway (POST /v1/{Service}/{Method}) on this origin.
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
};
const pretty = (value) => JSON.stringify(value, null, 2);
const STORE = "registry-explorer.";
const remember = (name, value) => localStorage.setItem(STORE + name, typeof value === "string" ? value : JSON.stringify(value));
const recall = (name, fallback) => {
  const raw = localStorage.getItem(STORE + name);
  if (raw === null) return fallback;
  try { return typeof fallback === "string" ? raw : JSON.parse(raw); } catch { return fallback; }
};

const state = {
  contract: null,
  methods: new Map(),
  examples: {},
  facts: null,
  current: null,
  history: recall("history", []),
  lastCall: null,
  stream: null,
  live: null,
};

// ---- metadata (remembered in this browser) ----
function metadata() {
  const headers = {};
  const key = $("md-key").value.trim();
  const board = $("md-board").value.trim();
  const school = $("md-school").value.trim();
  if (key) headers["x-sandbox-key"] = key;
  if (board) headers["x-board-code"] = board;
  if (school) headers["x-institution-code"] = school;
  return headers;
}
function adminMetadata() {
  const key = $("md-key").value.trim();
  return key ? { "x-sandbox-key": key } : {};
}
for (const [id, name] of [["md-key", "key"], ["md-board", "board"], ["md-school", "school"]]) {
  $(id).value = recall(name, "");
  $(id).addEventListener("change", () => {
    remember(name, $(id).value.trim());
    if (id !== "md-board") refreshSandbox();
  });
}

// ---- calls through the gateway ----
async function call(path, body, headers) {
  const response = await fetch(`/v1/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body ?? {}),
  });
  const payload = await response.json().catch(() => ({ error: { code: response.status, status: "UNKNOWN", message: "not JSON", details: [] } }));
  return { ok: response.ok, http: response.status, payload };
}
async function explorerGet(path, headers) {
  const response = await fetch(path, { headers });
  return { ok: response.ok, http: response.status, payload: await response.json() };
}

// Reads a text/event-stream body; calls onEvent({id, event, data}) per event. Resolves when the body ends.
async function readEvents(response, onEvent, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const item = { id: null, event: "message", data: "" };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const [field, ...rest] = line.split(":");
        const text = rest.join(":").replace(/^ /, "");
        if (field === "id") item.id = text;
        else if (field === "event") item.event = text;
        else if (field === "data") item.data += text;
      }
      if (item.data) onEvent(item);
    }
  }
}

// A resumable subscription: on a dropped connection it reconnects with Last-Event-ID, so nothing is missed or repeated.
function subscribe(path, body, headers, handlers) {
  const control = new AbortController();
  let lastEventId = null;
  let stopped = false;
  const run = async () => {
    while (!stopped) {
      try {
        const resume = lastEventId === null ? {} : { "last-event-id": lastEventId };
        const response = await fetch(`/v1/${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "text/event-stream", ...headers, ...resume },
          body: JSON.stringify(body),
          signal: control.signal,
        });
        if (!response.ok) {
          handlers.onError(await response.json());
          return;
        }
        handlers.onOpen?.(lastEventId);
        let failed = false;
        await readEvents(response, (item) => {
          const data = JSON.parse(item.data);
          if (item.event === "error") { failed = true; handlers.onError(data); return; }
          if (item.id !== null) lastEventId = item.id;
          handlers.onItem(data, item.id);
        }, control.signal);
        if (failed) return;
      } catch (error) {
        if (stopped) return;
        handlers.onDrop?.(String(error));
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 1000));
    }
  };
  run();
  return { stop() { stopped = true; control.abort(); } };
}

// ---- rendering an answer or an error with its decoded details ----
function renderError(payload) {
  const error = payload.error || {};
  const box = el("div", { class: "error", "data-testid": "error" },
    el("div", { class: "status" }, `${error.code ?? ""} ${error.status ?? "ERROR"}`),
    el("div", { class: "message" }, error.message ?? ""));
  for (const detail of error.details || []) {
    const type = (detail["@type"] || "").split("/").pop();
    if (type === "google.rpc.BadRequest") {
      const table = el("table", { class: "violations" },
        el("tr", {}, el("th", {}, "field"), el("th", {}, "reason"), el("th", {}, "description")));
      for (const v of detail.field_violations || detail.fieldViolations || []) {
        table.append(el("tr", {}, el("td", { class: "field" }, v.field || ""), el("td", { class: "reason" }, v.reason || ""), el("td", {}, v.description || "")));
      }
      box.append(el("h4", {}, "BadRequest: field violations"), table);
    } else if (type === "google.rpc.ErrorInfo") {
      box.append(el("h4", {}, "ErrorInfo"),
        el("div", {}, "register code (reason): ", el("code", { class: "register-code" }, detail.reason || ""), `  domain: ${detail.domain || ""}`));
      if (detail.metadata && Object.keys(detail.metadata).length) box.append(el("pre", {}, pretty(detail.metadata)));
    } else {
      box.append(el("h4", {}, type || "detail"), el("pre", {}, pretty(detail)));
    }
  }
  return box;
}
function showResult(result) {
  const target = $("response");
  target.replaceChildren();
  $("call-status").textContent = result.ok ? `HTTP ${result.http} OK` : `HTTP ${result.http}`;
  $("call-status").className = result.ok ? "ok" : "failed";
  target.append(result.ok ? el("pre", { class: "answer", "data-testid": "answer" }, pretty(result.payload)) : renderError(result.payload));
}

// ---- methods list and view ----
function renderMethodList() {
  const filter = $("method-filter").value.trim().toLowerCase();
  const list = $("method-list");
  list.replaceChildren();
  for (const service of state.contract.services) {
    const items = service.methods.filter((m) => !filter || m.path.toLowerCase().includes(filter));
    if (!items.length) continue;
    list.append(el("h4", { title: service.doc }, service.name.replace("registry.v1.", "")));
    for (const m of items) {
      const button = el("button", { type: "button", class: "method", "data-method": m.path, onclick: () => selectMethod(m.path) }, m.name);
      if (m.streaming) button.append(el("span", { class: "badge stream" }, "stream"));
      if (m.internal) button.append(el("span", { class: "badge internal" }, "internal"));
      if (state.current && state.current.path === m.path) button.classList.add("active");
      list.append(button);
    }
  }
}
$("method-filter").addEventListener("input", renderMethodList);

function fieldRows(typeName) {
  const message = state.contract.messages[typeName];
  const rows = [el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "description"))];
  for (const f of message ? message.fields : []) {
    const enumInfo = state.contract.enums[f.type];
    let doc = f.doc;
    if (f.oneof) doc = `(one of ${f.oneof}) ${doc}`;
    if (enumInfo) doc += `\nValues: ${enumInfo.values.map((v) => v.name).join(", ")}`;
    rows.push(el("tr", {}, el("td", { class: "field" }, f.name), el("td", { class: "type" }, `${f.repeated ? "repeated " : ""}${f.type}`), el("td", { class: "doc" }, doc)));
  }
  return rows;
}

function freshExample(path) {
  const example = structuredClone(state.examples[path] ?? {});
  // A new message each time: a repeated idempotency key would replay the first answer (which is the point of it).
  if ("idempotency_key" in example) example.idempotency_key = crypto.randomUUID();
  if ("document_id" in example) example.document_id = crypto.randomUUID();
  return example;
}

function selectMethod(path, request) {
  const m = state.methods.get(path);
  if (!m) return;
  state.current = m;
  $("welcome").hidden = true;
  $("method").hidden = false;
  $("method-title").textContent = m.path;
  $("method-badges").replaceChildren(
    ...(m.streaming ? [el("span", { class: "badge stream" }, m.resumable ? "server stream · SSE · resumable" : "server stream · SSE")] : []),
    ...(m.internal ? [el("span", { class: "badge internal" }, "internal: the registers refuse vendors")] : []));
  $("method-doc").textContent = m.doc || "(no comment in the .proto file)";
  $("request-type").textContent = m.input;
  $("fields").replaceChildren(...fieldRows(m.input));
  $("editor").value = pretty(request ?? freshExample(path));
  $("response").replaceChildren();
  $("call-status").textContent = "";
  state.lastCall = null;
  renderSnippets();
  renderMethodList();
  location.hash = path;
}
$("example").addEventListener("click", () => state.current && ($("editor").value = pretty(freshExample(state.current.path))));

function addHistory(entry) {
  state.history.unshift(entry);
  state.history = state.history.slice(0, 50);
  remember("history", state.history);
  renderHistory();
}
function renderHistory() {
  $("history").replaceChildren(...state.history.map((h) => el("li", {},
    el("button", { type: "button", class: "link", onclick: () => selectMethod(h.method, h.request) }, h.method.replace("registry.v1.", "")),
    el("span", { class: h.ok ? "ok" : "failed" }, ` ${h.status}`),
    el("span", { class: "small" }, ` ${new Date(h.at).toLocaleTimeString()}`))));
}
$("clear-history").addEventListener("click", () => { state.history = []; remember("history", []); renderHistory(); });

async function send() {
  const m = state.current;
  let request;
  try {
    request = JSON.parse($("editor").value || "{}");
  } catch (error) {
    showResult({ ok: false, http: 0, payload: { error: { code: 0, status: "EDITOR", message: `The request is not JSON: ${error.message}`, details: [] } } });
    return;
  }
  const headers = metadata();
  state.lastCall = { method: m, request, headers };
  renderSnippets();
  if (m.streaming) return openMethodStream(m, request, headers);
  $("call-status").textContent = "calling…";
  const result = await call(m.path, request, headers);
  showResult(result);
  addHistory({ at: Date.now(), method: m.path, request, ok: result.ok, status: result.ok ? "OK" : result.payload.error?.status });
  if (result.ok && /^(Seed|Reset|Create|Register|Change|End|Delete|Submit|SetClock)/.test(m.name)) refreshSandbox();
}
$("send").addEventListener("click", send);

function openMethodStream(m, request, headers) {
  state.stream?.stop();
  const list = el("ol", { class: "stream" });
  $("response").replaceChildren(list);
  $("stop").hidden = false;
  $("call-status").textContent = "streaming…";
  addHistory({ at: Date.now(), method: m.path, request, ok: true, status: "STREAM" });
  state.stream = subscribe(m.path, request, headers, {
    onItem: (item, id) => list.append(el("li", {}, el("div", { class: "small" }, `id ${id ?? "–"}`), el("pre", {}, pretty(item)))),
    onError: (payload) => { $("response").append(renderError(payload)); $("call-status").textContent = "stream failed"; },
    onDrop: () => ($("call-status").textContent = "reconnecting…"),
    onOpen: (after) => ($("call-status").textContent = after ? `resumed after ${after}` : "streaming…"),
  });
}
$("stop").addEventListener("click", () => { state.stream?.stop(); $("stop").hidden = true; $("call-status").textContent = "stopped"; });

// ---- "copy as" ----
const shellQuote = (text) => `'${text.replace(/'/g, `'\\''`)}'`;
const SNIPPETS = {
  grpcurl(c) {
    const headers = Object.entries(c.headers).map(([k, v]) => `-H ${shellQuote(`${k}: ${v}`)} `).join("");
    return `grpcurl -plaintext ${headers}\\\n  -d ${shellQuote(JSON.stringify(c.request))} \\\n  ${state.contract.grpc_address} ${c.method.path}`;
  },
  curl(c) {
    const headers = Object.entries(c.headers).map(([k, v]) => ` \\\n  -H ${shellQuote(`${k}: ${v}`)}`).join("");
    const stream = c.method.streaming ? " -N" : "";
    return `curl -sS${stream} -X POST ${location.origin}/v1/${c.method.path} \\\n  -H 'content-type: application/json'${headers} \\\n  -d ${shellQuote(JSON.stringify(c.request))}`;
  },
  Python(c) {
    const module = c.service.file.split("/").pop().replace(".proto", "");
    const service = c.method.path.split("/")[0].split(".").pop();
    const requestType = c.method.input.split(".").pop();
    const md = Object.entries(c.headers).map(([k, v]) => `(${JSON.stringify(k)}, ${JSON.stringify(v)})`).join(", ");
    const invoke = c.method.streaming
      ? `for item in stub.${c.method.name}(request, metadata=metadata):\n    print(json_format.MessageToJson(item, preserving_proto_field_name=True))`
      : `answer = stub.${c.method.name}(request, metadata=metadata)\nprint(json_format.MessageToJson(answer, preserving_proto_field_name=True))`;
    return `# pip install grpcio protobuf googleapis-common-protos grpcio-tools
# stubs from the contract download: python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. proto/registry/v1/*.proto
import grpc
from google.protobuf import json_format
from registry.v1 import ${module}_pb2, ${module}_pb2_grpc

channel = grpc.insecure_channel(${JSON.stringify(state.contract.grpc_address)})
stub = ${module}_pb2_grpc.${service}Stub(channel)
request = json_format.Parse(${JSON.stringify(JSON.stringify(c.request))}, ${module}_pb2.${requestType}())
metadata = [${md}]
${invoke}`;
  },
  Node(c) {
    const service = c.method.path.split("/")[0].split(".").pop();
    const md = Object.entries(c.headers).map(([k, v]) => `metadata.set(${JSON.stringify(k)}, ${JSON.stringify(v)});`).join("\n");
    const invoke = c.method.streaming
      ? `const call = client.${c.method.name}(request, metadata);\ncall.on("data", (item) => console.log(JSON.stringify(item)));\ncall.on("error", (error) => console.error(error.code, error.details));`
      : `client.${c.method.name}(request, metadata, (error, answer) =>\n  error ? console.error(error.code, error.details) : console.log(JSON.stringify(answer, null, 2)));`;
    return `// npm install @grpc/grpc-js @grpc/proto-loader; unzip contract.zip (the proto/ folder)
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const definition = protoLoader.loadSync(${JSON.stringify(c.service.file)}, {
  includeDirs: ["proto"], keepCase: true, longs: String, enums: String, defaults: true,
});
const registry = grpc.loadPackageDefinition(definition).registry.v1;
const client = new registry.${service}(${JSON.stringify(state.contract.grpc_address)}, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
${md}
const request = ${pretty(c.request)};
${invoke}`;
  },
};
let snippetKind = recall("snippet", "curl");
function renderSnippets() {
  const m = state.current;
  if (!m) return;
  let request = {};
  try { request = JSON.parse($("editor").value || "{}"); } catch { /* the snippet shows the last valid request */ }
  const current = state.lastCall ?? { method: m, request, headers: metadata() };
  current.service = state.contract.services.find((s) => s.name === current.method.path.split("/")[0]);
  $("snippet-tabs").replaceChildren(...Object.keys(SNIPPETS).map((kind) =>
    el("button", { type: "button", class: kind === snippetKind ? "active" : "", "data-snippet": kind,
      onclick: () => { snippetKind = kind; remember("snippet", kind); renderSnippets(); } }, kind)));
  $("snippet").textContent = SNIPPETS[snippetKind](current);
}
$("editor").addEventListener("input", () => { state.lastCall = null; renderSnippets(); });
$("copy-snippet").addEventListener("click", () => navigator.clipboard?.writeText($("snippet").textContent));

// ---- sandbox panel ----
async function refreshSandbox() {
  const headers = metadata();
  if (!headers["x-sandbox-key"]) {
    $("sandbox-info").textContent = "No sandbox key yet: create a sandbox.";
    return;
  }
  const [examples, clock] = await Promise.all([
    explorerGet("/explorer/examples", headers),
    explorerGet("/explorer/clock", adminMetadata()),
  ]);
  if (!examples.ok) {
    $("sandbox-info").replaceChildren(renderError(examples.payload));
    return;
  }
  state.examples = examples.payload.examples;
  state.facts = examples.payload.facts;
  const facts = state.facts;
  $("sandbox-info").textContent = facts.seeded
    ? `Example school ${facts.school_name} (${facts.institution_code}), offering ${facts.course_code} at ${facts.location_code}, pupil BSN ${facts.bsn}.`
    : "This sandbox has no seeded data yet: press Seed.";
  const select = $("school-select");
  const chosen = $("md-school").value.trim();
  select.replaceChildren(el("option", { value: "" }, facts.schools.length ? "(sandbox admin: no school)" : "(seed the sandbox first)"),
    ...facts.schools.map((s) => el("option", { value: s.institution_code }, `${s.institution_code} ${s.name}`)));
  select.value = chosen;
  $("school-codes").replaceChildren(...facts.schools.map((s) => el("option", { value: s.institution_code }, s.name)));
  if (clock.ok) renderClock(clock.payload);
  if (state.current && !state.lastCall) $("editor").value = pretty(freshExample(state.current.path));
  renderSnippets();
  renderCount();
}

$("school-select").addEventListener("change", () => {
  const code = $("school-select").value;
  $("md-school").value = code;
  remember("school", code);
  if (code) $("live-school").value = code;
  refreshSandbox();
});

$("sandbox-create").addEventListener("click", async () => {
  const result = await call("registry.v1.SandboxAdmin/CreateSandbox", { idempotency_key: crypto.randomUUID(), name: "explorer" }, {});
  if (!result.ok) return $("sandbox-info").replaceChildren(renderError(result.payload));
  $("md-key").value = result.payload.sandbox_key;
  remember("key", result.payload.sandbox_key);
  $("md-school").value = "";
  remember("school", "");
  addHistory({ at: Date.now(), method: "registry.v1.SandboxAdmin/CreateSandbox", request: { name: "explorer" }, ok: true, status: "OK" });
  await refreshSandbox();
  $("sandbox-info").textContent = `New sandbox ${result.payload.sandbox.sandbox_id}. Its key is in x-sandbox-key above. Press Seed for schools and pupils.`;
});
$("sandbox-seed").addEventListener("click", async () => {
  $("sandbox-info").textContent = "Seeding…";
  const result = await call("registry.v1.SandboxAdmin/SeedSandbox", { idempotency_key: crypto.randomUUID(), size: "SEED_SIZE_SMALL", seed: "1" }, adminMetadata());
  if (!result.ok) return $("sandbox-info").replaceChildren(renderError(result.payload));
  await refreshSandbox();
});
$("sandbox-reset").addEventListener("click", async () => {
  if (!confirm("Delete every record of this sandbox in every register?")) return;
  const result = await call("registry.v1.SandboxAdmin/ResetSandbox", { idempotency_key: crypto.randomUUID() }, adminMetadata());
  if (!result.ok) return $("sandbox-info").replaceChildren(renderError(result.payload));
  $("md-school").value = "";
  remember("school", "");
  await refreshSandbox();
});

function renderClock(clock) {
  $("clock-now").textContent = `${clock.today} (${new Date(clock.now).toLocaleString()})`;
  $("clock-frozen").textContent = clock.frozen ? "frozen" : "running";
  const jumps = [];
  for (const c of clock.count_dates) {
    jumps.push(el("button", { type: "button", "data-jump": `count-${c.sectors}`, title: `Freeze at 08:00 on the ${c.sectors} count date`,
      onclick: () => setClock({ freeze_at: `${c.next_count_date}T08:00:00+01:00` }) }, `→ ${c.sectors} count date ${c.next_count_date}`));
    jumps.push(el("button", { type: "button", "data-jump": `final-${c.sectors}`, title: `The correction window of ${c.window_count_date} ends ${c.correction_deadline}; the count is final from the next day`,
      onclick: () => setClock({ freeze_at: `${c.final_from}T08:00:00+01:00` }) }, `→ after its correction window (${c.final_from})`));
  }
  $("clock-jumps").replaceChildren(...jumps);
}
async function setClock(target) {
  const request = { idempotency_key: crypto.randomUUID(), ...target };
  const result = await call("registry.v1.SandboxAdmin/SetClock", request, adminMetadata());
  addHistory({ at: Date.now(), method: "registry.v1.SandboxAdmin/SetClock", request, ok: result.ok, status: result.ok ? "OK" : result.payload.error?.status });
  if (!result.ok) return $("count").replaceChildren(renderError(result.payload));
  await refreshSandbox();
}
$("clock-freeze").addEventListener("click", () => setClock({ freeze_at: new Date().toISOString() }));
$("clock-real").addEventListener("click", () => setClock({ reset_to_real_time: true }));

async function renderCount() {
  const school = $("md-school").value.trim() || state.facts?.institution_code;
  const date = state.facts?.po_count_to_read;
  if (!school || !date) return $("count").replaceChildren();
  const [year, month, day] = date.split("-").map(Number);
  const result = await call("registry.v1.RodService/GetFundingCount", { institution_code: school, count_date: { year, month, day } }, adminMetadata());
  if (!result.ok) return $("count").replaceChildren(renderError(result.payload));
  const count = result.payload;
  const final = count.status === "FUNDING_STATUS_FINAL";
  $("count").replaceChildren(el("span", { "data-testid": "funding-count" },
    `Funding count of ${school} on ${date}: ${count.funded_pupils} funded pupil(s), `, el("b", { class: final ? "final" : "" }, final ? "final (D)" : "provisional (V)")));
}

// ---- live feedback ----
function feedbackCard(item) {
  const funding = (item.funding || []).map((f) => {
    const d = f.count_date ? `${f.count_date.year}-${String(f.count_date.month).padStart(2, "0")}-${String(f.count_date.day).padStart(2, "0")}` : "";
    return `${d}: ${f.funded ? "funded" : "not funded"} (${(f.status || "").replace("FUNDING_STATUS_", "")}) ${(f.reason_codes || []).join(", ")}`;
  });
  const cause = item.cause || {};
  return el("li", { class: "feedback", "data-cursor": item.cursor },
    el("div", {}, el("b", {}, `#${item.cursor} ${item.institution_code}`), ` ${(item.outcome || "").replace("FEEDBACK_OUTCOME_", "")}`,
      el("span", { class: "small" }, ` ${(item.trigger || "").replace("FEEDBACK_TRIGGER_", "")}`)),
    el("div", { class: "small" }, `pupil ${item.pupil?.bsn || item.pupil?.onderwijsnummer || "?"} · enrolment ${item.enrolment_id.slice(0, 8)}`),
    ...funding.map((f) => el("div", { class: "funding" }, f)),
    ...(item.signals || []).map((s) => el("div", { class: "signal" }, `${s.code}: ${s.text}`)),
    cause.id ? el("button", { type: "button", class: "link cause", onclick: () => showTrail(cause, item) }, "cause trail →") : "");
}
$("live-school").value = recall("live-school", $("md-school").value);
$("live-subscribe").addEventListener("click", () => {
  const school = $("live-school").value.trim();
  remember("live-school", school);
  state.live?.stop();
  const feed = $("live-feed");
  feed.replaceChildren();
  const headers = adminMetadata();
  // From the start of the outbox: the school's backlog first, then each new feedback as it commits.
  const body = { institution_codes: school ? [school] : [] };
  $("live-status").textContent = "Connecting…";
  state.live = subscribe("registry.v1.RodService/StreamFeedback", body, headers, {
    onOpen: (resumedAfter) => ($("live-status").textContent = resumedAfter ? `Resumed after #${resumedAfter}.` : `Subscribed to ${school || "every school"}: waiting for feedback.`),
    onItem: (item) => feed.prepend(feedbackCard(item)),
    onError: (payload) => $("live-status").replaceChildren(renderError(payload)),
    onDrop: () => ($("live-status").textContent = "Connection lost: reconnecting with Last-Event-ID…"),
  });
  $("live-stop").hidden = false;
});
$("live-stop").addEventListener("click", () => { state.live?.stop(); $("live-stop").hidden = true; $("live-status").textContent = "Stopped."; });

// ---- cause trail ----
async function showTrail(cause, item) {
  $("trail-panel").hidden = false;
  const target = $("trail");
  target.replaceChildren(el("p", {}, "Following the cause…"));
  const params = new URLSearchParams({ cause_id: cause.id, trigger: cause.trigger || "" });
  if (item?.pupil?.bsn) params.set("bsn", item.pupil.bsn);
  const result = await explorerGet(`/explorer/trail?${params}`, adminMetadata());
  if (!result.ok) return target.replaceChildren(renderError(result.payload));
  const trail = result.payload;
  const kinds = { school_message: "School message (document id)", brp_message: "BRP message", rio_change: "RIO change", count_date: "Count date" };
  const parts = [el("h4", {}, `${kinds[trail.cause.kind] || trail.cause.kind}: `, el("code", {}, trail.cause.id))];
  if (trail.cause.kind === "school_message") {
    const sent = state.history.find((h) => h.request && h.request.document_id === trail.cause.id);
    parts.push(sent
      ? el("div", {}, "Sent from this browser: ", el("button", { type: "button", class: "link", onclick: () => selectMethod(sent.method, sent.request) }, sent.method.replace("registry.v1.", "")), el("pre", {}, pretty(sent.request)))
      : el("p", { class: "small" }, "The school's message (not sent from this browser)."));
  } else {
    parts.push(el("pre", {}, pretty(trail.cause.event)));
  }
  parts.push(el("h4", {}, `It caused ${trail.feedback.length} feedback at ${trail.schools.length} school(s): ${trail.schools.join(", ")}`));
  parts.push(el("ol", { class: "trail-feedback" }, ...trail.feedback.map(feedbackCard)));
  target.replaceChildren(...parts);
}
$("trail-close").addEventListener("click", () => ($("trail-panel").hidden = true));

// ---- start ----
(async () => {
  const response = await fetch("/explorer/contract");
  state.contract = await response.json();
  for (const service of state.contract.services) for (const m of service.methods) state.methods.set(m.path, m);
  renderMethodList();
  renderHistory();
  await refreshSandbox();
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (state.methods.has(wanted)) selectMethod(wanted);
  setInterval(async () => {
    if (!adminMetadata()["x-sandbox-key"]) return;
    const clock = await explorerGet("/explorer/clock", adminMetadata());
    if (clock.ok) renderClock(clock.payload);
  }, 5000);
  document.body.dataset.ready = "true";
})();
