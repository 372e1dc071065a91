// The operator's console: plain JavaScript, no build step, nothing from a CDN.
// State comes from the REST API (/mam/v1) and follows the event stream (/mam/v1/events).
// A token typed in is kept for this tab only (sessionStorage) and sent as a bearer token;
// the page never shows it back, and offers releases only when one is given.
"use strict";

const API = "/mam/v1";
const HOUR = 3600;
const state = { topology: null, aggregates: [], calls: new Map(), refusals: [], history: new Map(),
                stream: null, lastId: null, refreshTimer: null };

// --- small helpers ----------------------------------------------------------------------

function token() { return sessionStorage.getItem("mam-token") || ""; }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function utc(seconds) { return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19); }

function showError(text) {
  const box = document.getElementById("error");
  box.textContent = text || "";
  box.hidden = !text;
}

async function api(path, options) {
  const headers = Object.assign({}, (options || {}).headers);
  if (token()) headers.Authorization = "Bearer " + token();
  const response = await fetch(API + path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { const body = await response.json(); message = body.error.message || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response.status === 204 ? null : response.json();
}

// --- loading ------------------------------------------------------------------------------

async function loadAll() {
  try {
    const since = Date.now() / 1000 - HOUR;
    const [topology, aggregates, calls, records] = await Promise.all([
      api("/topology"), api("/aggregates"), api("/calls"), api("/cdrs?format=json&from=" + since.toFixed(3))]);
    state.topology = topology;
    state.aggregates = aggregates.aggregates;
    state.calls = new Map(calls.calls.map(c => [c.call_id, c]));
    state.refusals = records.cdrs.filter(r => r.kind === "refusal").map(r => ({
      at: Date.parse(r.refused_at) / 1000, call_id: r.call_id, caller_community: r.caller_community,
      callee_community: r.callee_community, reason: r.reason, detail: r.detail }));
    backfillHistory(records.cdrs, calls.calls, since);
    showError("");
    renderAll();
  } catch (error) {
    showError("Cannot read the controller: " + error.message + (token() ? "" : " (a read token may be needed)"));
  }
}

// Each aggregate's use over the last hour, rebuilt from the records of calls that ended
// in it and the calls still up; then followed from the events.
function backfillHistory(records, calls, since) {
  const steps = new Map();
  const add = (aggregate, at, delta) => {
    if (!steps.has(aggregate)) steps.set(aggregate, []);
    steps.get(aggregate).push([Math.max(at, since), delta]);
  };
  for (const r of records) {
    if (r.kind !== "call" || !r.aggregate_id) continue;
    add(r.aggregate_id, Date.parse(r.admitted_at) / 1000, r.kbps);
    add(r.aggregate_id, Date.parse(r.released_at) / 1000, -r.kbps);
  }
  for (const c of calls) add(c.aggregate_id, c.admitted_at, c.kbps);
  state.history = new Map();
  for (const a of state.aggregates) {
    const points = [[since, 0]];
    let used = 0;
    for (const [at, delta] of (steps.get(a.id) || []).sort((x, y) => x[0] - y[0])) {
      points.push([at, used]);
      used += delta;
      points.push([at, used]);
    }
    state.history.set(a.id, points);
  }
}

function sample() {
  const now = Date.now() / 1000;
  for (const a of state.aggregates) {
    const points = state.history.get(a.id) || [];
    points.push([now, a.used_kbps]);
    while (points.length > 2 && points[1][0] < now - HOUR) points.shift();
    state.history.set(a.id, points);
  }
}

// Several events in a burst: one refresh of pools and links.
function refreshSoon() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(async () => {
    state.refreshTimer = null;
    try {
      const [topology, aggregates] = await Promise.all([api("/topology"), api("/aggregates")]);
      state.topology = topology;
      state.aggregates = aggregates.aggregates;
      sample();
      renderTopology();
      renderAggregates();
    } catch (error) { showError(error.message); }
  }, 250);
}

// --- the event stream ----------------------------------------------------------------------

function connect() {
  if (state.stream) state.stream.close();
  const query = [];
  if (state.lastId !== null) query.push("last_event_id=" + state.lastId);
  if (token()) query.push("access_token=" + encodeURIComponent(token()));   // EventSource sends no headers
  const source = new EventSource(API + "/events" + (query.length ? "?" + query.join("&") : ""));
  state.stream = source;
  const live = document.getElementById("live");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  const on = (type, handle) => source.addEventListener(type, message => {
    if (message.lastEventId) state.lastId = Number(message.lastEventId);
    handle(JSON.parse(message.data));
  });
  on("call.admitted", d => {
    state.calls.set(d.call_id, Object.assign({ admitted_at: d.at, fresh: true }, d));
    renderCalls();
    refreshSoon();
  });
  on("call.answered", d => {
    const call = state.calls.get(d.call_id);
    if (call) { call.state = "installing"; renderCalls(); }
  });
  on("call.released", d => { state.calls.delete(d.call_id); renderCalls(); refreshSoon(); });
  on("call.refused", d => {
    state.refusals.push(d);
    renderRefusals();
  });
  for (const change of ["created", "resized", "moved", "resized-moved", "reconfigured", "deleted"]) {
    on("aggregate." + change, () => refreshSoon());
  }
  on("link.state", () => refreshSoon());
  on("stream.reset", () => loadAll());
}

// --- rendering -------------------------------------------------------------------------------

function renderAll() { renderTopology(); renderAggregates(); renderCalls(); renderRefusals(); }

function renderTopology() {
  const graph = document.getElementById("topology-graph");
  graph.replaceChildren();
  const topology = state.topology;
  if (!topology) return;
  const names = topology.switches.map(s => s.name);
  const where = new Map();
  const radius = Math.min(160, 60 + 20 * names.length);
  names.forEach((name, i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, names.length) - Math.PI / 2;
    where.set(name, [400 + radius * 1.6 * Math.cos(angle), 210 + radius * Math.sin(angle)]);
  });
  for (const link of topology.links) {
    const [x1, y1] = where.get(link.a), [x2, y2] = where.get(link.b);
    const share = Math.max(0, ...link.directions.map(d => d.reserved_kbps / Math.max(1, link.reservable_now_kbps)));
    const group = svg("g", { "data-link": link.a + "-" + link.b });
    group.append(svg("line", { x1, y1, x2, y2, class: "link-" + link.state, "stroke-width": 3 + 9 * Math.min(1, share) }));
    const used = link.directions.map(d => d.reserved_kbps).reduce((a, b) => Math.max(a, b), 0);
    // the label beside the link's middle, on the side away from the centre of the drawing
    const [mx, my] = [(x1 + x2) / 2, (y1 + y2) / 2];
    const length = Math.hypot(x2 - x1, y2 - y1) || 1;
    let [nx, ny] = [-(y2 - y1) / length, (x2 - x1) / length];
    if (nx * (mx - 400) + ny * (my - 210) < 0) [nx, ny] = [-nx, -ny];
    group.append(svg("text", { x: mx + 14 * nx, y: my + 14 * ny + 4, "text-anchor": nx < -0.3 ? "end" : nx > 0.3 ? "start" : "middle" },
      `${link.state} · ${Math.round(100 * share)}% reserved (${used} of ${link.reservable_now_kbps} kbit/s)`));
    graph.append(group);
  }
  for (const sw of topology.switches) {
    const [x, y] = where.get(sw.name);
    const group = svg("g", { "data-switch": sw.name });
    group.append(svg("circle", { cx: x, cy: y, r: 18, fill: sw.connected ? "#e3f2fd" : "#eeeeee", stroke: "#1565c0" }));
    group.append(svg("text", { x: x - 8, y: y + 4 }, sw.name));
    graph.append(group);
  }
}

function sparkline(points, size) {
  const now = Date.now() / 1000, from = now - HOUR;
  const line = svg("svg", { class: "spark", viewBox: "0 0 120 24", "aria-label": "use over the last hour" });
  const x = t => (120 * (Math.max(t, from) - from) / HOUR).toFixed(1);
  const y = used => (23 - 22 * Math.min(1, used / Math.max(1, size))).toFixed(1);
  const xy = [];
  let previous = null;
  for (const [t, used] of points.concat([[now, points.length ? points[points.length - 1][1] : 0]])) {
    if (previous !== null) xy.push(`${x(t)},${y(previous)}`);      // a step: the level holds until it changes
    xy.push(`${x(t)},${y(used)}`);
    previous = used;
  }
  line.append(svg("polyline", { points: xy.join(" ") }));
  return line;
}

function renderAggregates() {
  const body = document.querySelector("#aggregates tbody");
  body.replaceChildren(...state.aggregates.map(a => el("tr", { "data-aggregate": a.id },
    el("td", {}, a.id), el("td", {}, a.communities.join(" ↔ ")), el("td", { class: "num" }, a.size_kbps),
    el("td", { class: "num" }, a.used_kbps), el("td", { class: "num" }, a.free_kbps), el("td", { class: "num" }, a.calls),
    el("td", {}, a.path.join("–")), el("td", {}, sparkline(state.history.get(a.id) || [], a.size_kbps)))));
  fillFilter("filter-aggregate", state.aggregates.map(a => a.id));
  fillFilter("filter-community", [...new Set(state.aggregates.flatMap(a => a.communities))]);
}

function fillFilter(id, values) {
  const select = document.getElementById(id);
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, "all"), ...values.sort().map(v => el("option", { value: v }, v)));
  select.value = values.includes(chosen) ? chosen : "";
}

function renderCalls() {
  const want = id => document.getElementById(id).value;
  const community = want("filter-community"), aggregate = want("filter-aggregate");
  const protocol = want("filter-protocol"), callState = want("filter-state");
  const shown = [...state.calls.values()].filter(c =>
    (!community || c.caller_community === community || c.callee_community === community)
    && (!aggregate || c.aggregate_id === aggregate) && (!protocol || c.protocol === protocol)
    && (!callState || c.state === callState));
  const rows = shown.map(c => {
    const button = token() ? el("button", { class: "release", onclick: () => releaseCall(c.call_id) }, "Release") : "";
    const row = el("tr", { "data-call": c.call_id, class: c.fresh ? "new" : "" },
      el("td", {}, c.call_id), el("td", {}, c.caller_community), el("td", {}, c.callee_community),
      el("td", {}, c.aggregate_id), el("td", {}, c.level), el("td", {}, c.codec || (c.media && c.media.codec) || ""),
      el("td", { class: "num" }, c.kbps), el("td", {}, c.state), el("td", {}, c.protocol), el("td", {}, utc(c.admitted_at)),
      el("td", {}, button));
    c.fresh = false;
    return row;
  });
  document.querySelector("#calls tbody").replaceChildren(...rows);
  document.getElementById("call-count").textContent = `${shown.length} of ${state.calls.size} call(s)`;
}

async function releaseCall(callId) {
  if (!confirm(`Release call ${callId}? Its bandwidth is given back and its flows removed.`)) return;
  try {
    await api("/calls/" + encodeURIComponent(callId) + "?cause=" + encodeURIComponent("released from the console"),
              { method: "DELETE" });
  } catch (error) { showError("Release refused: " + error.message); }
}

function renderRefusals() {
  const now = Date.now() / 1000;
  state.refusals = state.refusals.filter(r => r.at >= now - HOUR);
  const reasons = new Map();
  for (const r of state.refusals) reasons.set(r.reason, (reasons.get(r.reason) || 0) + 1);
  document.querySelector("#refusal-reasons tbody").replaceChildren(...[...reasons.entries()].sort((a, b) => b[1] - a[1])
    .map(([reason, count]) => el("tr", { "data-reason": reason }, el("td", {}, reason), el("td", { class: "num" }, count))));
  document.querySelector("#refusals tbody").replaceChildren(...state.refusals.slice(-50).reverse().map(r =>
    el("tr", { "data-refused": r.call_id }, el("td", {}, utc(r.at)), el("td", {}, r.call_id),
       el("td", {}, r.caller_community), el("td", {}, r.callee_community), el("td", { class: "reason" }, r.reason),
       el("td", {}, r.detail))));
  // twelve five-minute buckets, stacked by reason
  const chart = document.getElementById("refusal-chart");
  chart.replaceChildren();
  const buckets = Array.from({ length: 12 }, () => new Map());
  for (const r of state.refusals) {
    const i = Math.min(11, Math.floor((r.at - (now - HOUR)) / 300));
    buckets[i].set(r.reason, (buckets[i].get(r.reason) || 0) + 1);
  }
  const most = Math.max(1, ...buckets.map(b => [...b.values()].reduce((x, y) => x + y, 0)));
  buckets.forEach((bucket, i) => {
    let y = 160;
    for (const [reason, count] of bucket) {
      const height = 140 * count / most;
      y -= height;
      const known = ["pool-full", "path-down", "no-aggregate", "codec-not-allowed", "unknown-community",
                     "store-unavailable"].includes(reason);
      chart.append(svg("rect", { x: 20 + i * 58, y, width: 50, height, class: "reason-" + (known ? reason : "other") },
                       undefined));
    }
    chart.append(svg("text", { x: 20 + i * 58, y: 176 }, `-${60 - 5 * i}m`));
  });
  chart.append(svg("text", { x: 4, y: 14 }, `max ${most} per 5 min`));
}

// --- pages and the token -------------------------------------------------------------------------

function showPage() {
  const name = (location.hash || "#topology").slice(1);
  for (const page of document.querySelectorAll(".page")) page.classList.toggle("shown", page.id === "page-" + name);
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("current", link.dataset.page === name);
}

document.getElementById("token-form").addEventListener("submit", event => {
  event.preventDefault();
  const input = document.getElementById("token");
  if (input.value) sessionStorage.setItem("mam-token", input.value);
  input.value = "";
  input.placeholder = token() ? "token given" : "read or change token";
  loadAll();
  connect();
});
document.getElementById("token-forget").addEventListener("click", () => {
  sessionStorage.removeItem("mam-token");
  document.getElementById("token").placeholder = "read or change token";
  renderCalls();
});
for (const id of ["filter-community", "filter-aggregate", "filter-protocol", "filter-state"]) {
  document.getElementById(id).addEventListener("change", renderCalls);
}
window.addEventListener("hashchange", showPage);
setInterval(() => { sample(); renderAggregates(); renderRefusals(); }, 30000);
if (token()) document.getElementById("token").placeholder = "token given";
showPage();
loadAll().then(connect);
