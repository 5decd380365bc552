// semrouter dashboard: the browser side of the server-rendered pages (no build step).
// Every value from the server is written with textContent, never as HTML.
"use strict";

const POLL_MS = 2000;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmt(value, digits = 2) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
  return String(value);
}

function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

function fillTable(id, rows, cells) {
  const body = document.querySelector(`#${id} tbody`);
  if (!body) return;
  body.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    for (const cell of cells(row)) tr.append(el("td", cell));
    return tr;
  }));
}

async function getJSON(url, options) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  const payload = await response.json();
  if (!response.ok) throw new Error(payload.error ? payload.error.message : response.statusText);
  return payload;
}

// --- live traffic ---------------------------------------------------------------------------

const charts = {};

function drawChart(id, times, series) {
  const target = document.getElementById(id);
  // Two points make a line; with one, uPlot's time axis would span years.
  if (!target || typeof uPlot === "undefined" || times.length < 2) return;
  const names = Object.keys(series);
  const key = names.join("|");
  const payload = [times, ...names.map((n) => series[n])];
  const existing = charts[id];
  if (existing && existing.key === key) {
    existing.plot.setData(payload);
    return;
  }
  if (existing) existing.plot.destroy();
  const palette = ["#2e6be6", "#f79009", "#12b76a", "#9e77ed", "#f04438", "#0ba5ec", "#667085"];
  const options = {
    width: Math.max(target.clientWidth - 8, 300),
    height: 240,
    series: [{}, ...names.map((n, i) => ({ label: n, stroke: palette[i % palette.length], spanGaps: false }))],
    scales: { x: { time: true, range: (u, min, max) => [Math.min(min, max - 60), max] } },
    axes: [{}, { size: 60 }],
    legend: { live: false },
  };
  charts[id] = { key, plot: new uPlot(options, payload, target) };
}

function showStats(s) {
  document.getElementById("total-requests").textContent = fmt(s.totals.requests);
  document.getElementById("requests-per-s").textContent = fmt(s.rates.requests_per_s);
  document.getElementById("total-errors").textContent = fmt(s.totals.errors);
  document.getElementById("errors-per-s").textContent = fmt(s.rates.errors_per_s);
  document.getElementById("in-flight").textContent = fmt(s.totals.in_flight);
  document.getElementById("window").textContent = fmt(s.window_s, 0);
  fillTable("requests-table", s.requests, (r) => [r.decision, r.model, r.reasoning, fmt(r.total), fmt(r.per_s)]);
  fillTable("latency-table", s.latency, (r) => [r.metric, labelText(r.labels), fmt(r.count), fmt(r.p50_ms), fmt(r.p95_ms), fmt(r.p99_ms), r.scope]);
  fillTable("tokens-table", s.tokens, (r) => {
    const { metric, total, per_s, ...labels } = r;
    return [metric, labelText(labels), fmt(total), fmt(per_s)];
  });
  fillTable("errors-table", s.errors, (r) => [r.status, r.code, fmt(r.total), fmt(r.per_s)]);
  fillTable("metrics-table", s.metrics, (r) => [r.name, r.type, r.samples, r.help]);
  const t = s.timeline;
  const requests = Object.keys(t.requests_per_s).length ? t.requests_per_s : { "requests/s": t.errors_per_s.map(() => 0) };
  drawChart("chart-requests", t.time, { ...requests, "errors/s": t.errors_per_s });
  if (Object.keys(t.latency_ms).length) drawChart("chart-latency", t.time, t.latency_ms);
}

async function pollStats() {
  try {
    showStats(await getJSON("/api/v1/stats?window=60"));
  } catch (error) {
    document.getElementById("window").textContent = `error: ${error.message}`;
  }
}

// --- recent decisions -------------------------------------------------------------------------

async function pollRecent() {
  const r = await getJSON("/api/v1/recent");
  document.getElementById("recorded").textContent = r.recorded;
  const withContent = document.querySelectorAll("#recent-table th").length > 9;
  const known = new Set(["time", "decision", "model", "reasoning", "domain", "fired", "route-ms", "cache", "content"]);
  fillTable("recent-table", r.entries, (e) => {
    const other = Object.entries(e).filter(([k]) => !known.has(k)).map(([k, v]) => `${k}=${v}`).join(", ");
    const cells = [new Date(e.time * 1000).toLocaleTimeString(), e.decision, e.model, e.reasoning, e.domain,
      (e.fired || []).join(", "), e["route-ms"], e.cache || "", other];
    if (withContent) cells.push(e.content || "");
    return cells;
  });
}

// --- playground -------------------------------------------------------------------------------

function treeNode(node, top = true) {
  // Green: the node matched; grey: it did not. Parentheses only where they group.
  if (node.signal !== undefined) return el("span", node.signal, node.matched ? "yes" : "no");
  const span = el("span", "", node.matched ? "yes" : "no");
  if (node.operator === "NOT") {
    span.append("NOT ", treeNode(node.conditions[0], false));
    return span;
  }
  const group = !top && node.conditions.length > 1;
  if (group) span.append("(");
  node.conditions.forEach((child, i) => {
    if (i > 0) span.append(` ${node.operator} `);
    span.append(treeNode(child, false));
  });
  if (group) span.append(")");
  return span;
}

function showPlayground(result) {
  const route = result.route;
  document.getElementById("playground-result").hidden = false;
  document.getElementById("result-decision").textContent = route.decision;
  document.getElementById("result-model").textContent = route.model;
  document.getElementById("result-reasoning").textContent =
    route.reasoning ? `on${route.reasoning_effort ? ` (${route.reasoning_effort})` : ""}` : "off";
  document.getElementById("result-domain").textContent = fmt(route.domain);
  document.getElementById("result-ms").textContent = fmt(route.route_ms);
  const signals = route.signals || { scores: {}, fired: [] };
  const fired = new Set(signals.fired);
  const names = [...new Set([...Object.keys(signals.scores), ...signals.fired])];
  names.sort((a, b) => Number(fired.has(b)) - Number(fired.has(a)));
  const kinds = result.kinds || {};
  fillTable("signals-table", names, (n) => [n, kinds[n] || "", fmt(signals.scores[n], 4), fired.has(n) ? "fired" : ""]);
  document.querySelectorAll("#signals-table tbody tr").forEach((tr) => {
    if (tr.lastChild.textContent === "fired") tr.lastChild.className = "fired";
  });
  const trace = result.trace;
  let summary = `The rules choose '${trace.first_match}'.`;
  if (route.decision !== trace.first_match) summary += ` The route is '${route.decision}' (${route.fallback ? `fallback: ${route.fallback}` : route.affinity ? `affinity: ${route.affinity}` : "see the route"}).`;
  document.getElementById("trace-summary").textContent = summary;
  document.getElementById("trace").replaceChildren(...trace.steps.map((step) => {
    const li = el("li", "", step.matched ? "matched" : "");
    if (step.decision === trace.first_match) li.classList.add("chosen");
    li.dataset.decision = step.decision;
    li.append(el("div", `${step.decision} (priority ${step.priority}): ${step.matched ? "matches" : "no match"}`, "head"));
    const tree = el("div", "", "tree");
    tree.append(step.tree ? treeNode(step.tree) : el("span", "always", "yes"));
    li.append(tree);
    return li;
  }));
  document.getElementById("result-headers").textContent = JSON.stringify(result.headers, null, 2);
  document.getElementById("result-body").textContent = JSON.stringify(route.request_body, null, 2);
}

function playgroundInput() {
  const text = document.getElementById("playground-input").value;
  const mode = document.querySelector("input[name=mode]:checked").value;
  if (mode === "text") return { text };
  const parsed = JSON.parse(text);
  return Array.isArray(parsed) ? { messages: parsed } : parsed;
}

function setUpPlayground() {
  document.getElementById("playground-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("playground-error");
    error.textContent = "";
    try {
      const result = await getJSON("/api/v1/playground", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(playgroundInput()),
      });
      showPlayground(result);
    } catch (e) {
      error.textContent = e.message;
    }
  });
}

// --- policy graph -----------------------------------------------------------------------------

function setUpPolicy() {
  const svg = document.getElementById("policy-graph");
  if (!svg) return;
  const edges = [...svg.querySelectorAll(".edge")];
  const nodes = new Map([...svg.querySelectorAll(".node")].map((n) => [n.dataset.node, n]));
  function light(id) {
    // A node's paths: edges into and out of it, followed one step further each way.
    const lit = new Set([id]);
    for (const e of edges) if (e.dataset.source === id || e.dataset.target === id) {
      lit.add(e.dataset.source); lit.add(e.dataset.target);
    }
    if (id.startsWith("decision:") === false) {
      for (const e of edges) if (lit.has(e.dataset.source) && e.dataset.source.startsWith("decision:")) lit.add(e.dataset.target);
    }
    svg.classList.add("focus");
    for (const e of edges) e.classList.toggle("lit", lit.has(e.dataset.source) && lit.has(e.dataset.target) && (e.dataset.source === id || e.dataset.target === id || e.dataset.source.startsWith("decision:")));
    for (const [key, node] of nodes) node.classList.toggle("lit", lit.has(key));
  }
  for (const [key, node] of nodes) {
    node.addEventListener("mouseenter", () => light(key));
    node.addEventListener("mouseleave", () => svg.classList.remove("focus"));
  }
}

// --- start ------------------------------------------------------------------------------------

function every(fn) {
  fn();
  setInterval(fn, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "traffic") every(pollStats);
  if (page === "recent") every(pollRecent);
  if (page === "playground") setUpPlayground();
  if (page === "policy") setUpPolicy();
});
