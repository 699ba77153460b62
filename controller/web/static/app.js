// picharge's page: live status over a WebSocket, actions and history over the JSON API.
// No framework: a few functions on the DOM. The API is described in /api/v1/openapi.json.
"use strict";

const state = { me: null, csrf: null, power: [], connectors: new Map() };
const $ = (sel, root = document) => root.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const POWER_POINTS = 300;
const MODE_WORDS = {
  fast: "Fast", solar: "Solar (surplus only)", min_solar: "Min + solar", schedule: "Schedule",
};
// The thresholds of the charging modes, as the API names them (PUT .../thresholds).
const THRESHOLDS = [
  "start_delay_s", "stop_delay_s", "min_run_s", "min_pause_s", "settle_s", "off_peak", "departure", "energy_kwh",
];
const BOUND_WORDS = {
  connector: "the charger's maximum", cable: "the cable", csms: "the CSMS",
  load_management: "load management", mode: "the charging mode", user: "your limit", thermal: "temperature",
  phase_switch: "a switch between one and three phases",
};

function say(text, isError = false) {
  const el = $("#message");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const res = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = res.headers.get("Content-Type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw new Error(data?.error || `${res.status} ${res.statusText}`);
  return data;
}

const fmt = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const kwh = (wh) => fmt(wh / 1000, 2);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
function duration(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
}

// --- live status --------------------------------------------------------------------------

function renderStatus(status) {
  $("#link").textContent = status.csms_link === "standalone"
    ? "Standalone (no CSMS)" : `CSMS link: ${status.csms_link}`;
  const box = $("#connectors");
  for (const c of status.connectors) {
    let el = state.connectors.get(c.id);
    if (!el) {
      el = $("#connector-template").content.firstElementChild.cloneNode(true);
      el.dataset.connector = c.id;
      wireConnector(el, c.id);
      box.append(el);
      state.connectors.set(c.id, el);
    }
    $("h3", el).textContent = `Connector ${c.id}`;
    const st = $(".state", el);
    st.textContent = c.state_text;
    st.className = "state " + (c.ocpp_status === "Faulted" ? "faulted" : c.ocpp_status === "Charging" ? "charging" : "");
    $(".advice", el).textContent = c.advice || "";
    $(".power", el).textContent = c.power_w === null ? "–" : `${fmt(c.power_w / 1000, 2)} kW`;
    const amps = c.meter ? c.meter.current_a.map((a) => fmt(a)).join(" / ") + " A" : "–";
    $(".current", el).textContent = amps;
    $(".phases", el).textContent = c.phases === 1 ? "1 phase" : `${c.phases} phases`;
    const s = c.session;
    $(".session", el).textContent = s
      ? `${kwh(s.energy_wh)} kWh in ${duration(s.duration_s)} — ${s.card_name || s.id_tag}`
      : "none";
    const by = c.limited_by.map((name) => BOUND_WORDS[name] || name).join(" and ");
    $(".limit", el).textContent = c.offered_current_a > 0
      ? `${fmt(c.offered_current_a)} A, set by ${by}`
      : `nothing now (limit ${fmt(c.limit_a)} A, set by ${by})`;
    const userLimit = c.limits.user;
    const input = $(".limit-input", el);
    if (document.activeElement !== input) input.value = userLimit === undefined ? "" : userLimit;
    $(".available", el).checked = c.ocpp_status !== "Unavailable";
    renderEnergy(el, status.energy, status.energy?.connectors.find((e) => e.id === c.id));
    $(".start", el).disabled = Boolean(s) || c.ocpp_status === "Faulted";
    $(".stop", el).disabled = !s;
  }
  $("#connectors").querySelectorAll(".actions").forEach((a) => (a.hidden = !state.me?.logged_in));
  renderGrid(status.energy);
}

// The house's grid meter (only with [site] configured).
function renderGrid(energy) {
  const grid = $("#grid");
  grid.hidden = !energy?.grid_meter;
  if (grid.hidden) return;
  grid.textContent = energy.grid_fresh
    ? `Grid: ${energy.grid_current_a.map((a) => fmt(a)).join(" / ")} A, ` +
      `${energy.grid_power_w >= 0 ? "importing" : "exporting"} ${fmt(Math.abs(energy.grid_power_w) / 1000, 2)} kW`
    : "Grid: no fresh reading from the grid meter (safe fallback current)";
}

// Each connector's charging mode (with [energy] or [site]); the surplus with a grid meter,
// and only the modes possible here to choose from (solar needs a grid meter).
function renderEnergy(el, energy, entry) {
  el.querySelectorAll(".energy").forEach((e) => (e.hidden = !entry));
  if (!entry) return;
  el.querySelectorAll(".surplus-row").forEach((e) => (e.hidden = !energy.grid_meter));
  $(".mode-text", el).textContent = MODE_WORDS[entry.mode] + (entry.charging ? "" : ", waiting");
  $(".surplus", el).textContent = entry.surplus_w === null ? "–" : `${fmt(entry.surplus_w / 1000, 2)} kW`;
  const select = $(".mode-select", el);
  for (const option of select.options) option.hidden = option.disabled = !energy.modes.includes(option.value);
  if (document.activeElement !== select) select.value = entry.mode;
  renderThresholds(el, entry);
}

// The settings form shows the thresholds in force, unless the user is editing it.
function renderThresholds(el, entry) {
  const form = $(".thresholds-form", el);
  form.dataset.current = JSON.stringify(entry.thresholds);
  if (form.dataset.dirty || form.contains(document.activeElement)) return;
  for (const key of THRESHOLDS) {
    const input = form.elements[key];
    const value = entry.thresholds[key];
    input.value = value === null || value === undefined ? "" : value;
    input.removeAttribute("aria-invalid");
    input.closest("label").classList.toggle("changed", entry.threshold_sources[key] === "run_time");
  }
}

// What the form changed: numbers emptied go back to the configuration (null), texts
// emptied mean none ("").
function thresholdChanges(form) {
  const current = JSON.parse(form.dataset.current || "{}");
  const body = {};
  for (const key of THRESHOLDS) {
    const input = form.elements[key];
    const text = input.value.trim();
    const value = input.type === "number" ? (text === "" ? null : Number(text)) : text;
    if (value !== current[key]) body[key] = value;
  }
  return body;
}

async function putThresholds(el, id, body) {
  const form = $(".thresholds-form", el);
  try {
    const entry = await api("PUT", `/api/v1/connectors/${id}/thresholds`, body);
    delete form.dataset.dirty;
    document.activeElement?.blur();
    renderThresholds(el, entry);
    return true;
  } catch (e) {
    const field = form.elements[e.message.split(":")[0]];
    if (field) field.setAttribute("aria-invalid", "true");
    throw e;
  }
}

function wireConnector(el, id) {
  const act = async (what, fn) => {
    try { await fn(); say(what); } catch (e) { say(`${what} failed: ${e.message}`, true); }
  };
  $(".start", el).addEventListener("click", () =>
    act(`Start requested on connector ${id}`, () => api("POST", `/api/v1/connectors/${id}/start`, {})));
  $(".stop", el).addEventListener("click", () =>
    act(`Stop requested on connector ${id}`, () => api("POST", `/api/v1/connectors/${id}/stop`)));
  $(".limit-form", el).addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $(".limit-input", el).value;
    const amps = value === "" ? null : Number(value);
    act(amps === null ? "Limit cleared" : `Limit set to ${amps} A`,
      () => api("PUT", `/api/v1/connectors/${id}/limit`, { current_a: amps }));
  });
  $(".clear-limit", el).addEventListener("click", () =>
    act("Limit cleared", () => api("PUT", `/api/v1/connectors/${id}/limit`, { current_a: null })));
  $(".mode-select", el).addEventListener("change", (ev) =>
    act(`Mode set to ${MODE_WORDS[ev.target.value]}`,
      () => api("PUT", `/api/v1/connectors/${id}/mode`, { mode: ev.target.value })));
  const form = $(".thresholds-form", el);
  form.addEventListener("input", () => (form.dataset.dirty = "1"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = thresholdChanges(form);
    if (!Object.keys(body).length) return say("Nothing to change");
    act(`Settings of connector ${id} saved`, () => putThresholds(el, id, body));
  });
  $(".reset-thresholds", el).addEventListener("click", () =>
    act(`Connector ${id} uses the configured settings`,
      () => putThresholds(el, id, Object.fromEntries(THRESHOLDS.map((k) => [k, null])))));
  $(".available", el).addEventListener("change", (ev) =>
    act(ev.target.checked ? "Connector made available" : "Connector made unavailable",
      () => api("PUT", `/api/v1/connectors/${id}/availability`, { available: ev.target.checked })));
}

function addPower(status) {
  const c = status.connectors.find((x) => x.session) || status.connectors[0];
  if (!c || c.power_w === null) return;
  state.power.push([Date.now(), c.session ? c.power_w / 1000 : 0]);
  if (state.power.length > POWER_POINTS) state.power.shift();
  drawLine($("#power-plot"), state.power);
}

function connectLive() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/live`);
  ws.onmessage = (msg) => {
    const data = JSON.parse(msg.data);
    renderStatus(data.status);
    if (data.event === "MeterSampled" || data.event === "Hello") addPower(data.status);
    if ((data.event === "TransactionStopped" || data.event === "TransactionStarted") && state.me?.logged_in) loadHistory();
  };
  ws.onclose = () => setTimeout(connectLive, 2000);
}

// --- plots (SVG drawn here: smaller than any chart library) -------------------------------

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawLine(svg, points) {
  svg.replaceChildren();
  if (points.length < 2) return;
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const top = Math.max(1, ...points.map((p) => p[1]));
  const d = points.map(([t, v], i) =>
    `${i ? "L" : "M"}${((t - t0) / Math.max(1, t1 - t0)) * 600},${150 - (v / top) * 135}`).join(" ");
  svg.append(el("path", { d, class: "line" }));
  svg.append(el("text", { x: 4, y: 12 }, `${top.toFixed(1)} kW`));
  svg.setAttribute("aria-label", `Power now ${points[points.length - 1][1].toFixed(2)} kW`);
}

function drawBars(svg, periods) {
  svg.replaceChildren();
  const top = Math.max(0.1, ...periods.map((p) => p.energy_wh / 1000));
  const w = 600 / periods.length;
  periods.forEach((p, i) => {
    const h = (p.energy_wh / 1000 / top) * 130;
    const bar = el("rect", { x: i * w + 1, y: 145 - h, width: Math.max(1, w - 2), height: h, class: "bar" });
    bar.append(el("title", {}, `${p.period}: ${kwh(p.energy_wh)} kWh`));
    svg.append(bar);
  });
  svg.append(el("text", { x: 4, y: 12 }, `${top.toFixed(1)} kWh`));
  svg.append(el("text", { x: 4, y: 158 }, periods[0]?.period || ""));
  svg.append(el("text", { x: 520, y: 158 }, periods[periods.length - 1]?.period || ""));
  const total = periods.reduce((a, p) => a + p.energy_wh, 0);
  svg.setAttribute("aria-label", `${kwh(total)} kWh over ${periods.length} periods`);
}

// --- history and cards --------------------------------------------------------------------

function query() {
  const q = new URLSearchParams();
  if ($("#month").value) q.set("month", $("#month").value);
  if ($("#card").value.trim()) q.set("card", $("#card").value.trim());
  return q.toString();
}

async function loadHistory() {
  const q = query();
  $("#csv").href = "/api/v1/sessions.csv" + (q ? `?${q}` : "");
  try {
    const page = await api("GET", "/api/v1/sessions" + (q ? `?${q}` : ""));
    const body = $("#sessions tbody");
    body.replaceChildren();
    for (const s of page.sessions) {
      const row = document.createElement("tr");
      const card = s.card_name ? `${s.card_name} (${s.id_tag})` : s.id_tag;
      const stop = s.meter_stop_wh === null ? "…" : kwh(s.meter_stop_wh);
      for (const text of [when(s.started_at), s.stopped_at ? when(s.stopped_at) : "running", card,
        kwh(s.energy_wh), `${kwh(s.meter_start_wh)} / ${stop}`, s.stop_reason || ""]) {
        const td = document.createElement("td");
        td.textContent = text;
        row.append(td);
      }
      body.append(row);
    }
    $("#sessions-total").textContent = `${page.total} session(s)`;
    const energy = await api("GET", `/api/v1/energy?by=${$("#energy-by").value}`);
    drawBars($("#energy-plot"), energy.periods);
  } catch (e) { say(`History: ${e.message}`, true); }
}

async function loadCards() {
  let cards;
  try { cards = await api("GET", "/api/v1/cards"); } catch (e) { say(`Cards: ${e.message}`, true); return; }
  $("#add-card").hidden = !cards.editable;
  const list = $("#cards");
  list.replaceChildren();
  for (const c of cards.configured) {
    const li = document.createElement("li");
    li.textContent = `${c.uid}${c.name ? ` — ${c.name}` : ""} (configuration file)`;
    list.append(li);
  }
  for (const c of cards.cards) {
    const li = document.createElement("li");
    const expiry = c.expires_at ? `, expires ${new Date(c.expires_at).toLocaleDateString()}` : "";
    li.append(`${c.uid}${c.name ? ` — ${c.name}` : ""}${c.enabled ? "" : " (disabled)"}${expiry} `);
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.textContent = c.enabled ? "Disable" : "Enable";
    toggle.setAttribute("aria-label", `${toggle.textContent} card ${c.uid}`);
    toggle.onclick = () => saveCard(c.uid, { name: c.name, enabled: !c.enabled, expires_at: c.expires_at });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove card ${c.uid}`);
    remove.onclick = async () => { try { await api("DELETE", `/api/v1/cards/${c.uid}`); loadCards(); } catch (e) { say(e.message, true); } };
    li.append(toggle, " ", remove);
    list.append(li);
  }
  const unknown = cards.last_unknown;
  $("#last-unknown").textContent = unknown && cards.editable
    ? `Last unknown card tapped: ${unknown.uid} (${when(unknown.at)}) — its UID is filled in below.` : "";
  if (unknown && cards.editable && !$("#card-uid").value) $("#card-uid").value = unknown.uid;
}

async function saveCard(uid, card) {
  try { await api("PUT", `/api/v1/cards/${encodeURIComponent(uid)}`, card); say(`Card ${uid} saved`); loadCards(); }
  catch (e) { say(`Card ${uid}: ${e.message}`, true); }
}

// --- login --------------------------------------------------------------------------------

async function refreshMe() {
  state.me = await api("GET", "/api/v1/me");
  state.csrf = state.me.csrf_token;
  const inside = state.me.logged_in;
  $("#login").hidden = inside;
  $("#logout").hidden = !inside;
  $("#history").hidden = !inside;
  $("#cards-section").hidden = !inside || !state.me.standalone;
  if (inside) { loadHistory(); if (state.me.standalone) loadCards(); }
  else if (!state.me.password_set) say("No password set yet: run `picharge web-password` on the charger.");
}

function wirePage() {
  $("#login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/v1/login", { password: $("#password").value });
      $("#password").value = "";
      say("Logged in");
      await refreshMe();
      if (!state.me.public_status) connectLive();
    } catch (e) { say(`Login failed: ${e.message}`, true); }
  });
  $("#logout").addEventListener("click", async () => { await api("POST", "/api/v1/logout"); location.reload(); });
  $("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); loadHistory(); });
  $("#energy-by").addEventListener("change", loadHistory);
  $("#add-card").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const expiry = $("#card-expiry").value;
    saveCard($("#card-uid").value.trim().toUpperCase(), {
      name: $("#card-name").value.trim(), enabled: true,
      expires_at: expiry ? new Date(`${expiry}T23:59:59`).toISOString() : null,
    }).then(() => { $("#card-uid").value = ""; $("#card-name").value = ""; $("#card-expiry").value = ""; });
  });
}

async function main() {
  wirePage();
  await refreshMe();
  if (state.me.logged_in || state.me.public_status) connectLive();
}

main().catch((e) => say(e.message, true));
