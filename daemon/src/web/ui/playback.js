// Vigil web UI: playback of recorded ranges, exports, bundles and holds.
"use strict";
import { $, api, text, session } from "./common.js";

let lastRange = null;

export async function render(name) {
  return playback(name);
}

// ---- playback ----
function localInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + "T" + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
}

async function playback(name) {
  const sel = $("pb-camera");
  const cams = await api("GET", "/api/v1/cameras");
  sel.replaceChildren(...cams.map((c) => text(Object.assign(document.createElement("option"), { value: c.name }), c.name)));
  if (name) sel.value = name;
  const f = $("playback-form");
  if (!f.start.value) {
    const now = new Date();
    f.end.value = localInput(now);
    f.start.value = localInput(new Date(now.getTime() - 5 * 60 * 1000));
  }
}

$("playback-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  const cam = f.camera.value;
  const start = new Date(f.start.value).toISOString();
  const end = new Date(f.end.value).toISOString();
  text($("pb-error"), "");
  try {
    const recs = await api("GET", "/api/v1/recordings?camera=" + encodeURIComponent(cam) + "&start=" + start + "&end=" + end);
    const tl = $("timeline");
    tl.replaceChildren();
    const t0 = Date.parse(start), t1 = Date.parse(end);
    for (const r of recs) {
      const a = Math.max(t0, Date.parse(r.start)), b = Math.min(t1, Date.parse(r.end));
      const seg = document.createElement("div");
      seg.className = "seg";
      seg.style.left = ((a - t0) * 100 / (t1 - t0)) + "%";
      seg.style.width = Math.max(0.2, (b - a) * 100 / (t1 - t0)) + "%";
      seg.title = r.start + " – " + r.end;
      tl.appendChild(seg);
    }
    if (!recs.length) { text($("pb-error"), "Nothing recorded in this range."); return; }
    const url = "/api/v1/cameras/" + encodeURIComponent(cam) + "/view.mp4?start=" + start + "&end=" + end;
    $("pb-video").src = url;
    const dl = $("pb-download");
    dl.href = url + "&download=1";
    dl.download = cam + "-" + start.replace(/[:.]/g, "") + ".mp4";
    dl.hidden = session.me.role === "viewer"; // exporting is for operators and admins
    $("pb-bundle").hidden = session.me.role === "viewer";
    $("pb-hold").hidden = session.me.role === "viewer";
    lastRange = { camera: cam, start, end };
  } catch (e) {
    text($("pb-error"), e.message);
  }
});


$("pb-bundle").addEventListener("click", async () => {
  if (!lastRange) return;
  text($("pb-error"), "Making the bundle…");
  try {
    const r = await api("POST", "/api/v1/exports", lastRange);
    text($("pb-error"), "Bundle " + r.id + " made: " + r.frames + " frames, SHA-256 " + r.sha256 + ". Download it from Evidence.");
  } catch (e) {
    text($("pb-error"), e.message);
  }
});

$("pb-hold").addEventListener("click", async () => {
  if (!lastRange) return;
  const reason = prompt("Reason for the legal hold (case number, request):");
  if (!reason) return;
  try {
    const h = await api("POST", "/api/v1/holds", Object.assign({ reason }, lastRange));
    text($("pb-error"), "Hold " + h.id + " placed on " + h.what + ".");
  } catch (e) {
    text($("pb-error"), e.message);
  }
});
