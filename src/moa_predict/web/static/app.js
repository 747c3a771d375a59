/* moa-predict pages: drag-and-drop upload, auto-submitting selects, Plotly charts (plotly.min.js from this
   server). Everything works without this file except the charts. No inline scripts: data comes from
   <script type="application/json"> blocks. */
(function () {
  "use strict";

  function formatBytes(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(2) + " GB";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
    if (n >= 1e3) return (n / 1e3).toFixed(0) + " kB";
    return n + " bytes";
  }

  /* Plotly reads a few HTML-like tags in text (<b>, <a href>): show user-supplied text literally */
  function plain(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }

  function readJSON(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  /* ---------------- upload form ---------------- */
  function setupUpload() {
    var form = document.getElementById("upload-form");
    if (!form) return;
    var input = document.getElementById("file");
    var zone = document.getElementById("dropzone");
    var nameEl = document.getElementById("file-name");
    var errorEl = document.getElementById("client-error");
    var submit = document.getElementById("submit");
    var maxBytes = parseInt(form.getAttribute("data-max-bytes") || "0", 10);

    function check() {
      var f = input.files && input.files[0];
      errorEl.hidden = true;
      submit.disabled = false;
      if (!f) { nameEl.textContent = ""; return true; }
      nameEl.textContent = f.name + " (" + formatBytes(f.size) + ")";
      if (maxBytes && f.size > maxBytes) {
        errorEl.textContent = "This file is " + formatBytes(f.size) + ", over the server's " +
          formatBytes(maxBytes) + " limit. Split it into smaller files.";
        errorEl.hidden = false;
        submit.disabled = true;
        return false;
      }
      return true;
    }
    input.addEventListener("change", check);
    ["dragenter", "dragover"].forEach(function (ev) {
      zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "dragend"].forEach(function (ev) {
      zone.addEventListener(ev, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      zone.classList.remove("dragging");
      if (e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        check();
      }
    });
    form.addEventListener("submit", function (e) {
      if (!check()) { e.preventDefault(); return; }
      submit.disabled = true;
      submit.textContent = "Predicting…";
      form.setAttribute("aria-busy", "true");
    });
    /* the browser's back button restores the page: re-enable the button */
    window.addEventListener("pageshow", function () {
      submit.disabled = false;
      submit.textContent = "Predict mechanisms of action";
      form.removeAttribute("aria-busy");
    });
  }

  /* ---------------- filters ---------------- */
  function setupFilters() {
    var selects = document.querySelectorAll("select.js-autosubmit");
    Array.prototype.forEach.call(selects, function (sel) {
      sel.addEventListener("change", function () { if (sel.form) sel.form.submit(); });
    });
  }

  /* ---------------- charts ---------------- */
  var TOOLBAR = 40;  /* px above a chart kept for Plotly's toolbar, so it never covers labels or cells */
  var CONFIG = { responsive: true, displaylogo: false,
                 modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"] };
  var FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif", size: 12, color: "#1d2430" };

  function scatter(el, data, names) {
    var n = data.y.length, x = new Array(n), text = new Array(n);
    for (var i = 0; i < n; i++) { x[i] = i + 1; text[i] = plain(names[i] || ("MoA " + (i + 1))); }
    var labelled = data.labelled || [];
    var ymax = Math.max.apply(null, data.y.concat([1e-6]));
    /* the top MoAs are marked with their rank (the table beside the chart names them); hover shows every name */
    var top = { x: labelled, y: labelled.map(function (id) { return data.y[id - 1]; }),
                text: labelled.map(function (id, k) { return String(k + 1); }),
                customdata: labelled.map(function (id) { return text[id - 1]; }),
                mode: "markers+text", type: "scatter", name: "top", textposition: "top center",
                textfont: { size: 12, color: "#9c3d27" }, cliponaxis: false,
                marker: { size: 9, color: "#e76f51", line: { width: 1, color: "#9c3d27" } },
                hovertemplate: "<b>#%{text}: %{customdata}</b><br>MoA id %{x}<br>p = %{y:.4f}<extra></extra>" };
    var annotations = labelled.length ? [{
      xref: "paper", yref: "paper", x: 1, y: 1.02, xanchor: "right", yanchor: "bottom", showarrow: false,
      align: "right", font: { size: 11, color: "#9c3d27" },
      text: "1: " + text[labelled[0] - 1] + " (" + (100 * data.y[labelled[0] - 1]).toFixed(1) + "%)" }] : [];
    /* MoAs not predictable from the training data (answered by their training frequency) are grey */
    var greyed = {};
    (data.greyed || []).forEach(function (id) { greyed[id] = true; });
    var colors = x.map(function (id) { return greyed[id] ? "#b8bec7" : "#2f6fab"; });
    var notes = x.map(function (id) { return greyed[id] ? "<br><i>not predictable from this training data</i>" : ""; });
    var all = { x: x, y: data.y, text: text, customdata: notes, mode: "markers", type: "scatter", name: "all MoAs",
                marker: { size: 5, color: colors, opacity: 0.75 },
                hovertemplate: "<b>%{text}</b><br>MoA id %{x}<br>p = %{y:.4f}%{customdata}<extra></extra>" };
    /* t: room above the plot for Plotly's toolbar (it would cover the top labels) */
    var layout = { margin: { l: 55, r: 15, t: TOOLBAR, b: 45 }, height: 320, font: FONT, showlegend: false,
                   hovermode: "closest", annotations: annotations,
                   xaxis: { title: { text: "MoA id (1–" + n + ")" }, range: [0, n + 1], zeroline: false,
                            gridcolor: "#eef0f3" },
                   yaxis: { title: { text: "probability" }, range: [0, Math.min(1.05, ymax * 1.25)],
                            gridcolor: "#eef0f3", zeroline: true },
                   plot_bgcolor: "#fff", paper_bgcolor: "#fff" };
    return window.Plotly.newPlot(el, [all, top], layout, CONFIG);
  }

  function heatmap(el, data) {
    var many = data.x.length > 60;
    var greyed = {};
    (data.greyed || []).forEach(function (m) { greyed[m] = true; });
    var ticks = data.y.map(function (m) {
      return greyed[m] ? '<span style="color:#8a939f">' + plain(m) + " (not predictable)</span>" : plain(m);
    });
    var trace = { type: "heatmap", z: data.z, x: data.x.map(plain), y: data.y.map(plain), colorscale: "Viridis",
                  colorbar: { title: { text: "p" }, thickness: 12 },
                  hovertemplate: "<b>%{y}</b><br>%{x}<br>p = %{z:.4f}<extra></extra>" };
    var layout = { margin: { l: 230, r: 10, t: TOOLBAR, b: many ? 20 : 110 }, height: 150 + 17 * data.y.length,
                   font: FONT,
                   xaxis: { showticklabels: !many, tickangle: -60, type: "category",
                            title: many ? { text: data.x.length + " profiles (hover for sig_id)" } : undefined },
                   yaxis: { autorange: "reversed", type: "category", automargin: true,
                            tickmode: "array", tickvals: data.y.map(plain), ticktext: ticks } };
    return window.Plotly.newPlot(el, [trace], layout, CONFIG);
  }

  function renderWhenVisible(elements, render) {
    if (!("IntersectionObserver" in window)) { elements.forEach(render); return; }
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) { io.unobserve(entry.target); render(entry.target); }
      });
    }, { rootMargin: "400px 0px" });
    elements.forEach(function (el) { io.observe(el); });
  }

  /* ---------------- attributions (fetched per profile when it scrolls into view) ---------------- */
  var BLOCKS = [
    { name: "gene", label: "genes (g-)", color: "#2f6fab" },
    { name: "cell viability", label: "cell viability (c-)", color: "#e76f51" },
    { name: "treatment", label: "dose / time", color: "#6c757d" }
  ];
  /* another profile layout names its own feature blocks (Cells, Nuclei, ...): each gets the next colour */
  var PALETTE = ["#2f6fab", "#e76f51", "#2a9d8f", "#8d5fd3", "#e9c46a", "#264653", "#d62828", "#6c757d"];

  function blocksOf(feats) {
    var known = {}, out = [];
    BLOCKS.forEach(function (b) { known[b.name] = b; });
    feats.forEach(function (f) {
      if (out.some(function (b) { return b.name === f.block; })) return;
      out.push(known[f.block] || { name: f.block, label: String(f.block), color: null });
    });
    var next = 0;
    out.forEach(function (b) { if (!b.color) { b.color = PALETTE[next % PALETTE.length]; next += 1; } });
    return out;
  }

  function signed(x, digits) { return (x > 0 ? "+" : x < 0 ? "−" : "") + Math.abs(x).toFixed(digits); }
  function pct(p) { return (100 * p).toFixed(p >= 0.1 ? 1 : 2) + "%"; }

  function attributionChart(el, expl) {
    var feats = expl.features || [];
    /* tick: the gene symbol or cell line a person knows, then the g-/c- column and the value */
    var labels = feats.map(function (f) {
      var v = typeof f.value === "number" ? f.value.toFixed(2) : String(f.value);
      var info = f.info || {};
      var name = info.symbol || info.cell_line;
      return plain((name ? name + " · " : "") + f.feature + " = " + v);
    });
    var traces = blocksOf(feats).map(function (b) {
      var x = [], y = [], custom = [];
      feats.forEach(function (f, i) {
        if (f.block === b.name) {
          var info = f.info || {};
          x.push(f.attribution); y.push(labels[i]);
          custom.push(plain((f.label || f.feature) + (info.description ? ": " + info.description : "") +
                            (info.tissue ? ": " + info.tissue : "")));
        }
      });
      return { type: "bar", orientation: "h", name: b.label, x: x, y: y, customdata: custom,
               marker: { color: b.color }, showlegend: x.length > 0,
               hovertemplate: "<b>%{customdata}</b><br>%{y}<br>attribution %{x:+.4f}<extra>" + b.label + "</extra>" };
    }).filter(function (t) { return t.x.length > 0; });
    var maxAbs = feats.reduce(function (m, f) { return Math.max(m, Math.abs(f.attribution)); }, 1e-6);
    var layout = { barmode: "relative", height: 90 + 22 * Math.max(feats.length, 3), font: FONT,
                   margin: { l: 10, r: 10, t: 6, b: 62 },
                   legend: { orientation: "h", x: 0, y: -0.22, font: { size: 10 } },
                   xaxis: { title: { text: "attribution (Δ probability)", font: { size: 11 } },
                            range: [-1.15 * maxAbs, 1.15 * maxAbs], zeroline: true, zerolinecolor: "#1d2430",
                            zerolinewidth: 1.5, gridcolor: "#eef0f3", tickformat: "+.3f" },
                   yaxis: { type: "category", categoryorder: "array", categoryarray: labels.slice().reverse(),
                            automargin: true, tickfont: { size: 11 } },
                   plot_bgcolor: "#fff", paper_bgcolor: "#fff" };
    el.textContent = "";
    return window.Plotly.newPlot(el, traces, layout, { responsive: true, displaylogo: false, displayModeBar: false });
  }

  function completeness(expl, tolAbs, tolRel) {
    var change = expl.probability - expl.baseline_probability;
    var err = expl.completeness_error, tol = Math.max(tolAbs, tolRel * Math.abs(change));
    var ok = Math.abs(err) <= tol;
    return { ok: ok, text: "p = " + pct(expl.probability) + " · baseline " + pct(expl.baseline_probability) +
      " · change " + signed(change, 3) + " = Σ attributions " + signed(expl.attribution_sum, 3) +
      (ok ? " ✓ complete" : " ⚠ off") + " (error " + signed(err, 4) + ")" +
      (expl.completeness_note ? ": " + expl.completeness_note : "") };
  }

  /* dose and time are not bars (held at the profile's values along the path): p at each real dose and time */
  function doseTimeText(expl) {
    var dt = expl.dose_time;
    if (!dt || !dt.cp_time || !dt.cp_dose) return "";
    function levels(part, unit) {
      return Object.keys(part.probability_at).map(function (k) {
        return k + unit + " " + pct(part.probability_at[k]) + (String(part.value) === k ? " (this profile)" : "");
      }).join(" · ");
    }
    return "Dose and time (not in the bars; the baseline keeps this profile's " + dt.cp_time.value + " h, " +
      dt.cp_dose.value + "): p at " + levels(dt.cp_time, " h") + "; at " + levels(dt.cp_dose, "") + ".";
  }

  function fillAttributions(block, body) {
    var prof = body && body.profiles && body.profiles[0];
    var figures = block.querySelectorAll(".attr-figure");
    if (!body.attributions || !body.attributions.available) {
      block.textContent = "Attributions are not available: " + ((body.attributions && body.attributions.message) || "");
      return;
    }
    var byMoa = {};
    ((prof && prof.explanations) || []).forEach(function (e) { byMoa[e.moa] = e; });
    var tolAbs = parseFloat(block.getAttribute("data-tol-abs") || "0.002");
    var tolRel = parseFloat(block.getAttribute("data-tol-rel") || "0.02");
    Array.prototype.forEach.call(figures, function (fig) {
      var expl = byMoa[fig.getAttribute("data-moa")];
      var plot = fig.querySelector(".attr-plot"), check = fig.querySelector(".attr-check");
      if (!expl) { plot.textContent = "No attribution for this MoA."; return; }
      var c = completeness(expl, tolAbs, tolRel);
      check.textContent = c.text;
      check.classList.add(c.ok ? "ok" : "warn");
      check.title = "Completeness: the attributions of all " + "features sum to the change from the baseline " +
        "(no-response) probability to this profile's probability, up to the reported error. Pushing up " +
        signed(expl.pushing_up, 3) + ", down " + signed(expl.pushing_down, 3) + ".";
      var dose = doseTimeText(expl);
      if (dose) {
        var line = document.createElement("p");
        line.className = "attr-dose-time small";
        line.textContent = dose;
        check.parentNode.insertBefore(line, check.nextSibling);
      }
      attributionChart(plot, expl);
    });
    block.classList.add("loaded");
  }

  function loadAttributions(block) {
    var url = block.getAttribute("data-url");
    block.setAttribute("aria-busy", "true");
    function fail(message) {
      Array.prototype.forEach.call(block.querySelectorAll(".attr-plot"), function (el) {
        el.textContent = "Attributions could not be computed: " + message;
      });
      block.classList.add("failed");
      block.removeAttribute("aria-busy");
    }
    window.fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        return r.json().then(function (body) { return { ok: r.ok, body: body }; });
      })
      .then(function (res) {
        if (!res.ok) { fail((res.body && res.body.error) || "the server answered an error"); return; }
        fillAttributions(block, res.body);
        block.removeAttribute("aria-busy");
      })
      .catch(function (e) { fail(String(e && e.message || e)); });
  }

  function setupCharts() {
    var charts = Array.prototype.slice.call(document.querySelectorAll(".js-chart"));
    var maps = Array.prototype.slice.call(document.querySelectorAll(".js-heatmap"));
    var attrs = Array.prototype.slice.call(document.querySelectorAll(".js-attributions"));
    if (!charts.length && !maps.length && !attrs.length) return;
    if (!window.Plotly || !window.fetch) {
      (charts.concat(maps).concat(attrs)).forEach(function (el) {
        el.textContent = "The interactive chart needs JavaScript (plotly.min.js, served by this app); the table " +
          "lists the same numbers.";
      });
      return;
    }
    var names = readJSON("moa-names") || [];
    maps.forEach(function (el) {
      var data = readJSON(el.getAttribute("data-source"));
      if (data) heatmap(el, data);
    });
    renderWhenVisible(charts, function (el) {
      var data = readJSON(el.getAttribute("data-source"));
      if (data) scatter(el, data, names);
    });
    renderWhenVisible(attrs, loadAttributions);
  }

  /* ---------------- tables: search box (data-table) and sortable columns (th[data-sort]) ---------------- */
  function setupTables() {
    Array.prototype.forEach.call(document.querySelectorAll(".js-table-filter"), function (input) {
      var table = document.getElementById(input.getAttribute("data-table"));
      if (!table) return;
      input.addEventListener("input", function () {
        var q = input.value.toLowerCase().replace(/[_-]/g, " ").trim();
        Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
          var text = row.textContent.toLowerCase().replace(/[_-]/g, " ");
          row.hidden = q !== "" && text.indexOf(q) < 0;
        });
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("table.js-sortable"), function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
        var kind = th.getAttribute("data-sort");
        if (!kind) return;
        th.classList.add("sortable");
        th.tabIndex = 0;
        th.setAttribute("aria-sort", "none");
        function sort() {
          var asc = th.getAttribute("aria-sort") !== "ascending";
          var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
          function key(row) {
            var t = row.cells[col].textContent.trim();
            if (kind !== "num") return t.toLowerCase();
            var v = parseFloat(t.replace(/[^0-9.+\-]/g, ""));
            return isNaN(v) ? -Infinity : v;
          }
          rows.sort(function (a, b) {
            var ka = key(a), kb = key(b);
            return (ka < kb ? -1 : ka > kb ? 1 : 0) * (asc ? 1 : -1);
          });
          rows.forEach(function (r) { body.appendChild(r); });
          Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) {
            if (c.getAttribute("data-sort")) c.setAttribute("aria-sort", "none");
          });
          th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        }
        th.addEventListener("click", sort);
        th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
      });
    });
  }

  function init() { setupUpload(); setupFilters(); setupTables(); setupCharts(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
