// Vigil web UI: live view.
"use strict";
import { $, text, onLeave } from "./common.js";

export async function render(name) {
  const ctl = new AbortController();
  onLeave(() => ctl.abort());
  return live(name, ctl);
}

// ---- live view: fMP4 over a streamed fetch into Media Source Extensions ----
async function live(name, ctl) {
  text($("live-name"), name);
  const video = $("live-video");
  const status = $("live-status");
  for (let attempt = 0; attempt < 1000 && !ctl.signal.aborted; attempt++) {
    try {
      text(status, "connecting…");
      const r = await fetch("/api/v1/cameras/" + encodeURIComponent(name) + "/live.mp4", { signal: ctl.signal, credentials: "same-origin" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const mime = 'video/mp4; codecs="' + (r.headers.get("X-Codec") || "avc1.42e01e") + '"';
      // Wall-clock ms at which the server had the first frame: the picture at
      // video.currentTime is that much later, so the lag behind real time is known.
      video.dataset.firstFrameWallMs = r.headers.get("X-First-Frame-Wall-Ms") || "";
      if (!window.MediaSource || !MediaSource.isTypeSupported(mime)) { text(status, "This browser cannot play " + mime); return; }
      const ms = new MediaSource();
      video.src = URL.createObjectURL(ms);
      await new Promise((res) => ms.addEventListener("sourceopen", res, { once: true }));
      const sb = ms.addSourceBuffer(mime);
      sb.mode = "segments";
      const reader = r.body.getReader();
      text(status, "live");
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (sb.updating) await new Promise((res) => sb.addEventListener("updateend", res, { once: true }));
        sb.appendBuffer(value);
        await new Promise((res) => sb.addEventListener("updateend", res, { once: true }));
        const b = sb.buffered;
        if (b.length) {
          const edge = b.end(b.length - 1);
          // Stay near the live edge; drop what is far behind.
          if (edge - video.currentTime > 1.5) video.currentTime = edge - 0.3;
          if (video.paused) video.play().catch(() => {});
          if (b.start(0) < edge - 30 && !sb.updating) {
            sb.remove(0, edge - 20);
            await new Promise((res) => sb.addEventListener("updateend", res, { once: true }));
          }
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
      text(status, "reconnecting (" + e.message + ")");
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
}

