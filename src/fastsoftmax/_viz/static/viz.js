// Softmax Visualizer: every number on the page comes from the JSON API of
// `fastsoftmax viz`, which computes it with fastsoftmax. This script only
// sends the inputs and draws the answers. No libraries, no network beyond
// the server that served it.
"use strict";

(function () {
  const T_MIN = 0.05;
  const T_MAX = 10;
  const STEPS = 1000; // slider positions, logarithmic in T
  const MAX_ROWS = 50; // bars drawn; the API computes all classes
  const MAX_TABLE_ROWS = 20; // rows of the stability table
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const state = {
    text: $("logits-input").value,
    temperature: 1,
    backend: "",
    dtype: "float64",
    target: 0,
    info: null,
    result: null,
    rebuildEntries: true,
  };

  // ---------------------------------------------------------------- formatting

  function special(v) {
    return typeof v === "string"; // the API sends inf / -inf / NaN as strings
  }
  function fmt(v) {
    // a probability-like number: 3 decimals, or 3 digits in e-notation below 0.001
    if (special(v)) return v;
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
    return v.toFixed(3);
  }
  function fmtLogit(v) {
    if (special(v)) return v;
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-4)) return v.toExponential(3);
    return String(Number(v.toPrecision(6)));
  }
  function fmtT(t) {
    return String(Number(t.toPrecision(3)));
  }
  function classColor(i) {
    return COLORS[i % COLORS.length];
  }
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    return node;
  }
  function list(values) {
    return "[" + values.map(fmt).join(", ") + "]";
  }

  // ---------------------------------------------------------------- the API

  async function api(path, body) {
    const options = body
      ? { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }
      : {};
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      throw new Error("The server does not answer: is `fastsoftmax viz` still running?");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error ? data.error : "HTTP " + response.status;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // One request in flight at a time; the latest inputs are always sent last,
  // so a dragged slider ends on the numbers of where it stopped.
  let inflight = false;
  let pending = false;
  let timer = null; // a typed change waiting for the typing to pause
  function markPending() {
    document.body.dataset.pending = inflight || pending || timer !== null ? "1" : "0";
  }
  function request() {
    clearTimeout(timer);
    timer = null;
    if (inflight) {
      pending = true;
      markPending();
      return;
    }
    inflight = true;
    pending = false;
    markPending();
    const sent = {
      logits: state.text,
      temperature: state.temperature,
      backend: state.backend || undefined,
      dtype: state.dtype,
      target: state.target,
    };
    const started = performance.now();
    api("/api/softmax", sent)
      .then((r) => show(r, performance.now() - started))
      .catch((e) => showError(e.message))
      .finally(() => {
        inflight = false;
        if (pending) request();
        markPending();
      });
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
    document.body.classList.add("has-error");
    $("answered").textContent = "not computed: see the message";
  }

  // ---------------------------------------------------------------- drawing

  function show(r, ms) {
    state.result = r;
    $("error").hidden = true;
    document.body.classList.remove("has-error");
    if (state.target >= r.n) state.target = 0;
    const result = $("result");
    result.dataset.temperature = String(r.temperature);
    result.dataset.backend = r.backend;
    result.dataset.n = String(r.n);
    result.dataset.probabilities = JSON.stringify(r.probabilities);
    result.dataset.logits = JSON.stringify(r.logits);
    $("answered").textContent =
      "answered by backend " + r.backend + " (" + r.dtype + ") in " + ms.toFixed(1) + " ms";
    if (state.rebuildEntries) drawEntries(r.logits);
    state.rebuildEntries = false;
    drawBars(r);
    drawEntropy(r);
    drawChart(r);
    drawStability(r);
    drawMistake(r);
  }

  function drawEntries(logits) {
    const box = $("entries");
    box.textContent = "";
    $("add-logit").disabled = logits.length >= MAX_ROWS;
    if (logits.length > MAX_ROWS) {
      box.append(el("span", "hint", logits.length + " entries: edit the list above"));
      return;
    }
    logits.forEach((v, i) => {
      const chip = el("span", "chip");
      const dot = el("span", "dot");
      dot.style.background = classColor(i);
      const input = el("input");
      input.type = "text";
      input.inputMode = "decimal";
      input.value = fmtLogit(v);
      input.size = Math.max(3, input.value.length);
      input.setAttribute("aria-label", "logit of class " + i);
      input.className = "entry";
      input.addEventListener("input", entriesChanged);
      const remove = el("button", "remove", "×");
      remove.type = "button";
      remove.title = "remove class " + i;
      remove.disabled = logits.length <= 1;
      remove.addEventListener("click", () => {
        const values = entryValues();
        values.splice(i, 1);
        setText(values.join(", "), true);
      });
      chip.append(dot, input, remove);
      box.append(chip);
    });
  }

  function entryValues() {
    return Array.from(document.querySelectorAll("#entries input.entry")).map((i) => i.value.trim() || "?");
  }
  function entriesChanged() {
    state.text = entryValues().join(", ");
    $("logits-input").value = state.text;
    schedule(false);
  }

  function setText(text, rebuild) {
    state.text = text;
    $("logits-input").value = text;
    state.rebuildEntries = rebuild;
    request();
  }

  function schedule(rebuild) {
    state.rebuildEntries = state.rebuildEntries || rebuild;
    clearTimeout(timer);
    timer = setTimeout(request, 200);
    markPending();
  }

  function barCell(fraction, left, cls, label, color) {
    const td = el("td");
    const box = el("div", "barcell");
    const track = el("div", "track");
    const bar = el("div", "bar " + cls);
    bar.style.left = (100 * left).toFixed(3) + "%";
    bar.style.width = (100 * Math.max(0, Math.min(1, fraction))).toFixed(3) + "%";
    if (color) bar.style.background = color;
    track.append(bar);
    const value = el("span", "num", label);
    box.append(track, value);
    td.append(box);
    return { td, value };
  }

  function drawBars(r) {
    const body = $("bars-body");
    body.textContent = "";
    const x = r.logits;
    const rows = Math.min(r.n, MAX_ROWS);
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < rows; i++) {
      lo = Math.min(lo, x[i]);
      hi = Math.max(hi, x[i]);
    }
    const span = hi - lo || 1;
    for (let i = 0; i < rows; i++) {
      const tr = el("tr");
      if (i === r.argmax) tr.className = "argmax";
      const th = el("th", "cls");
      const dot = el("span", "dot");
      dot.style.background = classColor(i);
      th.append(dot, document.createTextNode(String(i)));
      if (i === r.argmax) th.append(el("span", "star", "★"));
      const logit = barCell(Math.abs(x[i]) / span, (Math.min(x[i], 0) - lo) / span, x[i] < 0 ? "logit neg" : "logit", fmtLogit(x[i]));
      const e = r.stable.exp[i];
      const expCell = barCell(special(e) ? 0 : e, 0, "exp", fmt(e));
      const p = r.probabilities[i];
      const prob = barCell(special(p) ? 0 : p, 0, "prob", fmt(p), classColor(i));
      prob.value.classList.add("prob-value");
      prob.value.dataset.index = String(i);
      prob.value.dataset.value = String(p);
      prob.td.title = "p = " + String(p);
      tr.append(th, logit.td, expCell.td, prob.td);
      body.append(tr);
    }
    $("exp-sum").textContent = fmt(r.stable.sum);
    $("prob-sum").textContent = special(r.sum) ? r.sum : r.sum.toFixed(3);
    $("prob-sum").title = "sum of the probabilities: " + String(r.sum);
    const note = $("bars-note");
    if (rows < r.n) {
      note.hidden = false;
      note.textContent =
        "Showing the first " + rows + " of " + r.n + " classes; all are computed. The argmax is class " +
        r.argmax + " (p = " + fmt(r.probabilities[r.argmax]) + ").";
    } else {
      note.hidden = true;
    }
  }

  function drawEntropy(r) {
    const fraction = r.max_entropy > 0 ? r.entropy / r.max_entropy : 0;
    $("entropy-bar").style.width = (100 * Math.min(1, fraction)).toFixed(2) + "%";
    $("entropy").textContent =
      "H = " + r.entropy.toFixed(3) + " nats (" + r.entropy_bits.toFixed(3) + " bits): " +
      (100 * fraction).toFixed(0) + "% of the uniform distribution's log " + r.n + " = " +
      r.max_entropy.toFixed(3) + ". As many choices as " + Math.exp(r.entropy).toFixed(2) +
      " equally likely classes.";
    $("entropy").dataset.value = String(r.entropy);
  }

  const CHART = { w: 380, h: 230, left: 38, right: 10, top: 10, bottom: 32 };
  function chartX(t) {
    const f = Math.log(t / T_MIN) / Math.log(T_MAX / T_MIN);
    return CHART.left + f * (CHART.w - CHART.left - CHART.right);
  }
  function chartY(p) {
    return CHART.top + (1 - p) * (CHART.h - CHART.top - CHART.bottom);
  }

  function drawChart(r) {
    const chart = $("temperature-chart");
    chart.textContent = "";
    const x0 = CHART.left;
    const x1 = CHART.w - CHART.right;
    const y0 = chartY(0);
    const y1 = chartY(1);
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      chart.append(svg("line", { x1: x0, x2: x1, y1: chartY(p), y2: chartY(p), class: "grid" }));
      const label = svg("text", { x: x0 - 5, y: chartY(p) + 4, class: "tick", "text-anchor": "end" });
      label.textContent = String(p);
      chart.append(label);
    }
    for (const t of [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10]) {
      chart.append(svg("line", { x1: chartX(t), x2: chartX(t), y1: y0, y2: y0 + 4, class: "axis" }));
      const label = svg("text", { x: chartX(t), y: y0 + 16, class: "tick", "text-anchor": "middle" });
      label.textContent = String(t);
      chart.append(label);
    }
    chart.append(svg("line", { x1: x0, x2: x1, y1: y0, y2: y0, class: "axis" }));
    chart.append(svg("line", { x1: x0, x2: x0, y1: y0, y2: y1, class: "axis" }));
    const title = svg("text", { x: (x0 + x1) / 2, y: CHART.h - 2, class: "tick", "text-anchor": "middle" });
    title.textContent = "temperature T (log scale)";
    chart.append(title);

    const curve = r.curve;
    const legend = $("chart-legend");
    legend.textContent = "";
    curve.classes.forEach((c, k) => {
      const points = curve.temperatures
        .map((t, j) => {
          const p = curve.probabilities[k][j];
          return special(p) ? null : chartX(t).toFixed(1) + "," + chartY(p).toFixed(1);
        })
        .filter((s) => s !== null)
        .join(" ");
      chart.append(svg("polyline", { points, class: "curve", stroke: classColor(c) }));
      const item = el("span", "item");
      const dot = el("span", "dot");
      dot.style.background = classColor(c);
      item.append(dot, document.createTextNode("class " + c));
      legend.append(item);
    });
    const t = Math.min(T_MAX, Math.max(T_MIN, r.temperature));
    chart.append(svg("line", { x1: chartX(t), x2: chartX(t), y1: y0, y2: y1, class: "now" }));
    const label = svg("text", { x: chartX(t) + 4, y: y1 + 10, class: "now-label" });
    label.textContent = "T = " + fmtT(r.temperature);
    chart.append(label);
    curve.classes.forEach((c) => {
      const p = r.probabilities[c];
      if (!special(p)) {
        chart.append(svg("circle", { cx: chartX(t), cy: chartY(p), r: 3.5, fill: classColor(c), class: "marker" }));
      }
    });
    $("chart-extra").textContent = curve.all_classes
      ? ""
      : "Drawn for the " + curve.classes.length + " largest logits.";
  }

  function cell(tr, text, cls) {
    const td = el("td", cls || "", text);
    tr.append(td);
    return td;
  }

  function drawStability(r) {
    const body = $("stability-body");
    body.textContent = "";
    const rows = Math.min(r.n, MAX_TABLE_ROWS);
    let worst = 0;
    for (let i = 0; i < r.n; i++) {
      const a = r.naive.probabilities[i];
      const b = r.probabilities[i];
      if (!special(a) && !special(b)) worst = Math.max(worst, Math.abs(a - b));
    }
    for (let i = 0; i < rows; i++) {
      const tr = el("tr");
      cell(tr, String(i), "cls");
      cell(tr, fmtLogit(special(r.logits[i]) ? r.logits[i] : r.logits[i] / r.temperature));
      const naiveExp = r.naive.exp[i];
      cell(tr, special(naiveExp) ? naiveExp : fmtBig(naiveExp), special(naiveExp) ? "special" : "");
      const naiveP = r.naive.probabilities[i];
      cell(tr, fmt(naiveP), special(naiveP) ? "special naive-p" : "naive-p");
      cell(tr, fmt(r.stable.exp[i]));
      cell(tr, fmt(r.probabilities[i]), "stable-p");
      body.append(tr);
    }
    if (rows < r.n) {
      const tr = el("tr", "more");
      const td = cell(tr, "… and " + (r.n - rows) + " more classes; the sums cover them all");
      td.colSpan = 6;
      body.append(tr);
    }
    $("naive-sum").textContent = special(r.naive.sum) ? r.naive.sum : fmtBig(r.naive.sum);
    $("naive-sum").className = special(r.naive.sum) ? "special" : "";
    let naivePsum = 0;
    for (const v of r.naive.probabilities) naivePsum = special(v) || special(naivePsum) ? "NaN" : naivePsum + v;
    $("naive-psum").textContent = special(naivePsum) ? naivePsum : naivePsum.toFixed(3);
    $("naive-psum").className = special(naivePsum) ? "special" : "";
    $("stable-sum").textContent = fmt(r.stable.sum);
    $("stable-psum").textContent = special(r.sum) ? r.sum : r.sum.toFixed(3);
    const threshold = r.naive.overflow_threshold;
    $("overflow-threshold").textContent = threshold.toFixed(1);
    document.querySelectorAll(".dtype-name").forEach((n) => (n.textContent = r.dtype));
    const verdict = $("stability-verdict");
    if (!r.naive.ok) {
      verdict.className = "verdict bad";
      const big = r.logits[r.argmax] / r.temperature;
      verdict.textContent =
        "The naive formula fails here: exp(" + fmtLogit(big) + ") is " + fmtBig(r.naive.exp[r.argmax]) +
        " in " + r.dtype + " (it overflows past " + threshold.toFixed(2) + "), the sum is " +
        fmtBig(r.naive.sum) + " and the probabilities come out as " + fmt(r.naive.probabilities[r.argmax]) +
        ". The stable form gives " + list(r.probabilities.slice(0, 8)) + (r.n > 8 ? "…" : "") + ".";
    } else {
      verdict.className = "verdict good";
      verdict.textContent =
        "No overflow for these logits: both forms agree (largest difference " +
        (worst === 0 ? "0" : worst.toExponential(1)) + "). Try the [1000, 999, 998] preset, or a logit above " +
        fmtT(threshold * r.temperature) + " at this temperature.";
    }
  }
  function fmtBig(v) {
    if (special(v)) return v;
    if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) return v.toExponential(3);
    return v.toFixed(3);
  }

  function drawMistake(r) {
    const select = $("target");
    const count = Math.min(r.n, 1000); // a menu of at most 1000 classes
    if (select.options.length !== count) {
      select.textContent = "";
      for (let i = 0; i < count; i++) {
        const option = el("option", "", "class " + i);
        option.value = String(i);
        select.append(option);
      }
    }
    select.value = String(r.cross_entropy.target);
    const ce = r.cross_entropy;
    $("ce-correct").textContent = ce.correct.toFixed(4);
    $("ce-correct").dataset.value = String(ce.correct);
    $("ce-correct-detail").textContent =
      "−log p = −log " + fmt(ce.probability) + " for class " + ce.target +
      " (computed with " + ce.source + "). Confident and right → near 0; confident and wrong → large.";
    $("ce-twice").textContent = ce.applied_twice.toFixed(4);
    $("ce-twice").dataset.value = String(ce.applied_twice);
    $("ce-twice-detail").textContent =
      "The loss softmaxes p again: class " + ce.target + " gets " + fmt(ce.probability_twice) +
      " instead of " + fmt(ce.probability) + ". Even a perfect prediction costs at least log(1 + (n − 1)/e) = " +
      ce.applied_twice_floor.toFixed(4) + " here, so the gradients shrink and training stalls.";
    $("ce-warning").textContent = ce.warning;
    $("ce-warning-source").textContent =
      ce.warning_source === "viz" ? "What fastsoftmax says about this" : ce.warning_source;
  }

  // ---------------------------------------------------------------- inputs

  function sliderToT(position) {
    return Number((T_MIN * Math.pow(T_MAX / T_MIN, position / STEPS)).toPrecision(3));
  }
  function tToSlider(t) {
    return Math.round((STEPS * Math.log(t / T_MIN)) / Math.log(T_MAX / T_MIN));
  }
  function setTemperature(t, moveSlider) {
    state.temperature = t;
    $("temperature-value").textContent = "T = " + fmtT(t);
    $("result").dataset.requestedTemperature = String(t);
    if (moveSlider) $("temperature").value = String(tToSlider(t));
    request();
  }

  function wire() {
    $("logits-input").addEventListener("input", (e) => {
      state.text = e.target.value;
      schedule(true);
    });
    $("logits-input").addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        state.text = e.target.value;
        state.rebuildEntries = true;
        request();
      }
    });
    $("add-logit").addEventListener("click", () => {
      const values = entryValues();
      values.push("0");
      setText(values.join(", "), true);
    });
    $("temperature").addEventListener("input", (e) => setTemperature(sliderToT(Number(e.target.value)), false));
    document.querySelectorAll("button[data-t]").forEach((b) =>
      b.addEventListener("click", () => setTemperature(Number(b.dataset.t), true)),
    );
    $("backend").addEventListener("change", (e) => {
      state.backend = e.target.value;
      request();
    });
    $("dtype").addEventListener("change", (e) => {
      state.dtype = e.target.value;
      request();
    });
    $("target").addEventListener("change", (e) => {
      state.target = Number(e.target.value);
      request();
    });
    $("temperature-chart").addEventListener("click", (e) => {
      const box = e.currentTarget.getBoundingClientRect();
      const x = ((e.clientX - box.left) / box.width) * CHART.w;
      const f = (x - CHART.left) / (CHART.w - CHART.left - CHART.right);
      if (f >= 0 && f <= 1) setTemperature(Number((T_MIN * Math.pow(T_MAX / T_MIN, f)).toPrecision(3)), true);
    });
  }

  function presets(info) {
    const box = $("presets");
    info.presets.forEach((preset, i) => {
      const button = el("button", "preset", preset.name);
      button.type = "button";
      button.id = "preset-" + i;
      button.title = preset.note;
      button.dataset.logits = JSON.stringify(preset.logits);
      button.addEventListener("click", () => setText(preset.name.slice(1, -1), true));
      box.append(button);
    });
  }

  // Numbers quoted in the explanations: computed too, never copied from prose.
  function fillComputed() {
    document.querySelectorAll(".computed").forEach((span) => {
      if (span.dataset.plain) {
        const v = span.dataset.plain.split(",").map(Number);
        const s = v.reduce((a, b) => a + b, 0);
        span.textContent = list(v.map((a) => a / s));
        return;
      }
      const query = new URLSearchParams({
        logits: span.dataset.logits,
        temperature: span.dataset.temperature || "1",
        curve: "0",
      });
      if (state.backend) query.set("backend", state.backend);
      api("/api/softmax?" + query.toString())
        .then((r) => {
          const index = span.dataset.index;
          span.textContent = index === undefined ? list(r.probabilities) : fmt(r.probabilities[Number(index)]);
          span.title = "computed by fastsoftmax, backend " + r.backend;
        })
        .catch((e) => (span.textContent = "(" + e.message + ")"));
    });
  }

  async function start() {
    wire();
    $("temperature").value = String(tToSlider(1));
    $("result").dataset.requestedTemperature = "1";
    try {
      const info = await api("/api/info");
      state.info = info;
      $("version").textContent = info.version;
      const select = $("backend");
      info.backends.forEach((name) => {
        const option = el("option", "", name + (name === info.default_backend && info.simd_level ? " (" + info.simd_level + ")" : ""));
        option.value = name;
        select.append(option);
      });
      state.backend = info.default_backend;
      select.value = info.default_backend;
      presets(info);
    } catch (e) {
      showError(e.message);
    }
    request();
    fillComputed();
  }

  start();
})();
