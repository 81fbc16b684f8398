/**
 * The live sessions page served at `GET /`: one self-contained HTML document, no build step.
 * It lists `GET /v1/sessions`, then reads `GET /v1/events` as a stream and refetches the status
 * of each session an event names (all of them on `Resync` or a reconnect). A gateway with a
 * token answers 401: the page then asks for the token once and keeps it in `localStorage`.
 */
export const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Converge sessions</title>
<style>
  :root { color-scheme: light dark; --muted: #6b7280; --ok: #15803d; --warn: #b45309; --bad: #b91c1c; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; }
  header { display: flex; align-items: baseline; gap: 1rem; }
  h1 { font-size: 1.25rem; margin: 0; }
  #live { font-size: .85rem; color: var(--muted); }
  #live[data-state="live"] { color: var(--ok); }
  #live[data-state="reconnecting"] { color: var(--warn); }
  table { border-collapse: collapse; margin-top: 1rem; width: 100%; }
  th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #8884; white-space: nowrap; }
  th { font-weight: 600; font-size: .8rem; text-transform: uppercase; color: var(--muted); }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .running { color: var(--warn); font-weight: 600; }
  .stale { color: var(--muted); font-style: italic; }
  .timed_out { color: var(--warn); } .failed { color: var(--bad); } .completed { color: var(--ok); }
  code { font-size: .8rem; }
  #token-form { margin-top: 1rem; display: none; gap: .5rem; }
  #token-form[data-open] { display: flex; }
  #error { color: var(--bad); margin-top: .5rem; }
  #empty { color: var(--muted); margin-top: 1rem; }
</style>
</head>
<body>
<header><h1>Converge sessions</h1><span id="live" data-state="connecting">connecting…</span></header>
<form id="token-form">
  <label for="token">This gateway needs its token:</label>
  <input id="token" type="password" autocomplete="current-password" size="32">
  <button type="submit">Use token</button>
</form>
<div id="error" role="alert"></div>
<table>
  <thead><tr>
    <th>session</th><th>session id</th><th>gen</th><th>compactions</th><th>compaction</th>
    <th>context tokens</th><th>last run</th><th>updated</th>
  </tr></thead>
  <tbody id="rows"></tbody>
</table>
<div id="empty">No sessions yet.</div>
<script>
"use strict";
const rows = document.getElementById("rows");
const live = document.getElementById("live");
const errorBox = document.getElementById("error");
const form = document.getElementById("token-form");
const tokenInput = document.getElementById("token");
const TOKEN_KEY = "converge.token";
let token = localStorage.getItem(TOKEN_KEY) || "";
let stream = null;

class Unauthorized extends Error {}

const headers = () => (token ? { authorization: "Bearer " + token } : {});

async function api(path, init) {
  const response = await fetch(path, { ...init, headers: { ...headers(), ...(init && init.headers) } });
  if (response.status === 401) throw new Unauthorized((await response.json()).message);
  return response;
}

function setLive(state, text) { live.dataset.state = state; live.textContent = text; }

function time(ms) { return ms === undefined ? "" : new Date(ms).toLocaleTimeString(); }

function cell(tr, cls, text, extra) {
  const td = document.createElement("td");
  td.className = cls + (extra ? " " + extra : "");
  td.textContent = text;
  tr.appendChild(td);
  return td;
}

function render(status) {
  let tr = rows.querySelector('tr[data-key="' + CSS.escape(status.sessionKey) + '"]');
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.key = status.sessionKey;
    const keys = [...rows.children].map((r) => r.dataset.key);
    const before = [...rows.children][keys.findIndex((k) => k > status.sessionKey)];
    rows.insertBefore(tr, before || null);
  }
  if (Number(tr.dataset.updatedAt || 0) > status.updatedAt) return;
  tr.dataset.updatedAt = String(status.updatedAt);
  tr.replaceChildren();
  cell(tr, "key", status.sessionKey);
  cell(tr, "session-id", status.sessionId.slice(0, 8)).title = status.sessionId;
  cell(tr, "generation num", String(status.generation));
  cell(tr, "count num", String(status.compactionCount));
  const c = status.compaction;
  cell(tr, "compaction", c.state === "running" ? "running " + (c.compactionId || "").slice(0, 8) : "idle",
    c.state === "running" ? "running" : "");
  const t = status.tokens;
  const tokens = t.context === null ? "—" : t.context + (t.window === null ? "" : " / " + t.window);
  cell(tr, "tokens num", tokens + (t.fresh ? "" : " (stale)"), t.fresh ? "" : "stale").title =
    "as of seq " + t.asOfSeq;
  const run = status.lastRun;
  cell(tr, "last-run", run ? run.outcome + " at " + time(run.at) : "", run ? run.outcome : "");
  cell(tr, "updated", time(status.updatedAt));
  document.getElementById("empty").hidden = rows.children.length > 0;
}

async function loadAll() {
  const body = await (await api("/v1/sessions")).json();
  for (const status of body.sessions) render(status);
  document.getElementById("empty").hidden = rows.children.length > 0;
}

const pending = new Map();
function refresh(key) {
  if (pending.has(key)) { pending.set(key, true); return; }
  pending.set(key, false);
  (async () => {
    try {
      do {
        pending.set(key, false);
        const response = await api("/v1/sessions/" + encodeURIComponent(key) + "/status");
        if (response.ok) render(await response.json());
      } while (pending.get(key));
    } catch (e) { showError(e); } finally { pending.delete(key); }
  })();
}

function handle(event) {
  if (event._tag === "Resync") { loadAll().catch(showError); return; }
  if (event.sessionKey) refresh(event.sessionKey);
}

async function follow() {
  const controller = new AbortController();
  stream = controller;
  const response = await api("/v1/events", { signal: controller.signal });
  if (!response.ok || !response.body) throw new Error("the event stream answered " + response.status);
  setLive("live", "live");
  // Everything that happened before the stream opened is in this read.
  await loadAll();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\\n\\n")) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\\n");
      if (data !== "") handle(JSON.parse(data));
    }
  }
}

function showError(e) {
  if (e instanceof Unauthorized) {
    form.dataset.open = "";
    errorBox.textContent = token ? "The token was not accepted: " + e.message : "";
    setLive("locked", "needs a token");
    return;
  }
  if (e && e.name === "AbortError") return;
  errorBox.textContent = String(e && e.message ? e.message : e);
}

async function run() {
  for (;;) {
    try {
      errorBox.textContent = "";
      await follow();
    } catch (e) {
      showError(e);
      if (e instanceof Unauthorized) return;
    }
    setLive("reconnecting", "reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  token = tokenInput.value.trim();
  localStorage.setItem(TOKEN_KEY, token);
  delete form.dataset.open;
  if (stream) stream.abort();
  run();
});

run();
</script>
</body>
</html>
`
