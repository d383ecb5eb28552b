// The /ops page: polls /ops/state every second, keeps the last 10 s of snapshots, and turns their
// cumulative counts into rates and percentiles. The admin token lives in a variable only.
"use strict";

const WINDOW_MS = 10000;
const ZERO = { requests: 0, errors: 0, buckets: [], retries: 0, rejected_calls: 0 };
const snapshots = [];
let token = "";

const $ = (id) => document.getElementById(id);

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fmtRate(n) { return n === null ? "–" : n < 10 ? n.toFixed(2) : n.toFixed(0); }
function fmtPct(n) { return n === null ? "–" : (n * 100).toFixed(1) + " %"; }
function fmtSecs(s) {
  if (s === null) return "–";
  if (typeof s === "string") return s;
  return s < 1 ? (s * 1000).toFixed(s < 0.01 ? 1 : 0) + " ms" : s.toFixed(2) + " s";
}

// The snapshot ~10 s before the newest one (at least one poll apart), or null.
function baseline() {
  const newest = snapshots[snapshots.length - 1];
  for (const old of snapshots) {
    if (newest.time_ms - old.time_ms <= WINDOW_MS && old !== newest) return old;
  }
  return null;
}

// Percentile `p` of the requests between two cumulative histograms: linear inside a bucket.
function percentile(now, before, p) {
  const total = now.requests - (before ? before.requests : 0);
  if (total <= 0) return null;
  const prev = new Map((before ? before.buckets : []).map(([le, n]) => [le, n]));
  const target = p * total;
  let lower = 0, below = 0;
  for (const [le, n] of now.buckets) {
    const count = n - (prev.get(le) || 0);
    if (count >= target) {
      const inBucket = count - below;
      const frac = inBucket > 0 ? (target - below) / inBucket : 1;
      return lower + (le - lower) * Math.min(1, Math.max(0, frac));
    }
    lower = le; below = count;
  }
  return "> " + fmtSecs(lower);
}

function rates(now, before, seconds) {
  if (!before || seconds <= 0) return { req: null, err: null, errPct: null };
  const req = (now.requests - before.requests) / seconds;
  const err = (now.errors - before.errors) / seconds;
  return { req, err, errPct: req > 0 ? err / req : null };
}

function byKey(list, key) { return new Map((list || []).map((x) => [key(x), x])); }

// Breaker rows are keyed by name and updated in place, never rebuilt: a row replaced between a
// button's mousedown and mouseup would swallow an operator's click.
function renderBreakers(state, before, seconds) {
  const old = byKey(before && before.breakers, (b) => b.name);
  const body = $("breakers").tBodies[0];
  const rows = new Map([...body.rows].filter((tr) => tr.dataset.breaker).map((tr) => [tr.dataset.breaker, tr]));
  const wanted = state.breakers.length === 0 ? [emptyRow(body, "no circuit breaker in this service")] : [];
  for (const b of state.breakers) {
    const tr = rows.get(b.name) || breakerRow(b.name);
    const prev = old.get(b.name) || (before ? ZERO : null);
    const rejectedRate = prev && seconds > 0 ? (b.rejected_calls - prev.rejected_calls) / seconds : null;
    const [, side, stateCell, calls, failures, slow, rejected, rejectedPerSec, actions] = tr.cells;
    side.textContent = b.side;
    const span = stateCell.firstChild;
    span.className = "state state-" + b.state;
    span.dataset.state = b.state;
    span.textContent = b.state.replace("_", " ");
    calls.textContent = String(b.calls);
    failures.textContent = fmtPct(b.failure_rate);
    slow.textContent = fmtPct(b.slow_call_rate);
    rejected.textContent = String(b.rejected_calls);
    rejectedPerSec.textContent = fmtRate(rejectedRate);
    if (actions.dataset.actions !== b.actions.join(" ")) {
      actions.dataset.actions = b.actions.join(" ");
      actions.replaceChildren(...b.actions.map((action) => {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = action;
        button.dataset.action = action;
        button.addEventListener("click", () => act(b.name, action));
        return button;
      }));
    }
    wanted.push(tr);
  }
  // Reorder or drop only what differs, so a stable table is left untouched.
  wanted.forEach((tr, i) => { if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] || null); });
  while (body.rows.length > wanted.length) body.deleteRow(wanted.length);
}

function breakerRow(name) {
  const tr = document.createElement("tr");
  tr.dataset.breaker = name;
  const stateCell = cell("");
  stateCell.append(document.createElement("span"));
  tr.append(cell(name, "name"), cell(""), stateCell, cell(""), cell(""), cell(""), cell(""), cell(""), cell(""));
  return tr;
}

function emptyRow(body, text) {
  const existing = [...body.rows].find((tr) => tr.dataset.empty);
  if (existing) return existing;
  const tr = document.createElement("tr");
  tr.dataset.empty = "1";
  tr.append(cell(text, "muted"));
  return tr;
}

function renderTraffic(tableId, rows, oldRows, key, label, seconds, extra) {
  const old = byKey(oldRows, key);
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.append(cell("no traffic recorded yet", "muted"));
    body.append(tr);
  }
  for (const row of rows) {
    // A series missing from the baseline appeared since: it counted from zero.
    const before = old.get(key(row)) || (oldRows ? ZERO : null);
    const r = rates(row, before, seconds);
    const tr = document.createElement("tr");
    tr.append(cell(label(row), "name"), cell(fmtRate(r.req)), cell(fmtRate(r.err)), cell(fmtPct(r.errPct)));
    for (const p of [0.5, 0.9, 0.99]) tr.append(cell(fmtSecs(before ? percentile(row, before, p) : null)));
    for (const c of extra(row, before)) tr.append(c);
    body.append(tr);
  }
}

function render() {
  const state = snapshots[snapshots.length - 1];
  const before = baseline();
  const seconds = before ? (state.time_ms - before.time_ms) / 1000 : 0;
  $("service").textContent = state.service;
  document.title = state.service + " · ops";
  $("status").textContent = "updated " + new Date(state.time_ms).toLocaleTimeString() +
    (before ? " · rates over the last " + seconds.toFixed(0) + " s" : " · rates after the next poll");
  $("status").className = "muted";
  renderBreakers(state, before, seconds);
  const s = state.server;
  $("server").textContent = "in flight " + s.in_flight + " · load shed " + s.load_shed_rejected +
    " · timeouts " + s.timeouts;
  renderTraffic("routes", state.routes, before && before.routes, (r) => r.method + " " + r.route,
    (r) => r.method + " " + r.route, seconds, (row) => [cell(String(row.requests))]);
  renderTraffic("downstreams", state.downstreams, before && before.downstreams, (d) => d.name,
    (d) => d.name, seconds, (row, old) => [
      cell(fmtRate(old && seconds > 0 ? (row.retries - old.retries) / seconds : null)),
      cell(String(row.retries)), cell(String(row.retry_budget_exhausted)), cell(String(row.timeouts)),
      cell(String(row.rejected_calls)),
    ]);
  const o = state.outbox;
  $("outbox").textContent = !o ? "this service has no outbox"
    : o.error ? "cannot read the outbox: " + o.error
    : "backlog " + o.backlog + " · dead " + o.dead;
  $("outbox").className = o && (o.error || o.dead > 0) ? "error" : "";
}

async function poll() {
  try {
    const res = await fetch("/ops/state", { cache: "no-store", headers: { accept: "application/json" } });
    if (!res.ok) throw new Error("/ops/state answered " + res.status);
    const state = await res.json();
    snapshots.push(state);
    while (snapshots.length > 1 && state.time_ms - snapshots[0].time_ms > WINDOW_MS + 1500) snapshots.shift();
    render();
  } catch (err) {
    $("status").textContent = "cannot read /ops/state (" + err.message + "); retrying";
    $("status").className = "stale";
  } finally {
    setTimeout(poll, 1000);
  }
}

async function act(name, action) {
  const result = $("action-result");
  if (!token) {
    result.textContent = "enter an admin token first";
    result.className = "error";
    $("token").focus();
    return;
  }
  result.textContent = action + " " + name + "…";
  result.className = "muted";
  try {
    const res = await fetch("/ops/breakers/" + encodeURIComponent(name) + "/" + encodeURIComponent(action), {
      method: "POST", cache: "no-store", headers: { authorization: "Bearer " + token },
    });
    if (res.ok) {
      const b = await res.json();
      result.textContent = name + " is now " + b.state;
      result.className = "muted";
    } else {
      let detail = "";
      try { detail = (await res.json()).detail || ""; } catch (_) { /* not JSON */ }
      result.textContent = action + " " + name + ": " + res.status + " " + detail;
      result.className = "error";
    }
  } catch (err) {
    result.textContent = action + " " + name + " failed: " + err.message;
    result.className = "error";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").addEventListener("input", (e) => { token = e.target.value.trim(); });
  poll();
});
