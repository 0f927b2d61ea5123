// Vigil web UI: live view. `#live` is a grid of every camera the user may
// see, each tile playing the camera's sub stream (its main stream when it
// has none); `#live/NAME` is that camera alone, large, playing its main
// stream. Each tile shows the size of the picture it gets and plays a
// fragmented MP4 streamed by fetch into Media Source Extensions; an H.265
// camera the browser cannot decode is asked for again converted to H.264 on
// the box (`?codec=h264`), or says plainly that it cannot be shown. The
// single-camera view of a camera whose sound is recorded asks for its AAC
// sound too (`?audio=1`); the picture stays muted until Unmute is pressed
// (browsers refuse to start sound the user did not ask for).
"use strict";
import { $, api, text, onLeave, say, plainError } from "./common.js";
import { mayMove, ptzPanel } from "./ptz.js";

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 10000;
// A stream that sends nothing for this long, or whose picture falls this far
// behind, is dropped (the picture blanked) and opened again.
const STALL_MS = 5000;
// The server answers once it has a key frame: at most 10 s for the camera's,
// and as long again for the converter's first one.
const ANSWER_MS = 25000;
const MSG_UNSUPPORTED = "This browser cannot play H.265 and this box cannot convert it. Use Download in Playback.";

export async function render(name) {
  const ctl = new AbortController();
  const timers = new Set();
  const tiles = [];
  onLeave(() => {
    ctl.abort();
    for (const t of timers) clearInterval(t);
    for (const t of tiles) blank(t);
  });
  const grid = $("live-grid");
  const title = $("live-title");
  const back = $("live-back");
  const note = $("live-msg");
  grid.replaceChildren();
  note.hidden = true;
  grid.classList.toggle("single", !!name);
  back.hidden = !name;
  text(title, name ? "Live: " + name : "Live");
  let cams = [];
  try {
    cams = await api("GET", "/api/v1/cameras");
  } catch (e) {
    note.hidden = false;
    say(note, "error", "The camera list could not be loaded.", e);
    return;
  }
  if (ctl.signal.aborted) return;
  cams = cams.filter((c) => !c.archived && (!name || c.name === name));
  if (!cams.length) {
    note.hidden = false;
    say(note, "error", name ? "There is no camera called " + name + " that you may see." : "There is no camera you may see.");
    return;
  }
  for (const cam of cams) {
    const tile = makeTile(cam, !!name);
    tiles.push(tile);
    grid.appendChild(tile.el);
    play(tile, cam, !!name, ctl.signal);
    timers.add(setInterval(() => showLatency(tile), 1000));
  }
}

// ---- one tile: the video, its state over a blank picture, its buttons ----
function makeTile(cam, large) {
  const el = document.createElement("div");
  el.className = "cam-tile";
  el.dataset.camera = cam.name;
  const view = document.createElement("div");
  view.className = "cam-view";
  const video = Object.assign(document.createElement("video"), { muted: true, autoplay: true, playsInline: true });
  video.setAttribute("aria-label", "Live picture of " + cam.name);
  // The stream asked for; `data-served` is the one the server sent.
  video.dataset.stream = streamOf(large);
  if (large) video.id = "live-video";
  const state = document.createElement("p");
  state.className = "cam-state";
  state.setAttribute("role", "status");
  view.append(video, state);
  const bar = document.createElement("div");
  bar.className = "cam-bar";
  const label = large ? text(document.createElement("span"), cam.name)
    : text(Object.assign(document.createElement("a"), { href: "#live/" + encodeURIComponent(cam.name) }), cam.name);
  label.className = "cam-name";
  const latency = document.createElement("span");
  latency.className = "latency";
  const size = document.createElement("span");
  size.className = "stream-size";
  const showSize = () => text(size, video.videoWidth ? video.videoWidth + "×" + video.videoHeight
    + (video.dataset.served === "sub" ? " (sub stream)" : "") : "");
  video.addEventListener("loadedmetadata", showSize);
  video.addEventListener("resize", showSize);
  video.addEventListener("emptied", showSize);
  const snap = button("Snapshot");
  const full = button("Full screen");
  bar.append(label, size, latency, snap, full);
  // Sound: only on the single-camera view, shown once a stream with sound plays.
  const sound = large && cam.record_audio ? button("Unmute") : null;
  if (sound) {
    sound.classList.add("cam-sound");
    sound.hidden = true;
    sound.addEventListener("click", () => {
      video.muted = !video.muted;
      if (!video.muted) video.play().catch(() => {});
      showSound(tile);
    });
    bar.appendChild(sound);
  }
  const note = document.createElement("p");
  note.className = "cam-note";
  note.hidden = true;
  el.append(view, bar, note);
  if (large && mayMove(cam)) el.appendChild(ptzPanel(cam, el));
  const tile = { el, video, state, latency, note, sound, name: cam.name, firstWallMs: 0, url: null };
  if (!large) {
    video.addEventListener("click", () => { location.hash = "#live/" + encodeURIComponent(cam.name); });
    video.classList.add("clickable");
  }
  full.addEventListener("click", () => {
    if (document.fullscreenElement === el) document.exitFullscreen().catch(() => {});
    else if (el.requestFullscreen) el.requestFullscreen().catch((e) => setNote(tile, "error", "Full screen is not allowed here.", e));
  });
  snap.addEventListener("click", () => snapshot(tile));
  setMode(tile, "connecting", "Connecting…");
  return tile;
}

/// The Unmute button: shown while the stream has sound, saying what a press does.
function showSound(tile, hasSound) {
  const b = tile.sound;
  if (!b) return;
  if (hasSound !== undefined) b.hidden = !hasSound;
  const label = tile.video.muted ? "Unmute" : "Mute";
  text(b, label);
  b.setAttribute("aria-label", label);
  b.setAttribute("aria-pressed", String(!tile.video.muted));
}

function button(label) {
  const b = text(Object.assign(document.createElement("button"), { type: "button" }), label);
  b.setAttribute("aria-label", label);
  return b;
}

/// The tile's mode (`data-mode`) and the state line shown over the picture
/// (empty while it plays).
function setMode(tile, mode, words) {
  tile.el.dataset.mode = mode;
  text(tile.state, words || "");
  tile.state.hidden = !words;
}

function setNote(tile, kind, message, error) {
  if (!message) { tile.note.hidden = true; tile.note.replaceChildren(); return; }
  tile.note.hidden = false;
  say(tile.note, kind, message, error);
  tile.note.classList.add("cam-note"); // say() sets the class

}

/// Never leave a stale picture: the video is emptied before any other
/// state is shown.
function blank(tile) {
  const v = tile.video;
  v.removeAttribute("src");
  v.load();
  if (tile.url) { URL.revokeObjectURL(tile.url); tile.url = null; }
  tile.firstWallMs = 0;
  delete v.dataset.firstFrameWallMs;
  text(tile.latency, "");
}

function showLatency(tile) {
  const v = tile.video;
  if (!tile.firstWallMs || v.readyState < 2) { text(tile.latency, ""); return; }
  const behind = (Date.now() - (tile.firstWallMs + v.currentTime * 1000)) / 1000;
  text(tile.latency, behind < 0.05 ? "live" : behind.toFixed(1) + " s behind");
}

// ---- the stream ----
function mimeOf(codec) { return 'video/mp4; codecs="' + codec + '"'; }
function canPlay(codec) { return !!(window.MediaSource && MediaSource.isTypeSupported(mimeOf(codec))); }

/// The stream a tile asks for: the grid (`large` false) the sub stream, the
/// single-camera view the main one.
function streamOf(large) { return large ? "main" : "sub"; }

/// The URL of a camera's live stream. The server sends the main stream for
/// `sub` when the camera has none, and answers `codec=h264` for an H.265
/// camera with its own H.264 sub stream when it has one, before converting.
function liveUrl(cam, large, convert, sound) {
  return "/api/v1/cameras/" + encodeURIComponent(cam.name) + "/live?stream=" + streamOf(large) + (convert ? "&codec=h264" : "")
    + (sound ? "&audio=1" : "");
}

/// Whether this browser plays AAC through Media Source Extensions.
function canPlayAac() {
  return !!(window.MediaSource && MediaSource.isTypeSupported('audio/mp4; codecs="mp4a.40.2"'));
}

const sleep = (ms, signal) => new Promise((res) => {
  const t = setTimeout(res, ms);
  signal.addEventListener("abort", () => { clearTimeout(t); res(); }, { once: true });
});

/// The answer's error: the server's JSON `error`, with the HTTP status.
async function httpError(r) {
  let why = "HTTP " + r.status;
  try { why = (await r.json()).error || why; } catch (e) { /* not JSON */ }
  const err = new Error(why);
  err.status = r.status;
  return err;
}

/// The server's words as a sentence (they start in lower case).
const sentence = (s) => s.charAt(0).toUpperCase() + s.slice(1);

/// Whether the box can convert at all now (false: retrying is pointless).
async function canConvert() {
  try { return (await api("GET", "/api/v1/transcode")).available !== false; } catch (e) { return true; }
}

/// Plays the camera in the tile until the page is left: one fetch at a time,
/// reconnecting with a backoff from 1 s to 10 s. A watchdog drops a stream
/// that stalls (nothing for 5 s, or the picture 5 s behind) so that no frozen
/// picture stays on screen.
async function play(tile, cam, large, signal) {
  let convert = false;
  // Sound is asked for on the single-camera view of a camera whose sound is
  // recorded, when the browser plays AAC (and not again once it could not).
  let sound = !!(large && cam.record_audio && canPlayAac());
  let delay = RETRY_MIN_MS;
  while (!signal.aborted) {
    const attempt = new AbortController();
    const stop = () => attempt.abort();
    signal.addEventListener("abort", stop, { once: true });
    let wait = delay;
    const watch = { stalled: false, since: performance.now(), limit: ANSWER_MS, lag: 0 };
    const dog = setInterval(() => {
      const quiet = performance.now() - watch.since;
      if (quiet > watch.limit || watch.lag > STALL_MS) { watch.stalled = true; attempt.abort(); }
    }, 1000);
    try {
      const r = await fetch(liveUrl(cam, large, convert, sound), { signal: attempt.signal, credentials: "same-origin" });
      if (r.status === 501) {
        attempt.abort();
        blank(tile);
        setMode(tile, "unsupported", MSG_UNSUPPORTED);
        setNote(tile);
        return;
      }
      if (r.status === 403) {
        // Final: the camera is no longer in this person's set.
        attempt.abort();
        blank(tile);
        setMode(tile, "offline", "You may no longer see this camera.");
        setNote(tile);
        return;
      }
      if ((r.status === 503 && convert) || r.status === 429) {
        // Busy: every conversion session, or this person's streams, in use.
        const err = await httpError(r);
        attempt.abort();
        blank(tile);
        const words = sentence(plainError(err)).replace(/\.$/, "");
        if (r.status === 503 && !(await canConvert())) {
          // The box cannot convert at all (now): retrying would not help.
          if (signal.aborted) return;
          setMode(tile, "unsupported", MSG_UNSUPPORTED);
          setNote(tile, "error", words + ".", err);
          return;
        }
        if (signal.aborted) return;
        setMode(tile, "connecting", r.status === 429 ? "Too many streams open at once; retrying" : words + "; retrying");
        const after = Number(r.headers.get("Retry-After"));
        if (after > 0) wait = Math.min(RETRY_MAX_MS * 3, after * 1000);
        throw new Error("busy");
      }
      if (!r.ok) throw await httpError(r);
      const videoCodec = r.headers.get("X-Codec") || "avc1.42e01e";
      tile.video.dataset.served = r.headers.get("X-Vigil-Stream") || "main";
      const audioCodec = sound ? r.headers.get("X-Audio-Codec") : null;
      const codec = audioCodec ? videoCodec + "," + audioCodec : videoCodec;
      if (audioCodec && canPlay(videoCodec) && !canPlay(codec)) {
        attempt.abort();
        sound = false; // at once, the picture alone
        continue;
      }
      showSound(tile, !!audioCodec);
      if (!canPlay(codec)) {
        attempt.abort();
        if (!convert && window.MediaSource) { convert = true; continue; } // at once, converted
        blank(tile);
        setMode(tile, "unsupported", window.MediaSource ? MSG_UNSUPPORTED : "This browser cannot play live video (no Media Source Extensions).");
        return;
      }
      if (convert) conversionNote(tile); else setNote(tile);
      watch.since = performance.now();
      watch.limit = STALL_MS;
      await stream(tile, r, codec, convert, attempt.signal, watch, () => { delay = RETRY_MIN_MS; });
      if (watch.stalled) throw new Error("stalled");
      if (!signal.aborted) { blank(tile); setMode(tile, "connecting", "The stream ended; reconnecting…"); }
    } catch (e) {
      if (signal.aborted) return;
      blank(tile);
      if (e.message === "busy") {
        // Said above, with the wait the server asked for.
      } else if (watch.stalled) {
        setMode(tile, "connecting", "The picture stopped; reconnecting…");
        wait = RETRY_MIN_MS;
      } else {
        setMode(tile, "offline", "Offline: " + plainError(e).replace(/\.$/, "") + ". Retrying…");
      }
    } finally {
      clearInterval(dog);
      signal.removeEventListener("abort", stop);
      attempt.abort();
    }
    await sleep(wait, signal);
    delay = Math.min(RETRY_MAX_MS, delay * 2);
  }
}

async function conversionNote(tile) {
  try {
    const t = await api("GET", "/api/v1/transcode");
    setNote(tile, "ok", "Converted to H.264 on the box (" + t.in_use + " of " + t.max_sessions + " conversions in use).");
  } catch (e) {
    setNote(tile, "ok", "Converted to H.264 on the box.");
  }
}

const updated = (sb) => new Promise((res) => sb.addEventListener("updateend", res, { once: true }));

/// Feeds one response into a fresh MediaSource until it ends or fails.
/// `watch` is the watchdog's view: `since` (when bytes last came) and `lag`
/// (how far the picture has fallen behind real time since it started, in ms:
/// measured on this browser's clock alone, so a box clock that differs does
/// not matter).
async function stream(tile, r, codec, convert, signal, watch, playing) {
  const video = tile.video;
  blank(tile);
  const ms = new MediaSource();
  tile.url = URL.createObjectURL(ms);
  video.src = tile.url;
  await new Promise((res, rej) => {
    ms.addEventListener("sourceopen", res, { once: true });
    signal.addEventListener("abort", () => rej(new Error("aborted")), { once: true });
    if (signal.aborted) rej(new Error("aborted"));
  });
  const sb = ms.addSourceBuffer(mimeOf(codec));
  sb.mode = "segments";
  // When the server had the first frame: the picture at video.currentTime is
  // that much later, so the lag behind real time is known.
  const first = Number(r.headers.get("X-First-Frame-Wall-Ms")) || 0;
  tile.firstWallMs = first;
  if (first) video.dataset.firstFrameWallMs = String(first);
  const reader = r.body.getReader();
  // Whatever ends the attempt (leaving, the watchdog) also ends a pending read.
  const cancel = () => reader.cancel().catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  if (signal.aborted) cancel();
  let started = false;
  let base = null; // { at: performance.now(), t: video.currentTime } once playing
  const behind = () => {
    if (!base || document.hidden) { watch.lag = 0; return; } // a hidden tab may hold the picture
    const now = performance.now();
    const lag = (now - base.at) - (video.currentTime - base.t) * 1000;
    if (lag < 0) base = { at: now, t: video.currentTime }; // ahead (skipped to the edge): the new mark
    watch.lag = Math.max(0, lag);
  };
  const lagTimer = setInterval(behind, 1000);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || signal.aborted) return;
      watch.since = performance.now();
      await feed(value);
    }
  } finally {
    clearInterval(lagTimer);
    signal.removeEventListener("abort", cancel);
  }

  async function feed(value) {
    if (sb.updating) await updated(sb);
    sb.appendBuffer(value);
    await updated(sb);
    const b = sb.buffered;
    if (!b.length) return;
    const edge = b.end(b.length - 1);
    // Stay near the live edge; drop what is far behind.
    if (edge - video.currentTime > 1.5) video.currentTime = edge - 0.3;
    if (video.paused) video.play().catch(() => {});
    if (!started && video.readyState >= 2) {
      started = true;
      base = { at: performance.now(), t: video.currentTime };
      playing();
      setMode(tile, convert ? "transcoded" : "direct", "");
    }
    if (b.start(0) < edge - 30 && !sb.updating) {
      sb.remove(0, edge - 20);
      await updated(sb);
    }
  }
}

// ---- snapshot: the picture on screen, as a PNG ----
function stamp(d) {
  const p = (n) => String(n).padStart(2, "0");
  return "" + d.getFullYear() + p(d.getMonth() + 1) + p(d.getDate()) + "-" + p(d.getHours()) + p(d.getMinutes()) + p(d.getSeconds());
}

function snapshot(tile) {
  const v = tile.video;
  if (v.readyState < 2 || !v.videoWidth) { setNote(tile, "error", "There is no picture to save yet."); return; }
  const c = document.createElement("canvas");
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  c.getContext("2d").drawImage(v, 0, 0);
  const name = tile.name + "-" + stamp(new Date()) + ".png";
  c.toBlob((blob) => {
    if (!blob) { setNote(tile, "error", "The snapshot could not be made."); return; }
    const url = URL.createObjectURL(blob);
    const a = Object.assign(document.createElement("a"), { href: url, download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    setNote(tile, "ok", "Snapshot saved as " + name + ".");
  }, "image/png");
}
