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
    tracks: new Map(), // id -> L.polyline
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
  map.setView([35.6812, 139.7671], 15);

  async function loadMap() {
    const info = await api("/api/map");
    const b = info.bounds;
    map.fitBounds([[b.south, b.west], [b.north, b.east]], { padding: [20, 20] });
    if (info.tiles) {
      L.tileLayer("/tiles/{z}/{x}/{y}.png", { maxZoom: 19, attribution: "local tiles" }).addTo(map);
    }
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

  function trackFor(c) {
    let t = state.tracks.get(c.id);
    const pos = [c.fix.lat, c.fix.lon];
    if (!t) {
      t = L.polyline([], { color: "#e63946", weight: 3, opacity: 0.8 }).addTo(map);
      state.tracks.set(c.id, t);
      // Seed the track with the stored one.
      api("/api/clients/" + c.id + "/track").then((r) => {
        const pts = r.points.map((p) => [p.lat, p.lon]);
        const now = t.getLatLngs();
        t.setLatLngs(pts.concat(now).slice(-TRACK_POINTS));
      }).catch(() => {});
    }
    const pts = t.getLatLngs();
    const last = pts[pts.length - 1];
    if (!last || last.lat !== pos[0] || last.lng !== pos[1]) {
      t.addLatLng(pos);
      if (pts.length > TRACK_POINTS) t.setLatLngs(pts.slice(-TRACK_POINTS));
    }
  }

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
    if (t) { t.remove(); state.tracks.delete(id); }
  }

  // ---------- selection and live picture ----------
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
    const c = state.clients.get(id);
    if (c) showLive(c);
    renderCommands();
    api("/api/clients/" + id + "/commands").then((list) => {
      for (const r of list) state.commands.set(r.id, r);
      renderCommands();
    }).catch(() => {});
  }

  function showLive(c) {
    const img = $("live-frame");
    if (c.last_frame == null) {
      $("live-caption").textContent = "No frame stored yet.";
      return;
    }
    const want = String(c.last_frame);
    if (img.dataset.pending === want || img.dataset.frame === want) return;
    img.dataset.pending = want;
    const src = "/api/clients/" + c.id + "/frames/" + want;
    const next = new Image();
    next.onload = () => {
      if (state.selected !== c.id) return;
      img.src = src;
      img.dataset.frame = want;
      $("live-caption").textContent = "client " + c.id + ", frame " + want +
        (c.fix ? " at " + c.fix.lat.toFixed(5) + ", " + c.fix.lon.toFixed(5) : "");
    };
    next.onerror = () => { img.dataset.pending = ""; };
    next.src = src;
  }

  // ---------- live push ----------
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/api/live");
    state.ws = ws;
    const conn = $("conn");
    ws.onopen = () => { conn.dataset.state = "open"; conn.textContent = "live"; };
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
        if (state.selected === null && state.clients.size > 0) {
          select(Math.min(...state.clients.keys()));
        }
      } else if (msg.type === "command") {
        state.commands.set(msg.command.id, msg.command);
        renderCommands();
      } else {
        // Any other message (hello, geofence, ...) for other scripts: "livecam:TYPE" events.
        window.dispatchEvent(new CustomEvent("livecam:" + msg.type, { detail: msg }));
      }
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
      clearInterval(h.timer);
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
  $("history-play").addEventListener("click", () => {
    const h = state.history;
    if (!h) return;
    clearInterval(h.timer);
    const s = $("history-slider");
    h.timer = setInterval(() => {
      const next = Number(s.value) + 1;
      if (next > Number(s.max)) { clearInterval(h.timer); return; }
      s.value = String(next);
      showHistory(next);
    }, 200);
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
    api("/api/clients").then((list) => { for (const c of list) update(c); }).catch(() => {});
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
