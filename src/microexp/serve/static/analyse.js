// Analyse page: start a job (uploaded video or frame folder), follow it, show video + timeline + saliency.
"use strict";
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
let chosenFile = null;
let shown = null;  // id of the job whose result is on the page
let latest = null;  // id of the job submitted last: its result is shown when it finishes
let intervals = [];
let spots = [];  // the spotting run's intervals (spot-intervals.json), when the job had one
let view = null;  // view.json: what the page shows first (spots or intervals) and its notes
let explained = {};  // saliency entries already fetched, by kind and index
const SPOT_COLOURS = { micro: "#e6550d", macro: "#756bb1", blink: "#9e9e9e" };

function setError(text) { document.getElementById("start-error").textContent = text; }

async function loadRuns() {
  try {
    const [info, data] = await Promise.all([api("/api/info"), api("/api/runs")]);
    document.getElementById("limits").textContent =
      "Uploads up to " + info.max_upload_mb + " MB. Runs from " + info.runs + ".";
    const usable = data.runs.filter((r) => r.predictable && !r.spotting);
    const select = document.getElementById("run");
    select.replaceChildren(...usable.map((r) => el("option", { value: r.run },
      r.run + " (" + r.model + ", " + (r.classes || []).join("/") + ")")));
    if (!usable.length) setError("no run with checkpoints under " + info.runs + ": train one (microexp demo --out ...)");
    if (info.spot) {  // only where this microexp has the spotting module
      document.getElementById("spot-choice").hidden = false;
      document.getElementById("spot-run").replaceChildren(el("option", { value: "" }, "none"),
        ...data.runs.filter((r) => r.spotting).map((r) => el("option", { value: r.run }, r.run)));
    }
  } catch (err) {
    setError(err.message);
  }
}

function choose(file) {
  chosenFile = file;
  document.getElementById("drop").firstChild.textContent = file ? "Chosen: " + file.name + " " : "Drop a video file here, or ";
}

async function start() {
  setError("");
  const params = new URLSearchParams({ run: document.getElementById("run").value });
  for (const key of ["face", "window", "stride"]) {
    const v = document.getElementById(key).value.trim();
    if (v) params.set(key, v);
  }
  const spot = document.getElementById("spot-run");
  if (!document.getElementById("spot-choice").hidden && spot.value) params.set("spot_run", spot.value);
  const folder = document.getElementById("folder").value.trim();
  const options = { method: "POST" };
  if (chosenFile) {
    params.set("name", chosenFile.name);
    options.body = chosenFile;
    options.headers = { "Content-Type": "application/octet-stream" };
  } else if (folder) {
    params.set("folder", folder);
  } else {
    setError("choose or drop a video file, or give a frame folder");
    return;
  }
  try {
    const job = await api("/api/jobs?" + params.toString(), options);
    latest = job.id;
    poll();
  } catch (err) {
    setError(err.message);
  }
}

function renderJobs(jobs) {
  const box = document.getElementById("jobs");
  if (!jobs.length) return;
  box.replaceChildren(...jobs.slice().reverse().map((j) => {
    // a phase that cannot count its steps (spotting) shows a moving bar
    const bar = j.state === "running" && j.phase.startsWith("spotting") ? el("progress", { max: "1" })
      : el("progress", { max: "1", value: String(j.progress) });
    const div = el("div", { class: "job", "data-job": j.id, "data-state": j.state },
      el("b", {}, j.name), " with ", j.run, ": ", el("span", { class: "state" }, j.state), " ", bar, " ",
      el("span", { class: "phase" }, j.state === "running" || j.state === "queued" ? j.phase : ""));
    if (j.state === "queued" || j.state === "running") {
      div.append(" ", el("button", { class: "cancel", onclick: () => cancel(j.id) }, "Cancel"));
    }
    if (j.state === "done") {
      div.append(" ", el("span", { class: "note" }, j.message), " ",
        el("button", { class: "show", onclick: () => showResult(j) }, "Show"));
    }
    if (j.state === "failed") div.append(el("div", { class: "error message" }, j.message));
    if (j.state === "cancelled") div.append(el("div", { class: "note message" }, j.message));
    return div;
  }));
}

async function cancel(id) {
  try { await api("/api/jobs/" + id, { method: "DELETE" }); } catch (err) { setError(err.message); }
  poll();
}

let polling = null;
async function poll() {
  clearTimeout(polling);
  let jobs = [];
  try {
    jobs = (await api("/api/jobs")).jobs;
  } catch (err) {
    setError(err.message);
  }
  renderJobs(jobs);
  const last = jobs.find((j) => j.id === latest);
  if (last && last.state === "done" && shown !== last.id) showResult(last);
  if (jobs.some((j) => j.state === "queued" || j.state === "running")) polling = setTimeout(poll, 400);
}

function files(job, name) { return "/api/jobs/" + job.id + "/files/" + name; }

async function showResult(job) {
  shown = job.id;
  const [result, found] = await Promise.all([api(files(job, "result.json")), api(files(job, "view.json"))]);
  view = found;
  spots = job.options.spot_run ? (await api(files(job, "spot-intervals.json"))).spots : [];
  intervals = result.segments.map((s, i) => ({ ...s, index: i }));
  explained = {};
  document.getElementById("result").hidden = false;
  document.getElementById("result").dataset.job = job.id;
  document.getElementById("result").dataset.main = view.main;
  document.getElementById("result-title").textContent = result.source + ": " + result.n_frames + " frames at " +
    result.fps + " fps, window " + result.window + " frames, stride " + result.stride;
  document.getElementById("downloads").replaceChildren(
    el("a", { id: "download-json", href: files(job, "result.json"), download: "" }, "download JSON"),
    el("a", { id: "download-csv", href: files(job, "result.csv"), download: "" }, "download CSV"),
    el("span", { class: "note" }, "(what microexp predict --json / --csv writes)"));
  if (job.options.spot_run) {
    document.getElementById("downloads").append(
      el("a", { id: "download-spots-json", href: files(job, "spots.json"), download: "" }, "download spots JSON"),
      el("a", { id: "download-spots-csv", href: files(job, "spots.csv"), download: "" }, "download spots CSV"),
      el("span", { class: "note" }, "(what microexp spot --run " + job.options.spot_run + " --recognise " + job.run +
        (job.options.face ? " --face " + job.options.face : "") + " --json / --csv writes)"));
  }
  document.getElementById("notes").replaceChildren(...view.notes.map((n) => el("p", { class: "page-note" }, n)));
  const video = document.getElementById("video");
  video.src = files(job, "video.webm");
  video.onerror = () => { document.getElementById("video-note").textContent = "this browser cannot play the video"; };
  if (view.main === "spots") drawSpotTimeline(result); else drawTimeline(result);
  drawIntervals(result);
  drawSpots(job);
  document.getElementById("intervals-box").hidden = view.main === "spots";
  document.getElementById("saliency").replaceChildren();
}

function colour(result, label) { return PALETTE[result.classes.indexOf(label) % PALETTE.length]; }
function spotColour(type) { return SPOT_COLOURS[type] || PALETTE[(type.length * 7) % PALETTE.length]; }
function spotTypes() {  // every type the spotter gives, the known ones first
  return [...new Set(["micro", "macro", "blink", ...spots.map((s) => s.type)])].filter((t) => spots.some((s) => s.type === t));
}
function spotClass(s) { return s.type === "blink" ? "blink" : (s.emotion || "-"); }

function plot(traces, layout, result) {
  const div = document.getElementById("timeline");
  layout.xaxis = { title: { text: "time (s)" }, range: [0, result.n_frames / result.fps], anchor: "y2" };
  layout.shapes = [{ type: "line", xref: "x", yref: "paper", x0: 0, x1: 0, y0: 0, y1: 1, line: { color: "#000", width: 1 } }];
  Plotly.newPlot(div, traces, layout, { displaylogo: false, responsive: true });
  div.on("plotly_click", (ev) => {
    const point = ev.points.find((p) => p.customdata !== undefined);
    if (point && point.data.meta === "spot") selectSpot(point.customdata);
    else if (point) select(point.customdata);
  });
  const video = document.getElementById("video");
  video.ontimeupdate = () => Plotly.relayout(div, { "shapes[0].x0": video.currentTime, "shapes[0].x1": video.currentTime });
}

// a spotting run: its intervals are the main rows (one per type, the recognised class on the bar); the
// recognition run's per-window class probabilities are a strip beneath, not intervals
function drawSpotTimeline(result) {
  const rows = spotTypes();
  const traces = rows.map((t) => {
    const found = spots.filter((s) => s.type === t);
    return { type: "bar", orientation: "h", name: t, y: found.map(() => t), meta: "spot",
      base: found.map((s) => s.start_time), x: found.map((s) => s.end_time - s.start_time),
      customdata: found.map((s) => s.index), text: found.map(spotClass), textposition: "inside",
      marker: { color: spotColour(t) }, xaxis: "x", yaxis: "y",
      hovertemplate: "%{y} from %{base:.2f} s, %{x:.2f} s long: %{text}<extra>spot %{customdata}</extra>" };
  });
  traces.push({ type: "heatmap", name: "class probabilities", meta: "strip",
    x: result.windows.map((w) => (w.start_time + w.end_time) / 2), y: result.classes,
    z: result.classes.map((c) => result.windows.map((w) => w.probabilities[c])), zmin: 0, zmax: 1,
    colorscale: "Blues", reversescale: true, showscale: false, xaxis: "x", yaxis: "y2",  // dark: likely
    hovertemplate: "p(%{y}) = %{z:.2f} at %{x:.2f} s<extra>window</extra>" });
  plot(traces, { margin: { l: 80, r: 20, t: 10, b: 40 }, barmode: "overlay", showlegend: false,
    yaxis: { domain: [0.42, 1], type: "category", categoryarray: rows.length ? rows : ["none"], categoryorder: "array",
      title: { text: "spotted" } },
    yaxis2: { domain: [0, 0.32], type: "category", title: { text: "p(class)" } } }, result);
}

function drawTimeline(result) {
  const traces = [];
  const rows = [...result.classes, "gap"];
  for (const label of result.classes) {
    const segs = intervals.filter((s) => s.label === label);
    traces.push({ type: "bar", orientation: "h", name: label, y: segs.map(() => label),
      base: segs.map((s) => s.start_time), x: segs.map((s) => s.end_time - s.start_time),
      customdata: segs.map((s) => s.index), marker: { color: colour(result, label) }, xaxis: "x", yaxis: "y",
      hovertemplate: "%{y}: %{base:.2f}-%{x:.2f} s<extra>interval %{customdata}</extra>", legendgroup: label });
  }
  if (result.gaps.length) {
    traces.push({ type: "bar", orientation: "h", name: "gap", y: result.gaps.map(() => "gap"),
      base: result.gaps.map((g) => g.start_time), x: result.gaps.map((g) => g.end_time - g.start_time),
      text: result.gaps.map((g) => g.reason), marker: { color: "#bbb" }, hovertemplate: "%{text}<extra></extra>" });
  }
  const centres = result.windows.map((w) => (w.start_time + w.end_time) / 2);
  for (const label of result.classes) {
    traces.push({ type: "scatter", mode: "lines+markers", name: "p(" + label + ")", x: centres,
      y: result.windows.map((w) => w.probabilities[label]), line: { color: colour(result, label), width: 1.5 },
      marker: { size: 4 }, xaxis: "x", yaxis: "y2", legendgroup: label, showlegend: false });
  }
  plot(traces, { margin: { l: 80, r: 20, t: 10, b: 40 }, barmode: "overlay", showlegend: true,
    legend: { orientation: "h", y: 1.08 },
    yaxis: { domain: [0.55, 1], type: "category", categoryarray: rows, categoryorder: "array" },
    yaxis2: { domain: [0, 0.45], range: [0, 1.02], title: { text: "probability" } } }, result);
}

function drawIntervals(result) {
  const table = document.getElementById("intervals");
  table.replaceChildren(el("tr", {}, el("th", {}, "#"), el("th", { class: "l" }, "class"), el("th", {}, "frames"),
    el("th", {}, "time (s)"), el("th", {}, "mean p")));
  for (const s of intervals) {
    table.append(el("tr", { class: "interval", "data-index": s.index, "data-label": s.label,
      "data-start": s.start_time, "data-end": s.end_time, onclick: () => select(s.index) },
      el("td", {}, s.index), el("td", { class: "l" }, el("span", { style: "color:" + colour(result, s.label) }, "■ "),
        s.label), el("td", {}, s.start_frame + "-" + s.end_frame),
      el("td", {}, s.start_time.toFixed(2) + "-" + s.end_time.toFixed(2)), el("td", {}, s.probability.toFixed(2))));
  }
  document.getElementById("gaps").replaceChildren(...result.gaps.map((g) => el("p", { class: "note gap" },
    "gap, frames " + g.start_frame + "-" + g.end_frame + " (" + g.start_time.toFixed(2) + "-" +
    g.end_time.toFixed(2) + " s): " + g.reason)));
}

function drawSpots(job) {
  const box = document.getElementById("spots");
  if (!job.options.spot_run) { box.replaceChildren(); return; }
  const withAus = spots.some((s) => s.aus && Object.keys(s.aus).length);  // the recognition run is an AU run
  const table = el("table", { id: "spots-table" }, el("tr", {}, el("th", {}, "#"), el("th", { class: "l" }, "type"),
    el("th", {}, "frames"), el("th", {}, "time (s)"), el("th", {}, "score"),
    ...(withAus ? [el("th", { class: "l" }, "AU probabilities")] : []), el("th", { class: "l" }, "class")));
  const auText = (s) => Object.entries(s.aus || {}).map(([a, p]) => a + " " + p.toFixed(2)).join(", ") || "-";
  for (const s of spots) {
    table.append(el("tr", { class: "spot" + (s.type === "blink" ? " blink" : ""), "data-index": s.index,
      "data-type": s.type, "data-emotion": s.emotion, "data-start": s.start_time, "data-end": s.end_time,
      onclick: () => selectSpot(s.index) },
      el("td", {}, s.index), el("td", { class: "l" }, el("span", { style: "color:" + spotColour(s.type) }, "■ "),
        s.type), el("td", {}, s.onset + "-" + s.offset),
      el("td", {}, s.start_time.toFixed(2) + "-" + s.end_time.toFixed(2)), el("td", {}, s.score.toFixed(3)),
      ...(withAus ? [el("td", { class: "l aus" }, auText(s))] : []),
      el("td", { class: "l" }, s.type === "blink" ? "blink (not an expression)" : (s.emotion || "-"))));
  }
  box.replaceChildren(el("h2", {}, "Spotted intervals (" + job.options.spot_run + ")"),
    el("p", { class: "note" }, "Click one to play the video from its start and to see where the recognition run " +
      "looked (computed on the first click). Beneath the spotted rows of the timeline: the recognition run's class " +
      "probabilities for every window (every window gets a class; the spotting run says where something happens)."),
    spots.length ? table : el("p", { class: "note" }, "the spotting run found no interval in this video"));
}

function seek(time) {
  const video = document.getElementById("video");
  video.pause();
  video.currentTime = time;
}

function selectSpot(index) {
  const s = spots.find((x) => x.index === index);
  if (!s) return;
  for (const row of document.querySelectorAll("tr.spot")) row.classList.toggle("chosen", Number(row.dataset.index) === index);
  seek(s.start_time);
  const title = "Spotted " + s.type + " " + s.index + ", frames " + s.onset + "-" + s.offset;
  if (s.type === "blink") {
    document.getElementById("saliency").replaceChildren(el("h2", {}, title),
      el("p", { class: "note" }, "a blink: not an expression, so not classified or explained"));
  } else explain("spot", index, title);
}

function select(index) {
  const s = intervals.find((x) => x.index === index);
  if (!s) return;
  for (const row of document.querySelectorAll("tr.interval")) row.classList.toggle("chosen", Number(row.dataset.index) === index);
  seek(s.start_time);
  explain("interval", index, "Interval " + s.index + ": " + s.label + ", frames " + s.start_frame + "-" + s.end_frame);
}

async function explain(kind, index, heading) {  // saliency is made on the first click, then kept by the server
  const job = { id: document.getElementById("result").dataset.job };
  const box = document.getElementById("saliency");
  const key = kind + index;
  box.dataset.want = key;
  box.replaceChildren(el("h2", {}, heading), el("p", { class: "note", id: "saliency-wait" }, "computing the saliency..."));
  let s;
  try {
    s = explained[key] || await api("/api/jobs/" + job.id + "/saliency/" + kind + "/" + index, { method: "POST" });
  } catch (err) {
    s = { figure: null, note: err.message };
  }
  explained[key] = s;
  if (box.dataset.want !== key) return;  // another interval was clicked meanwhile
  const title = el("h2", {}, heading + (s.window ? " (" + s.label + "; window " + s.window[0] + "-" + s.window[1] +
    " explained)" : ""));
  if (s.figure) {
    box.replaceChildren(title, el("div", { class: "row figures" },
      el("img", { id: "saliency-img", src: files(job, s.figure), alt: "saliency of " + kind + " " + index }),
      el("img", { id: "saliency-gif", src: files(job, s.gif), alt: "saliency overlay, animated", style: "width:180px" })),
      el("p", { class: "note" }, "Rows: the model's input frames, vanilla-gradient saliency of the class, its top decile, " +
        "and Grad-CAM where the model has a 3D convolution; averaged over the run's checkpoints."));
  } else box.replaceChildren(title, el("p", { class: "note" }, s.note));
}

const drop = document.getElementById("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
});
document.getElementById("file").addEventListener("change", (e) => choose(e.target.files[0] || null));
document.getElementById("analyse").addEventListener("click", start);
loadRuns();
poll();
