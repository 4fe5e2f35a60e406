/* basewatch analysis viewer: before/after swipe, change overlay, score heat, object list.
 *
 * Plain JS + Leaflet (vendored). Everything is fetched from the same server through the public API,
 * relative to this page (/v1/analyses/{id}/viewer), so it also works behind a path prefix and offline.
 * With ?token=KEY in the page URL, JSON requests send "Authorization: Bearer KEY" and tiles use the
 * token-bearing URLs of the TileJSON documents.
 *
 * Object numbers are vector markers (not burnt into tiles), decluttered on every view change: where two
 * would overlap, the more important object (vehicles first, then the larger) keeps its number.
 *
 * Test hook: window.basewatchViewer = {ready, status, error, tilesLoaded, tileErrors, idle, objects, map,
 *                                      swipe, selected, labelsShown, select(id), setSwipe(f)}
 */
(function () {
  "use strict";

  // The product contract (change types and their colours, object classes), filled in by the server from
  // imagery/contract.py; the stylesheet's --appeared, --disappeared, --changed come from it too.
  var CONTRACT = JSON.parse(document.getElementById("bw-contract").textContent);
  var COLORS = CONTRACT.change_colours;
  var CHANGES = CONTRACT.change_types;
  var CHANGE_LABELS = CONTRACT.change_labels;
  var CLASSES = CONTRACT.classes;
  var CLASS_LABELS = CONTRACT.class_labels;
  CHANGES.forEach(function (c) { document.documentElement.style.setProperty("--" + c, COLORS[c]); });
  var POLL_MS = 2000;

  var analysisId = document.body.getAttribute("data-analysis-id");
  var token = new URLSearchParams(window.location.search).get("token");
  // The page is /v1/analyses/{id}/viewer, so "." is /v1/analyses/{id}/ (query string dropped).
  var root = new URL(".", window.location.href);
  var analysisUrl = root.href.replace(/\/$/, "");

  var state = {
    ready: false, status: "loading", error: null,
    tilesLoaded: 0, tileErrors: 0, idle: false, objects: 0, labelsShown: 0,
    map: null, swipe: 0.5, swipeEnabled: true, selected: null,
    select: function (id) { return select(id); },
    setSwipe: function (f) { setSwipe(f); }
  };
  window.basewatchViewer = state;

  var $ = function (id) { return document.getElementById(id); };
  var map, afterPane, layers = {}, loadingLayers = {}, features = [], featureLayers = {}, objectGroup = null, highlight = null;
  var labelGroup = null, labelMarkers = {};
  var filter = {};
  CHANGES.forEach(function (c) { filter[c] = true; });
  var nativeMaxZoom = 18;

  // ---------------------------------------------------------------------------------------------
  // HTTP
  // ---------------------------------------------------------------------------------------------

  function ApiError(status, detail, url, what) {
    this.status = status;
    this.detail = detail;
    this.url = url;
    this.what = what;
    this.message = "HTTP " + status + (detail ? ": " + detail : "");
  }

  /** GET a JSON document of the API; ``what`` names it in error messages. */
  function api(path, what) {
    var url = new URL(path, root.href).href;
    var headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    return fetch(url, { headers: headers, credentials: "same-origin" }).then(function (r) {
      if (r.ok) return r.json();
      return r.json().catch(function () { return {}; }).then(function (body) {
        throw new ApiError(r.status, body && body.detail, url, what);
      });
    }, function (err) {
      throw new ApiError(0, "the basewatch service could not be reached (" + err.message + ")", url, what);
    });
  }

  /** A URL a plain link or <img> can open: carries ?token= when the page has one. */
  function withToken(path) {
    var url = new URL(path, root.href);
    if (token) url.searchParams.set("token", token);
    return url.href;
  }

  // ---------------------------------------------------------------------------------------------
  // Formatting
  // ---------------------------------------------------------------------------------------------

  function fmtInt(n) { return Number(n || 0).toLocaleString("en-US"); }

  function fmtArea(m2) {
    if (m2 == null || isNaN(m2)) return "–";
    if (m2 >= 100000) return (m2 / 10000).toLocaleString("en-US", { maximumFractionDigits: 1 }) + " ha";
    return Math.round(m2).toLocaleString("en-US") + " m²";
  }

  function fmtPct(f) {
    if (f == null || isNaN(f)) return "–";
    return (100 * f).toLocaleString("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 }) + " %";
  }

  function fmtNum(x, digits) {
    if (x == null || isNaN(x)) return "–";
    return Number(x).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  }

  function fmtLatLng(lat, lng, digits) {
    return Math.abs(lat).toFixed(digits) + "° " + (lat >= 0 ? "N" : "S") + ", " +
           Math.abs(lng).toFixed(digits) + "° " + (lng >= 0 ? "E" : "W");
  }

  function fmtSigned(x) { return (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(2); }

  function daysBetween(a, b) {
    var t0 = Date.parse(a), t1 = Date.parse(b);
    if (isNaN(t0) || isNaN(t1)) return null;
    return Math.round((t1 - t0) / 86400000);
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  // ---------------------------------------------------------------------------------------------
  // Messages
  // ---------------------------------------------------------------------------------------------

  function showMessage(title, detail, kind, progress) {
    var box = $("message");
    box.textContent = "";
    box.className = "message " + (kind || "info");
    box.appendChild(el("div", "message-title", title));
    if (detail) box.appendChild(el("div", "message-detail", detail));
    if (progress != null) {
      var bar = el("div", "progress");
      var fill = el("div", "progress-fill");
      fill.style.width = Math.round(100 * Math.max(0, Math.min(1, progress))) + "%";
      bar.appendChild(fill);
      box.appendChild(bar);
    }
    box.hidden = false;
  }

  function hideMessage() { $("message").hidden = true; }

  function setStatusLine(text, kind) {
    var s = $("status-line");
    s.textContent = text;
    s.className = "status-line " + (kind || "");
  }

  function fail(err) {
    var title, detail;
    if (err instanceof ApiError) {
      if (err.status === 401) {
        title = "An API key is required";
        detail = token ? "The key in this link is invalid or has been revoked."
                       : "Open this page with ?token=YOUR_KEY appended to its address.";
      } else if (err.status === 403) {
        title = "Not allowed";
        detail = err.detail || "This key may not read this analysis.";
      } else if (err.status === 404) {
        title = "Analysis not found";
        detail = "It does not exist, was deleted, or belongs to another team.";
      } else if (err.status === 0) {
        title = "Service unreachable";
        detail = err.detail;
      } else {
        title = "Could not load " + (err.what || "data") + " (HTTP " + err.status + ")";
        detail = err.detail || err.url;
      }
    } else {
      title = "The viewer failed";
      detail = String(err && err.message ? err.message : err);
    }
    state.status = "error";
    state.error = title + (detail ? ": " + detail : "");
    setStatusLine(title, "bad");
    showMessage(title, detail, "error");
    if (window.console) console.error("basewatch viewer:", err);
  }

  // ---------------------------------------------------------------------------------------------
  // Loading
  // ---------------------------------------------------------------------------------------------

  function waitForAnalysis() {
    return api(analysisUrl, "the analysis").then(function (a) {
      state.status = a.status;
      if (a.status === "queued" || a.status === "running") {
        var stage = a.stage ? " — " + a.stage : "";
        var pct = Math.round(100 * (a.progress || 0));
        setStatusLine((a.status === "queued" ? "Queued" : "Running " + pct + " %") + stage, "warn");
        showMessage(a.status === "queued" ? "The analysis is queued" : "The analysis is running",
                    (a.status === "running" ? pct + " % done" + stage + ". " : "") +
                    "The map opens by itself when it has finished.", "info", a.progress || 0);
        return new Promise(function (resolve) { setTimeout(resolve, POLL_MS); }).then(waitForAnalysis);
      }
      return a;
    });
  }

  function main() {
    buildChangeTypeControls();
    setStatusLine("Loading analysis…");
    waitForAnalysis().then(function (a) {
      if (a.status === "failed") {
        state.status = "failed";
        state.error = a.error || "the analysis failed";
        setStatusLine("Failed", "bad");
        showMessage("The analysis failed", a.error || "No reason was recorded.", "error");
        return;
      }
      hideMessage();
      fillSummary(a);
      fillTimeline(a);
      // TileJSON embeds the key in its tile URLs only when asked with ?token= (tiles are plain <img> requests).
      return Promise.all([
        api(withToken("tilejson.json?layer=before"), "the before image layer"),
        api(withToken("tilejson.json?layer=after"), "the after image layer"),
        api(withToken("tilejson.json?layer=score"), "the change score layer"),
        api(withToken("tilejson.json?layer=changes"), "the change layer"),
        api("changes.geojson", "the change objects")
      ]).then(function (r) {
        buildMap({ before: r[0], after: r[1], score: r[2], changes: r[3] });
        buildObjects(r[4]);
        state.status = "succeeded";
        state.ready = true;
        document.body.classList.add("ready");
      });
    }).catch(fail);
  }

  // ---------------------------------------------------------------------------------------------
  // Side panel
  // ---------------------------------------------------------------------------------------------

  /** Arrived / left vehicles (estimated) of a counts table, e.g. "+3 / −1 veh.". */
  function vehicleText(counts) {
    var v = (counts && counts.vehicles_estimated) || {};
    return "+" + fmtInt(v.appeared) + " / −" + fmtInt(v.disappeared) + " veh.";
  }

  /** The AOI's dates (GET /v1/aois/{id}/timeline): counts per date and zone, gaps for missing or cloudy
   * coverage; each date with an analysis links to its viewer. Shown when the AOI has more than two dates. */
  function fillTimeline(a) {
    var aoiPath = "../../aois/" + encodeURIComponent(a.aoi_id);
    return api(aoiPath + "/timeline?limit=500", "the timeline").then(function (page) {
      var items = page.items || [];
      state.timeline = items.length;
      if (items.length < 3) return;
      var list = $("timeline");
      list.textContent = "";
      items.forEach(function (item) {
        var li = el("li");
        li.setAttribute("data-date", item.date);
        var row = el(item.analysis_id ? "a" : "div", "tl-row");
        if (item.analysis_id) {
          row.href = withToken("../" + encodeURIComponent(item.analysis_id) + "/viewer");
          row.setAttribute("data-analysis-id", item.analysis_id);
        }
        if (item.analysis_id === analysisId) { li.classList.add("current"); row.setAttribute("aria-current", "page"); }
        row.appendChild(el("span", "tl-date", item.date));
        var text;
        if (item.gap) {
          li.classList.add("gap");
          text = item.analysed_fraction != null ? "gap: " + fmtPct(1 - item.analysed_fraction) + " not seen (cloud, partial)"
            : item.status === "failed" ? "gap: the analysis failed" : "gap: no analysis yet";
        } else if (!item.analysis_id) {
          text = "first date";
        } else {
          text = vehicleText(item.counts) + " · " + fmtInt(item.counts.total) + " objects";
        }
        row.appendChild(el("span", "tl-counts", text));
        var zones = Object.keys(item.zones || {});
        if (zones.length && !item.gap) {
          row.appendChild(el("span", "tl-zones", zones.map(function (z) { return z + " " + vehicleText(item.zones[z]); }).join(" · ")));
        }
        li.appendChild(row);
        list.appendChild(li);
      });
      $("timeline-count").textContent = items.length + (page.next ? "+" : "") + " dates";
      $("timeline-png-link").href = withToken(aoiPath + "/timeline.png");
      $("timeline-block").hidden = false;
      var current = list.querySelector("li.current");
      if (current) current.scrollIntoView({ block: "nearest" });
    }).catch(function () { state.timeline = -1; });  // the timeline is an extra: the analysis still shows
  }

  function fillSummary(a) {
    var s = a.summary || {};
    var finished = a.finished_at ? new Date(a.finished_at) : null;
    setStatusLine("Finished" + (finished && !isNaN(finished) ? " " + finished.toISOString().slice(0, 16).replace("T", " ") + " UTC" : ""), "ok");
    $("before-date").textContent = s.before_date || "unknown";
    $("after-date").textContent = s.after_date || "unknown";
    $("map-before-date").textContent = s.before_date || "";
    $("map-after-date").textContent = s.after_date || "";
    var gap = daysBetween(s.before_date, s.after_date);
    $("date-gap").textContent = gap == null ? "" : gap + " days apart";
    $("changed-area").textContent = fmtArea(s.changed_area_m2);
    $("not-analysed").textContent = fmtPct(s.not_analysed_fraction);

    var counts = (s.counts && s.counts.objects) || {};
    var tbody = document.querySelector("#counts tbody");
    var tfoot = document.querySelector("#counts tfoot");
    tbody.textContent = "";
    tfoot.textContent = "";
    var totals = {};
    CHANGES.forEach(function (c) { totals[c] = 0; });
    CLASSES.forEach(function (cls) {
      var tr = el("tr");
      tr.appendChild(el("th", null, CLASS_LABELS[cls])).setAttribute("scope", "row");
      var any = false;
      CHANGES.forEach(function (c) {
        var n = (counts[c] && counts[c][cls]) || 0;
        totals[c] += n;
        any = any || n > 0;
        tr.appendChild(el("td", "num" + (n ? "" : " zero"), fmtInt(n)));
      });
      if (!any) tr.className = "empty";
      tbody.appendChild(tr);
    });
    var tr = el("tr");
    tr.appendChild(el("th", null, "Total")).setAttribute("scope", "row");
    CHANGES.forEach(function (c) { tr.appendChild(el("td", "num", fmtInt(totals[c]))); });
    tfoot.appendChild(tr);
    var veh = s.counts && s.counts.vehicles_estimated;
    if (veh) {
      var vr = el("tr", "vehicles");
      vr.appendChild(el("th", null, "Vehicles (est.)")).setAttribute("scope", "row");
      CHANGES.forEach(function (c) { vr.appendChild(el("td", "num", fmtInt(veh[c] || 0))); });
      tfoot.appendChild(vr);
    }

    var meta = [];
    if (s.method) meta.push("method " + s.method);
    if (s.grid && s.grid.pixel_size_m) meta.push("pixel " + fmtNum(s.grid.pixel_size_m[0], 2) + " m");
    if (s.grid && s.grid.crs && s.grid.crs.length < 20) meta.push(s.grid.crs);
    if (s.shift && s.shift.east_m != null) meta.push("co-registration shift " + fmtSigned(s.shift.east_m) + " m E, " + fmtSigned(s.shift.north_m) + " m N");
    $("meta").textContent = meta.join(" · ");
    var caveats = $("caveats");
    caveats.textContent = "";
    (s.caveats || []).forEach(function (text) { caveats.appendChild(el("li", null, text)); });

    var aoi = s.aoi || {};
    $("aoi-name").textContent = aoi.name || "";
    var where = [];
    if (aoi.centre_lonlat) where.push(fmtLatLng(aoi.centre_lonlat[1], aoi.centre_lonlat[0], 5));
    if (aoi.mgrs) where.push("MGRS " + aoi.mgrs);
    $("aoi-location").textContent = where.join(" · ");

    $("report-pdf-link").href = withToken("report.pdf");
    $("report-link").href = withToken("report.png");
    $("geojson-link").href = withToken("changes.geojson");
    $("kml-link").href = withToken("exports/kml");
    $("gpkg-link").href = withToken("exports/gpkg");
    $("csv-link").href = withToken("exports/csv");
  }

  // ---------------------------------------------------------------------------------------------
  // Map
  // ---------------------------------------------------------------------------------------------

  function tileLayer(name, tj, pane, bounds, extra) {
    var template = tj.tiles && tj.tiles[0];
    if (!template) throw new Error("TileJSON of layer " + name + " has no tile URL");
    var opts = {
      pane: pane, bounds: bounds, minZoom: map.getMinZoom(), maxZoom: map.getMaxZoom(),
      maxNativeZoom: tj.maxzoom, minNativeZoom: Math.min(tj.minzoom, tj.maxzoom), keepBuffer: 3,
      attribution: name === "before" ? (tj.attribution || "") : "", updateWhenZooming: false
    };
    for (var k in extra || {}) opts[k] = extra[k];
    var layer = L.tileLayer(template, opts);
    layer.on("loading", function () { loadingLayers[name] = true; refreshIdle(); });
    layer.on("load", function () { delete loadingLayers[name]; refreshIdle(); });
    layer.on("remove", function () { delete loadingLayers[name]; refreshIdle(); });
    layer.on("tileload", function () { state.tilesLoaded++; });
    layer.on("tileerror", function () {
      state.tileErrors++;
      var w = $("tile-warning");
      w.textContent = state.tileErrors + " map tile" + (state.tileErrors === 1 ? "" : "s") + " could not be loaded";
      w.hidden = false;
    });
    layers[name] = layer;
    return layer;
  }

  function refreshIdle() {
    state.idle = Object.keys(loadingLayers).length === 0;
  }

  function buildMap(tj) {
    var b = tj.after.bounds || tj.before.bounds || [-180, -85, 180, 85];
    var bounds = L.latLngBounds([b[1], b[0]], [b[3], b[2]]);
    var minNative = Math.min(tj.before.minzoom, tj.after.minzoom);
    nativeMaxZoom = Math.max(tj.before.maxzoom, tj.after.maxzoom);
    map = L.map("map", {
      // TileJSON maxzoom already includes one overzoom level; allow one more, scaled by the browser.
      minZoom: Math.max(0, minNative - 1), maxZoom: nativeMaxZoom + 1,
      // Whole zoom levels: scaled tiles at fractional zooms show seams between them.
      zoomSnap: 1, zoomDelta: 1,
      maxBounds: bounds.pad(1.5), maxBoundsViscosity: 0.7,
      attributionControl: true, zoomControl: true, boxZoom: true
    });
    state.map = map;
    map.attributionControl.setPrefix("Leaflet");
    L.control.scale({ imperial: false, position: "bottomright" }).addTo(map);
    addCoordinates();

    function pane(name, z) { var p = map.createPane(name); p.style.zIndex = String(z); return p; }
    pane("bw-before", 210);
    afterPane = pane("bw-after", 220);
    pane("bw-score", 300);
    pane("bw-changes", 350);
    pane("bw-objects", 420);
    pane("bw-highlight", 430);
    pane("bw-labels", 440);

    map.fitBounds(bounds, { animate: false, padding: [16, 16] });

    tileLayer("before", tj.before, "bw-before", bounds).addTo(map);
    tileLayer("after", tj.after, "bw-after", bounds).addTo(map);
    tileLayer("score", tj.score, "bw-score", bounds, { opacity: 0.75 });
    tileLayer("changes", tj.changes, "bw-changes", bounds, { opacity: 0.9 }).addTo(map);

    // The extent of the analysis, as a thin frame, so empty (transparent) areas read as "outside".
    L.rectangle(bounds, { pane: "bw-changes", color: "#6b7480", weight: 1, dashArray: "4 4", fill: false, interactive: false }).addTo(map);

    map.on("move zoom zoomend moveend resize viewreset", updateClip);
    wireControls();
    initSwipe();
    updateClip();
  }

  function addCoordinates() {
    var Coords = L.Control.extend({
      options: { position: "bottomleft" },
      onAdd: function () {
        var div = L.DomUtil.create("div", "coords");
        div.textContent = "";
        this._div = div;
        return div;
      }
    });
    var c = new Coords().addTo(map);
    map.on("mousemove", function (e) {
      var lat = e.latlng.lat, lng = e.latlng.lng;
      c._div.textContent = Math.abs(lat).toFixed(6) + "° " + (lat >= 0 ? "N" : "S") + "  " +
                           Math.abs(lng).toFixed(6) + "° " + (lng >= 0 ? "E" : "W");
    });
    map.on("mouseout", function () { c._div.textContent = ""; });
  }

  function wireControls() {
    $("toggle-changes").addEventListener("change", function (e) {
      if (e.target.checked) layers.changes.addTo(map); else map.removeLayer(layers.changes);
    });
    $("toggle-labels").addEventListener("change", function (e) {
      if (!labelGroup) return;
      if (e.target.checked) labelGroup.addTo(map); else map.removeLayer(labelGroup);
      declutter();
    });
    $("toggle-score").addEventListener("change", function (e) {
      if (e.target.checked) layers.score.addTo(map); else map.removeLayer(layers.score);
    });
    $("toggle-swipe").addEventListener("change", function (e) {
      state.swipeEnabled = e.target.checked;
      document.body.classList.toggle("no-swipe", !state.swipeEnabled);
      updateClip();
    });
    $("overlay-opacity").addEventListener("input", function (e) {
      var v = Number(e.target.value) / 100;
      layers.changes.setOpacity(v);
      layers.score.setOpacity(Math.min(1, v * 0.85));
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Before/after swipe: the after pane is clipped to the right of the divider.
  // ---------------------------------------------------------------------------------------------

  function updateClip() {
    if (!map || !afterPane) return;
    var size = map.getSize();
    var x = Math.round(size.x * state.swipe);
    var divider = $("swipe");
    divider.style.left = x + "px";
    divider.setAttribute("aria-valuenow", String(Math.round(100 * state.swipe)));
    if (!state.swipeEnabled) {
      afterPane.style.clipPath = "";
      return;
    }
    // Pane coordinates are layer points; the container's corners move with panning.
    var nw = map.containerPointToLayerPoint([0, 0]).round();
    var se = map.containerPointToLayerPoint(size).round();
    var left = nw.x + x;
    afterPane.style.clipPath = "polygon(" + left + "px " + nw.y + "px, " + se.x + "px " + nw.y + "px, " +
                               se.x + "px " + se.y + "px, " + left + "px " + se.y + "px)";
  }

  function setSwipe(f) {
    state.swipe = Math.max(0, Math.min(1, f));
    updateClip();
  }

  function initSwipe() {
    var divider = $("swipe");
    var wrap = $("map");
    var dragging = false;
    divider.addEventListener("pointerdown", function (e) {
      dragging = true;
      divider.classList.add("dragging");
      divider.setPointerCapture(e.pointerId);
      e.preventDefault();
      e.stopPropagation();
    });
    divider.addEventListener("pointermove", function (e) {
      if (!dragging) return;
      var r = wrap.getBoundingClientRect();
      setSwipe((e.clientX - r.left) / r.width);
    });
    function end(e) {
      if (!dragging) return;
      dragging = false;
      divider.classList.remove("dragging");
      try { divider.releasePointerCapture(e.pointerId); } catch (ignored) { /* already released */ }
    }
    divider.addEventListener("pointerup", end);
    divider.addEventListener("pointercancel", end);
    divider.addEventListener("keydown", function (e) {
      var step = e.shiftKey ? 0.1 : 0.02;
      if (e.key === "ArrowLeft") { setSwipe(state.swipe - step); e.preventDefault(); }
      else if (e.key === "ArrowRight") { setSwipe(state.swipe + step); e.preventDefault(); }
      else if (e.key === "Home") { setSwipe(0); e.preventDefault(); }
      else if (e.key === "End") { setSwipe(1); e.preventDefault(); }
    });
    window.addEventListener("resize", updateClip);
  }

  // ---------------------------------------------------------------------------------------------
  // Change objects
  // ---------------------------------------------------------------------------------------------

  function featureId(f, i) {
    var p = f.properties || {};
    return p.id != null ? String(p.id) : String(f.id != null ? f.id : i + 1);
  }

  function buildObjects(fc) {
    features = ((fc && fc.features) || []).slice();
    features.forEach(function (f, i) { f._bwId = featureId(f, i); });
    features.sort(function (a, b) {
      var x = Number(a._bwId), y = Number(b._bwId);
      return isNaN(x) || isNaN(y) ? a._bwId.localeCompare(b._bwId) : x - y;
    });
    state.objects = features.length;
    $("object-count").textContent = fmtInt(features.length);

    // Invisible but clickable footprints: a click on the map selects the object.
    objectGroup = L.layerGroup().addTo(map);
    var invisible = { stroke: false, fill: true, fillOpacity: 0, weight: 0 };
    features.forEach(function (f) {
      if (!f.geometry) return;
      var layer = L.geoJSON(f, { pane: "bw-objects", style: function () { return invisible; } });
      if (!layer.getLayers().length) return;
      featureLayers[f._bwId] = layer;
      layer.on("click", function (e) { L.DomEvent.stop(e); select(f._bwId, { scroll: true }); });
      layer.on("mouseover", function () {
        var c = COLORS[(f.properties || {}).change] || "#fff";
        layer.setStyle({ stroke: true, color: c, weight: 1.5, opacity: 0.9 });
      });
      layer.on("mouseout", function () { layer.setStyle(invisible); });
      objectGroup.addLayer(layer);
    });

    // Numbers: one marker per object just above it, shown where it does not collide with a more important one.
    labelGroup = L.layerGroup().addTo(map);
    features.forEach(function (f) {
      var layer = featureLayers[f._bwId];
      if (!layer) return;
      var p = f.properties || {};
      var b = layer.getBounds();
      var marker = L.marker([b.getNorth(), b.getCenter().lng], {
        pane: "bw-labels", keyboard: false, title: "#" + f._bwId + " " + (CLASS_LABELS[p["class"]] || p["class"] || ""),
        icon: L.divIcon({ className: "bw-label " + (p.change || ""), html: "<span>" + f._bwId.replace(/[^0-9A-Za-z_-]/g, "") + "</span>",
                          iconSize: null, iconAnchor: [0, 0] })
      });
      marker.on("click", function (e) { L.DomEvent.stop(e); select(f._bwId, { scroll: true }); });
      labelMarkers[f._bwId] = marker;
    });
    map.on("zoomend moveend resize", declutter);

    renderList();
  }

  /** The parts of the page that list the change types: the counts table's columns and the filter chips. */
  function buildChangeTypeControls() {
    var head = document.querySelector("#counts thead tr");
    var filters = $("change-filters");
    CHANGES.forEach(function (c) {
      var th = el("th", "num");
      th.setAttribute("scope", "col");
      th.appendChild(el("span", "swatch " + c));
      th.appendChild(document.createTextNode(CHANGE_LABELS[c]));
      head.appendChild(th);
      document.querySelector("#counts colgroup").appendChild(el("col"));

      var chip = el("button", "chip active " + c);
      chip.type = "button";
      chip.setAttribute("data-change", c);
      chip.setAttribute("aria-pressed", "true");
      chip.appendChild(el("span", "swatch " + c));
      chip.appendChild(document.createTextNode(CHANGE_LABELS[c]));
      chip.addEventListener("click", function () {
        filter[c] = !filter[c];
        chip.classList.toggle("active", filter[c]);
        chip.setAttribute("aria-pressed", String(filter[c]));
        renderList();
      });
      filters.appendChild(chip);
    });
  }

  function renderList() {
    var list = $("object-list");
    list.textContent = "";
    var shown = 0;
    features.forEach(function (f) {
      var p = f.properties || {};
      var visible = !(p.change in filter) || filter[p.change];
      var layer = featureLayers[f._bwId];
      if (layer && objectGroup) {
        if (visible && !objectGroup.hasLayer(layer)) objectGroup.addLayer(layer);
        else if (!visible && objectGroup.hasLayer(layer)) objectGroup.removeLayer(layer);
      }
      if (!visible) return;
      shown++;
      var li = el("li");
      var btn = el("button", "object" + (state.selected && state.selected.id === f._bwId ? " selected" : ""));
      btn.type = "button";
      btn.setAttribute("data-id", f._bwId);
      btn.title = (p.change || "") + " " + (CLASS_LABELS[p["class"]] || p["class"] || "");
      var idCell = el("span", "oid");
      idCell.appendChild(el("span", "swatch " + (p.change || "")));
      idCell.appendChild(document.createTextNode(f._bwId));
      btn.appendChild(idCell);
      var cls = el("span", "ocls", CLASS_LABELS[p["class"]] || p["class"] || "–");
      btn.appendChild(cls);
      btn.appendChild(el("span", "oarea num", p.area_m2 != null ? fmtNum(p.area_m2, 1) : "–"));
      btn.appendChild(el("span", "oveh num", p.vehicles ? fmtInt(p.vehicles) : ""));
      btn.addEventListener("click", function () { select(f._bwId); });
      li.appendChild(btn);
      list.appendChild(li);
    });
    var total = features.length;
    $("object-list-count").textContent = shown === total ? "(" + fmtInt(total) + ")" : "(" + fmtInt(shown) + " of " + fmtInt(total) + ")";
    if (!total) {
      list.appendChild(el("li", "empty-list", "No change objects were found."));
    }
    declutter();
  }

  /** Importance of an object's number: vehicles first, then vehicle groups, then by area. */
  function labelRank(f) {
    var p = f.properties || {};
    var cls = { vehicle: 0, vehicle_group: 1 }[p["class"]];
    return [cls == null ? 2 : cls, -(p.area_m2 || 0)];
  }

  /** Show the numbers that fit: greedily, most important first, none overlapping another (2 px apart). */
  function declutter() {
    if (!labelGroup || !map) return;
    var on = map.hasLayer(labelGroup), placed = [], shown = 0;
    var order = features.slice().sort(function (a, b) {
      var x = labelRank(a), y = labelRank(b);
      return x[0] - y[0] || x[1] - y[1];
    });
    var size = map.getSize();
    order.forEach(function (f) {
      var marker = labelMarkers[f._bwId];
      if (!marker) return;
      var p = f.properties || {};
      var wanted = on && (!(p.change in filter) || filter[p.change]);
      if (!wanted) { if (labelGroup.hasLayer(marker)) labelGroup.removeLayer(marker); return; }
      if (!labelGroup.hasLayer(marker)) labelGroup.addLayer(marker);
      var span = marker.getElement() && marker.getElement().firstChild;
      if (!span) return;
      var w = span.offsetWidth || 20, h = span.offsetHeight || 16;
      // the label sits centred just above the object's top edge
      span.style.transform = "translate(" + Math.round(-w / 2) + "px, " + Math.round(-h - 3) + "px)";
      var pt = map.latLngToContainerPoint(marker.getLatLng());
      var box = [pt.x - w / 2 - 1, pt.y - h - 4, pt.x + w / 2 + 1, pt.y - 2];
      var inside = box[2] > 0 && box[0] < size.x && box[3] > 0 && box[1] < size.y;
      var clash = placed.some(function (o) { return box[0] < o[2] && o[0] < box[2] && box[1] < o[3] && o[1] < box[3]; });
      var visible = inside && !clash;
      marker.getElement().classList.toggle("cluttered", !visible);
      if (visible) { placed.push(box); shown++; }
    });
    state.labelsShown = shown;
  }

  function popupContent(f) {
    var p = f.properties || {};
    var box = el("div", "obj-popup");
    var head = el("div", "obj-popup-head");
    head.appendChild(el("span", "swatch " + (p.change || "")));
    head.appendChild(document.createTextNode("#" + f._bwId + " " + (CLASS_LABELS[p["class"]] || p["class"] || "object")));
    box.appendChild(head);
    var centre = p.centre_lat != null && p.centre_lon != null ? fmtLatLng(p.centre_lat, p.centre_lon, 6) : "–";
    var rows = [
      ["Change", p.change || "–"],
      ["Area", p.area_m2 != null ? fmtNum(p.area_m2, 1) + " m²" : "–"],
      ["Size", p.length_m != null && p.width_m != null ? fmtNum(p.length_m, 1) + " × " + fmtNum(p.width_m, 1) + " m" : "–"],
      ["Vehicles (est.)", p.vehicles != null ? fmtInt(p.vehicles) : "–"],
      ["Dates", (p.before_date || "?") + " → " + (p.after_date || "?")],
      ["Centre", centre],
      ["MGRS", p.mgrs || "–"],
      ["Score", p.score != null ? fmtNum(p.score, 2) : "–"]
    ];
    var dl = el("dl");
    rows.forEach(function (r) { dl.appendChild(el("dt", null, r[0])); dl.appendChild(el("dd", null, r[1])); });
    box.appendChild(dl);
    return box;
  }

  function select(id, opts) {
    id = String(id);
    var f = null;
    for (var i = 0; i < features.length; i++) if (features[i]._bwId === id) { f = features[i]; break; }
    if (!f || !map) return false;
    var p = f.properties || {};
    var color = COLORS[p.change] || "#ffffff";
    if (highlight) map.removeLayer(highlight);
    highlight = L.featureGroup([
      L.geoJSON(f, { pane: "bw-highlight", interactive: false, style: { color: "#000", weight: 6, opacity: 0.55, fill: false } }),
      L.geoJSON(f, { pane: "bw-highlight", interactive: false, style: { color: "#ffffff", weight: 4, opacity: 0.95, fill: false } }),
      L.geoJSON(f, { pane: "bw-highlight", interactive: false, style: { color: color, weight: 2, opacity: 1, fill: true, fillColor: color, fillOpacity: 0.12 } })
    ]).addTo(map);
    var fb = highlight.getBounds();
    if (!fb.isValid()) return false;  // an object without geometry
    var center = fb.getCenter();
    state.selected = { id: id, center: [center.lat, center.lng], bounds: [fb.getWest(), fb.getSouth(), fb.getEast(), fb.getNorth()], moving: true };
    map.once("moveend", function () { if (state.selected && state.selected.id === id) state.selected.moving = false; });
    // Close enough to see the object with some context; never zoom out unless the object needs it.
    var withContext = map.getBoundsZoom(fb.pad(1.5), false, L.point(40, 40));
    var fits = map.getBoundsZoom(fb, false, L.point(40, 40));
    var targetZoom = Math.min(Math.max(withContext, Math.min(fits, map.getZoom())), nativeMaxZoom);
    map.flyTo(center, targetZoom, { duration: 0.6 });
    L.popup({ autoPan: false, closeButton: true, offset: [0, -20], className: "bw-popup", maxWidth: 300 })
      .setLatLng([fb.getNorth(), center.lng]).setContent(popupContent(f)).openOn(map);

    var buttons = document.querySelectorAll("#object-list .object");
    Array.prototype.forEach.call(buttons, function (b) {
      var on = b.getAttribute("data-id") === id;
      b.classList.toggle("selected", on);
      if (on && opts && opts.scroll) b.scrollIntoView({ block: "nearest" });
    });
    return true;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
