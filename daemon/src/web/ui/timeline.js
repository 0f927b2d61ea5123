// Vigil web UI: the playback timeline. One row per camera with its recorded
// spans as bars on one local-time axis, zoom from a day down to a minute
// (buttons, wheel, + and -), pan (drag the time scale, arrow keys), a
// now-marker and the player's position; a click or a drag-release on a row
// asks to play that camera from that instant. `#timeline` carries the
// visible window as `data-start-ms`/`data-end-ms` (epoch ms, linear over its
// box from left to right). Also the hover thumbnails: decoded in the
// browser from a one-second view.mp4 fragment, never by the box. The
// cameras' own events (motion, tamper) are marks on their rows
// (`.tl-ev`, `data-kind`, `data-start-ms`), and `eventAfter`/`eventBefore`
// find the next or previous one for playback's buttons.
"use strict";
import { fmtTime } from "./common.js";

const MIN_SPAN_MS = 60 * 1000;
const TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600].map((s) => s * 1000);

export class Timeline {
  /// `el` is `#timeline`; `on.seek(camera, ms)` plays, `on.hover(camera,
  /// ms, event)` and `on.hoverEnd()` drive the thumbnails.
  constructor(el, on) {
    this.el = el;
    this.on = on;
    this.dayStart = 0;
    this.dayEnd = 0;
    this.ws = 0;
    this.we = 0;
    this.rows = []; // [{camera, codec, spans: [[startMs, endMs]], events: [{kind, start, end}]}]
    this.selected = "";
    this.playMs = null;
    this.drag = null;
    this.panned = false;
    this.bind();
  }

  setDay(start, end) {
    if (start === this.dayStart && end === this.dayEnd) return;
    this.dayStart = start;
    this.dayEnd = end;
    this.ws = start;
    this.we = end;
    this.render();
  }

  setRows(rows) { this.rows = rows; this.render(); }
  setSelected(camera) { this.selected = camera; this.render(); }
  setPlayhead(ms) { this.playMs = ms; this.place(this.el.querySelector(".tl-play"), ms); }

  codecOf(camera) {
    const r = this.rows.find((x) => x.camera === camera);
    return r ? r.codec : null;
  }

  /// The recorded span of `camera` holding `ms`, or the nearest within
  /// `slackPx` pixels (a thin bar is hard to hit), else null.
  spanAt(camera, ms, slackPx) {
    const r = this.rows.find((x) => x.camera === camera);
    if (!r) return null;
    const slack = (slackPx || 0) * this.msPerPx();
    let best = null, bestDist = Infinity;
    for (const s of r.spans) {
      const d = ms < s[0] ? s[0] - ms : ms > s[1] ? ms - s[1] : 0;
      if (d < bestDist) { best = s; bestDist = d; }
    }
    return best && bestDist <= slack ? best : null;
  }

  /// The first event of `camera` starting after `ms` (+ 0.5 s), or the
  /// last one starting before it (- 0.5 s) when `back`; null if none.
  eventNear(camera, ms, back) {
    const r = this.rows.find((x) => x.camera === camera);
    const evs = (r && r.events) || [];
    let best = null;
    for (const e of evs) {
      if (!back && e.start > ms + 500 && (!best || e.start < best.start)) best = e;
      if (back && e.start < ms - 500 && (!best || e.start > best.start)) best = e;
    }
    return best;
  }

  msPerPx() { return (this.we - this.ws) / Math.max(1, this.el.clientWidth); }

  msAt(clientX) {
    const b = this.el.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (clientX - b.left) / Math.max(1, b.width)));
    return this.ws + f * (this.we - this.ws);
  }

  cameraAt(clientY) {
    for (const row of this.el.querySelectorAll(".tl-row")) {
      const b = row.getBoundingClientRect();
      if (clientY >= b.top && clientY < b.bottom) return row.dataset.camera;
    }
    return null;
  }

  // ---- zoom and pan, kept inside the day ----
  setWindow(ws, we) {
    const full = this.dayEnd - this.dayStart;
    let span = Math.min(full, Math.max(MIN_SPAN_MS, we - ws));
    ws = Math.min(this.dayEnd - span, Math.max(this.dayStart, ws));
    this.ws = ws;
    this.we = ws + span;
    this.render();
  }

  zoom(factor, aroundMs) {
    const at = aroundMs === undefined ? (this.ws + this.we) / 2 : aroundMs;
    const f = (at - this.ws) / (this.we - this.ws);
    const span = (this.we - this.ws) * factor;
    this.setWindow(at - f * span, at - f * span + span);
  }

  pan(ms) { this.setWindow(this.ws + ms, this.we + ms); }

  // ---- drawing ----
  place(marker, ms) {
    if (!marker) return;
    const visible = ms !== null && ms >= this.ws && ms <= this.we;
    marker.hidden = !visible;
    if (visible) marker.style.left = ((ms - this.ws) * 100 / (this.we - this.ws)) + "%";
  }

  render() {
    const el = this.el;
    el.dataset.startMs = String(Math.round(this.ws));
    el.dataset.endMs = String(Math.round(this.we));
    if (this.we <= this.ws) { el.replaceChildren(); return; }
    const pct = (ms) => ((ms - this.ws) * 100 / (this.we - this.ws));
    const perPx = this.msPerPx();
    const axis = document.createElement("div");
    axis.className = "tl-axis";
    const width = Math.max(1, el.clientWidth);
    const step = TICK_STEPS.find((s) => (this.we - this.ws) / s <= width / 70) || TICK_STEPS[TICK_STEPS.length - 1];
    const tz = new Date(this.ws).getTimezoneOffset() * 60000;
    for (let t = Math.ceil((this.ws - tz) / step) * step + tz; t < this.we; t += step) {
      const tick = document.createElement("span");
      tick.className = "tl-tick";
      tick.style.left = pct(t) + "%";
      tick.textContent = fmtTime(t, step < 60000);
      axis.appendChild(tick);
    }
    const parts = [axis];
    for (const r of this.rows) {
      const row = document.createElement("div");
      row.className = "tl-row" + (r.camera === this.selected ? " selected" : "");
      row.dataset.camera = r.camera;
      if (r.codec) row.dataset.codec = r.codec;
      const label = document.createElement("span");
      label.className = "tl-label";
      label.textContent = r.camera + (r.codec === "h265" ? " (H.265)" : "");
      row.appendChild(label);
      // Bars closer than a pixel are drawn as one; gaps wider stay visible.
      let cur = null;
      const flush = () => {
        if (!cur) return;
        const seg = document.createElement("div");
        seg.className = "tl-seg";
        seg.style.left = pct(cur[0]) + "%";
        seg.style.width = (pct(cur[1]) - pct(cur[0])) + "%";
        row.appendChild(seg);
      };
      for (const s of r.spans) {
        if (s[1] < this.ws || s[0] > this.we) continue;
        const a = Math.max(s[0], this.ws), b = Math.min(s[1], this.we);
        if (cur && a - cur[1] < perPx) cur[1] = Math.max(cur[1], b);
        else { flush(); cur = [a, b]; }
      }
      flush();
      for (const e of r.events || []) {
        const end = e.end === null ? Date.now() : e.end;
        if (end < this.ws || e.start > this.we) continue;
        const mark = document.createElement("div");
        mark.className = "tl-ev";
        mark.dataset.kind = e.kind;
        mark.dataset.startMs = String(e.start);
        mark.style.left = pct(Math.max(e.start, this.ws)) + "%";
        mark.style.width = Math.max(0.15, pct(Math.min(end, this.we)) - pct(Math.max(e.start, this.ws))) + "%";
        mark.title = (e.kind === "tamper" ? "Tamper" : "Motion") + " at " + fmtTime(e.start, true);
        row.appendChild(mark);
      }
      parts.push(row);
    }
    const now = document.createElement("div");
    now.className = "tl-now";
    now.title = "now";
    const play = document.createElement("div");
    play.className = "tl-play";
    parts.push(now, play);
    el.replaceChildren(...parts);
    this.place(now, Date.now());
    this.place(play, this.playMs);
  }

  // ---- input: mouse, touch, keys ----
  bind() {
    const el = this.el;
    el.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      const onAxis = !!ev.target.closest(".tl-axis") || this.cameraAt(ev.clientY) === null;
      this.drag = { x0: ev.clientX, ws0: this.ws, we0: this.we, onAxis, moved: false };
      this.panned = false;
      try { el.setPointerCapture(ev.pointerId); } catch (e) { /* not capturable */ }
    });
    el.addEventListener("pointermove", (ev) => {
      const d = this.drag;
      if (d) {
        const dx = ev.clientX - d.x0;
        if (Math.abs(dx) > 4) d.moved = true;
        if (d.moved && d.onAxis) {
          const per = (d.we0 - d.ws0) / Math.max(1, el.clientWidth);
          this.setWindow(d.ws0 - dx * per, d.we0 - dx * per);
        } else if (d.moved) {
          this.setPlayhead(this.msAt(ev.clientX)); // scrubbing: released, it plays there
        }
        return;
      }
      if (ev.pointerType !== "mouse") return;
      const cam = this.cameraAt(ev.clientY);
      if (cam) this.on.hover(cam, this.msAt(ev.clientX), ev);
      else this.on.hoverEnd();
    });
    const up = () => {
      if (this.drag && this.drag.moved && this.drag.onAxis) this.panned = true;
      this.drag = null;
    };
    el.addEventListener("pointerup", up);
    el.addEventListener("pointercancel", () => { this.drag = null; this.panned = true; });
    el.addEventListener("pointerleave", () => this.on.hoverEnd());
    el.addEventListener("click", (ev) => {
      if (this.panned) { this.panned = false; return; }
      const cam = this.cameraAt(ev.clientY) || this.selected;
      if (cam) this.on.seek(cam, this.msAt(ev.clientX));
    });
    el.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const per = this.msPerPx();
      if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) this.pan((ev.deltaX || ev.deltaY) * per);
      else this.zoom(ev.deltaY > 0 ? 1.25 : 0.8, this.msAt(ev.clientX));
    }, { passive: false });
    el.addEventListener("keydown", (ev) => {
      const span = this.we - this.ws;
      if (ev.key === "ArrowLeft") this.pan(-span / 10);
      else if (ev.key === "ArrowRight") this.pan(span / 10);
      else if (ev.key === "+" || ev.key === "=") this.zoom(0.5);
      else if (ev.key === "-" || ev.key === "_") this.zoom(2);
      else if (ev.key === "Enter" || ev.key === " ") { if (this.selected) this.on.seek(this.selected, (this.ws + this.we) / 2); }
      else return;
      ev.preventDefault();
    });
  }
}

// ---- hover thumbnails: one fetch at a time, cached per camera per 10 s ----
const BUCKET_MS = 10000;
const CACHE_MAX = 300;

export class Thumbnails {
  /// `tip` is `#tl-tip` (inside a positioned wrapper), `canvas` is
  /// `#tl-thumb`, `caption` the line under it; `canDecode(camera)` says
  /// whether this browser can decode that camera's recordings.
  constructor(tip, canvas, caption, canDecode) {
    this.tip = tip;
    this.canvas = canvas;
    this.caption = caption;
    this.canDecode = canDecode;
    this.cache = new Map(); // "camera@bucket" -> canvas, or null for "no preview"
    this.want = null; // {key, camera, bucketMs}
    this.timer = null;
    this.busy = false;
    this.video = null;
  }

  /// The pointer is over `camera`'s row at `ms`; `recorded` says whether a
  /// bar is there.
  show(camera, ms, recorded, ev) {
    const wrap = this.tip.offsetParent || this.tip.parentElement;
    const b = wrap.getBoundingClientRect();
    this.tip.hidden = false;
    const w = this.tip.offsetWidth || 170;
    this.tip.style.left = Math.max(0, Math.min(b.width - w, ev.clientX - b.left - w / 2)) + "px";
    this.tip.style.top = (ev.clientY - b.top - (this.tip.offsetHeight || 120) - 14) + "px"; // above the pointer: the rows below stay visible
    clearTimeout(this.timer);
    const bucketMs = Math.floor(ms / BUCKET_MS) * BUCKET_MS;
    const key = camera + "@" + bucketMs;
    const time = camera + " " + fmtTime(ms);
    if (!recorded) { this.want = null; this.blank(); this.caption.textContent = time + ": not recorded"; return; }
    if (!this.canDecode(camera)) { this.want = null; this.blank(); this.caption.textContent = time + ": no preview (H.265)"; return; }
    this.want = { key, camera, bucketMs, time };
    if (this.cache.has(key)) { this.draw(key); return; }
    this.blank();
    this.caption.textContent = time;
    this.timer = setTimeout(() => this.next(), 200);
  }

  hide() {
    clearTimeout(this.timer);
    this.want = null;
    this.tip.hidden = true;
  }

  /// Stops a thumbnail fetch under way (the page is left).
  stop() {
    this.hide();
    if (this.video) { this.video.removeAttribute("src"); this.video.load(); this.video = null; }
    this.busy = false;
  }

  blank() {
    const c = this.canvas.getContext("2d");
    c.fillStyle = "#000";
    c.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  draw(key) {
    const pic = this.cache.get(key);
    this.blank();
    if (pic) this.canvas.getContext("2d").drawImage(pic, 0, 0, this.canvas.width, this.canvas.height);
    if (this.want) this.caption.textContent = this.want.time + (pic ? "" : ": no preview");
  }

  next() {
    const w = this.want;
    if (this.busy || !w || this.cache.has(w.key)) return;
    this.busy = true;
    const v = document.createElement("video");
    this.video = v;
    v.muted = true;
    v.preload = "auto";
    let settled = false;
    const done = (pic) => {
      if (settled) return;
      settled = true;
      clearTimeout(limit);
      if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value);
      this.cache.set(w.key, pic);
      v.removeAttribute("src");
      v.load();
      if (this.video === v) { this.video = null; this.busy = false; }
      if (this.want && this.want.key === w.key) this.draw(w.key);
      else if (this.want) this.next();
    };
    const limit = setTimeout(() => done(null), 8000);
    v.addEventListener("loadeddata", () => {
      const c = document.createElement("canvas");
      c.width = this.canvas.width;
      c.height = this.canvas.height;
      try { c.getContext("2d").drawImage(v, 0, 0, c.width, c.height); done(c); } catch (e) { done(null); }
    }, { once: true });
    v.addEventListener("error", () => done(null), { once: true });
    const iso = (ms) => new Date(ms).toISOString();
    v.src = "/api/v1/cameras/" + encodeURIComponent(w.camera) + "/view.mp4?start=" + iso(w.bucketMs) + "&end=" + iso(w.bucketMs + 1000);
  }
}
