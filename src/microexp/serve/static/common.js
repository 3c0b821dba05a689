// Shared by both pages: JSON requests that report the server's one-line error ("detail").
"use strict";
async function api(url, options = {}) {
  const opts = { ...options, headers: { ...(options.headers || {}) } };
  if (opts.method && opts.method !== "GET") opts.headers["X-Microexp"] = "1";
  let response;
  try {
    response = await fetch(url, opts);
  } catch (err) {
    throw new Error("the server cannot be reached (" + err.message + ")");
  }
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_e) { body = null; }
  if (!response.ok) throw new Error((body && body.detail) || ("HTTP " + response.status + ": " + text.slice(0, 200)));
  return body;
}
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
function fmt(m) {  // value (± std) with three decimals, "-" when absent: as `microexp report` and `compare` write them
  if (!m) return "-";
  return m.value.toFixed(3) + (m.std !== null && m.std !== undefined ? " ± " + m.std.toFixed(3) : "");
}
