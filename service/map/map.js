// The satdask map page: the catalog's scenes and runs as Leaflet tile layers in Web
// Mercator (no basemap), a legend of the run's classes, and the /infer answer of the
// tile under a click. Everything comes from this server; an API key, when the server
// wants one, is typed into the page and sent as X-API-Key (tiles are then fetched too).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(window.location.search);
  const state = {
    key: sessionStorage.getItem("satdask-key") || "",
    catalog: null,
    scene: null,        // the catalog entry of the chosen scene
    sceneLayer: null,
    runLayers: [],      // {run, layer, tl} for every run layer on the map
    bounds: null,
    pending: 0,
    outline: null,
  };

  const map = L.map("map", { zoomControl: true, attributionControl: true, minZoom: 0 });
  map.attributionControl.setPrefix(false);
  map.setView([0, 0], 2);
  window.satdaskMap = map; // for scripts driving the page (the browser test)

  // ------------------------------------------------------------------ requests

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (state.key) h["X-API-Key"] = state.key;
    return h;
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: headers({ Accept: "application/json" }) });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error((body && body.detail) || `${url}: ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // A tile URL template as given, or under this server when relative ("{z}" must stay
  // unescaped, so no URL object)
  function absolute(url) {
    return /^https?:\/\//.test(url) ? url : window.location.origin + (url.startsWith("/") ? "" : "/") + url;
  }

  // A tile layer that sends the API key: each tile is fetched and shown as a blob URL.
  const KeyedTiles = L.TileLayer.extend({
    createTile: function (coords, done) {
      const img = document.createElement("img");
      img.alt = "";
      fetch(this.getTileUrl(coords), { headers: headers() })
        .then((r) => (r.status === 200 ? r.blob() : null))
        .then((blob) => {
          if (!blob) { done(null, img); return; }
          img.onload = () => { URL.revokeObjectURL(img.src); done(null, img); };
          img.onerror = () => done(new Error("tile"), img);
          img.src = URL.createObjectURL(blob);
        })
        .catch((e) => done(e, img));
      return img;
    },
  });

  function tileLayer(tilejson, options) {
    const opts = Object.assign(
      {
        tileSize: 256,
        minZoom: 0,
        maxZoom: 24,
        minNativeZoom: tilejson.minzoom !== undefined ? tilejson.minzoom : 0,
        maxNativeZoom: tilejson.maxzoom !== undefined ? tilejson.maxzoom : 18,
        attribution: tilejson.attribution || "",
        bounds: tilejson.bounds
          ? L.latLngBounds([tilejson.bounds[1], tilejson.bounds[0]], [tilejson.bounds[3], tilejson.bounds[2]])
          : undefined,
      },
      options || {}
    );
    const url = absolute(tilejson.tiles[0]);
    const layer = state.key ? new KeyedTiles(url, opts) : L.tileLayer(url, opts);
    layer.on("loading", () => { state.pending += 1; setTiles(); });
    layer.on("load", () => { state.pending = Math.max(0, state.pending - 1); setTiles(); });
    return layer;
  }

  // body[data-tiles] is "loaded" once every layer on the map has its tiles (tests wait on it)
  function setTiles() {
    document.body.dataset.tiles = state.pending ? "loading" : "loaded";
  }

  // ------------------------------------------------------------------ catalog

  // The catalog's runs and scenes, as {name, tilejson} scenes and
  // {name, scene, layers: [{name, tilejson, legend}], legend} runs.
  function normalize(catalog) {
    const scenes = (catalog.scenes || []).map((s) => (typeof s === "string" ? { name: s } : s));
    const runs = (catalog.runs || []).map((r) => {
      let layers = r.layers || [];
      if (!Array.isArray(layers)) {
        layers = Object.entries(layers).map(([name, v]) => Object.assign({ name }, typeof v === "string" ? { tilejson: v } : v));
      }
      layers = layers.map((l) => (typeof l === "string" ? { name: l } : l));
      return Object.assign({}, r, { layers });
    });
    return { scenes, runs };
  }

  async function loadCatalog() {
    try {
      state.catalog = normalize(await getJSON("/tiles/catalog.json"));
    } catch (e) {
      if (e.status === 401) {
        status("This server wants an API key: type it below.", true);
        $("key-form").hidden = false;
        return;
      }
      status(`The catalog could not be read: ${e.message}`, true);
      return;
    }
    $("key-form").hidden = true;
    const { scenes, runs } = state.catalog;
    const select = $("scene");
    select.replaceChildren();
    for (const s of scenes) select.append(new Option(s.name, s.name));
    for (const r of runs) {
      if (r.scene && !scenes.some((s) => s.name === r.scene)) {
        scenes.push({ name: r.scene });
        select.append(new Option(r.scene, r.scene));
      }
    }
    if (!scenes.length) { status("No scenes or runs to show.", true); return; }
    const wanted = runs.find((r) => r.name === params.get("run"));
    const first = params.get("scene") || (wanted && wanted.scene) || (runs[0] && runs[0].scene) || scenes[0].name;
    select.value = scenes.some((s) => s.name === first) ? first : scenes[0].name;
    await chooseScene(select.value, wanted ? wanted.name : null);
  }

  async function tilejsonOf(entry) {
    if (entry.tilejson && typeof entry.tilejson === "object") return entry.tilejson;
    if (entry.tilejson) return getJSON(entry.tilejson);
    if (entry.tilejson_url) return getJSON(entry.tilejson_url);
    if (entry.url) return getJSON(entry.url);
    throw new Error(`${entry.name}: no tilejson`);
  }

  // ------------------------------------------------------------------ scene and runs

  async function chooseScene(name, runName) {
    for (const item of state.runLayers) map.removeLayer(item.tl);
    if (state.sceneLayer) map.removeLayer(state.sceneLayer);
    if (state.outline) { map.removeLayer(state.outline); state.outline = null; }
    state.runLayers = [];
    state.pending = 0;
    state.scene = state.catalog.scenes.find((s) => s.name === name);
    const runs = state.catalog.runs.filter((r) => r.scene === name);
    const box = $("runs");
    box.querySelectorAll(":scope > :not(legend)").forEach((n) => n.remove());
    try {
      if (state.scene && (state.scene.tilejson || state.scene.tilejson_url || state.scene.url)) {
        const tj = await tilejsonOf(state.scene);
        state.sceneLayer = tileLayer(tj, { zIndex: 1 }).addTo(map);
        state.bounds = tj.bounds;
        const label = document.createElement("label");
        const check = checkbox(true, (on) => toggle(state.sceneLayer, on));
        label.append(check, ` scene ${name}`);
        box.append(label);
      }
      let shown = false;
      for (const run of runs) {
        const head = document.createElement("div");
        head.className = "run";
        head.textContent = `run ${run.name}`;
        box.append(head);
        const wantRun = runName ? run.name === runName : !shown;
        for (const layer of run.layers) {
          const tj = await tilejsonOf(layer);
          if (!state.bounds) state.bounds = tj.bounds;
          const on = wantRun && layer.name === "prediction";
          const tl = tileLayer(tj, { zIndex: 10, opacity: opacity() });
          const item = { run, layer, tl };
          state.runLayers.push(item);
          if (on) { tl.addTo(map); shown = true; }
          const label = document.createElement("label");
          label.append(checkbox(on, (v) => { toggle(tl, v); drawLegend(); }), ` ${layer.name}`);
          box.append(label);
        }
      }
      if (!runs.length) box.append("No finished run of this scene.");
      drawLegend();
      fit();
      status(`${name}: ${runs.length} run${runs.length === 1 ? "" : "s"}`);
      setTiles();
    } catch (e) {
      status(`${name}: ${e.message}`, true);
    }
  }

  function checkbox(on, change) {
    const input = document.createElement("input");
    input.type = "checkbox";
    input.checked = on;
    input.addEventListener("change", () => change(input.checked));
    return input;
  }

  function toggle(layer, on) {
    if (on) layer.addTo(map); else map.removeLayer(layer);
  }

  function opacity() {
    return Number($("opacity").value) / 100;
  }

  function fit() {
    const b = state.bounds;
    if (b) map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
  }

  // The classes of the run layers on the map: value, name and colour.
  function drawLegend() {
    const legend = $("legend");
    legend.replaceChildren();
    for (const { run, layer, tl } of state.runLayers) {
      if (!map.hasLayer(tl)) continue;
      let entries = layer.legend || run.legend || run.classes || [];
      if (!entries.length && layer.range && layer.colors) {
        // a continuous layer: its ramp's colours at even steps of its range
        const [low, high] = layer.range;
        const n = layer.colors.length - 1;
        entries = layer.colors.map((color, i) => ({ color, value: +(low + ((high - low) * i) / n).toPrecision(3), name: "" }));
      }
      if (!entries.length) continue;
      const h = document.createElement("h2");
      h.textContent = `${run.name}: ${layer.name}`;
      const table = document.createElement("table");
      for (const c of entries) {
        const tr = table.insertRow();
        const sw = tr.insertCell();
        const swatch = document.createElement("div");
        swatch.className = "swatch";
        swatch.style.background = colour(c.color || c.colour);
        sw.append(swatch);
        tr.insertCell().textContent = c.value !== undefined ? String(c.value) : "";
        tr.insertCell().textContent = c.name || c.label || "";
      }
      legend.append(h, table);
    }
  }

  function colour(c) {
    if (Array.isArray(c)) return `rgb(${c.slice(0, 3).join(",")})`;
    if (typeof c === "string" && /^[0-9a-f]{6,8}$/i.test(c)) return `#${c}`;
    return c || "transparent";
  }

  function status(text, error) {
    const p = $("status");
    p.textContent = text;
    p.classList.toggle("error", !!error);
  }

  // ------------------------------------------------------------------ clicks

  async function onClick(event) {
    if (!state.scene) return;
    const scene = state.scene.name;
    const { lat, lng } = event.latlng;
    const lon = ((lng + 180) % 360 + 360) % 360 - 180;
    const body = $("answer-body");
    body.hidden = false;
    body.textContent = "…";
    delete body.dataset.row;
    try {
      const q = new URLSearchParams({ scene, lon: lon.toFixed(7), lat: lat.toFixed(7) });
      const at = await getJSON(`/map/locate?${q}`);
      if (at.row === null) { body.textContent = `No tile of ${scene} here.`; return; }
      if (state.outline) map.removeLayer(state.outline);
      state.outline = L.polygon(at.corners, { color: "#111", weight: 3, dashArray: "6 4", fill: false, interactive: false }).addTo(map);
      const response = await fetch("/infer", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json", Accept: "application/json" }),
        body: JSON.stringify({ scene, row: at.row, col: at.col }),
      });
      const answer = await response.json();
      body.dataset.row = at.row;
      body.dataset.col = at.col;
      body.dataset.status = response.status;
      body.textContent = `POST /infer {"scene": ${JSON.stringify(scene)}, "row": ${at.row}, "col": ${at.col}} -> ${response.status}\n`
        + JSON.stringify(answer, null, 2);
    } catch (e) {
      body.textContent = `The tile could not be asked for: ${e.message}`;
    }
  }

  // ------------------------------------------------------------------ wiring

  map.on("click", onClick);
  $("scene").addEventListener("change", (e) => chooseScene(e.target.value, null));
  $("opacity").addEventListener("input", () => {
    $("opacity-value").textContent = `${$("opacity").value}%`;
    for (const { tl } of state.runLayers) tl.setOpacity(opacity());
  });
  $("fit").addEventListener("click", fit);
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem("satdask-key", state.key);
    loadCatalog();
  });
  loadCatalog();
})();
