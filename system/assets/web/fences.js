// livecam browser client, part 2: groups of clients, geofences drawn on the map, the live list
// of enter/leave events, and the history panel's zip download. Plain JavaScript, no build step;
// loaded after app.js and built on its window.livecam (the Leaflet map, the selected client).
// Live events arrive as the "livecam:geofence" window event app.js dispatches for the live
// socket's {"type":"geofence"} messages; "livecam:hello" (every (re)connect) reloads the lists.
// State for tests: livecam.groups, livecam.fences (id -> record), livecam.fenceLayers,
// livecam.fenceEvents (newest first), livecam.drawing (the points of a fence being drawn).
"use strict";

(function () {
  const EVENTS_SHOWN = 100;
  const $ = (id) => document.getElementById(id);
  const lc = window.livecam;
  const map = lc.map;
  lc.groups = new Map();
  lc.fences = new Map();
  lc.fenceLayers = new Map();
  lc.fenceEvents = [];
  lc.drawing = null; // {points: [[lat, lon]...], line, dots}

  async function api(path, options) {
    const res = await fetch(path, options);
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: text }; }
    if (!res.ok) {
      const err = new Error(body && body.error ? body.error : res.status + " " + res.statusText);
      err.status = res.status;
      throw err;
    }
    return body;
  }
  const post = (path, body) => api(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function button(text, attrs, onclick) {
    const b = el("button", Object.assign({ type: "button" }, attrs), text);
    b.addEventListener("click", onclick);
    return b;
  }

  // ---------- the panel ----------
  const panel = el("section", { id: "fences" });
  panel.innerHTML = `
    <h2>Groups</h2>
    <div class="row">
      <input id="group-name" placeholder="name" size="10">
      <input id="group-members" placeholder="clients, e.g. 1,2" size="10">
      <button id="group-use-selected" type="button" title="the selected device and those listed in Area">Use selected</button>
      <button id="group-create" type="button">Create group</button>
    </div>
    <div id="group-error" class="error"></div>
    <ul id="group-list"></ul>
    <h2>Geofences</h2>
    <div class="row">
      <input id="fence-name" placeholder="name" size="10">
      <label>group <select id="fence-group"><option value="">all clients</option></select></label>
    </div>
    <div class="row">
      <button id="fence-draw" type="button">Draw fence</button>
      <button id="fence-finish" type="button" disabled>Finish</button>
      <button id="fence-cancel" type="button" disabled>Cancel</button>
      <span id="fence-hint"></span>
    </div>
    <div id="fence-error" class="error"></div>
    <ul id="fence-list"></ul>
    <h2>Fence events</h2>
    <ul id="fence-events" data-count="0"></ul>`;
  $("side").appendChild(panel);

  // ---------- groups ----------
  function renderGroups() {
    const list = [...lc.groups.values()].sort((a, b) => a.id - b.id);
    $("group-list").replaceChildren(...list.map((g) => {
      const li = el("li", { "data-group": String(g.id) },
        g.name + ": clients " + g.members.join(", ") + " ");
      // The group's cameras playing at once in the live grid (app.js).
      li.appendChild(button("Grid", { class: "group-grid" }, () => lc.setGrid(g.members)));
      li.appendChild(button("Delete", { class: "group-delete" }, () => deleteGroup(g.id)));
      return li;
    }));
    const sel = $("fence-group");
    const keep = sel.value;
    sel.replaceChildren(el("option", { value: "" }, "all clients"),
      ...list.map((g) => el("option", { value: String(g.id) }, g.name)));
    sel.value = lc.groups.has(Number(keep)) ? keep : "";
  }
  async function loadGroups() {
    const list = await api("/api/groups");
    lc.groups = new Map(list.map((g) => [g.id, g]));
    renderGroups();
  }
  $("group-use-selected").addEventListener("click", () => {
    const ids = new Set();
    if (lc.selected !== null) ids.add(lc.selected);
    for (const li of document.querySelectorAll("#area-results li[data-client]")) {
      ids.add(Number(li.dataset.client));
    }
    $("group-members").value = [...ids].sort((a, b) => a - b).join(",");
  });
  $("group-create").addEventListener("click", async () => {
    $("group-error").textContent = "";
    const text = $("group-members").value.trim();
    const members = text === "" ? [] : text.split(",").map((s) => s.trim());
    // Numbers go as numbers; anything else goes as typed, and the server names it.
    const body = {
      name: $("group-name").value,
      members: members.map((m) => (/^\d+$/.test(m) ? Number(m) : m)),
    };
    try {
      const g = await post("/api/groups", body);
      lc.groups.set(g.id, g);
      renderGroups();
      $("group-name").value = "";
    } catch (e) {
      $("group-error").textContent = e.message;
    }
  });
  async function deleteGroup(id) {
    $("group-error").textContent = "";
    try {
      await api("/api/groups/" + id, { method: "DELETE" });
      lc.groups.delete(id);
      renderGroups();
    } catch (e) {
      $("group-error").textContent = e.message;
    }
  }

  // ---------- fences ----------
  function showFence(f) {
    const old = lc.fenceLayers.get(f.id);
    if (old) old.remove();
    const layer = L.polygon(f.points, { color: "#f4a261", weight: 2, fillOpacity: 0.12 }).addTo(map);
    layer.bindTooltip(f.name);
    lc.fenceLayers.set(f.id, layer);
  }
  function renderFences() {
    const list = [...lc.fences.values()].sort((a, b) => a.id - b.id);
    $("fence-list").replaceChildren(...list.map((f) => {
      const g = f.group == null ? "all clients" : (lc.groups.get(f.group) || { name: "group " + f.group }).name;
      const li = el("li", { "data-fence": String(f.id) }, f.name + " (" + g + ", " + f.points.length + " points) ");
      li.appendChild(button("Delete", { class: "fence-delete" }, () => deleteFence(f.id)));
      return li;
    }));
    for (const [id, layer] of lc.fenceLayers) {
      if (!lc.fences.has(id)) { layer.remove(); lc.fenceLayers.delete(id); }
    }
    for (const f of list) if (!lc.fenceLayers.has(f.id)) showFence(f);
  }
  async function loadFences() {
    const list = await api("/api/geofences");
    lc.fences = new Map(list.map((f) => [f.id, f]));
    renderFences();
  }
  async function deleteFence(id) {
    $("fence-error").textContent = "";
    try {
      await api("/api/geofences/" + id, { method: "DELETE" });
      lc.fences.delete(id);
      renderFences();
    } catch (e) {
      $("fence-error").textContent = e.message;
    }
  }

  // Drawing: "Draw fence", a click on the map per corner, "Finish" (or "Cancel").
  function drawingButtons() {
    const on = lc.drawing !== null;
    $("fence-draw").disabled = on;
    $("fence-finish").disabled = !on || lc.drawing.points.length < 3;
    $("fence-cancel").disabled = !on;
    $("fence-hint").textContent = on ? lc.drawing.points.length + " points: click the map to add one" : "";
    $("map").classList.toggle("drawing", on);
  }
  function stopDrawing() {
    if (lc.drawing) {
      lc.drawing.line.remove();
      for (const d of lc.drawing.dots) d.remove();
    }
    lc.drawing = null;
    map.doubleClickZoom.enable();
    drawingButtons();
  }
  $("fence-draw").addEventListener("click", () => {
    stopDrawing();
    $("fence-error").textContent = "";
    lc.drawing = {
      points: [],
      line: L.polyline([], { color: "#f4a261", weight: 2, dashArray: "4 4" }).addTo(map),
      dots: [],
    };
    map.doubleClickZoom.disable();
    drawingButtons();
  });
  map.on("click", (ev) => {
    const d = lc.drawing;
    if (!d) return;
    const p = [ev.latlng.lat, ev.latlng.lng];
    d.points.push(p);
    d.line.setLatLngs(d.points.concat([d.points[0]]));
    d.dots.push(L.circleMarker(p, { radius: 4, color: "#f4a261" }).addTo(map));
    drawingButtons();
  });
  $("fence-cancel").addEventListener("click", stopDrawing);
  $("fence-finish").addEventListener("click", async () => {
    const d = lc.drawing;
    if (!d) return;
    $("fence-error").textContent = "";
    const group = $("fence-group").value;
    try {
      const f = await post("/api/geofences", {
        name: $("fence-name").value,
        group: group === "" ? null : Number(group),
        points: d.points,
      });
      lc.fences.set(f.id, f);
      stopDrawing();
      renderFences();
      $("fence-name").value = "";
    } catch (e) {
      $("fence-error").textContent = e.message; // keep drawing: the points can be fixed
    }
  });

  // ---------- events ----------
  function addEvents(events) {
    // Newest first, each (fence, client, frame) once.
    const key = (e) => e.fence + "/" + e.client + "/" + e.frame;
    const seen = new Set(lc.fenceEvents.map(key));
    for (const e of events) if (!seen.has(key(e))) { lc.fenceEvents.push(e); seen.add(key(e)); }
    lc.fenceEvents.sort((a, b) => b.at_ms - a.at_ms);
    lc.fenceEvents.length = Math.min(lc.fenceEvents.length, EVENTS_SHOWN);
    const ul = $("fence-events");
    ul.replaceChildren(...lc.fenceEvents.map((e) => el("li", {
      "data-kind": e.kind, "data-fence": String(e.fence), "data-client": String(e.client),
    }, new Date(e.at_ms).toLocaleTimeString() + " client " + e.client + " " +
       (e.kind === "enter" ? "entered " : "left ") + e.fence_name)));
    ul.dataset.count = String(lc.fenceEvents.length);
  }
  window.addEventListener("livecam:geofence", (ev) => addEvents([ev.detail.event]));

  async function loadAll() {
    try {
      await loadGroups();
      await loadFences();
      const r = await api("/api/geofences/events");
      addEvents(r.events);
    } catch (_) { /* the login form is up; the next hello reloads */ }
  }
  window.addEventListener("livecam:hello", loadAll);

  // ---------- history download ----------
  const download = el("a", { id: "history-download", href: "#", download: "" }, "Download zip");
  download.title = "the selected device's pictures and fixes of the chosen span, as a zip";
  $("history-close").after(download);
  function exportUrl() {
    if (lc.selected === null) return null;
    const to = Date.now();
    const from = to - Number($("history-span").value);
    return "/api/clients/" + lc.selected + "/export.zip?from=" + from + "&to=" + to;
  }
  download.addEventListener("click", (ev) => {
    const url = exportUrl();
    if (url === null) { ev.preventDefault(); $("history-info").textContent = "select a device first"; return; }
    download.href = url;
  });
  lc.exportUrl = exportUrl;
})();
