// Vigil web UI: the dashboard. The number of open alerts (a link to the
// Alerts page); per camera a tile (state badge, last
// recording's age, fps, bitrate, codec, a snapshot, links to live view and
// playback), the storage (GB free, a graph of the last 14 days, the days
// retained), the clock and the keys in words. States refresh every 5 s, the
// storage (a heavier question for the box) once a minute; the snapshots (each an audited egress) load once per visit and on Refresh.
"use strict";

import { $, api, text, session, onLeave, say, plainError, fmtTime, fmtDateTime, fmtBytes, fmtAge, zoneName, canDecode } from "./common.js";
import { openCount } from "./alerts.js";

const REFRESH_MS = 5000;
const STORAGE_REFRESH_MS = 60000;

let timer = null;
let visit = 0;
let storageSeen = { at: 0, value: null }; // the last /api/v1/storage answer, and when

export async function render() {
  const mine = ++visit;
  clearTimeout(timer);
  onLeave(() => { clearTimeout(timer); visit++; stopSnapshots(); });
  text($("dash-zone"), "Times are in " + zoneName() + ".");
  await refresh(mine, true);
}

$("dash-refresh").addEventListener("click", () => loadSnapshots());

async function refresh(mine, first) {
  let health = null;
  let cams = null;
  let storage = null;
  const storageDue = first || Date.now() - storageSeen.at >= STORAGE_REFRESH_MS;
  try {
    [health, cams, storage] = await Promise.all([
      fetch("/health/ready", { credentials: "same-origin" }).then((r) => r.json()).catch(() => null),
      api("GET", "/api/v1/cameras"),
      // Newer servers only: without it the disk figures come from /health/ready.
      !storageDue ? storageSeen.value
        : api("GET", "/api/v1/storage").catch((e) => { if (e.status === 401) throw e; return null; }),
    ]);
    if (mine !== visit) return;
    if (storageDue) storageSeen = { at: Date.now(), value: storage };
    say($("dashboard-msg"), "ok", "");
    alerts(health, cams);
    openAlerts(mine);
    facts(health);
    tiles(cams);
    storagePanel(storage, health);
    if (first) loadSnapshots();
  } catch (e) {
    if (mine !== visit) return;
    if (e.status === 401) return;
    say($("dashboard-msg"), "error", "The dashboard could not be updated. " + plainError(e), e);
  }
  if (mine === visit) timer = setTimeout(() => refresh(mine, false), REFRESH_MS);
}

// ---- alerts and the system facts, in words ----
function alerts(health, cams) {
  const box = $("dash-alerts");
  box.replaceChildren();
  const alert = (s) => box.appendChild(text(Object.assign(document.createElement("div"), { className: "alert", role: "alert" }), "⚠ " + s));
  if (health) {
    if (health.status !== "ready") alert("Not ready: check the storage and the database.");
    if (health.free_percent !== null && health.free_percent !== undefined && health.free_percent < 10) alert("The disk is nearly full: " + health.free_percent + "% free.");
    if (health.time_synchronised === false) alert("The clock is not synchronised (NTP): timestamps may drift.");
    if (health.storage_paused) alert("Recording is paused: the storage is full or failing.");
    if (health.fixity_failures > 0) alert(health.fixity_failures + " recording(s) failed the integrity check.");
    const rep = health.replication;
    if (rep && rep.enabled && rep.lagging) alert("Off-box copies are " + fmtLag(rep.lag_seconds) + " behind (" + rep.queued_recordings + " recording(s), " + fmtBytes(rep.queued_bytes) + " waiting)" + (rep.last_error ? ": " + plainError({ message: rep.last_error }) : "."));
    for (const w of health.warnings || []) alert(String(w));
    for (const c of health.cameras || []) {
      const d = c.clock_drift_ms;
      if (typeof d === "number" && Math.abs(d) > 2000) {
        alert(c.name + "'s clock is " + (Math.abs(d) / 1000).toFixed(1) + " s " + (d > 0 ? "ahead" : "behind")
          + " (measured by " + (c.clock_source === "rtcp" ? "its RTSP sender reports" : "ONVIF") + "): set it with `vigil cameras sync-time " + c.name + "`.");
      }
    }
  }
  for (const c of cams) {
    if (c.state === "offline" && !isArchived(c)) alert(c.name + " is offline: " + plainError({ message: c.last_error || "no reason given" }));
  }
}

/// "N open alerts", a link to the Alerts page (nothing when none is open).
async function openAlerts(mine) {
  let n = null;
  try { n = await openCount(); } catch (e) { n = null; }
  if (mine !== visit) return;
  const line = $("dash-open-alerts");
  line.hidden = !(n > 0);
  text(line.firstElementChild, n === 1 ? "1 open alert" : n + " open alerts");
}

function facts(health) {
  const sys = $("system");
  sys.replaceChildren();
  const fact = (s, bad) => { const li = text(document.createElement("li"), s); if (bad) li.className = "bad"; sys.appendChild(li); };
  if (!health) { fact("The box's health is not known.", true); return; }
  fact(health.status === "ready" ? "✓ Ready" : "⚠ Not ready", health.status !== "ready");
  fact(health.time_synchronised ? "Clock synchronised with NTP" : "⚠ Clock not synchronised", !health.time_synchronised);
  fact(keysInWords(health.key_source || ""), /DEVELOPMENT/i.test(health.key_source || ""));
}

/// The key source line of /health/ready in words.
function keysInWords(s) {
  if (/plain file/i.test(s)) return "Keys in a file (development)";
  if (/tpm/i.test(s)) return "Keys sealed by the TPM";
  if (/credential/i.test(s)) return "Keys sealed by systemd (host key)";
  return s ? "Keys: " + s : "Keys: unknown";
}

// ---- camera tiles: made once, updated in place ----
const isArchived = (c) => c.archived === true || (c.archived === undefined && c.source === "archive");
const STATE_WORDS = { streaming: "Recording", connecting: "Connecting", offline: "Offline", stopped: "Stopped (disabled)" };

function tiles(cams) {
  const box = $("tiles");
  const shown = cams.filter((c) => !isArchived(c));
  const names = new Set(shown.map((c) => c.name));
  for (const t of Array.from(box.children)) if (!names.has(t.dataset.camera)) t.remove();
  for (const c of shown) {
    let t = box.querySelector('.tile[data-camera="' + CSS.escape(c.name) + '"]');
    if (!t) {
      t = makeTile(c);
      box.appendChild(t);
    }
    updateTile(t, c);
  }
  // A camera's recorded sub stream (`NAME.sub`) is not an archived camera.
  const archived = cams.filter((c) => isArchived(c) && !c.sub_stream_of).map((c) => c.name);
  const line = $("dash-archived");
  line.hidden = !archived.length;
  line.replaceChildren();
  if (archived.length) {
    line.appendChild(document.createTextNode("Archived (not recording; recordings kept): " + archived.join(", ") + ". "));
    if (session.me && session.me.role === "admin") line.appendChild(text(Object.assign(document.createElement("a"), { href: "#cameras" }), "Manage them on the Cameras page."));
  }
  if (!shown.length && !box.querySelector(".empty")) {
    box.appendChild(text(Object.assign(document.createElement("p"), { className: "empty muted" }), "No cameras yet." + (session.me && session.me.role === "admin" ? " Add one on the Cameras page." : "")));
  }
  if (shown.length) for (const p of box.querySelectorAll(".empty")) p.remove();
}

function makeTile(c) {
  const t = document.createElement("article");
  t.dataset.camera = c.name;
  const h = document.createElement("h3");
  h.appendChild(text(document.createElement("span"), c.name));
  h.appendChild(Object.assign(document.createElement("span"), { className: "badge" }));
  t.appendChild(h);
  t.appendChild(Object.assign(document.createElement("div"), { className: "pic" }));
  t.appendChild(document.createElement("ul"));
  const links = document.createElement("p");
  links.appendChild(text(Object.assign(document.createElement("a"), { href: "#live/" + encodeURIComponent(c.name) }), "Live"));
  links.appendChild(document.createTextNode(" · "));
  links.appendChild(text(Object.assign(document.createElement("a"), { href: "#playback/" + encodeURIComponent(c.name) }), "Playback"));
  t.appendChild(links);
  t.setAttribute("aria-label", "Camera " + c.name);
  return t;
}

function updateTile(t, c) {
  t.className = "tile " + c.state;
  t.dataset.codec = c.codec || "";
  const badge = t.querySelector(".badge");
  badge.className = "badge " + c.state;
  let word = STATE_WORDS[c.state] || c.state;
  const since = c.since ? Date.parse(c.since) : NaN;
  if (c.state === "offline" && !isNaN(since)) word += " since " + (sameDay(since) ? fmtTime(since) : fmtDateTime(since));
  text(badge, word);
  // The raw state stays in the tile's text for scripts (e.g. "streaming").
  badge.title = c.state;
  const ul = t.querySelector("ul");
  ul.replaceChildren();
  const li = (s, cls) => { const e = text(document.createElement("li"), s); if (cls) e.className = cls; ul.appendChild(e); };
  const last = c.last_recording;
  if (last && last.end) li("Last recording ended " + fmtAge(Date.parse(last.end)));
  else if (last === null) li("No recordings yet");
  const parts = [];
  if (last && typeof last.fps === "number") parts.push(last.fps.toFixed(last.fps < 10 ? 1 : 0) + " fps");
  if (last && typeof last.bitrate_bps === "number") parts.push((last.bitrate_bps / 1e6).toFixed(1) + " Mbit/s");
  if (c.codec) parts.push(c.codec === "h265" ? "H.265" : c.codec === "h264" ? "H.264" : c.codec);
  if (parts.length) li(parts.join(" · "));
  if (c.last_error && c.state !== "streaming") li(plainError({ message: c.last_error }), "muted");
  li("State: " + c.state, "sr-only");
}

const sameDay = (ms) => new Date(ms).toDateString() === new Date().toDateString();

// ---- snapshots: one muted video per tile, loaded on purpose only ----
function loadSnapshots() {
  const hevc = canDecode("h265");
  for (const t of $("tiles").querySelectorAll(".tile")) {
    const name = t.dataset.camera;
    const pic = t.querySelector(".pic");
    stopVideo(pic.querySelector("video"));
    if (t.classList.contains("offline") || t.classList.contains("stopped")) {
      pic.replaceChildren(text(Object.assign(document.createElement("div"), { className: "nopic" }), "No picture: the camera is not streaming."));
      continue;
    }
    const v = document.createElement("video");
    v.muted = true;
    v.playsInline = true;
    v.preload = "auto";
    v.setAttribute("aria-label", "Latest picture from " + name);
    const convert = t.dataset.codec === "h265" && !hevc;
    const src = "/api/v1/cameras/" + encodeURIComponent(name) + "/snapshot.mp4?t=" + Date.now() + (convert ? "&codec=h264" : "");
    const noPicture = () => pic.replaceChildren(text(Object.assign(document.createElement("div"), { className: "nopic" }),
      convert ? "No picture: this browser cannot show H.265 and the box could not convert it." : "No picture available."));
    pic.replaceChildren(v);
    if (!convert) {
      v.addEventListener("error", () => { if (v.isConnected) noPicture(); });
      v.src = src;
      continue;
    }
    // The box converts one snapshot per person at a time: one after another,
    // each tried up to 3 times.
    converted = converted.then(() => convertedSnapshot(v, src, noPicture));
  }
}

let converted = Promise.resolve();

function convertedSnapshot(v, src, noPicture) {
  return new Promise((resolve) => {
    let done = false;
    let cap = null;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(cap);
      resolve();
    };
    // Never holds the queue longer than 20 s; a tile replaced meanwhile
    // (emptied) frees it at once.
    cap = setTimeout(finish, 20000);
    v.addEventListener("emptied", () => { if (!v.isConnected) finish(); });
    v.addEventListener("loadeddata", finish);
    let tries = 0;
    const attempt = () => {
      if (done) return;
      if (!v.isConnected) return finish();
      tries += 1;
      v.src = src;
    };
    v.addEventListener("error", () => {
      if (done) return;
      if (!v.isConnected) return finish();
      if (tries < 3) { setTimeout(attempt, 1000 * tries); return; }
      noPicture();
      finish();
    });
    attempt();
  });
}

function stopVideo(v) {
  if (!v) return;
  v.removeAttribute("src");
  v.load();
}

function stopSnapshots() {
  for (const v of $("tiles").querySelectorAll("video")) stopVideo(v);
  $("tiles").replaceChildren();
}

// ---- storage: GB free, the last 14 days, days retained ----
function storagePanel(st, health) {
  const summary = $("storage-summary");
  const graph = $("storage-graph");
  const days = $("storage-days");
  if (!st) {
    // An older server: only the free space from /health/ready.
    graph.hidden = true;
    const free = health && health.free_bytes;
    const pct = health && health.free_percent;
    if (free !== null && free !== undefined && pct) text(summary, fmtBytes(free) + " free of " + fmtBytes(free / (pct / 100)) + " (" + pct + "%).");
    else text(summary, free !== null && free !== undefined ? fmtBytes(free) + " free." : "Disk space not known.");
    text(days, "");
    return;
  }
  let s = fmtBytes(st.free_bytes) + " free of " + fmtBytes(st.total_bytes) + " · recordings " + fmtBytes(st.recordings_bytes);
  if (st.oldest_recording) s += " · oldest recording " + fmtDateTime(Date.parse(st.oldest_recording));
  text(summary, s + ".");
  const list = st.days || [];
  graph.hidden = !list.length;
  graph.replaceChildren();
  const max = Math.max(1, ...list.map((d) => d.bytes || 0));
  const words = [];
  for (const d of list) {
    const bar = Object.assign(document.createElement("div"), { className: "bar", title: d.day + ": " + fmtBytes(d.bytes) });
    bar.style.height = Math.round(((d.bytes || 0) / max) * 100) + "%";
    graph.appendChild(bar);
    words.push(d.day + " " + fmtBytes(d.bytes));
  }
  graph.setAttribute("aria-label", "Recorded per day (UTC), oldest first: " + words.join(", "));
  let axis = graph.nextElementSibling;
  if (!axis || !axis.classList.contains("bars-axis")) {
    axis = Object.assign(document.createElement("div"), { className: "bars-axis muted" });
    axis.setAttribute("aria-hidden", "true");
    graph.after(axis);
  }
  axis.hidden = !list.length;
  axis.replaceChildren();
  if (list.length) {
    axis.appendChild(text(document.createElement("span"), list[0].day));
    axis.appendChild(text(document.createElement("span"), "recorded per day (max " + fmtBytes(max) + ")"));
    axis.appendChild(text(document.createElement("span"), list[list.length - 1].day));
  }
  replicationLine(days, health);
  const est = st.retained_days_estimate;
  text(days, typeof est === "number" ? "About " + (est >= 10 ? Math.round(est) : est.toFixed(1)) + " days of recordings are kept at the current rate." : "Not enough recordings yet to estimate how many days are kept.");
}

// ---- off-box copies: the lag, below the storage panel ----
function fmtLag(s) {
  if (typeof s !== "number") return "?";
  if (s < 60) return s + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " days";
}

function replicationLine(after, health) {
  let line = document.getElementById("storage-replication");
  if (!line) {
    line = Object.assign(document.createElement("p"), { id: "storage-replication", className: "muted" });
    after.after(line);
  }
  const rep = health && health.replication;
  line.hidden = !(rep && rep.enabled);
  if (line.hidden) return;
  let s = "Off-box copies: " + rep.uploaded_recordings + " recording(s) in the bucket";
  s += rep.queued_recordings ? "; " + rep.queued_recordings + " waiting (" + fmtBytes(rep.queued_bytes) + "), the oldest " + fmtLag(rep.lag_seconds) + " old" : "; up to date";
  if (rep.last_error) s += ". Last error: " + plainError({ message: rep.last_error });
  text(line, s + ".");
}
