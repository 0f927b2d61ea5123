// Vigil web UI: playback. A day picker, the timeline of every camera
// (timeline.js), and the player: a click on the timeline plays that camera
// from that instant, the player shows the wall-clock time of its picture.
// Download (operators), bundle and hold act on the range loaded. An H.265
// recording this browser cannot decode is played converted to H.264 on the
// box, or, if the box cannot convert, offered for download.
"use strict";
import { $, api, text, session, onLeave, say, fmtTime, zoneWords, canDecode } from "./common.js";
import { Timeline, Thumbnails } from "./timeline.js";

const MSG_NOTHING = "Nothing recorded at this time.";
const MSG_NO_CONVERT = "This browser cannot play H.265 and this box cannot convert it. Use Download to save the recording and play it elsewhere.";
const BEFORE_MS = 60 * 1000;
const AFTER_MS = 30 * 60 * 1000;

const iso = (ms) => new Date(ms).toISOString();
const video = $("pb-video");
const msg = $("pb-msg");

function note(kind, message, error) {
  if (!message) { msg.hidden = true; msg.replaceChildren(); return; }
  msg.hidden = false;
  say(msg, kind, message, error);
}

const timeline = new Timeline($("timeline"), {
  seek: (camera, ms) => seek(camera, ms),
  hover: (camera, ms, ev) => thumbs.show(camera, ms, !!timeline.spanAt(camera, ms, 3), ev),
  hoverEnd: () => thumbs.hide(),
});
const thumbs = new Thumbnails($("tl-tip"), $("tl-thumb"), $("tl-tip-text"), (camera) => canDecode(timeline.codecOf(camera) || "h264"));

/// What the player holds: {camera, start, end, firstFrame, convert, ready
/// (the player got to the instant asked)}, or null.
let loaded = null;
let refresh = null;
let cameras = [];
// This visit of the page: leaving it changes the number, and whatever was
// awaiting the network when it did stops there (no timer, no video.src after).
let visit = 0;

export async function render(name) {
  const mine = ++visit;
  onLeave(() => { visit++; seeking++; clearInterval(refresh); refresh = null; thumbs.stop(); unload(); note(); });
  const sel = $("pb-camera");
  try {
    const list = await api("GET", "/api/v1/cameras");
    if (mine !== visit) return;
    cameras = list.map((c) => ({ name: c.name, codec: c.codec || null }));
  } catch (e) {
    if (mine !== visit) return;
    note("error", "The camera list could not be loaded.", e);
    return;
  }
  sel.replaceChildren(...cameras.map((c) => text(Object.assign(document.createElement("option"), { value: c.name }), c.name)));
  if (name) sel.value = name;
  timeline.setSelected(sel.value);
  const day = $("pb-day");
  if (!day.value) day.value = localDay(new Date());
  await loadDay();
  if (mine !== visit) return;
  clearInterval(refresh);
  refresh = setInterval(() => { if (isToday()) loadDay(); else timeline.render(); }, 30000);
}

function localDay(d) {
  const p = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate());
}

function isToday() { return $("pb-day").value === localDay(new Date()); }

/// The day picked, as local midnight to the next local midnight (epoch ms).
function dayRange() {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec($("pb-day").value);
  const d = m ? new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : new Date();
  if (!m) d.setHours(0, 0, 0, 0);
  const next = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1);
  return [d.getTime(), next.getTime()];
}

async function loadDay() {
  const mine = visit;
  const [start, end] = dayRange();
  timeline.setDay(start, end);
  text($("tl-zone"), "Times in " + zoneWords(start));
  let rows, events;
  try {
    [rows, events] = await Promise.all([fetchTimeline(start, end), fetchEvents(start, end)]);
  } catch (e) {
    if (mine === visit) note("error", "The recordings of this day could not be loaded.", e);
    return;
  }
  if (mine !== visit) return;
  // One row per camera the user may see, recorded that day or not.
  const byName = new Map(rows.map((r) => [r.camera, r]));
  const all = cameras.map((c) => byName.get(c.name) || { camera: c.name, codec: c.codec, spans: [] });
  for (const r of rows) if (!cameras.some((c) => c.name === r.camera)) all.push(r);
  for (const r of all) r.events = events.filter((e) => e.camera === r.camera);
  timeline.setRows(all);
  const cut = all.filter((r) => r.truncated).map((r) => r.camera);
  if (cut.length) note("info", "Too many pieces to show for " + cut.join(", ") + ": zoom in on a shorter time.");
}

/// The cameras' own events (motion, tamper) of the day; none if the box has no events route.
async function fetchEvents(start, end) {
  try {
    const r = await api("GET", "/api/v1/events?start=" + iso(start) + "&end=" + iso(end));
    return r.events.map((e) => ({ camera: e.camera, kind: e.kind, start: Date.parse(e.start), end: e.end ? Date.parse(e.end) : null }));
  } catch (e) {
    if (e.status === 404) return [];
    throw e;
  }
}

async function fetchTimeline(start, end) {
  try {
    const rows = await api("GET", "/api/v1/timeline?start=" + iso(start) + "&end=" + iso(end));
    return rows.map((r) => ({ camera: r.camera, codec: r.codec, truncated: !!r.truncated, spans: r.spans.map((s) => [Date.parse(s.start), Date.parse(s.end)]) }));
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  // FALLBACK until the server's /api/v1/timeline is merged (issue 15,
  // manage part): the recordings of each camera, merged under 1 s apart.
  const out = [];
  for (const c of cameras) {
    const recs = await api("GET", "/api/v1/recordings?camera=" + encodeURIComponent(c.name) + "&start=" + iso(start) + "&end=" + iso(end));
    const spans = [];
    for (const r of recs) {
      const a = Date.parse(r.start), b = Date.parse(r.end);
      const last = spans[spans.length - 1];
      if (last && a - last[1] < 1000) last[1] = Math.max(last[1], b); else spans.push([a, b]);
    }
    const codec = recs.length ? (/265|hev|hvc/i.test(String(recs[0].codec)) ? "h265" : "h264") : c.codec;
    out.push({ camera: c.name, codec, spans });
  }
  return out;
}

// ---- the player ----
function viewUrl(l, download) {
  return "/api/v1/cameras/" + encodeURIComponent(l.camera) + "/view.mp4?start=" + iso(l.start) + "&end=" + iso(l.end)
    + (download ? "&download=1" : l.convert ? "&codec=h264" : "");
}

/// Plays; a range with sound that the browser will not start unasked
/// (autoplay rules) starts muted instead: the player's own controls unmute it.
function playAllowed() {
  video.play().catch((e) => {
    if (e && e.name === "NotAllowedError" && !video.muted) {
      video.muted = true;
      video.play().catch(() => {});
    }
  });
}

/// Empties the player (no stale picture) and hides the range's actions.
function unload() {
  loaded = null;
  video.removeAttribute("src");
  video.load();
  delete video.dataset.wallMs;
  $("pb-player").hidden = true;
  text($("pb-clock"), "");
  timeline.setPlayhead(null);
  for (const id of ["pb-download", "pb-bundle", "pb-hold"]) $(id).hidden = true;
}

function showActions(l) {
  const dl = $("pb-download");
  dl.href = viewUrl(l, true);
  dl.download = l.camera + "-" + iso(l.start).replace(/[:.]/g, "") + ".mp4";
  const viewer = !session.me || session.me.role === "viewer"; // exporting is for operators and admins
  dl.hidden = viewer;
  $("pb-bundle").hidden = viewer;
  $("pb-hold").hidden = viewer;
}

const within = (l, camera, ms) => l && l.camera === camera && ms >= l.start && ms <= l.end;

function buffered(sec) {
  const b = video.buffered;
  for (let i = 0; i < b.length; i++) if (sec >= b.start(i) && sec <= b.end(i)) return true;
  return false;
}

// Each seek's number: a newer seek, or leaving the page, makes an older one stop.
let seeking = 0;
async function seek(camera, ms) {
  const mine = ++seeking;
  $("pb-camera").value = camera;
  timeline.setSelected(camera);
  thumbs.hide();
  // Within the range loaded: only move the player.
  if (within(loaded, camera, ms) && !loaded.failed && (!loaded.convert || buffered((ms - loaded.firstFrame) / 1000))) {
    video.currentTime = Math.max(0, (ms - loaded.firstFrame) / 1000);
    playAllowed();
    return;
  }
  const span = timeline.spanAt(camera, ms, 4);
  if (!span) { unload(); note("info", MSG_NOTHING); return; }
  const t = Math.min(Math.max(ms, span[0]), Math.max(span[0], span[1] - 1000));
  let convert = !canDecode(timeline.codecOf(camera) || "h264");
  const end = Math.max(Math.min(span[1], t + AFTER_MS), t + 1000);
  const l = { camera, start: convert ? t : Math.max(span[0], t - BEFORE_MS), end, firstFrame: t, convert, ready: false };
  note("info", "Loading " + camera + " from " + fmtTime(t) + "…");
  let first;
  try {
    first = await viewInfo(l);
  } catch (e) {
    if (mine !== seeking) return;
    unload();
    if (e.status === 404) note("info", MSG_NOTHING); else note("error", "The recording could not be opened.", e);
    return;
  }
  if (mine !== seeking) return;
  l.firstFrame = first.firstFrame;
  if (first.codec === "h265" && !convert && !canDecode("h265")) {
    // The timeline did not know the codec: ask again, converted, from t.
    convert = true;
    Object.assign(l, { convert, start: t });
    try { l.firstFrame = (await viewInfo(l)).firstFrame; } catch (e) { /* keep the first answer */ }
    if (mine !== seeking) return;
  }
  unload();
  loaded = l;
  showActions(l);
  if (convert) {
    const why = await conversion(false);
    if (mine !== seeking) return;
    if (why) { note("error", why); return; }
  }
  $("pb-player").hidden = false;
  text($("pb-what"), camera + ", " + fmtTime(l.start) + " to " + fmtTime(l.end) + (convert ? " (converted to H.264 on the box)" : ""));
  note();
  video.addEventListener("loadedmetadata", () => {
    if (loaded !== l) return;
    // The clock shows nothing until the player is at t (not at time 0).
    video.addEventListener("seeked", () => { l.ready = true; wallUpdate(); }, { once: true });
    video.currentTime = Math.max(0, (t - l.firstFrame) / 1000);
    playAllowed();
  }, { once: true });
  video.src = viewUrl(l, false);
}

/// The wall time of view.mp4's time 0 for the range, and its codec.
async function viewInfo(l) {
  const q = "?start=" + iso(l.start) + "&end=" + iso(l.end);
  const base = "/api/v1/cameras/" + encodeURIComponent(l.camera);
  try {
    const v = await api("GET", base + "/view.json" + q);
    return { firstFrame: Date.parse(v.first_frame), codec: v.codec };
  } catch (e) {
    if (e.status !== 404 || !/route|not found|no such/i.test(e.message) || /recorded/i.test(e.message)) throw e;
  }
  // FALLBACK until the server's view.json is merged (issue 15, manage
  // part): the first recording's start, if after the range's start.
  const recs = await api("GET", "/api/v1/recordings?camera=" + encodeURIComponent(l.camera) + "&" + q.slice(1));
  if (!recs.length) { const e = new Error(MSG_NOTHING); e.status = 404; throw e; }
  return { firstFrame: Math.max(l.start, Date.parse(recs[0].start)), codec: null };
}

/// Why a conversion cannot start now (a plain sentence), or "" if it can.
/// Why a conversion cannot be had ("" if it can). Before asking for one,
/// only `available` counts: a session just given back may still be counted,
/// and a refused stream is asked for again (retryConversion).
async function conversion(busyCounts = true) {
  try {
    const t = await api("GET", "/api/v1/transcode");
    if (!t.available) return MSG_NO_CONVERT;
    if (busyCounts && t.in_use >= t.max_sessions) return "All " + t.max_sessions + " conversion sessions are in use; try again in a moment, or use Download.";
    return "";
  } catch (e) {
    return MSG_NO_CONVERT;
  }
}

function wallUpdate() {
  if (!loaded || !loaded.ready || !video.getAttribute("src")) return;
  const wall = loaded.firstFrame + video.currentTime * 1000;
  video.dataset.wallMs = String(Math.round(wall));
  text($("pb-clock"), fmtTime(wall));
  timeline.setPlayhead(wall);
}
video.addEventListener("timeupdate", wallUpdate);
video.addEventListener("seeked", wallUpdate);
video.addEventListener("seeking", () => {
  // A converted stream is progressive: a seek outside what has arrived asks
  // the box again from that instant.
  if (!loaded || !loaded.convert || buffered(video.currentTime) || video.readyState < 1) return;
  const wall = loaded.firstFrame + video.currentTime * 1000;
  if (wall > loaded.start + 1000) seek(loaded.camera, wall + 0.5);
});
video.addEventListener("ended", () => {
  // Go on with the same camera's next recorded span, if there is one.
  const l = loaded;
  if (!l) return;
  // A converted stream cut short (the box ends one that is not read for
  // 30 s, a paused player): go on from the picture shown, not past the gap.
  const wall = Number(video.dataset.wallMs);
  // Only if it moved on from where it was asked for: one that ends at the
  // same place again (footage that stops there) goes on as any other does.
  if (l.convert && wall > l.start + 1000 && wall < l.end - 1000) { loaded = null; seek(l.camera, wall); return; }
  const next = timeline.spanAt(l.camera, l.end + 500, 0);
  if (next && next[1] > l.end + 1000) { loaded = null; seek(l.camera, l.end); }
});
video.addEventListener("error", async () => {
  if (!loaded || !video.getAttribute("src")) return;
  const l = loaded;
  const cause = video.error ? video.error.message || "media error " + video.error.code : "";
  if (l.convert && retryConversion(l)) return;
  // No stale picture: the player is emptied; the range's actions (Download) stay.
  l.failed = true;
  video.removeAttribute("src");
  video.load();
  delete video.dataset.wallMs;
  text($("pb-clock"), "");
  timeline.setPlayhead(null);
  const why = l.convert ? await conversion() : "";
  if (loaded !== l) return;
  note("error", why || "This recording could not be played here; Download still works.", cause ? new Error(cause) : undefined);
});

// A converted stream asked for again (a seek) may find the box still ending
// the previous one: one conversion per person, freed when the server sees the
// old connection close. Asked again up to 3 times, 1, 2 and 3 s later.
let conversionRetry = { key: null, n: 0 };
function retryConversion(l) {
  const key = l.camera + "@" + l.start;
  if (conversionRetry.key !== key) conversionRetry = { key, n: 0 };
  if (conversionRetry.n >= 3) return false;
  conversionRetry.n += 1;
  video.removeAttribute("src");
  video.load();
  note("info", "Waiting for the box to finish the previous conversion…");
  setTimeout(() => { if (loaded === l) { loaded = null; seek(l.camera, l.start); } }, 1000 * conversionRetry.n);
  return true;
}

$("pb-camera").addEventListener("change", (ev) => {
  // Another camera at the same instant, if something is playing.
  const wall = loaded && video.dataset.wallMs ? Number(video.dataset.wallMs) : null;
  if (wall !== null) seek(ev.target.value, wall); else timeline.setSelected(ev.target.value);
});
$("pb-day").addEventListener("change", () => { unload(); note(); loadDay(); });
/// Where the buttons zoom: the picture shown, else now (today), else the middle.
function zoomCentre() {
  if (loaded && video.dataset.wallMs) return Number(video.dataset.wallMs);
  const now = Date.now();
  return now >= timeline.ws && now <= timeline.we ? now : undefined;
}
/// Plays the camera's next (or previous) event from a second before it.
function jumpToEvent(back) {
  const camera = $("pb-camera").value;
  const from = loaded && video.dataset.wallMs ? Number(video.dataset.wallMs) : back ? timeline.we : timeline.ws;
  const e = timeline.eventNear(camera, from, back);
  if (!e) { note("info", "No " + (back ? "earlier" : "later") + " event of " + camera + " this day."); return; }
  if (e.start < timeline.ws || e.start > timeline.we) {
    const span = timeline.we - timeline.ws;
    timeline.setWindow(e.start - span / 2, e.start + span / 2);
  }
  seek(camera, Math.max(timeline.dayStart, e.start - 1000));
}
$("pb-prev-event").addEventListener("click", () => jumpToEvent(true));
$("pb-next-event").addEventListener("click", () => jumpToEvent(false));
$("tl-zoom-in").addEventListener("click", () => timeline.zoom(0.5, zoomCentre()));
$("tl-zoom-out").addEventListener("click", () => timeline.zoom(2, zoomCentre()));
window.addEventListener("resize", () => { if (!$("playback").hidden) timeline.render(); });

$("pb-bundle").addEventListener("click", async () => {
  if (!loaded) return;
  note("info", "Making the bundle…");
  try {
    const r = await api("POST", "/api/v1/exports", { camera: loaded.camera, start: iso(loaded.start), end: iso(loaded.end) });
    note("ok", "Bundle " + r.id + " made: " + r.frames + " frames, SHA-256 " + r.sha256 + ". Download it from Evidence.");
    const a = text(Object.assign(document.createElement("a"), { href: "#evidence" }), "Open Evidence");
    msg.append(" ", a);
  } catch (e) {
    note("error", "The bundle could not be made.", e);
  }
});

$("pb-hold").addEventListener("click", async () => {
  if (!loaded) return;
  const reason = prompt("Reason for the legal hold (case number, request):");
  if (!reason) return;
  try {
    const h = await api("POST", "/api/v1/holds", { reason, camera: loaded.camera, start: iso(loaded.start), end: iso(loaded.end) });
    note("ok", "Hold " + h.id + " placed on " + h.what + ".");
  } catch (e) {
    note("error", "The hold could not be placed.", e);
  }
});
