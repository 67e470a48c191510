// The playground page: everything it shows comes from the JSON API under /api.
"use strict";

const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231"];
const HYPER = {
  momentum: { label: "momentum", min: 0, max: 0.99, step: 0.01 },
  beta1: { label: "beta1", min: 0, max: 0.999, step: 0.001 },
  beta2: { label: "beta2", min: 0, max: 0.9999, step: 0.0001 },
  alpha: { label: "alpha", min: 0, max: 0.999, step: 0.001 },
  rho: { label: "rho", min: 0, max: 0.999, step: 0.001 },
};
const DEFAULT_ROWS = [
  { optimizer: "SGD", lr: 0.01 },
  { optimizer: "Momentum", lr: 0.01 },
  { optimizer: "Adam", lr: 0.1 },
  { optimizer: "", lr: 0.01 },
];
const RUN_DEFAULTS = {
  A: { activation: "sigmoid", depth: 10, optimizer: "SGD", lr: 0.1, epochs: 10 },
  B: { activation: "relu", depth: 10, optimizer: "SGD", lr: 0.1, epochs: 10 },
};

const state = { surfaces: {}, optimizers: {}, grid: null, start: null, background: null,
  runs: [], frame: 0, animation: null, lossChart: null };

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------- colours

const PALETTE = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function colormap(t) {
  const x = Math.min(1, Math.max(0, t)) * (PALETTE.length - 1);
  const i = Math.min(PALETTE.length - 2, Math.floor(x));
  const f = x - i;
  return PALETTE[i].map((c, k) => Math.round(c + f * (PALETTE[i + 1][k] - c)));
}

// ---------------------------------------------------------------- error surfaces

function surfaceCanvas() { return document.getElementById("surface-canvas"); }

function toPixel(surface, point, canvas) {
  const [[x0, x1], [y0, y1]] = surface.bounds;
  return [((point[0] - x0) / (x1 - x0)) * canvas.width,
    (1 - (point[1] - y0) / (y1 - y0)) * canvas.height];
}

function fromPixel(surface, px, py, canvas) {
  const [[x0, x1], [y0, y1]] = surface.bounds;
  return [x0 + (px / canvas.width) * (x1 - x0), y1 - (py / canvas.height) * (y1 - y0)];
}

function drawBackground(surface, grid) {
  const canvas = surfaceCanvas();
  const n = grid.x.length;
  let lo = Infinity;
  for (const row of grid.z) for (const v of row) if (v !== null && v < lo) lo = v;
  const level = (v) => (grid.log_levels ? Math.log10(v - lo + 1e-6) : v);
  const values = [];
  for (const row of grid.z) for (const v of row) if (v !== null) values.push(level(v));
  values.sort((a, b) => a - b);
  // Colour by rank, in 16 bands: every surface shows its structure, whatever its range.
  const quantile = (v) => {
    let a = 0, b = values.length;
    while (a < b) { const m = (a + b) >> 1; if (values[m] < v) a = m + 1; else b = m; }
    return Math.floor((a / values.length) * 16) / 15;
  };
  const image = document.createElement("canvas");
  image.width = canvas.width; image.height = canvas.height;
  const ctx = image.getContext("2d");
  const pixels = ctx.createImageData(canvas.width, canvas.height);
  for (let py = 0; py < canvas.height; py++) {
    const j = Math.round((1 - py / (canvas.height - 1)) * (n - 1));
    for (let px = 0; px < canvas.width; px++) {
      const i = Math.round((px / (canvas.width - 1)) * (n - 1));
      const v = grid.z[j][i];
      const [r, g, b] = v === null ? [255, 255, 255] : colormap(quantile(level(v)));
      const o = 4 * (py * canvas.width + px);
      pixels.data[o] = r; pixels.data[o + 1] = g; pixels.data[o + 2] = b; pixels.data[o + 3] = 255;
    }
  }
  ctx.putImageData(pixels, 0, 0);
  ctx.fillStyle = "#fff";
  ctx.strokeStyle = "#000";
  for (const m of surface.minima) {
    const [x, y] = toPixel(surface, m.point, canvas);
    ctx.beginPath();
    ctx.arc(x, y, m.kind === "global" ? 5 : 3.5, 0, 2 * Math.PI);
    ctx.fill(); ctx.stroke();
  }
  state.background = image;
}

function drawSurface(upTo) {
  const canvas = surfaceCanvas();
  const ctx = canvas.getContext("2d");
  const surface = state.surfaces[document.getElementById("surface").value];
  if (state.background) {
    ctx.drawImage(state.background, 0, 0);
  } else {
    // The contour comes once the server has imported torch (seconds after it starts).
    ctx.fillStyle = "#eee";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#555";
    ctx.font = "14px sans-serif";
    ctx.fillText("loading the surface…", 16, 28);
  }
  for (const run of state.runs) {
    const points = run.result.trajectory;
    if (!points.length) continue;  // diverged at its start point
    const last = Math.min(upTo, points.length - 1);
    ctx.strokeStyle = run.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    for (let t = 0; t <= last; t++) {
      const [x, y] = toPixel(surface, points[t], canvas);
      if (t === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    }
    ctx.stroke();
    const [bx, by] = toPixel(surface, points[last], canvas);
    ctx.fillStyle = run.color;
    ctx.beginPath();
    ctx.arc(bx, by, 6, 0, 2 * Math.PI);
    ctx.fill();
    ctx.strokeStyle = "#fff";
    ctx.stroke();
  }
  if (state.start) {
    const [sx, sy] = toPixel(surface, state.start, canvas);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(sx - 7, sy); ctx.lineTo(sx + 7, sy); ctx.moveTo(sx, sy - 7); ctx.lineTo(sx, sy + 7);
    ctx.stroke();
  }
}

function lossSeries(run, upTo, minValue) {
  const data = [];
  const losses = run.result.losses;
  const last = Math.min(upTo, losses.length - 1);
  for (let t = 0; t <= last; t++) {
    const y = minValue === null ? losses[t] : Math.max(losses[t] - minValue, 1e-16);
    data.push({ x: t, y });
  }
  return data;
}

function updateLossChart(upTo) {
  const surface = state.surfaces[document.getElementById("surface").value];
  const minValue = surface.min_value;
  const datasets = state.runs.map((run) => ({
    label: run.label, data: lossSeries(run, upTo, minValue), borderColor: run.color,
    backgroundColor: run.color, pointRadius: 0, borderWidth: 2,
  }));
  const title = minValue === null ? "f(x_t)" : "f(x_t) - f*";
  if (!state.lossChart) {
    state.lossChart = new Chart(document.getElementById("surface-loss"), {
      type: "line",
      data: { datasets },
      options: { animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
        scales: { x: { type: "linear", title: { display: true, text: "step" } },
          y: { type: minValue === null ? "linear" : "logarithmic",
            title: { display: true, text: title } } } },
    });
  } else {
    state.lossChart.data.datasets = datasets;
    state.lossChart.options.scales.y.type = minValue === null ? "linear" : "logarithmic";
    state.lossChart.options.scales.y.title.text = title;
    state.lossChart.update();
  }
}

function animate() {
  if (state.animation) cancelAnimationFrame(state.animation);
  const total = Math.max(1, ...state.runs.map((r) => r.result.trajectory.length));
  const perFrame = Math.max(1, Math.ceil(total / 150));
  state.frame = 0;
  document.body.dataset.surfaceState = "animating";
  const tick = () => {
    state.frame = Math.min(total - 1, state.frame + perFrame);
    drawSurface(state.frame);
    updateLossChart(state.frame);
    if (state.frame < total - 1) {
      state.animation = requestAnimationFrame(tick);
    } else {
      state.animation = null;
      document.body.dataset.surfaceState = "done";
    }
  };
  drawSurface(0);
  state.animation = requestAnimationFrame(tick);
}

function hyperInputs(row, optimizer) {
  const box = row.querySelector(".hps");
  box.innerHTML = "";
  const defaults = optimizer ? state.optimizers[optimizer].hyperparameters : {};
  const add = (key, value, spec) => {
    const line = el("div", { class: "hp" });
    line.append(el("span", {}, spec.label));
    const slider = el("input", { type: "range", min: spec.min, max: spec.max, step: spec.step,
      "data-hp": key });
    slider.value = value;
    const shown = el("span", {}, String(value));
    slider.addEventListener("input", () => { shown.textContent = slider.value; });
    line.append(slider, shown);
    box.append(line);
  };
  for (const [key, value] of Object.entries(defaults)) {
    if (key === "betas") {
      add("beta1", value[0], HYPER.beta1);
      add("beta2", value[1], HYPER.beta2);
    } else if (key === "eps") {
      const line = el("div", { class: "hp" });
      const input = el("input", { type: "number", step: "any", "data-hp": "eps" });
      input.value = value;
      line.append(el("span", {}, "eps"), input, el("span"));
      box.append(line);
    } else {
      add(key, value, HYPER[key]);
    }
  }
}

function optimizerRow(index, defaults) {
  const row = el("div", { class: "opt-row", "data-row": String(index) });
  row.style.borderLeftColor = COLORS[index];
  const select = el("select", { class: "optimizer" });
  select.append(el("option", { value: "" }, "(none)"));
  for (const name of Object.keys(state.optimizers)) select.append(el("option", { value: name }, name));
  select.value = defaults.optimizer;
  const lrLine = el("div", { class: "hp" });
  const lr = el("input", { type: "range", min: -4, max: 1, step: 0.05, class: "lr" });
  lr.value = Math.log10(defaults.lr);
  const lrShown = el("span", { class: "lr-value" }, String(defaults.lr));
  lr.addEventListener("input", () => { lrShown.textContent = lrValue(row).toPrecision(3); });
  lrLine.append(el("span", {}, "lr"), lr, lrShown);
  row.append(select, lrLine, el("div", { class: "hps" }));
  select.addEventListener("change", () => hyperInputs(row, select.value));
  hyperInputs(row, select.value);
  return row;
}

function lrValue(row) { return Number(Math.pow(10, Number(row.querySelector(".lr").value)).toPrecision(3)); }

function rowRequest(row, surface, steps) {
  const optimizer = row.querySelector(".optimizer").value;
  if (!optimizer) return null;
  const body = { surface, optimizer, lr: lrValue(row), steps, start: state.start };
  const value = (key) => Number(row.querySelector(`[data-hp="${key}"]`).value);
  for (const input of row.querySelectorAll("[data-hp]")) {
    const key = input.dataset.hp;
    if (key === "beta1") body.betas = [value("beta1"), value("beta2")];
    else if (key !== "beta2") body[key] = value(key);
  }
  return body;
}

function describeRun(request, result) {
  const hp = Object.entries(result.hyperparameters).map(([k, v]) => `${k}=${v}`).join(", ");
  let text = `${request.optimizer} (lr=${request.lr}${hp ? ", " + hp : ""})`;
  if (result.diverged) text += `: diverged at step ${result.diverged_at}`;
  else if (result.steps_to_tolerance !== null) text += `: within 1e-3 of the minimum from step ${result.steps_to_tolerance}`;
  else text += `: final loss ${result.final_loss.toPrecision(4)}`;
  return text;
}

async function runSurfaces() {
  const name = document.getElementById("surface").value;
  const steps = Number(document.getElementById("steps").value);
  const status = document.getElementById("surface-status");
  const rows = Array.from(document.querySelectorAll(".opt-row"));
  const requests = rows.map((row) => rowRequest(row, name, steps));
  status.textContent = "running…";
  document.body.dataset.surfaceState = "running";
  try {
    const runs = [];
    for (let i = 0; i < requests.length; i++) {
      if (!requests[i]) continue;
      const result = await api("POST", "/api/surfaces/run", requests[i]);
      runs.push({ label: requests[i].optimizer, color: COLORS[i], result, request: requests[i] });
    }
    if (document.getElementById("surface").value !== name) {  // another surface was chosen
      status.textContent = "";
      document.body.dataset.surfaceState = "idle";
      return;
    }
    state.runs = runs;
    status.textContent = runs.length ? "" : "no optimizer chosen";
    for (const r of runs) {
      const line = el("div", { class: r.result.diverged ? "run-line diverged" : "run-line" },
        describeRun(r.request, r.result));
      line.style.borderLeft = `6px solid ${r.color}`;
      status.append(line);
    }
    document.getElementById("surface-reproduce").textContent = runs
      .map((r) => `curl -s -X POST http://127.0.0.1:8765/api/surfaces/run -d '${JSON.stringify(r.request)}'`)
      .join("\n");
    if (runs.length) animate(); else document.body.dataset.surfaceState = "done";
  } catch (error) {
    status.textContent = `error: ${error.message}`;
    document.body.dataset.surfaceState = "error";
  }
}

async function selectSurface() {
  const select = document.getElementById("surface");
  const name = select.value;
  const surface = state.surfaces[name];
  document.getElementById("surface-description").textContent =
    `${surface.formula}: ${surface.description}`;
  state.start = surface.start.slice();
  showStart();
  if (state.animation) {
    cancelAnimationFrame(state.animation);
    document.body.dataset.surfaceState = "idle";
  }
  state.animation = null;
  state.runs = [];
  state.frame = 0;
  state.grid = null;
  state.background = null;
  drawSurface(0);
  updateLossChart(0);
  document.body.dataset.gridState = "loading";
  try {
    const grid = await api("GET", `/api/surfaces/${name}/grid?n=120`);
    if (select.value !== name) return;  // another surface was chosen meanwhile
    state.grid = grid;
    drawBackground(surface, grid);
    if (!state.animation) drawSurface(state.frame);
    document.body.dataset.gridState = "done";
  } catch (error) {
    if (select.value !== name) return;
    document.getElementById("surface-status").textContent = `error: ${error.message}`;
    document.body.dataset.gridState = "error";
  }
}

function showStart() {
  document.getElementById("start-point").textContent =
    `(${state.start[0].toFixed(2)}, ${state.start[1].toFixed(2)})`;
}

async function setupSurfaces() {
  const [surfaces, optimizers] = await Promise.all([api("GET", "/api/surfaces"), api("GET", "/api/optimizers")]);
  state.optimizers = optimizers;
  const select = document.getElementById("surface");
  for (const s of surfaces) {
    state.surfaces[s.name] = s;
    select.append(el("option", { value: s.name }, s.name));
  }
  select.value = "rosenbrock" in state.surfaces ? "rosenbrock" : surfaces[0].name;
  const rows = document.getElementById("optimizer-rows");
  DEFAULT_ROWS.forEach((d, i) => rows.append(optimizerRow(i, d)));
  select.addEventListener("change", selectSurface);
  document.getElementById("surface-run").addEventListener("click", runSurfaces);
  surfaceCanvas().addEventListener("click", (event) => {
    const canvas = surfaceCanvas();
    const box = canvas.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * canvas.width;
    const py = ((event.clientY - box.top) / box.height) * canvas.height;
    state.start = fromPixel(state.surfaces[select.value], px, py, canvas);
    showStart();
    drawSurface(state.frame);
  });
  // The controls are usable now; the contour follows when the server has it.
  selectSurface();
}

// ---------------------------------------------------------------- network lab

function makeChart(canvas, title, percent) {
  const names = ["train", "validation"];
  return new Chart(canvas, {
    type: "line",
    data: { datasets: names.map((n, i) => ({ label: `${n} ${title}`, data: [],
      borderColor: COLORS[i + 2], backgroundColor: COLORS[i + 2], pointRadius: 2 })) },
    options: { animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
      scales: { x: { type: "linear", title: { display: true, text: "epoch" } },
        y: { title: { display: true, text: title }, ...(percent ? { min: 0, max: 1 } : {}) } } },
  });
}

function drawHeatmap(panel, job) {
  const canvas = panel.querySelector(".heatmap");
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const epochs = job.epochs;
  const layers = job.layers.length;
  canvas.dataset.epochs = String(epochs.length);
  panel.querySelector(".heat-scale").textContent = "";
  if (!epochs.length || !layers) return;
  const logs = [];
  for (const e of epochs) for (const g of e.grad_norms) if (g !== null && g > 0) logs.push(Math.log10(g));
  const lo = Math.min(...logs), hi = Math.max(...logs);
  const left = 48, bottom = 18;
  const w = (canvas.width - left) / Math.max(epochs.length, 1);
  const h = (canvas.height - bottom) / layers;
  epochs.forEach((e, col) => {
    e.grad_norms.forEach((g, layer) => {
      // Input-side layer at the bottom, output layer on top.
      const y = canvas.height - bottom - (layer + 1) * h;
      if (g === null || g <= 0) { ctx.fillStyle = "#ccc"; } else {
        const [r, gg, b] = colormap(hi > lo ? (Math.log10(g) - lo) / (hi - lo) : 0.5);
        ctx.fillStyle = `rgb(${r},${gg},${b})`;
      }
      ctx.fillRect(left + col * w, y, Math.ceil(w), Math.ceil(h));
    });
  });
  ctx.fillStyle = "#222";
  ctx.font = "11px sans-serif";
  ctx.fillText("out", 4, canvas.height - bottom - (layers - 0.5) * h + 4);
  ctx.fillText("input", 4, canvas.height - bottom - 0.5 * h + 4);
  ctx.fillText("epoch 1", left, canvas.height - 4);
  ctx.fillText(`epoch ${epochs.length}`, canvas.width - 60, canvas.height - 4);
  panel.querySelector(".heat-scale").textContent = logs.length
    ? `dark = 1e${lo.toFixed(1)}, bright = 1e${hi.toFixed(1)} (mean ||dL/dW|| over the epoch's steps)`
    : "";
}

function showJob(panel, job) {
  const charts = panel._charts;
  const point = (key) => job.epochs.filter((e) => e[key] !== null).map((e) => ({ x: e.epoch, y: e[key] }));
  charts.loss.data.datasets[0].data = point("train_loss");
  charts.loss.data.datasets[1].data = point("val_loss");
  charts.accuracy.data.datasets[0].data = point("train_accuracy");
  charts.accuracy.data.datasets[1].data = point("val_accuracy");
  charts.loss.update();
  charts.accuracy.update();
  drawHeatmap(panel, job);
  const status = panel.querySelector(".status");
  let text = `${job.status}: ${job.epochs.length} of ${job.settings.epochs} epochs`;
  if (job.diverged) text += `, diverged at epoch ${job.diverged_epoch}`;
  else if (job.stop_reason === "early_stopping") text += `, stopped early (best epoch ${job.best_epoch})`;
  if (job.error) text += ` (${job.error})`;
  status.textContent = text;
  status.className = `status ${job.diverged ? "diverged" : job.status}`;
  panel.dataset.status = job.status;
  panel.querySelector(".reproduce-text").textContent =
    (job.reproduce.cli ? job.reproduce.cli + "\n" : "") + job.reproduce.request;
}

function readForm(panel) {
  const form = panel.querySelector(".run-form");
  const body = {};
  for (const input of form.querySelectorAll("input, select")) {
    if (input.type === "checkbox") body[input.name] = input.checked;
    else if (input.tagName === "SELECT") body[input.name] = input.value;
    else body[input.name] = Number(input.value);
  }
  return body;
}

async function startJob(panel) {
  stopPolling(panel);
  const status = panel.querySelector(".status");
  try {
    // Restarting: the panel's previous run stops first (it would hold one of the server's
    // job slots otherwise).
    if (panel.dataset.job && ["queued", "running"].includes(panel.dataset.status)) {
      await api("DELETE", `/api/train/${panel.dataset.job}`);
    }
    const { id } = await api("POST", "/api/train", readForm(panel));
    panel.dataset.job = id;
    panel.dataset.status = "queued";
    panel.querySelector(".stop").disabled = false;
    status.textContent = "queued";
    poll(panel);
  } catch (error) {
    status.textContent = `error: ${error.message}`;
    status.className = "status failed";
  }
}

function stopPolling(panel) {
  if (panel._timer) clearTimeout(panel._timer);
  panel._timer = null;
}

async function poll(panel) {
  const id = panel.dataset.job;
  try {
    const job = await api("GET", `/api/train/${id}`);
    if (panel.dataset.job !== id) return;
    showJob(panel, job);
    if (["queued", "running"].includes(job.status)) {
      panel._timer = setTimeout(() => poll(panel), 400);
    } else {
      panel.querySelector(".stop").disabled = true;
    }
  } catch (error) {
    panel.querySelector(".status").textContent = `error: ${error.message}`;
  }
}

async function stopJob(panel) {
  const id = panel.dataset.job;
  if (!id) return;
  stopPolling(panel);
  const job = await api("DELETE", `/api/train/${id}`);
  showJob(panel, job);
  // A job still loading its data stops once it starts: keep watching it until then.
  if (["queued", "running"].includes(job.status)) poll(panel);
  else panel.querySelector(".stop").disabled = true;
}

async function setupLab() {
  const options = await api("GET", "/api/train/options");
  const template = document.getElementById("run-template");
  const runs = document.getElementById("runs");
  for (const name of ["A", "B"]) {
    const panel = template.content.firstElementChild.cloneNode(true);
    panel.dataset.run = name;
    panel.querySelector("h2").textContent = `Run ${name}`;
    const fill = (field, values) => {
      const select = panel.querySelector(`[name="${field}"]`);
      for (const v of values) select.append(el("option", { value: v }, v));
    };
    fill("dataset", options.datasets);
    fill("activation", options.activations);
    fill("init", options.inits);
    fill("optimizer", options.optimizers);
    const values = { ...options.defaults, ...RUN_DEFAULTS[name] };
    for (const [key, value] of Object.entries(values)) {
      const input = panel.querySelector(`[name="${key}"]`);
      if (!input) continue;
      if (input.type === "checkbox") input.checked = Boolean(value); else input.value = value;
    }
    for (const [key, limit] of Object.entries(options.limits)) {
      const input = panel.querySelector(`[name="${key}"]`);
      if (input) input.max = limit;
    }
    runs.append(panel);
    panel._charts = {
      loss: makeChart(panel.querySelector(".loss-chart"), "loss", false),
      accuracy: makeChart(panel.querySelector(".accuracy-chart"), "accuracy", true),
    };
    panel.querySelector(".start").addEventListener("click", () => startJob(panel));
    panel.querySelector(".stop").addEventListener("click", () => stopJob(panel));
  }
}

async function setupReportLinks() {
  const report = await api("GET", "/api/report");
  const box = document.getElementById("report-links");
  if (!report.available) {
    box.append(el("span", {}, "Report: run `dltricks report --quick`, then restart `dltricks serve` to link it here."));
    return;
  }
  box.append(el("span", {}, "Report: "));
  for (const s of report.sections) box.append(el("a", { href: s.href, target: "_blank" }, s.trick));
}

function setupTabs() {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => {
      for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b === button);
      for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.id === button.dataset.tab);
    });
  }
}

async function main() {
  setupTabs();
  await Promise.all([setupSurfaces(), setupLab(), setupReportLinks()]);
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.body.dataset.ready = "error";
  document.getElementById("surface-status").textContent = `error: ${error.message}`;
});
