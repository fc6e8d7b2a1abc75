// Tessera's operator console: plain JavaScript over the admin API (no build step, no
// third-party code). The API key lives in this tab's sessionStorage and goes out as
// `Authorization: Bearer` on requests and as the `bearer.<key>` subprotocol on the feed.
"use strict";

const MAP_PERIOD_MS = 1000; // the nodes sample their regions once a second
const FEED_SHOWN_MAX = 300; // events kept in the list
const JOB_PERIOD_MS = 1000;
const HANDOFF_SHOWN_MS = 1500;
const FEED_RETRY_MAX_MS = 10000;
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f7ed8", "#8bbc21", "#e4a300", "#9b59b6", "#1aadce", "#c0392b", "#16a085", "#d35400"];
const TOPICS = ["session", "death", "handoff", "admin", "reload", "alert", "metrics", "game"];

const $ = (selector) => document.querySelector(selector);

// Player and entity ids are 64-bit: past 2^53 a JavaScript number is not exact. JSON from
// the server is parsed keeping such integers as their decimal text; ids are handled as
// text throughout (they are only shown, compared and put into paths).
function parseJson(text) {
  return JSON.parse(text, (_key, value, context) =>
    typeof value === "number" && !Number.isSafeInteger(value) && context && /^\d+$/.test(context.source)
      ? context.source
      : value);
}

const state = {
  key: sessionStorage.getItem("tessera.key") || "",
  map: null, // the last GET /v1/map
  mapBusy: false,
  selected: null, // a player id, as text
  cursor: null, // the players table's next page
  jobs: new Map(), // key -> last status
  feed: null,
  feedRetryMs: 500,
  timers: [],
};

// ---- the API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${state.key}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try {
    json = text ? parseJson(text) : null;
  } catch (_) {
    json = null;
  }
  if (!response.ok) {
    const why = (json && json.error && json.error.message) || text || response.statusText;
    throw new ApiError(response.status, `${response.status}: ${why}`);
  }
  return json;
}

function reason() {
  const text = $("#reason").value.trim();
  if (!text) throw new Error("write a reason first: every action goes to the audit log with it");
  return text;
}

// ---- login -----------------------------------------------------------------------------

async function login(key) {
  state.key = key;
  const node = await api("GET", "/v1/node");
  sessionStorage.setItem("tessera.key", key);
  $("#where").textContent = `node ${node.name} · ${node.store} store · tick ${node.tick_hz} Hz`;
  $("#login-panel").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  start();
}

function logout() {
  sessionStorage.removeItem("tessera.key");
  location.reload();
}

function start() {
  refreshMap();
  state.timers.push(setInterval(refreshMap, MAP_PERIOD_MS));
  state.timers.push(setInterval(refreshJobs, JOB_PERIOD_MS));
  searchPlayers();
  openFeed();
}

// ---- the map ---------------------------------------------------------------------------

function nodeColour(map, node) {
  const i = map.nodes.findIndex((n) => n.node === node);
  return i < 0 ? "#999" : PALETTE[i % PALETTE.length];
}

function el(tag, attributes, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (parent) parent.appendChild(node);
  return node;
}

async function refreshMap() {
  if (state.mapBusy || document.hidden) return;
  state.mapBusy = true;
  try {
    const map = await api("GET", "/v1/map");
    state.map = map;
    drawMap(map);
    $("#map-status").textContent =
      `${map.world}: ${map.regions.length} regions on ${map.nodes.length} node(s), ` +
      `${map.players.length + map.players_unlisted} players, as of ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    $("#map-status").textContent = `map unavailable: ${e.message}`;
  } finally {
    state.mapBusy = false;
  }
}

function drawMap(map) {
  const svg = $("#map");
  svg.setAttribute("viewBox", `0 0 ${map.size_m.x} ${map.size_m.y}`);
  const unit = Math.max(map.size_m.x, map.size_m.y) / 400; // one pixel, roughly
  const budget = 1000 / map.tick_hz;

  const tiles = $("#map-tiles");
  const labels = $("#map-labels");
  tiles.replaceChildren();
  labels.replaceChildren();
  for (const region of map.regions) {
    const { min, max } = region.bounds;
    const load = Math.min(1, region.tick_p50_ms / budget);
    const tile = el("rect", {
      x: min.x, y: min.y, width: max.x - min.x, height: max.y - min.y,
      fill: region.node ? nodeColour(map, region.node) : "#bbb",
      "fill-opacity": region.node ? (0.15 + 0.6 * load).toFixed(3) : 0.1,
      stroke: "#333", "stroke-width": unit,
      "data-region": region.id, "data-node": region.node || "",
      class: region.frozen ? "frozen" : "",
    }, tiles);
    el("title", {}, tile).textContent =
      `region ${region.id}: ${region.node ? `held by ${region.node}` : "held by nobody"}, ` +
      `${region.players} players, ${region.entities} entities, step p50 ${region.tick_p50_ms} ms` +
      `${region.frozen ? ", FROZEN" : ""}`;
    const label = el("text", {
      x: min.x + 4 * unit, y: min.y + 14 * unit, "font-size": 12 * unit,
    }, labels);
    label.textContent = `${region.id}${region.frozen ? " ❄" : ""} · ${region.players}p`;
  }

  drawHeat(map);

  const dots = $("#map-players");
  dots.replaceChildren();
  dots.style.display = $("#show-players").checked ? "" : "none";
  for (const player of map.players) {
    const dot = el("circle", {
      cx: player.x, cy: player.y, r: 3 * unit,
      fill: nodeColour(map, player.node), stroke: "#000", "stroke-width": unit / 2,
      "data-player": player.id,
      class: String(player.id) === state.selected ? "selected" : "",
    }, dots);
    el("title", {}, dot).textContent = `player ${player.id} in region ${player.region} on ${player.node}`;
  }

  $("#legend").replaceChildren(...map.nodes.map((n) => {
    const item = document.createElement("span");
    item.className = "legend-item";
    item.style.borderColor = nodeColour(map, n.node);
    item.textContent = n.node === map.node ? `${n.node} (this node)` : n.node;
    return item;
  }));
}

function drawHeat(map) {
  const image = $("#map-heat");
  if (!$("#show-heat").checked || map.heat.length === 0) {
    image.removeAttribute("href");
    return;
  }
  const columns = Math.ceil(map.size_m.x / map.heat_cell_m);
  const rows = Math.ceil(map.size_m.y / map.heat_cell_m);
  const canvas = document.createElement("canvas");
  canvas.width = columns;
  canvas.height = rows;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(columns, rows);
  const densest = Math.max(...map.heat.map(([, , p, n]) => p + n));
  for (const [column, row, players, npcs] of map.heat) {
    if (column >= columns || row >= rows) continue;
    const at = 4 * (row * columns + column);
    const share = (players + npcs) / densest;
    pixels.data[at] = 255;
    pixels.data[at + 1] = Math.round(200 * (1 - share));
    pixels.data[at + 2] = players > 0 ? 60 : 0;
    pixels.data[at + 3] = Math.round(40 + 170 * share);
  }
  context.putImageData(pixels, 0, 0);
  image.setAttribute("href", canvas.toDataURL());
  image.setAttribute("width", columns * map.heat_cell_m);
  image.setAttribute("height", rows * map.heat_cell_m);
}

function regionCentre(id) {
  const region = state.map && state.map.regions.find((r) => r.id === id);
  if (!region) return null;
  const { min, max } = region.bounds;
  return { x: (min.x + max.x) / 2, y: (min.y + max.y) / 2 };
}

function animateHandoff(data) {
  const from = data.x !== undefined ? { x: data.x, y: data.y } : regionCentre(data.from);
  const to = regionCentre(data.to);
  if (!from || !to || !state.map) return;
  const unit = Math.max(state.map.size_m.x, state.map.size_m.y) / 400;
  const line = el("line", {
    x1: from.x, y1: from.y, x2: to.x, y2: to.y,
    stroke: data.to_another_node ? "#c0392b" : "#222", "stroke-width": 2 * unit,
    "stroke-dasharray": `${6 * unit} ${3 * unit}`, class: "handoff",
    "data-handoff": data.player,
  }, $("#map-handoffs"));
  setTimeout(() => line.remove(), HANDOFF_SHOWN_MS);
}

// ---- one player ------------------------------------------------------------------------

async function select(id) {
  state.selected = String(id);
  document.querySelectorAll("#map-players circle.selected").forEach((c) => c.classList.remove("selected"));
  const dot = document.querySelector(`#map-players circle[data-player="${id}"]`);
  if (dot) dot.classList.add("selected");
  $("#details-title").textContent = `${id}`;
  $("#details-actions").hidden = false;
  $("#action-result").textContent = "";
  await showDetails(id);
}

async function showDetails(id) {
  try {
    const details = await api("GET", `/v1/players/${id}`);
    const p = details.profile;
    const where = p.online ? `online on ${p.node}, region ${p.region}` : "offline";
    const pairs = [
      ["name", p.name], ["level", p.level], ["where", where],
      ["last login", time(p.last_login_unix_s)],
      ["banned", p.banned ? `yes (${details.ban ? details.ban.reason : ""})` : "no"],
      ["muted", p.muted ? "yes" : "no"],
      ["coins", details.economy ? details.economy.coins : ""],
      ["sessions", details.sessions.length],
    ];
    const list = document.createElement("dl");
    for (const [term, value] of pairs) {
      list.appendChild(Object.assign(document.createElement("dt"), { textContent: term }));
      list.appendChild(Object.assign(document.createElement("dd"), { textContent: String(value) }));
    }
    $("#details").replaceChildren(list);
  } catch (e) {
    $("#details").textContent = e.message;
  }
}

async function act(action, id) {
  const result = $("#action-result");
  try {
    const why = reason();
    const path = `/v1/players/${id}/${action === "unban" ? "ban" : action}`;
    let answer;
    if (action === "unban") answer = await api("DELETE", path, { reason: why });
    else if (action === "message") answer = await api("POST", path, { text: $("#message-text").value, reason: why });
    else answer = await api("POST", path, { reason: why });
    result.className = "ok";
    result.textContent = `${action} ${id}: done${answer && answer.result ? ` (${answer.result})` : ""}`;
    if (state.selected === String(id)) showDetails(id);
  } catch (e) {
    result.className = "error";
    result.textContent = `${action} ${id}: ${e.message}`;
  }
}

// ---- the players table -----------------------------------------------------------------

function filterParams() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData($("#filters"))) {
    if (String(value).trim() !== "") params.set(name, String(value).trim());
  }
  return params;
}

function time(unixS) {
  return unixS ? new Date(unixS * 1000).toLocaleString() : "";
}

async function searchPlayers(more) {
  const params = filterParams();
  params.set("limit", "50");
  if (more && state.cursor) params.set("cursor", state.cursor);
  const body = $("#players tbody");
  try {
    const page = await api("GET", `/v1/players?${params}`);
    $("#players-error").textContent = "";
    if (!more) body.replaceChildren();
    for (const p of page.players) body.appendChild(playerRow(p));
    state.cursor = page.next_cursor;
    $("#players-more").hidden = !page.next_cursor;
    $("#players-total").textContent = `${page.total} match`;
  } catch (e) {
    $("#players-error").textContent = e.message;
  }
}

function playerRow(p) {
  const row = document.createElement("tr");
  row.dataset.player = p.player;
  const cells = [p.player, p.name, p.level, p.online ? "yes" : "no", p.node || "", p.region ?? "", time(p.last_login_unix_s)];
  for (const value of cells) row.appendChild(Object.assign(document.createElement("td"), { textContent: String(value) }));
  const actions = document.createElement("td");
  const details = Object.assign(document.createElement("button"), { type: "button", textContent: "Details" });
  details.dataset.act = "details";
  const kick = Object.assign(document.createElement("button"), { type: "button", textContent: "Kick" });
  kick.dataset.act = "kick";
  actions.append(details, kick);
  row.appendChild(actions);
  return row;
}

// ---- bulk jobs -------------------------------------------------------------------------

function typedFilter() {
  const filter = {};
  for (const [name, text] of filterParams()) {
    if (name === "sort" || name === "order") continue;
    if (text === "true" || text === "false") filter[name] = text === "true";
    else if (["region", "level_min", "level_max"].includes(name)) filter[name] = Number(text);
    else filter[name] = text;
  }
  return filter;
}

async function startJob(form) {
  const error = $("#jobs-error");
  try {
    const kind = form.elements.action.value;
    const action = kind === "message" ? { kind, text: form.elements.text.value } : { kind };
    const key = `console-${Date.now()}`;
    const job = await api("POST", "/v1/players/bulk", { key, action, filter: typedFilter(), reason: reason() });
    error.textContent = "";
    state.jobs.set(job.key, job);
    drawJobs();
  } catch (e) {
    error.textContent = e.message;
  }
}

async function refreshJobs() {
  for (const [key, job] of state.jobs) {
    if (job.final) continue;
    try {
      const now = await api("GET", `/v1/players/bulk/${encodeURIComponent(key)}`);
      now.final = now.state !== "running";
      state.jobs.set(key, now);
    } catch (e) {
      state.jobs.set(key, { ...job, error: e.message });
    }
  }
  drawJobs();
}

function drawJobs() {
  const list = $("#jobs");
  list.replaceChildren();
  for (const [key, job] of state.jobs) {
    const item = document.createElement("li");
    item.dataset.job = key;
    const handled = (job.done || 0) + (job.failed || 0) + (job.skipped || 0);
    const total = job.total || 0;
    const bar = Object.assign(document.createElement("progress"), { max: Math.max(total, 1), value: handled });
    const text = document.createElement("span");
    if (job.error) text.textContent = `${key}: ${job.error}`;
    else if (!job.state) text.textContent = `${key}: asking for its status`;
    else text.textContent =
      `${key} ${job.action}: ${job.state} · ${job.done} done, ${job.failed} failed, ${job.skipped} skipped of ${total}`;
    item.append(bar, text);
    if (job.state === "running") {
      const cancel = Object.assign(document.createElement("button"), { type: "button", textContent: "Cancel" });
      cancel.addEventListener("click", async () => {
        try {
          await api("POST", `/v1/players/bulk/${encodeURIComponent(key)}/cancel`, { reason: reason() });
        } catch (e) {
          $("#jobs-error").textContent = e.message;
        }
      });
      item.appendChild(cancel);
    }
    list.appendChild(item);
  }
}

// ---- the live feed ---------------------------------------------------------------------

function openFeed() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/feed`, ["tessera-feed.v1", `bearer.${state.key}`]);
  state.feed = socket;
  socket.onopen = () => {
    state.feedRetryMs = 500;
    $("#feed-status").textContent = "live";
  };
  socket.onmessage = (message) => {
    let event;
    try {
      event = parseJson(message.data);
    } catch (_) {
      return;
    }
    if (event.topic === "handoff") animateHandoff(event.data);
    showEvent(event);
  };
  socket.onclose = (close) => {
    $("#feed-status").textContent =
      `closed (${close.code}${close.reason ? `: ${close.reason}` : ""}); reconnecting`;
    setTimeout(openFeed, state.feedRetryMs);
    state.feedRetryMs = Math.min(FEED_RETRY_MAX_MS, state.feedRetryMs * 2);
  };
}

function describe(event) {
  const d = event.data || {};
  switch (event.topic) {
    case "session": return `player ${d.player} ${d.event}${d.name ? ` (${d.name})` : ""}`;
    case "death": return d.more_deaths_this_tick ? `${d.more_deaths_this_tick} more deaths`
      : `${d.player != null ? `player ${d.player}` : `${d.archetype || "entity"} ${d.entity}`} died${d.killer != null ? `, killed by player ${d.killer}` : ""}`;
    case "handoff": return `player ${d.player}: region ${d.from} → ${d.to}${d.to_another_node ? " (another node)" : ""}`;
    case "admin":
    case "reload": return `${d.who}: ${d.action} ${d.target} (${d.reason}) → ${d.result}`;
    case "alert": return `health ${d.status}${(d.failing || []).map((f) => `; ${f.check}: ${f.detail}`).join("")}`;
    case "metrics": return event.region != null
      ? `region ${event.region}: ${d.players} players, ${d.entities} entities, p99 ${d.tick_p99_ms} ms`
      : `tick ${d.tick}: ${d.players} players, p99 ${d.tick_p99_ms} ms`;
    default: return JSON.stringify(d);
  }
}

function showEvent(event) {
  const box = document.querySelector(`#feed-topics input[value="${event.topic}"]`);
  if (box && !box.checked) return;
  const item = document.createElement("li");
  item.dataset.topic = event.topic;
  item.textContent = `${new Date(event.at_ms).toLocaleTimeString()} ${event.node} ${event.topic}: ${describe(event)}`;
  const list = $("#feed");
  list.prepend(item);
  while (list.children.length > FEED_SHOWN_MAX) list.lastChild.remove();
}

// ---- wiring ----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const topic of TOPICS) {
    const label = document.createElement("label");
    const box = Object.assign(document.createElement("input"), { type: "checkbox", value: topic, checked: topic !== "metrics" });
    label.append(box, ` ${topic}`);
    $("#feed-topics").appendChild(label);
  }
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#login-error").textContent = "";
    try {
      await login($("#key").value.trim());
    } catch (err) {
      state.key = "";
      $("#login-error").textContent =
        err.status === 401 ? "that key is not accepted by this node" : `cannot log in: ${err.message}`;
    }
  });
  $("#logout").addEventListener("click", logout);
  $("#map-players").addEventListener("click", (e) => {
    const id = e.target.closest("circle")?.dataset.player;
    if (id) select(id);
  });
  $("#details-actions").addEventListener("click", (e) => {
    const action = e.target.dataset.act;
    if (action && state.selected != null) act(action, state.selected);
  });
  $("#players tbody").addEventListener("click", (e) => {
    const action = e.target.dataset.act;
    const id = e.target.closest("tr")?.dataset.player;
    if (action === "details") select(id);
    else if (action) act(action, id);
  });
  $("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    searchPlayers(false);
  });
  $("#players-more").addEventListener("click", () => searchPlayers(true));
  $("#job-form").addEventListener("submit", (e) => {
    e.preventDefault();
    startJob(e.target);
  });
  $("#watch-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = e.target.elements.key.value.trim();
    if (key) {
      state.jobs.set(key, { key, state: "", final: false });
      refreshJobs();
    }
  });
  $("#show-heat").addEventListener("change", () => state.map && drawMap(state.map));
  $("#show-players").addEventListener("change", () => state.map && drawMap(state.map));
  if (state.key) login(state.key).catch(() => sessionStorage.removeItem("tessera.key"));
});
