// mlpbp playground page: draws what the server's session sends; every number comes from the
// real engine in the server (nothing is trained here).
"use strict";

const $ = (id) => document.getElementById(id);
const ORANGE = [245, 147, 34], BLUE = [8, 119, 189], WHITE = [245, 245, 245];
const PALETTE = [[245, 147, 34], [8, 119, 189], [46, 160, 67], [170, 60, 180], [200, 50, 50], [120, 120, 120]];
const LAYER_COLOURS = ["#0877bd", "#f59322", "#2ea043", "#aa3cb4", "#c83232", "#555", "#17a2b8"];
const FIELDS = ["dataset", "points", "noise", "test_fraction", "seed", "hidden", "activation", "loss",
  "optimizer", "learning_rate", "momentum", "batch_size", "weight_decay", "steps_per_update", "sharpness_every"];
const NUMERIC = new Set(["points", "noise", "test_fraction", "seed", "learning_rate", "momentum", "batch_size",
  "weight_decay", "steps_per_update", "sharpness_every"]);

let ws = null, sid = null, state = null, frame = null, running = false;
let curve = [], sharpness = [], grads = [];
const drawStats = { frames: 0, ms: 0, draws: 0, drawMs: 0 };
let drawPending = false, pointsLayer = null;

// Pictures are drawn once per animation frame from the latest update: when updates come faster
// than the page can paint, it skips to the newest instead of queueing work (the page stays responsive).
function drawLatest() {
  drawPending = false;
  if (!frame || !state) return;
  const started = performance.now();
  drawOutput(); drawUnits(); drawCharts();
  drawStats.draws += 1;
  drawStats.drawMs += performance.now() - started;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.onopen = () => { $("connection").textContent = "connected"; $("connection").className = ""; };
  ws.onclose = () => {
    $("connection").textContent = "disconnected: reload the page";
    $("connection").className = "lost";
    setRunning(false);
  };
  ws.onmessage = (ev) => {
    const started = performance.now();
    const msg = JSON.parse(ev.data);
    const handler = HANDLERS[msg.type];
    if (handler) handler(msg);
    if (msg.type === "frame") { // the page's own cost per update, for the docs' responsiveness figure
      drawStats.frames += 1;
      drawStats.ms += performance.now() - started;
    }
  };
}

const HANDLERS = {
  hello(msg) {
    sid = msg.session;
    fillSelect("dataset", msg.options.datasets);
    fillSelect("activation", msg.options.activations);
    fillSelect("loss", msg.options.losses);
    fillSelect("optimizer", msg.options.optimizers);
    const L = msg.limits;
    $("limits").textContent = `Caps: at most ${L.max_points} points, widths 1..${L.max_width}, ${L.max_layers} hidden`
      + ` layers, ${L.max_sessions} sessions (one per tab), uploads of ${L.max_upload_bytes.toLocaleString()} bytes,`
      + ` ${L.max_steps_per_update} steps per update; a tab idle for ${L.idle_timeout_s} s is closed.`;
    $("points").max = L.max_points;
    $("download-yaml").href = `/session/${sid}/config.yaml`;
    $("download-model").href = `/session/${sid}/model.npz`;
  },
  state(msg) {
    state = msg;
    pointsLayer = null;
    curve = []; sharpness = []; grads = [];
    showError("");
    setControls(msg.settings);
    $("upload-row").hidden = msg.settings.dataset !== "upload";
    $("net-shape").textContent = `${msg.widths.join("-")} ${msg.settings.activation}, ${msg.n_params} parameters`;
    $("example").innerHTML = "";
    $("gradcheck-table").innerHTML = "";
    $("example-note").textContent = "Click a point in the output picture.";
    buildUnits(msg);
    $("output-note").textContent = msg.inputs === 2
      ? "Colour: the network's output over the input plane (standardised inputs). Filled dots: training points;"
        + " ringed: test points. Click a point to follow it through the network."
      : "Line: the network's output o(x); dots: blue training, orange test points (x and y standardised)."
        + " Click a point to follow it through the network.";
  },
  frame(msg) {
    frame = msg;
    if (!curve.length || curve[curve.length - 1].step !== msg.step) {
      curve.push({ step: msg.step, train: msg.train, test: msg.test });
      grads.push({ step: msg.step, norms: msg.grad_norms });
    }
    if (msg.sharpness && (!sharpness.length || sharpness[sharpness.length - 1].step !== msg.sharpness.step)) {
      sharpness.push(msg.sharpness);
    }
    showStatus();
    if (!drawPending) { drawPending = true; requestAnimationFrame(drawLatest); }
  },
  paused() { setRunning(false); },
  example: showExample,
  gradcheck: showGradcheck,
  error(msg) { // the session kept its last good settings: the controls show them again
    showError(msg.message);
    if (state) setControls(state.settings);
    if (frame && frame.diverged) setRunning(false);
  },
  closed(msg) { showError(msg.reason); },
  pong() {},
};

function fillSelect(id, names) {
  $(id).innerHTML = names.map((n) => `<option value="${n}">${n}</option>`).join("");
}

function setControls(s) {
  for (const k of FIELDS) {
    const el = $(k);
    el.value = Array.isArray(s[k]) ? s[k].join(", ") : s[k];
  }
}

function readControls() {
  const s = {};
  for (const k of FIELDS) {
    const v = $(k).value;
    s[k] = NUMERIC.has(k) ? Number(v) : v;
  }
  return s;
}

function setRunning(on) {
  running = on;
  $("run").disabled = on;
  $("pause").disabled = !on;
}

function showStatus() {
  const f = frame;
  const acc = f.accuracy ? `, accuracy train ${fmt(f.accuracy.train, 3)}` + (f.accuracy.test !== undefined ? ` test ${fmt(f.accuracy.test, 3)}` : "") : "";
  $("status").textContent = `step ${f.step}, epoch ${f.epoch}: train loss ${fmt(f.train)}`
    + (f.test !== null ? `, test loss ${fmt(f.test)}` : "") + acc + `, α ${f.learning_rate}`;
  $("status").dataset.step = f.step;
  $("status").dataset.trainLoss = f.train;
  const e = f.epoch_loss;
  $("epoch-loss").textContent = e ? `epoch ${e.epoch} ended with train loss ${e.train_loss} (what the YAML reproduces)` : "no epoch completed yet";
  $("epoch-loss").dataset.epochLoss = e ? String(e.train_loss) : "";
  $("epoch-loss").dataset.epoch = e ? e.epoch : 0;
}

function fmt(x, digits = 4) {
  if (x === null || x === undefined) return "–";
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e4)) return x.toExponential(digits - 1);
  return x.toPrecision(digits);
}

// ---- pictures -----------------------------------------------------------------------------
function bytes(b64) {
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function diverging(v) { // 0..255, 127.5 is zero: orange (negative) - white - blue (positive)
  const t = (v - 127.5) / 127.5, end = t < 0 ? ORANGE : BLUE, w = Math.abs(t);
  return [0, 1, 2].map((i) => Math.round(WHITE[i] + (end[i] - WHITE[i]) * w));
}

function paintGrid(ctx, n, picture, w, h) {
  const img = ctx.createImageData(n, n), d = bytes(picture.data);
  const conf = picture.conf ? bytes(picture.conf) : null;
  for (let i = 0; i < n * n; i++) {
    let c;
    if (picture.kind === "classes") {
      const base = PALETTE[d[i] % PALETTE.length], a = conf[i] / 255;
      c = [0, 1, 2].map((j) => Math.round(WHITE[j] + (base[j] - WHITE[j]) * a * 0.8));
    } else c = diverging(d[i]);
    img.data.set([c[0], c[1], c[2], 255], 4 * i);
  }
  const tmp = scratch(n);
  tmp.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(tmp, 0, 0, w, h);
}

const scratches = {};
function scratch(n) { // one offscreen canvas per grid size, reused every frame
  if (!scratches[n]) { scratches[n] = document.createElement("canvas"); scratches[n].width = n; scratches[n].height = n; }
  return scratches[n];
}

function toPixel(x, canvas) { // data coordinates -> canvas pixels
  const lo = state.bounds.lo, hi = state.bounds.hi;
  const px = ((x[0] - lo[0]) / (hi[0] - lo[0])) * canvas.width;
  const py = state.inputs === 2 ? ((hi[1] - x[1]) / (hi[1] - lo[1])) * canvas.height : null;
  return [px, py];
}

function pointColour(label) { // a darker shade of the class's region colour, so a point shows on its own region
  const c = state.task === "classification" ? PALETTE[label % PALETTE.length].map((v) => Math.round(v * 0.7)) : [60, 60, 60];
  return `rgb(${c.join(",")})`;
}

function drawOutput() {
  const canvas = $("output"), ctx = canvas.getContext("2d"), pic = frame.output;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.inputs === 2) {
    paintGrid(ctx, state.grid, pic, canvas.width, canvas.height);
    if (!pointsLayer) pointsLayer = drawPoints(canvas);
    ctx.drawImage(pointsLayer, 0, 0);
  } else drawCurve(ctx, canvas, pic, true);
  if (selected) markSelected(ctx, canvas);
}

function drawPoints(canvas) { // the points stay put during a run: drawn once per data set
  const layer = document.createElement("canvas");
  layer.width = canvas.width; layer.height = canvas.height;
  const ctx = layer.getContext("2d");
  for (const [part, ring] of [["train", false], ["test", true]]) {
    for (const p of state[part]) {
      const [px, py] = toPixel(p, canvas);
      ctx.beginPath(); ctx.arc(px, py, 3.2, 0, 2 * Math.PI);
      if (ring) { ctx.strokeStyle = pointColour(p[2]); ctx.lineWidth = 1.5; ctx.stroke(); }
      else { ctx.fillStyle = pointColour(p[2]); ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 0.7; ctx.stroke(); }
    }
  }
  return layer;
}

function drawCurve(ctx, canvas, pic, withPoints) { // 1-D input: the output (or a unit) against x
  const values = pic.values || Array.from(bytes(pic.data), (v) => (v - 127.5) / 127.5);
  const pts = withPoints ? state.train.concat(state.test) : [];
  const ys = values.concat(pts.map((p) => p[1]));
  const lo = Math.min(...ys), hi = Math.max(...ys), pad = 0.1 * (hi - lo || 1);
  const Y = (v) => canvas.height - ((v - lo + pad) / (hi - lo + 2 * pad)) * canvas.height;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (const [i, p] of pts.entries()) {
    ctx.beginPath(); ctx.arc(toPixel(p, canvas)[0], Y(p[1]), 2.5, 0, 2 * Math.PI);
    ctx.fillStyle = i < state.train.length ? "#0877bd" : "#f59322"; ctx.fill();
  }
  ctx.beginPath(); ctx.strokeStyle = withPoints ? "#222" : "#0877bd"; ctx.lineWidth = withPoints ? 2 : 1.5;
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * canvas.width;
    if (i) ctx.lineTo(x, Y(v)); else ctx.moveTo(x, Y(v));
  });
  ctx.stroke();
  ctx.pointY = Y;
}

function buildUnits(s) {
  const box = $("units");
  box.innerHTML = "";
  const hidden = s.widths.slice(1, -1);
  hidden.forEach((w, r) => {
    const col = document.createElement("div");
    col.className = "layer-col";
    col.innerHTML = `<span>layer ${r + 1}</span>`;
    for (let i = 0; i < w; i++) {
      const c = document.createElement("canvas");
      c.width = s.inputs === 2 ? s.unit_grid : 60; c.height = s.inputs === 2 ? s.unit_grid : 60;
      c.id = `unit-${r + 1}-${i + 1}`;
      c.title = `a(${r + 1})_${i + 1}`;
      const wrap = document.createElement("div");
      wrap.className = "unit"; wrap.appendChild(c);
      col.appendChild(wrap);
    }
    box.appendChild(col);
  });
}

function drawUnits() {
  for (const u of frame.units) {
    const c = $(`unit-${u.layer}-${u.unit}`);
    if (!c) continue;
    const ctx = c.getContext("2d");
    if (state.inputs === 2) paintGrid(ctx, state.unit_grid, u, c.width, c.height);
    else drawCurve(ctx, c, u, false);
    c.title = `a(${u.layer})_${u.unit}: |a| up to ${fmt(u.scale, 3)}`;
  }
}

// ---- charts -------------------------------------------------------------------------------
function chart(canvas, series, opts = {}) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 46, B = 16;
  ctx.clearRect(0, 0, W, H);
  const all = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null && isFinite(v) && (!opts.log || v > 0));
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  if (!all.length) return;
  const f = opts.log ? Math.log10 : (v) => v;
  let lo = Math.min(...all.map(f)), hi = Math.max(...all.map(f));
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - 6), Y = (v) => 4 + (1 - (f(v) - lo) / (hi - lo)) * (H - B - 8);
  ctx.fillStyle = "#555"; ctx.font = "10px sans-serif";
  for (const t of [lo, (lo + hi) / 2, hi]) {
    const v = opts.log ? 10 ** t : t;
    ctx.fillText(fmt(v, 3), 2, Y(v) + 3);
  }
  ctx.fillText(`step ${x1}`, W - 60, H - 3);
  for (const s of series) {
    ctx.beginPath(); ctx.strokeStyle = s.colour; ctx.lineWidth = 1.5; ctx.setLineDash(s.dash || []);
    let started = false;
    for (const [x, v] of s.points) {
      if (v === null || !isFinite(v) || (opts.log && v <= 0)) { started = false; continue; }
      if (started) ctx.lineTo(X(x), Y(v)); else { ctx.moveTo(X(x), Y(v)); started = true; }
      if (s.dots) ctx.fillRect(X(x) - 1.5, Y(v) - 1.5, 3, 3);
    }
    ctx.stroke(); ctx.setLineDash([]);
  }
}

function drawCharts() {
  chart($("loss-chart"), [
    { colour: "#0877bd", points: curve.map((p) => [p.step, p.train]) },
    { colour: "#f59322", dash: [4, 3], points: curve.map((p) => [p.step, p.test]) },
  ], { log: true });
  const R = grads.length ? grads[0].norms.length : 0;
  const gs = [];
  for (let r = 0; r < R; r++) gs.push({ colour: LAYER_COLOURS[r % LAYER_COLOURS.length], points: grads.map((g) => [g.step, g.norms[r]]) });
  chart($("grad-chart"), gs, { log: true });
  $("grad-key").innerHTML = gs.map((g, r) => `<i style="background:${g.colour}"></i>W${r + 1}, b${r + 1}`).join(" ");
  chart($("sharp-chart"), [
    { colour: "#aa3cb4", dots: true, points: sharpness.map((p) => [p.step, p.top]) },
    { colour: "#c83232", dash: [5, 3], points: sharpness.map((p) => [p.step, p.limit]) },
  ], { log: true });
  const last = sharpness[sharpness.length - 1];
  $("sharp-note").textContent = last
    ? `step ${last.step}: λmax = ${fmt(last.top)}, 2/α = ${fmt(last.limit)}`
      + (last.top > last.limit ? " — past the edge of stability: gradient descent on J overshoots along the top eigenvector" : "")
      + " (purple: λmax every k steps on up to 500 training rows; red dashed: 2/α)"
    : "measured every k steps while training (0: never)";
}

// ---- one example --------------------------------------------------------------------------
let selected = null;

function markSelected(ctx, canvas) {
  const p = state[selected.part][selected.index];
  const [px, py0] = toPixel(p, canvas);
  const py = state.inputs === 2 ? py0 : (ctx.pointY ? ctx.pointY(p[1]) : canvas.height / 2);
  ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI);
  ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.stroke();
}

$("output").addEventListener("click", (ev) => {
  if (!state) return;
  const canvas = $("output"), rect = canvas.getBoundingClientRect();
  const mx = ((ev.clientX - rect.left) / rect.width) * canvas.width, my = ((ev.clientY - rect.top) / rect.height) * canvas.height;
  let best = null;
  for (const part of ["train", "test"]) {
    state[part].forEach((p, index) => {
      const [px, py0] = toPixel(p, canvas);
      const py = state.inputs === 2 ? py0 : canvas.getContext("2d").pointY(p[1]);
      const d = (px - mx) ** 2 + (py - my) ** 2;
      if (!best || d < best.d) best = { d, part, index };
    });
  }
  if (!best) return;
  selected = best;
  send({ type: "example", part: best.part, index: best.index });
  if (frame) drawOutput();
});

function vec(v) { return v.map((x) => fmt(x, 4)).join("  "); }

function mat(m) {
  const rows = m.length, cols = m[0].length, show = m.slice(0, 8).map((r) => r.slice(0, 8).map((x) => fmt(x, 3).padStart(10)).join(""));
  return show.join("\n") + (rows > 8 || cols > 8 ? `\n… (${rows}×${cols}; 8×8 shown)` : "");
}

function showExample(e) {
  const R = e.layers.length, rows = [];
  const sup = (r) => `<sup>(${r})</sup>`;
  const row = (what, formula, shape, value) => rows.push(`<tr><td>${what}</td><td>${formula}</td><td>${shape}</td><td class="num">${value}</td></tr>`);
  rows.push(`<tr class="section"><th colspan="4">Forward pass: a${sup(0)} = x, then for r = 1..${R}: z${sup("r")} = W${sup("r")} a${sup("r−1")} + b${sup("r")}, a${sup("r")} = σ(z${sup("r")}), σ = ${e.activation}; output o = z${sup(R)}</th></tr>`);
  rows.push("<tr><th>quantity</th><th>formula</th><th>shape</th><th>value</th></tr>");
  row(`a${sup(0)}`, "x", `(${e.x.length},)`, vec(e.x));
  for (const L of e.layers) {
    const r = L.layer;
    row(`z${sup(r)}`, `W${sup(r)} a${sup(r - 1)} + b${sup(r)}`, `(${L.z.length},) = (${L.W_shape.join("×")})·(${L.W_shape[1]},)`, vec(L.z));
    if (L.a) row(`a${sup(r)}`, `σ(z${sup(r)})`, `(${L.a.length},)`, vec(L.a));
  }
  const target = state.task === "classification" && state.classes ? `${e.target} (class ${state.classes[e.target]})` : fmt(e.target);
  row("J", `${e.loss_name}(o = z${sup(R)}, y = ${target})`, "scalar", fmt(e.loss, 6));
  rows.push(`<tr class="section"><th colspan="4">Backward pass: ∂J/∂W${sup("r")} = ∂J/∂z${sup("r")} a${sup("r−1")}ᵀ, ∂J/∂b${sup("r")} = ∂J/∂z${sup("r")}, ∂J/∂a${sup("r−1")} = W${sup("r")}ᵀ ∂J/∂z${sup("r")}, ∂J/∂z${sup("r−1")} = ∂J/∂a${sup("r−1")} ⊙ σ′(z${sup("r−1")})</th></tr>`);
  for (let k = R - 1; k >= 0; k--) {
    const L = e.layers[k], r = L.layer;
    if (r === R) row(`∂J/∂z${sup(r)}`, "∂J/∂o (the loss's derivative)", `(${L.dz.length},)`, vec(L.dz));
    else {
      row(`∂J/∂a${sup(r)}`, `W${sup(r + 1)}ᵀ ∂J/∂z${sup(r + 1)}`, `(${L.da.length},)`, vec(L.da));
      row(`∂J/∂z${sup(r)}`, `∂J/∂a${sup(r)} ⊙ σ′(z${sup(r)})`, `(${L.dz.length},)`, vec(L.dz));
    }
    row(`∂J/∂W${sup(r)}`, `∂J/∂z${sup(r)} a${sup(r - 1)}ᵀ`, `(${L.W_shape.join("×")})`, mat(L.dW));
    row(`∂J/∂b${sup(r)}`, `∂J/∂z${sup(r)}`, `(${L.db.length},)`, vec(L.db));
  }
  $("example").innerHTML = rows.join("");
  $("example-note").textContent = `${e.part} point ${e.index}: the chain rule written out from the parameters agrees with`
    + ` the engine's loss_and_grad to ${e.engine_max_abs_diff.toExponential(1)} (largest |difference| over ∂J/∂W, ∂J/∂b).`;
  $("example").dataset.index = e.index;
}

function showGradcheck(g) {
  const rows = ["<tr><th>check</th><th>kind</th><th>shape</th><th>max relative error</th><th>entries</th><th>status</th></tr>"];
  for (const c of g.checks) {
    rows.push(`<tr class="${c.status}"><td>${c.name}</td><td>${c.kind}</td><td>(${c.shape.join("×")})</td>`
      + `<td class="num">${c.max_rel_err === null ? "–" : c.max_rel_err.toExponential(2)}</td><td>${c.checked}${c.skipped ? ` (+${c.skipped} at a kink)` : ""}</td><td class="status">${c.status}</td></tr>`);
  }
  $("gradcheck-table").innerHTML = `<caption>gradcheck on ${g.rows} training points: ${g.ok ? "all pass" : "FAILURES"}</caption>` + rows.join("");
  $("gradcheck-table").dataset.ok = g.ok;
}

// ---- controls -----------------------------------------------------------------------------
const CLASSIFY = { regression: false };
for (const k of FIELDS) {
  if (k === "steps_per_update" || k === "sharpness_every") {
    $(k).addEventListener("change", () => send({ type: "configure", settings: readControls() }));
    continue;
  }
  $(k).addEventListener("change", () => {
    const s = readControls();
    if (k === "dataset") {
      $("upload-row").hidden = s.dataset !== "upload";
      if (s.dataset === "upload") return; // wait for the file
      s.loss = CLASSIFY[s.dataset] === false ? "square" : "cross_entropy";
    }
    setRunning(false);
    selected = null;
    send({ type: "configure", settings: s });
  });
}

$("upload").addEventListener("change", async () => {
  const file = $("upload").files[0];
  if (!file || !sid) return;
  setRunning(false);
  selected = null;
  try {
    const r = await fetch(`/session/${sid}/upload?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
    const answer = await r.json();
    if (!r.ok) showError(answer.error);
  } catch (err) { showError(`upload failed: ${err}`); }
});

$("run").addEventListener("click", () => { setRunning(true); send({ type: "run" }); });
$("pause").addEventListener("click", () => { setRunning(false); send({ type: "pause" }); });
$("step").addEventListener("click", () => { setRunning(false); send({ type: "step", steps: 1 }); });
$("reset").addEventListener("click", () => { setRunning(false); selected = null; send({ type: "reset" }); });
$("gradcheck").addEventListener("click", () => send({ type: "gradcheck" }));
for (const id of ["download-yaml", "download-model"]) {
  $(id).addEventListener("click", async (ev) => { // a session that ended: say so instead of saving its error
    if (ws && ws.readyState === WebSocket.OPEN) return;
    ev.preventDefault();
    showError("this tab's session has ended; reload the page to start a new one");
  });
}

connect();
