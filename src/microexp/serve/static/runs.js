// Runs page: every run under --runs with its headline metrics and report; two runs compared side by side.
"use strict";
// a spotting run shows its method as the model, F1 per interval type, and its shuffled-prediction control's
const COLUMNS = [["model", "model / method"], ["dataset", "dataset"], ["protocol", "protocol"], ["uf1", "UF1"],
  ["uar", "UAR"], ["control_uf1", "control UF1"], ["control_uar", "control UAR"], ["f1", "spotting F1"],
  ["chance_f1", "shuffled F1"], ["epoch_policy", "epoch / threshold policy"]];

function perType(values) {  // {micro: 0.41, macro: 0.19, overall: 0.34} as "micro 0.410, macro 0.190, overall 0.340"
  const parts = Object.entries(values || {}).filter(([, v]) => v !== null && v !== undefined);
  return parts.length ? parts.map(([t, v]) => t + " " + v.toFixed(3)).join(", ") : "-";
}

function cell(run, key) {
  if (key === "f1" || key === "chance_f1") return perType(run[key]);
  if (key === "uf1" || key === "uar") return fmt(run[key]);
  if (key === "control_uf1" || key === "control_uar") return run.control ? fmt(run.control[key.slice(8)]) : "-";
  return run[key] === null || run[key] === undefined ? "-" : String(run[key]);
}

async function load() {
  try {
    const [info, data] = await Promise.all([api("/api/info"), api("/api/runs")]);
    document.getElementById("root").textContent = "run directories under " + info.runs;
    const table = document.getElementById("runs");
    table.replaceChildren(el("tr", {}, el("th", { class: "l" }, "run"),
      ...COLUMNS.map(([, title]) => el("th", { class: "l" }, title)), el("th", { class: "l" }, "leaky"),
      el("th", { class: "l" }, "report")));
    for (const run of data.runs) {
      const row = el("tr", { "data-run": run.run }, el("td", { class: "l", "data-key": "run" },
        run.run + (run.spotting ? " (spotting)" : "")));
      for (const [key] of COLUMNS) row.append(el("td", { class: "l", "data-key": key }, cell(run, key)));
      row.append(el("td", { class: "l", "data-key": "leaky" },
        run.leaky ? el("span", { class: "leaky" }, "LEAKY") : "no"));
      row.append(el("td", { class: "l" }, el("a", { href: "/api/report?run=" + encodeURIComponent(run.run),
        target: "_blank", class: "report" }, "report")));
      table.append(row);
    }
    if (!data.runs.length) table.after(el("p", { class: "note" }, "no run directories (with metrics.json) found"));
    const bad = document.getElementById("unreadable");
    for (const b of data.unreadable) bad.append(el("p", { class: "error" }, b.run + ": " + b.error));
    for (const [id, pick] of [["run-a", 0], ["run-b", 1]]) {
      const select = document.getElementById(id);
      select.replaceChildren(...data.runs.map((r) => el("option", { value: r.run }, r.run)));
      if (data.runs.length > pick) select.selectedIndex = pick;
    }
  } catch (err) {
    document.getElementById("runs-error").textContent = err.message;
  }
}

async function compare() {
  const a = document.getElementById("run-a").value, b = document.getElementById("run-b").value;
  const out = document.getElementById("comparison"), error = document.getElementById("compare-error");
  error.textContent = "";
  out.replaceChildren();
  try {
    const c = await api("/api/compare?a=" + encodeURIComponent(a) + "&b=" + encodeURIComponent(b));
    const table = el("table", { id: "compare-table" }, el("tr", {}, el("th", { class: "l" }, ""),
      el("th", {}, "A: " + c.a), el("th", {}, "B: " + c.b)));
    for (const [label, va, vb] of c.rows) {
      table.append(el("tr", { "data-row": label }, el("td", { class: "l" }, label), el("td", {}, va), el("td", {}, vb)));
    }
    out.append(el("h2", {}, "Headline metrics"), table, el("h2", {}, "Configuration differences"));
    if (c.config_diff.length) {
      const diff = el("table", { id: "config-diff" }, el("tr", {}, el("th", { class: "l" }, "key"),
        el("th", { class: "l" }, "A"), el("th", { class: "l" }, "B")));
      for (const [k, va, vb] of c.config_diff) {
        diff.append(el("tr", {}, el("td", { class: "l" }, k), el("td", { class: "l" }, JSON.stringify(va)),
          el("td", { class: "l" }, JSON.stringify(vb))));
      }
      out.append(diff);
    } else out.append(el("p", {}, "identical"));
    out.append(el("h2", {}, "As `microexp compare` prints it"), el("pre", { id: "compare-text" }, c.text));
  } catch (err) {
    error.textContent = err.message;
  }
}

document.getElementById("compare").addEventListener("click", compare);
load();
