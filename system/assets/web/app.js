// livecam browser client: map with markers and tracks, device list, live picture, area
// selection, history replay and commands. Plain JavaScript, no build step; talks to the REST
// API under /api and the WebSocket /api/live. State is on window.livecam for tests.
// Every API call needs a login: the page shows the login form whenever the API answers 401;
// the session is the HttpOnly cookie POST /api/login sets, sent with every request.
"use strict";

(function () {
  const TRACK_POINTS = 500;
  const $ = (id) => document.getElementById(id);
  const state = {
    clients: new Map(), // id -> ClientView
    markers: new Map(), // id -> L.marker
    tracks: new Map(), // id -> {points: [{lat, lon, t}], bands: [L.polyline per age band]}
    commands: new Map(), // command id -> CommandRecord
    selected: null,
    ws: null,
    messages: 0,
    history: null, // {client, points, frames, line, marker}
    map: null,
    user: null, // the logged-in user, from /api/me or /api/login
    started: false,
  };
  window.livecam = state;

  // ---------- helpers ----------
  async function api(path, options) {
    const res = await fetch(path, options);
    let body = null;
    const text = await res.text();
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: text }; }
    if (res.status === 401 && path !== "/api/login") showLogin();
    if (!res.ok) {
      const msg = body && body.error ? body.error : res.status + " " + res.statusText;
      const err = new Error(msg);
      err.status = res.status;
      err.body = body;
      throw err;
    }
    return body;
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmtTime(ms) {
    return new Date(ms).toLocaleTimeString();
  }
  function describe(cmd) {
    switch (cmd.kind) {
      case "set_fps": return "fps " + cmd.milli_fps / 1000;
      case "set_resolution": return "resolution " + cmd.width + "x" + cmd.height;
      case "set_quality": return "quality " + cmd.quality;
      case "switch_tier1": return "tier-1 " + cmd.addr;
      default: return cmd.kind;
    }
  }

  // ---------- map ----------
  const map = L.map("map", { boxZoom: false, zoomControl: true });
  state.map = map;
  L.Icon.Default.imagePath = "/vendor/leaflet/images/";
  L.control.scale({ imperial: false, maxWidth: 150 }).addTo(map);
  map.setView([35.6812, 139.7671], 15);

  // Leaflet puts an attribution into the page as HTML: the configured text goes in as text.
  function escapeHtml(text) {
    const d = document.createElement("div");
    d.textContent = text;
    return d.innerHTML;
  }

  async function loadMap() {
    const info = await api("/api/map");
    const b = info.bounds;
    if (!state.fitted) map.fitBounds([[b.south, b.west], [b.north, b.east]], { padding: [20, 20] });
    if (info.tiles) {
      // A tile server's URL template (the browser asks it directly) or this server's MBTiles.
      state.tileLayer = L.tileLayer(info.tiles.url, {
        maxZoom: 19,
        attribution: escapeHtml(info.tiles.attribution),
      }).addTo(map);
      $("map").dataset.tiles = info.tiles.url;
      $("map").dataset.streets = "0";
      return;
    }
    // Without tiles, the synthetic city the synthetic vehicles drive.
    const city = await api("/api/map/city.geojson");
    state.city = L.geoJSON(city, {
      style: (f) => ({
        color: f.properties.kind === "street" ? "#6c757d" : "#495057",
        weight: 4,
        opacity: 0.6,
      }),
    }).addTo(map);
    $("map").dataset.streets = String(city.features.length);
  }

  // The map fits the fleet wherever it is: once when the first positions arrive, and on the
  // button.
  function fitFleet() {
    const pts = [...state.clients.values()].filter((c) => c.fix).map((c) => [c.fix.lat, c.fix.lon]);
    if (pts.length === 0) return false;
    if (pts.length === 1) map.setView(pts[0], Math.max(map.getZoom(), 16));
    else map.fitBounds(pts, { padding: [40, 40], maxZoom: 17 });
    state.fitted = true;
    $("map").dataset.fitted = String(pts.length);
    return true;
  }
  $("fit-fleet").addEventListener("click", fitFleet);

  // Track colours show age: the newest minute red, then 1-5 min, 5-15 min, older.
  const AGE_BANDS = [
    { max: 60e3, color: "#e63946" },
    { max: 300e3, color: "#f4a261" },
    { max: 900e3, color: "#2a9d8f" },
    { max: Infinity, color: "#8d99ae" },
  ];
  const legend = L.control({ position: "bottomleft" });
  legend.onAdd = () => {
    const d = L.DomUtil.create("div", "track-legend");
    d.innerHTML = "track age " + AGE_BANDS.map((b, i) =>
      '<span style="color:' + b.color + '">&#9644; ' +
      ["&lt;1 min", "1-5 min", "5-15 min", "older"][i] + "</span>").join(" ");
    return d;
  };
  legend.addTo(map);
  // ---------- clients ----------
  function markerFor(c) {
    let m = state.markers.get(c.id);
    const pos = [c.fix.lat, c.fix.lon];
    if (!m) {
      m = L.marker(pos, { title: "client " + c.id }).addTo(map);
      m.bindTooltip(String(c.id), { permanent: true, direction: "right", className: "client-label" });
      m.on("click", () => select(c.id));
      m.getElement().dataset.client = String(c.id);
      m.getElement().classList.add("client-marker");
      state.markers.set(c.id, m);
    } else {
      m.setLatLng(pos);
    }
    const e = m.getElement();
    e.dataset.lat = String(c.fix.lat);
    e.dataset.lon = String(c.fix.lon);
    e.dataset.online = String(c.online);
    m.setOpacity(c.online ? 1 : 0.45);
    return m;
  }

  // A client's track: its points with their times, drawn as one polyline per age band.
  function trackFor(c) {
    let t = state.tracks.get(c.id);
    if (!t) {
      t = { points: [], bands: AGE_BANDS.map((b) => L.polyline([], { color: b.color, weight: 3, opacity: 0.85 }).addTo(map)) };
      state.tracks.set(c.id, t);
      // Seed the track with the stored one.
      api("/api/clients/" + c.id + "/track").then((r) => {
        const stored = r.points.map((p) => ({ lat: p.lat, lon: p.lon, t: p.received_ms }));
        const newest = stored.length ? stored[stored.length - 1].t : -Infinity;
        t.points = stored.concat(t.points.filter((p) => p.t > newest)).slice(-TRACK_POINTS);
        drawTrack(t);
      }).catch(() => {});
    }
    const last = t.points[t.points.length - 1];
    if (!last || last.lat !== c.fix.lat || last.lon !== c.fix.lon) {
      t.points.push({ lat: c.fix.lat, lon: c.fix.lon, t: c.fix.received_ms });
      if (t.points.length > TRACK_POINTS) t.points.splice(0, t.points.length - TRACK_POINTS);
      // The newest band grows at once; the bands are redrawn as points age (below).
      if (last) t.bands[0].addLatLng([c.fix.lat, c.fix.lon]);
      else drawTrack(t);
    }
  }

  function drawTrack(t) {
    const now = Date.now();
    const lines = AGE_BANDS.map(() => []);
    let prev = null;
    for (const p of t.points) {
      const age = now - p.t;
      const band = AGE_BANDS.findIndex((b) => age < b.max);
      // Each band's line starts at the point before it, so the track stays joined.
      if (prev && prev.band !== band) lines[band].push([prev.lat, prev.lon]);
      lines[band].push([p.lat, p.lon]);
      prev = { band, lat: p.lat, lon: p.lon };
    }
    t.bands.forEach((line, i) => line.setLatLngs(lines[i]));
  }
  setInterval(() => { for (const t of state.tracks.values()) drawTrack(t); }, 5000);

  function rowFor(c) {
    let tr = document.querySelector('#client-rows tr[data-client="' + c.id + '"]');
    if (!tr) {
      tr = el("tr", { "data-client": String(c.id) });
      for (const k of ["id", "state", "tier2", "segment", "loss", "latency", "frame"]) {
        tr.appendChild(el("td", { "data-field": k }));
      }
      tr.addEventListener("click", () => select(c.id));
      const rows = $("client-rows");
      const after = [...rows.children].find((r) => Number(r.dataset.client) > c.id);
      rows.insertBefore(tr, after || null);
    }
    const l = c.link;
    const set = (k, v) => { tr.querySelector('[data-field="' + k + '"]').textContent = v; };
    set("id", String(c.id));
    const st = tr.querySelector('[data-field="state"]');
    st.textContent = c.online ? "online" : "offline";
    st.className = c.online ? "state-on" : "state-off";
    set("tier2", c.tier2 == null ? "-" : String(c.tier2));
    set("segment", l ? l.segment_size + " B" : "-");
    set("loss", l ? (l.loss * 100).toFixed(1) + " %" : "-");
    set("latency", l ? l.latency_ms.toFixed(1) + " ms" : "-");
    set("frame", c.last_frame == null ? "-" : String(c.last_frame));
    tr.dataset.online = String(c.online);
    tr.dataset.lastFrame = c.last_frame == null ? "" : String(c.last_frame);
    tr.classList.toggle("selected", state.selected === c.id);
  }

  function update(c) {
    state.clients.set(c.id, c);
    rowFor(c);
    if (c.fix) {
      markerFor(c);
      trackFor(c);
    }
    if (state.selected === c.id) showLive(c);
  }

  function remove(id) {
    state.clients.delete(id);
    const tr = document.querySelector('#client-rows tr[data-client="' + id + '"]');
    if (tr) tr.remove();
    const m = state.markers.get(id);
    if (m) { m.remove(); state.markers.delete(id); }
    const t = state.tracks.get(id);
    if (t) { for (const b of t.bands) b.remove(); state.tracks.delete(id); }
  }

  // ---------- selection, live video and the grid ----------
  // Frames arrive on the live socket (binary messages) for the clients the page watches: the
  // selected one and the grid's. Each is shown once decoded; the newest capture wins, an older
  // one arriving late is dropped. What was shown, and when, is kept for the figures beside the
  // player (and for tests).
  const MAX_WATCH = 16;
  const video = {
    shown: 0,
    dropped: 0,
    byClient: new Map(), // id -> {capture_ms, url, frames: [{frame, at, bytes}], ids: [frame...]}
    latencies: [], // {client, frame, received_ms, capture_ms, shown_ms}, the newest 5000
  };
  state.video = video;
  const grid = { clients: [] };
  state.grid = grid;

  function watched() {
    const ids = [];
    if (state.selected !== null) ids.push(state.selected);
    for (const id of grid.clients) if (!ids.includes(id)) ids.push(id);
    return ids.slice(0, MAX_WATCH);
  }
  function sendWatch() {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify({ type: "watch", clients: watched() }));
    }
  }

  function select(id) {
    state.selected = id;
    $("selected").dataset.client = String(id);
    $("selected-id").textContent = String(id);
    for (const tr of document.querySelectorAll("#client-rows tr")) {
      tr.classList.toggle("selected", Number(tr.dataset.client) === id);
    }
    const img = $("live-frame");
    img.dataset.frame = "";
    img.removeAttribute("src");
    const v = video.byClient.get(id);
    if (v && v.url) { img.src = v.url; img.dataset.frame = v.frame; }
    const c = state.clients.get(id);
    if (c) showLive(c);
    sendWatch();
    renderCommands();
    api("/api/clients/" + id + "/commands").then((list) => {
      for (const r of list) state.commands.set(r.id, r);
      renderCommands();
    }).catch(() => {});
  }

  // The figures beside the player: rate and fps over the last two seconds of shown frames,
  // latency of the newest, the link's segment size and loss.
  function showLive(c) {
    if (state.selected !== c.id) return;
    const v = video.byClient.get(c.id);
    if (!v) {
      $("live-caption").textContent = c.last_frame == null ? "No frame stored yet." : "waiting for video";
      return;
    }
    const now = Date.now();
    const recent = v.frames.filter((f) => now - f.at < 2000);
    const bytes = recent.reduce((n, f) => n + f.bytes, 0);
    const l = c.link;
    const stats = {
      fps: recent.length / 2,
      kBps: bytes / 2 / 1000,
      capture_to_screen_ms: v.capture_to_screen_ms,
      tier2_to_screen_ms: v.tier2_to_screen_ms,
      segment_size: v.segment_size,
      loss: l ? l.loss : null,
    };
    $("live-stats").dataset.fps = String(stats.fps);
    $("live-stats").textContent = stats.fps.toFixed(1) + " fps, " + stats.kBps.toFixed(1) + " kB/s, " +
      "capture to screen " + stats.capture_to_screen_ms + " ms (tier-2 to screen " + stats.tier2_to_screen_ms +
      " ms), segment " + stats.segment_size + " B" + (l ? ", loss " + (l.loss * 100).toFixed(1) + " %" : "");
    $("live-caption").textContent = "client " + c.id + ", frame " + v.frame +
      (c.fix ? " at " + c.fix.lat.toFixed(5) + ", " + c.fix.lon.toFixed(5) : "");
  }
  setInterval(() => {
    const c = state.clients.get(state.selected);
    if (c) showLive(c);
  }, 500);

  function onFrame(buf) {
    const view = new DataView(buf);
    const n = view.getUint32(0);
    let h;
    try { h = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n))); } catch (_) { return; }
    if (h.type !== "frame") return;
    let v = video.byClient.get(h.client);
    if (!v) {
      v = { capture_ms: -Infinity, url: null, frame: null, frames: [], ids: [] };
      video.byClient.set(h.client, v);
    }
    if (h.capture_ms < v.capture_ms) { video.dropped += 1; return; }
    v.capture_ms = h.capture_ms;
    const url = URL.createObjectURL(new Blob([new Uint8Array(buf, 4 + n)], { type: "image/jpeg" }));
    const im = new Image();
    im.src = url;
    im.decode().then(() => {
      // A newer frame was shown while this one decoded.
      if (v.capture_ms !== h.capture_ms) { URL.revokeObjectURL(url); video.dropped += 1; return; }
      const targets = [];
      if (state.selected === h.client) targets.push($("live-frame"));
      const tile = document.querySelector('#grid-tiles figure[data-client="' + h.client + '"] img');
      if (tile) targets.push(tile);
      for (const t of targets) { t.src = url; t.dataset.frame = h.frame; }
      const old = v.url;
      v.url = url;
      v.frame = h.frame;
      requestAnimationFrame(() => {
        const at = Date.now();
        if (old) URL.revokeObjectURL(old);
        video.shown += 1;
        v.capture_to_screen_ms = at - h.capture_ms;
        v.tier2_to_screen_ms = at - h.received_ms;
        v.segment_size = h.segment_size;
        v.frames.push({ frame: h.frame, at, bytes: h.bytes });
        if (v.frames.length > 100) v.frames.shift();
        v.ids.push(h.frame);
        if (v.ids.length > 3000) v.ids.shift();
        video.latencies.push({ client: h.client, frame: h.frame, received_ms: h.received_ms, capture_ms: h.capture_ms, shown_ms: at });
        if (video.latencies.length > 5000) video.latencies.shift();
        if (tile) tile.parentElement.querySelector("figcaption").textContent =
          "client " + h.client + ", frame " + h.frame + ", " + (at - h.capture_ms) + " ms";
      });
    }).catch(() => URL.revokeObjectURL(url));
  }

  // The grid: several cameras at once (every online one, the area's, or any list the page
  // asks for with livecam.setGrid), at most MAX_WATCH with the selected one.
  function setGrid(ids) {
    grid.clients = ids.filter((id) => id !== state.selected).slice(0, MAX_WATCH - 1);
    const box = $("grid-tiles");
    box.replaceChildren(...grid.clients.map((id) => {
      const f = el("figure", { "data-client": String(id) });
      const img = el("img", { alt: "live picture of client " + id, "data-frame": "" });
      const v = video.byClient.get(id);
      if (v && v.url) { img.src = v.url; img.dataset.frame = v.frame; }
      img.addEventListener("click", () => select(id));
      f.appendChild(img);
      f.appendChild(el("figcaption", {}, "client " + id));
      return f;
    }));
    $("grid").hidden = grid.clients.length === 0;
    $("grid").dataset.count = String(grid.clients.length);
    sendWatch();
  }
  state.setGrid = setGrid;
  $("grid-all").addEventListener("click", () => {
    setGrid([...state.clients.values()].filter((c) => c.online).map((c) => c.id).sort((a, b) => a - b));
  });
  $("grid-area").addEventListener("click", () => {
    setGrid([...document.querySelectorAll("#area-results li")].map((li) => Number(li.dataset.client)));
  });
  $("grid-close").addEventListener("click", () => setGrid([]));

  // ---------- live push ----------
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/api/live");
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    const conn = $("conn");
    ws.onopen = () => { conn.dataset.state = "open"; conn.textContent = "live"; sendWatch(); };
    ws.onclose = () => {
      if (state.ws !== ws) return;
      state.ws = null;
      conn.dataset.state = "closed";
      if (!state.user) { conn.textContent = "logged out"; return; }
      conn.textContent = "disconnected, retrying";
      // A refused upgrade may mean the login ended: /api/me shows the form if so.
      setTimeout(() => {
        api("/api/me").then(() => { if (state.user && !state.ws) connect(); }).catch(() => {});
      }, 1000);
    };
    ws.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) { onFrame(ev.data); return; }
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      state.messages += 1;
      if (msg.type === "clients") {
        if (msg.full) {
          for (const id of [...state.clients.keys()]) {
            if (!msg.clients.some((c) => c.id === id)) remove(id);
          }
        }
        for (const c of msg.clients) update(c);
        for (const id of msg.removed) remove(id);
        if (!state.fitted) fitFleet();
        if (state.selected === null && state.clients.size > 0) {
          select(Math.min(...state.clients.keys()));
        }
      } else if (msg.type === "command") {
        state.commands.set(msg.command.id, msg.command);
        renderCommands();
      } else if (msg.type === "error") {
        console.warn("live socket: " + msg.error);
      }
      // Every message also goes to whoever listens for its type (fences.js and others).
      window.dispatchEvent(new CustomEvent("livecam:" + msg.type, { detail: msg }));
    };
  }

  // ---------- commands ----------
  function renderCommands() {
    const ul = $("command-log");
    const mine = [...state.commands.values()]
      .filter((r) => r.client === state.selected)
      .sort((a, b) => b.id - a.id)
      .slice(0, 30);
    ul.replaceChildren(...mine.map((r) => {
      const li = el("li", { "data-command-id": String(r.id), "data-state": r.state });
      li.appendChild(el("span", {}, "#" + r.id + " " + describe(r.command) + ": "));
      li.appendChild(el("span", { class: "st" }, r.state + (r.reason ? " (" + r.reason + ")" : "")));
      return li;
    }));
  }

  function commandBody(kind) {
    switch (kind) {
      case "set_fps":
        return { kind, milli_fps: Math.round(Number($("cmd-fps-value").value) * 1000) };
      case "set_resolution": {
        const [w, h] = $("cmd-resolution-value").value.split("x").map(Number);
        return { kind, width: w, height: h };
      }
      case "set_quality":
        return { kind, quality: Number($("cmd-quality-value").value) };
      case "switch_tier1":
        return { kind, addr: $("cmd-tier1-value").value.trim() };
      default:
        return { kind };
    }
  }

  async function sendCommand(kind) {
    const err = $("command-error");
    err.textContent = "";
    if (state.selected === null) { err.textContent = "select a device first"; return; }
    try {
      const r = await api("/api/clients/" + state.selected + "/commands", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(commandBody(kind)),
      });
      // An update may have overtaken the answer.
      if (!state.commands.has(r.id)) state.commands.set(r.id, r);
      renderCommands();
    } catch (e) {
      err.textContent = e.message;
      if (e.body && e.body.command) { state.commands.set(e.body.command.id, e.body.command); renderCommands(); }
    }
  }
  for (const b of document.querySelectorAll("#commands button[data-command]")) {
    b.addEventListener("click", () => sendCommand(b.dataset.command));
  }
  // Pending commands are re-read now and then, in case a push was missed while reconnecting.
  setInterval(() => {
    for (const r of state.commands.values()) {
      if (r.state === "pending" && Date.now() - r.created_ms > 3000) {
        api("/api/commands/" + r.id).then((x) => {
          if (x.state !== "pending") { state.commands.set(x.id, x); renderCommands(); }
        }).catch(() => {});
      }
    }
  }, 3000);

  // ---------- area selection ----------
  let areaRect = null;
  function showArea(s, w, n, e) {
    if (areaRect) areaRect.remove();
    areaRect = L.rectangle([[s, w], [n, e]], { color: "#457b9d", weight: 2, fillOpacity: 0.1 }).addTo(map);
  }
  async function listArea() {
    const v = (id) => $(id).value.trim();
    const q = new URLSearchParams({ south: v("area-south"), west: v("area-west"), north: v("area-north"), east: v("area-east") });
    $("area-error").textContent = "";
    const ul = $("area-results");
    try {
      const r = await api("/api/area?" + q);
      showArea(r.area.south, r.area.west, r.area.north, r.area.east);
      ul.replaceChildren(...r.clients.map((c) => {
        const li = el("li", { "data-client": String(c.id) },
          "client " + c.id + " (" + (c.online ? "online" : "offline") + ") at " +
          c.fix.lat.toFixed(5) + ", " + c.fix.lon.toFixed(5));
        li.addEventListener("click", () => select(c.id));
        return li;
      }));
      ul.dataset.count = String(r.clients.length);
    } catch (e) {
      $("area-error").textContent = e.message;
      ul.replaceChildren();
      ul.dataset.count = "";
    }
  }
  $("area-form").addEventListener("submit", (ev) => { ev.preventDefault(); listArea(); });
  $("area-clear").addEventListener("click", () => {
    if (areaRect) { areaRect.remove(); areaRect = null; }
    $("area-results").replaceChildren();
    $("area-results").dataset.count = "";
  });
  // Shift-drag draws the rectangle.
  let dragStart = null;
  map.on("mousedown", (ev) => {
    if (!ev.originalEvent.shiftKey) return;
    dragStart = ev.latlng;
    map.dragging.disable();
  });
  map.on("mousemove", (ev) => {
    if (!dragStart) return;
    showArea(dragStart.lat, dragStart.lng, ev.latlng.lat, ev.latlng.lng);
  });
  map.on("mouseup", (ev) => {
    if (!dragStart) return;
    const a = dragStart, b = ev.latlng;
    dragStart = null;
    map.dragging.enable();
    $("area-south").value = Math.min(a.lat, b.lat).toFixed(6);
    $("area-north").value = Math.max(a.lat, b.lat).toFixed(6);
    $("area-west").value = Math.min(a.lng, b.lng).toFixed(6);
    $("area-east").value = Math.max(a.lng, b.lng).toFixed(6);
    listArea();
  });

  // ---------- history replay ----------
  function closeHistory() {
    const h = state.history;
    if (h) {
      if (h.line) h.line.remove();
      if (h.marker) h.marker.remove();
      clearTimeout(h.timer);
    }
    state.history = null;
    const s = $("history-slider");
    s.disabled = true; s.max = "0"; s.value = "0";
    $("history-info").textContent = "";
    $("history-info").dataset.points = "0";
    $("history-info").dataset.frames = "0";
    $("history-frame").removeAttribute("src");
    $("history-frame").dataset.frame = "";
  }

  async function loadHistory() {
    if (state.selected === null) { $("history-info").textContent = "select a device first"; return; }
    closeHistory();
    const id = state.selected;
    const to = Date.now();
    const from = to - Number($("history-span").value);
    const q = "?from=" + from + "&to=" + to + "&limit=5000";
    try {
      const [track, frames] = await Promise.all([
        api("/api/clients/" + id + "/track" + q),
        api("/api/clients/" + id + "/frames" + q),
      ]);
      const h = { client: id, points: track.points, frames: frames.frames, timer: null };
      h.line = L.polyline(h.points.map((p) => [p.lat, p.lon]), { color: "#1d3557", weight: 3, dashArray: "6 6" }).addTo(map);
      h.marker = L.circleMarker([0, 0], { radius: 8, color: "#1d3557", fillColor: "#a8dadc", fillOpacity: 1 });
      state.history = h;
      const info = $("history-info");
      info.dataset.points = String(h.points.length);
      info.dataset.frames = String(h.frames.length);
      const steps = h.frames.length > 0 ? h.frames.length : h.points.length;
      const s = $("history-slider");
      s.max = String(Math.max(steps - 1, 0));
      s.value = "0";
      s.disabled = steps === 0;
      if (steps === 0) { info.textContent = "nothing stored for client " + id + " in that time"; return; }
      showHistory(0);
    } catch (e) {
      $("history-info").textContent = e.message;
    }
  }

  function showHistory(i) {
    const h = state.history;
    if (!h) return;
    const frame = h.frames.length > 0 ? h.frames[i] : null;
    const t = frame ? frame.received_ms : h.points[i].received_ms;
    // The stored position nearest in time.
    let best = null;
    for (const p of h.points) {
      if (!best || Math.abs(p.received_ms - t) < Math.abs(best.received_ms - t)) best = p;
    }
    const pos = frame && frame.fix ? [frame.fix.lat, frame.fix.lon] : best ? [best.lat, best.lon] : null;
    if (pos) { h.marker.setLatLng(pos); if (!map.hasLayer(h.marker)) h.marker.addTo(map); }
    const img = $("history-frame");
    if (frame) {
      img.src = "/api/clients/" + h.client + "/frames/" + frame.frame;
      img.dataset.frame = String(frame.frame);
    }
    $("history-info").textContent = "client " + h.client + " at " + fmtTime(t) +
      (frame ? ", frame " + frame.frame : "") + " (" + (i + 1) + " of " +
      (h.frames.length || h.points.length) + ")";
  }

  $("history-load").addEventListener("click", loadHistory);
  $("history-close").addEventListener("click", closeHistory);
  $("history-slider").addEventListener("input", (ev) => showHistory(Number(ev.target.value)));
  // Replay at the recorded pace times the chosen speed: each step waits the time between the
  // two frames (or fixes) as stored, divided by the speed, at most 2 s.
  $("history-play").addEventListener("click", () => {
    const h = state.history;
    if (!h) return;
    clearTimeout(h.timer);
    const s = $("history-slider");
    const times = h.frames.length > 0 ? h.frames.map((f) => f.received_ms) : h.points.map((p) => p.received_ms);
    const step = () => {
      const i = Number(s.value);
      if (i + 1 > Number(s.max)) { h.timer = null; return; }
      const speed = Number($("history-speed").value) || 1;
      const wait = Math.min(Math.max((times[i + 1] - times[i]) / speed, 0), 2000);
      h.timer = setTimeout(() => {
        s.value = String(i + 1);
        showHistory(i + 1);
        step();
      }, wait);
    };
    step();
  });

  // ---------- login ----------
  function showLogin() {
    state.user = null;
    $("user").textContent = "";
    $("user").dataset.name = "";
    $("logout").hidden = true;
    $("login").hidden = false;
    if (state.ws) { const ws = state.ws; state.ws = null; ws.close(); }
    $("conn").dataset.state = "closed";
    $("conn").textContent = "logged out";
    $("login-name").focus();
  }

  function loggedIn(user) {
    state.user = user;
    $("login").hidden = true;
    $("login-error").textContent = "";
    $("login-password").value = "";
    $("user").textContent = user.name + " (" + user.role + ")";
    $("user").dataset.name = user.name;
    $("user").dataset.role = user.role;
    $("logout").hidden = false;
    if (!state.started) {
      state.started = true;
      loadMap().catch((e) => { $("map").dataset.error = e.message; });
    }
    api("/api/clients").then((list) => {
      for (const c of list) update(c);
      if (!state.fitted) fitFleet();
    }).catch(() => {});
    if (!state.ws) connect();
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      const r = await api("/api/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: $("login-name").value, password: $("login-password").value }),
      });
      loggedIn(r.user);
    } catch (e) {
      $("login-error").textContent = e.message;
    }
  });

  $("logout").addEventListener("click", async () => {
    try { await api("/api/logout", { method: "POST" }); } catch (_) { /* logged out anyway */ }
    showLogin();
  });

  // ---------- start ----------
  api("/api/me").then(loggedIn).catch(() => {});
})();
