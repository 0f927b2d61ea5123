// Vigil web UI, shared helpers: the API client, DOM helpers, messages,
// time and size formatting, and the page lifecycle (a page's cleanup runs
// when the user navigates away). Plain JavaScript modules, served by the box
// itself; nothing is fetched from elsewhere.
"use strict";

export const $ = (id) => document.getElementById(id);

/// Who is logged in (the answer of GET /api/v1/me), or null.
export const session = { me: null };

export async function api(method, path, body) {
  const headers = {};
  const csrf = sessionStorage.getItem("csrf");
  if (csrf) headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    // A session that ended (expired, or the password changed elsewhere): the
    // shell shows the login page. Not for the login itself or the who-am-I probe.
    if (r.status === 401 && path !== "/api/v1/login" && path !== "/api/v1/me") {
      window.dispatchEvent(new CustomEvent("vigil:session-ended"));
    }
    const err = new Error((data && data.error) || r.statusText);
    err.status = r.status;
    throw err;
  }
  return data;
}

export function text(el, s) { el.textContent = s; return el; }
export function cell(tr, s) { tr.appendChild(text(document.createElement("td"), s)); }

// Cleanups of the page on screen (stop streams, timers): run on navigation.
let leaving = [];
export function onLeave(f) { leaving.push(f); }
export function leave() {
  const fs = leaving;
  leaving = [];
  for (const f of fs) { try { f(); } catch (e) { /* a cleanup must not stop navigation */ } }
}

// ---- messages: plain words, the raw cause in a <details> ----

/// The plain-words sentence for a failed call (an Error from api(), a
/// fetch failure, or a status number).
export function plainError(err) {
  if (err === null || err === undefined) return "Something went wrong.";
  const status = typeof err === "number" ? err : err.status;
  const raw = typeof err === "number" ? "" : String(err.message || err);
  // A camera's failure (a probe verdict, a camera's last error): no HTTP status.
  if (!status) {
    if (/connection refused|os error 111|^refused$/i.test(raw)) return "The camera did not answer (connection refused). Check its address and that it is on.";
    if (/timed out|^timeout$/i.test(raw)) return "The camera did not answer in time. Check its address and the network.";
    if (/no route to host|os error 113|unreachable|os error 101/i.test(raw)) return "The camera cannot be reached on the network. Check its address and the cable.";
    if (/^auth failed$|unauthori[sz]ed/i.test(raw)) return "The camera refused the user name or password.";
    if (/^no video$/i.test(raw)) return "The camera answered but sent no video at this address. Check the stream path.";
    if (/^not rtsp$/i.test(raw)) return "Something answered at this address, but it is not an RTSP camera. Check the address and port.";
  }
  if (status === 401) return "Your session has expired: log in again.";
  if (status === 403) return "This is not allowed for your role.";
  if (status === 404) return raw && !/^not found$/i.test(raw) ? raw : "Not found: the box does not have this (it may need an update).";
  if (status === 409) return raw || "This conflicts with the current state.";
  if (status === 429) return "Too many attempts: wait a minute and try again.";
  if (status === 501) return raw || "This build cannot do that.";
  if (status === 503) return raw || "The box is busy: try again shortly.";
  if (status >= 500) return "The box had a problem doing this. Try again; if it persists, check the system log.";
  if (status === 400 || status === 422) return raw || "The request was not accepted.";
  if (!status && (err instanceof TypeError || /failed to fetch|networkerror/i.test(raw))) return "The box did not answer. Check the network connection.";
  return raw || "Something went wrong.";
}

/// Shows a message in `el` (its content is replaced): kind "ok", "error" or
/// "info"; an optional error puts its raw cause in a <details>. An empty
/// message clears it.
export function say(el, kind, message, error) {
  if (!el) return;
  el.replaceChildren();
  el.className = "msg " + kind;
  if (!message) { el.hidden = true; return; }
  el.hidden = false;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  const word = kind === "ok" ? "✓ " : kind === "error" ? "⚠ Error: " : "ℹ ";
  el.appendChild(text(Object.assign(document.createElement("strong"), { className: "msg-word" }), word));
  el.appendChild(document.createTextNode(message));
  const raw = error === undefined || error === null ? "" : String(error.message || error);
  if (raw && raw !== message) {
    const d = document.createElement("details");
    d.appendChild(text(document.createElement("summary"), "Details"));
    const detail = raw + (error && error.status ? " (HTTP " + error.status + ")" : "");
    d.appendChild(text(document.createElement("code"), detail));
    el.appendChild(d);
  }
}

// ---- what the browser decodes ----
const CODEC_MIME = { h264: 'video/mp4; codecs="avc1.640028"', h265: 'video/mp4; codecs="hvc1.1.6.L120.90"' };
let probe = null;

/// Whether this browser decodes recordings of `codec` ("h264"/"h265")
/// itself, through Media Source Extensions or a plain video element; if
/// not, the box is asked to convert (`?codec=h264`).
export function canDecode(codec) {
  const mime = CODEC_MIME[codec] || CODEC_MIME.h264;
  if (window.MediaSource && MediaSource.isTypeSupported(mime)) return true;
  probe = probe || document.createElement("video");
  return probe.canPlayType(mime) === "probably";
}

// ---- formatting: local time, no milliseconds ----
const two = (n) => String(n).padStart(2, "0");

/// Local time of day, HH:MM:SS (HH:MM without `seconds`).
export function fmtTime(ms, seconds = true) {
  const d = new Date(ms);
  if (isNaN(d)) return "";
  return two(d.getHours()) + ":" + two(d.getMinutes()) + (seconds ? ":" + two(d.getSeconds()) : "");
}

/// Local date and time, YYYY-MM-DD HH:MM:SS.
export function fmtDateTime(ms) {
  const d = new Date(ms);
  if (isNaN(d)) return "";
  return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " + fmtTime(ms);
}

/// A size in GB (or MB below 1 GB), decimal units as disks are sold.
export function fmtBytes(n) {
  if (n === null || n === undefined || isNaN(n)) return "?";
  if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e11 ? 0 : 1) + " GB";
  if (n >= 1e6) return (n / 1e6).toFixed(0) + " MB";
  if (n >= 1e3) return (n / 1e3).toFixed(0) + " kB";
  return n + " bytes";
}

/// How long ago an instant (epoch ms) was: "12 s ago", "3 min ago".
export function fmtAge(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return s + " s ago";
  const m = Math.round(s / 60);
  if (m < 90) return m + " min ago";
  const h = Math.round(m / 60);
  if (h < 48) return h + " h ago";
  return Math.round(h / 24) + " days ago";
}

/// The browser's time zone id ("" when the browser does not say).
function zoneId() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) {
    return "";
  }
}

/// The browser's time zone, e.g. "UTC" or "Europe/Berlin".
export function zoneName() {
  return zoneId() || "local time";
}

/// The browser's time zone in words with its offset at `ms`, e.g.
/// "Europe/Berlin (UTC+01:00)".
export function zoneWords(ms) {
  const off = -new Date(ms).getTimezoneOffset();
  const utc = "UTC" + (off < 0 ? "-" : "+") + two(Math.floor(Math.abs(off) / 60)) + ":" + two(Math.abs(off) % 60);
  const name = zoneId();
  return name ? name + " (" + utc + ")" : utc;
}

// ---- camera sets: null is every camera ----

/// A camera set as words: "all", "none", or the names.
export function cameraSetText(set) {
  if (set === null || set === undefined) return "all";
  return set.length ? set.join(", ") : "none";
}

/// "all" or empty -> null (every camera); else the comma-separated names.
export function parseCameraSet(s) {
  const t = (s || "").trim();
  if (t === "" || t === "all") return null;
  return t.split(",").map((x) => x.trim()).filter((x) => x);
}

/// A button of `label` (type=button) that runs `onClick`.
export function button(label, onClick, className) {
  const b = text(Object.assign(document.createElement("button"), { type: "button" }), label);
  if (className) b.className = className;
  if (onClick) b.addEventListener("click", onClick);
  return b;
}
