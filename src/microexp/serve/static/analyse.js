// Analyse page: start a job (uploaded video or frame folder), follow it, show video + timeline + saliency.
"use strict";
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
let chosenFile = null;
let shown = null;  // id of the job whose result is on the page
let latest = null;  // id of the job submitted last: its result is shown when it finishes
let intervals = [];
let spots = [];  // the spotting run's intervals (spot-intervals.json), when the job had one
const SPOT_COLOURS = { micro: "#e6550d", macro: "#756bb1" };

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
    const bar = el("progress", { max: "1", value: String(j.progress) });
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
  const [result, found] = await Promise.all([api(files(job, "result.json")), api(files(job, "intervals.json"))]);
  intervals = found;
  spots = job.options.spot_run ? (await api(files(job, "spot-intervals.json"))).spots : [];
  document.getElementById("result").hidden = false;
  document.getElementById("result").dataset.job = job.id;
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
  const video = document.getElementById("video");
  video.src = files(job, "video.webm");
  video.onerror = () => { document.getElementById("video-note").textContent = "this browser cannot play the video"; };
  drawTimeline(result);
  drawIntervals(result);
  drawSpots(job);
  document.getElementById("saliency").replaceChildren();
}

function colour(result, label) { return PALETTE[result.classes.indexOf(label) % PALETTE.length]; }

function drawTimeline(result) {
  const traces = [];
  const spotRows = ["micro", "macro"].filter((t) => spots.some((s) => s.type === t)).map((t) => "spot: " + t);
  const rows = [...spotRows, ...result.classes, "gap"];
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
  for (const row of spotRows) {  // the spotting run's intervals, a row per type, the recognised class on the bar
    const found = spots.filter((s) => "spot: " + s.type === row);
    traces.push({ type: "bar", orientation: "h", name: row, y: found.map(() => row), meta: "spot",
      base: found.map((s) => s.start_time), x: found.map((s) => s.end_time - s.start_time),
      customdata: found.map((s) => s.index), text: found.map((s) => s.emotion), textposition: "inside",
      marker: { color: SPOT_COLOURS[found[0].type] }, xaxis: "x", yaxis: "y",
      hovertemplate: "%{y} from %{base:.2f} s, %{x:.2f} s long: %{text}<extra>spot %{customdata}</extra>" });
  }
  const centres = result.windows.map((w) => (w.start_time + w.end_time) / 2);
  for (const label of result.classes) {
    traces.push({ type: "scatter", mode: "lines+markers", name: "p(" + label + ")", x: centres,
      y: result.windows.map((w) => w.probabilities[label]), line: { color: colour(result, label), width: 1.5 },
      marker: { size: 4 }, xaxis: "x", yaxis: "y2", legendgroup: label, showlegend: false });
  }
  const end = result.n_frames / result.fps;
  const layout = { margin: { l: 80, r: 20, t: 10, b: 40 }, barmode: "overlay", showlegend: true,
    legend: { orientation: "h", y: 1.08 }, xaxis: { title: { text: "time (s)" }, range: [0, end], anchor: "y2" },
    yaxis: { domain: [0.55, 1], type: "category", categoryarray: rows, categoryorder: "array" },
    yaxis2: { domain: [0, 0.45], range: [0, 1.02], title: { text: "probability" } },
    shapes: [{ type: "line", xref: "x", yref: "paper", x0: 0, x1: 0, y0: 0, y1: 1, line: { color: "#000", width: 1 } }] };
  const div = document.getElementById("timeline");
  Plotly.newPlot(div, traces, layout, { displaylogo: false, responsive: true });
  div.on("plotly_click", (ev) => {
    const point = ev.points.find((p) => p.customdata !== undefined);
    if (point && point.data.meta === "spot") selectSpot(point.customdata);
    else if (point) select(point.customdata);
  });
  const video = document.getElementById("video");
  video.ontimeupdate = () => Plotly.relayout(div, { "shapes[0].x0": video.currentTime, "shapes[0].x1": video.currentTime });
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
  if (result.segments.length > intervals.length) {
    table.after(el("p", { class: "note" }, "first " + intervals.length + " of " + result.segments.length +
      " intervals explained; all are in the JSON/CSV"));
  }
  document.getElementById("gaps").replaceChildren(...result.gaps.map((g) => el("p", { class: "note gap" },
    "gap, frames " + g.start_frame + "-" + g.end_frame + " (" + g.start_time.toFixed(2) + "-" +
    g.end_time.toFixed(2) + " s): " + g.reason)));
}

function drawSpots(job) {
  const box = document.getElementById("spots");
  if (!job.options.spot_run) { box.replaceChildren(); return; }
  const table = el("table", { id: "spots-table" }, el("tr", {}, el("th", {}, "#"), el("th", { class: "l" }, "type"),
    el("th", {}, "frames"), el("th", {}, "time (s)"), el("th", {}, "score"), el("th", { class: "l" }, "class")));
  for (const s of spots) {
    table.append(el("tr", { class: "spot", "data-index": s.index, "data-type": s.type, "data-emotion": s.emotion,
      "data-start": s.start_time, "data-end": s.end_time, onclick: () => selectSpot(s.index) },
      el("td", {}, s.index), el("td", { class: "l" }, el("span", { style: "color:" + SPOT_COLOURS[s.type] }, "■ "),
        s.type), el("td", {}, s.onset + "-" + s.offset),
      el("td", {}, s.start_time.toFixed(2) + "-" + s.end_time.toFixed(2)), el("td", {}, s.score.toFixed(3)),
      el("td", { class: "l" }, s.emotion || "-")));
  }
  box.replaceChildren(el("h2", {}, "Spotted intervals (" + job.options.spot_run + ")"),
    spots.length ? table : el("p", { class: "note" }, "the spotting run found no interval in this video"));
}

function selectSpot(index) {  // a spot has no saliency: the video plays from its start
  const s = spots.find((x) => x.index === index);
  if (!s) return;
  for (const row of document.querySelectorAll("tr.spot")) row.classList.toggle("chosen", Number(row.dataset.index) === index);
  const video = document.getElementById("video");
  video.pause();
  video.currentTime = s.start_time;
}

function select(index) {
  const s = intervals.find((x) => x.index === index);
  if (!s) return;
  for (const row of document.querySelectorAll("tr.interval")) row.classList.toggle("chosen", Number(row.dataset.index) === index);
  const video = document.getElementById("video");
  video.pause();
  video.currentTime = s.start_time;
  const job = { id: document.getElementById("result").dataset.job };
  const box = document.getElementById("saliency");
  const title = el("h2", {}, "Interval " + s.index + ": " + s.label + ", frames " + s.start_frame + "-" + s.end_frame +
    " (window " + s.window[0] + "-" + s.window[1] + " explained)");
  if (s.figure) {
    box.replaceChildren(title, el("div", { class: "row figures" },
      el("img", { id: "saliency-img", src: files(job, s.figure), alt: "saliency of interval " + s.index }),
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
