// Vigil web UI: PTZ controls under the single-camera live view, for
// operators and admins, on a camera with an ONVIF address. Press and hold
// an arrow or a zoom button (or, with the picture focused, the arrow keys
// and + / -): the camera moves while it is held and stops when released.
// Presets: go to one by its token, or save the current position under a
// name. Every command is audited by the box; a refusal or a camera error
// is said under the buttons.
"use strict";
import { api, text, session, say } from "./common.js";

const SPEED = 0.5;
// [label, aria label, x, y, zoom, key]
const MOVES = [
  ["▲", "Tilt up", 0, SPEED, 0, "ArrowUp"],
  ["◀", "Pan left", -SPEED, 0, 0, "ArrowLeft"],
  ["▶", "Pan right", SPEED, 0, 0, "ArrowRight"],
  ["▼", "Tilt down", 0, -SPEED, 0, "ArrowDown"],
  ["+", "Zoom in", 0, 0, SPEED, "+"],
  ["−", "Zoom out", 0, 0, -SPEED, "-"],
];

export function mayMove(cam) {
  const role = session.me && session.me.role;
  return !!cam.onvif && (role === "operator" || role === "admin");
}

/// The controls for `cam`; `focusEl` is the element whose keys drive them
/// (the tile). Returns the panel to put under the picture.
export function ptzPanel(cam, focusEl) {
  const panel = document.createElement("div");
  panel.className = "ptz";
  panel.setAttribute("role", "group");
  panel.setAttribute("aria-label", "Move the camera");
  const msg = document.createElement("p");
  msg.className = "ptz-msg";
  msg.hidden = true;
  const path = "/api/v1/cameras/" + encodeURIComponent(cam.name) + "/ptz";
  let moving = null;
  let again = null;
  // One command at a time, in order: a stop never overtakes its move.
  let chain = Promise.resolve();
  const send = (body) => {
    chain = chain.then(async () => {
      try {
        const r = await api("POST", path, body);
        msg.hidden = true;
        return r;
      } catch (e) {
        msg.hidden = false;
        say(msg, "error", "The camera did not take the command.", e);
        return null;
      }
    });
    return chain;
  };
  const start = (m) => {
    if (moving === m) return;
    moving = m;
    const move = () => send({ op: "move", x: m[2], y: m[3], zoom: m[4] });
    move();
    // The box asks the camera to move for 10 s at most: held longer, ask again.
    clearInterval(again);
    again = setInterval(() => { if (panel.isConnected) move(); else stop(); }, 5000);
  };
  const stop = () => {
    if (!moving) return;
    moving = null;
    clearInterval(again);
    send({ op: "stop" });
  };
  const pad = document.createElement("div");
  pad.className = "ptz-pad";
  for (const m of MOVES) {
    const b = text(Object.assign(document.createElement("button"), { type: "button", title: m[1] + " (hold; key " + m[5] + ")" }), m[0]);
    b.setAttribute("aria-label", m[1]);
    b.dataset.move = m[1];
    b.addEventListener("pointerdown", (ev) => { ev.preventDefault(); start(m); });
    for (const end of ["pointerup", "pointerleave", "pointercancel"]) b.addEventListener(end, stop);
    b.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); start(m); } });
    b.addEventListener("keyup", (ev) => { if (ev.key === "Enter" || ev.key === " ") stop(); });
    pad.appendChild(b);
  }
  focusEl.tabIndex = 0;
  focusEl.addEventListener("keydown", (ev) => {
    const m = MOVES.find((x) => x[5] === ev.key || (x[5] === "+" && ev.key === "="));
    if (!m || ev.target.closest("input, select")) return;
    ev.preventDefault();
    start(m);
  });
  focusEl.addEventListener("keyup", (ev) => { if (MOVES.some((x) => x[5] === ev.key || (x[5] === "+" && ev.key === "="))) stop(); });
  focusEl.addEventListener("blur", stop);
  const presets = document.createElement("div");
  presets.className = "ptz-presets";
  const token = Object.assign(document.createElement("input"), { type: "text", maxLength: 64, placeholder: "preset" });
  token.setAttribute("aria-label", "Preset");
  const go = text(Object.assign(document.createElement("button"), { type: "button" }), "Go to preset");
  go.addEventListener("click", () => { if (token.value.trim()) send({ op: "goto", preset: token.value.trim() }); });
  const save = text(Object.assign(document.createElement("button"), { type: "button" }), "Save position as preset…");
  save.addEventListener("click", async () => {
    const name = prompt("A name for this position (e.g. door):");
    if (!name) return;
    const r = await send({ op: "set_preset", name: name.trim() });
    if (r && r.preset) {
      token.value = r.preset;
      msg.hidden = false;
      say(msg, "ok", "Saved as preset " + r.preset + ".");
    }
  });
  presets.append(token, go, save);
  panel.append(pad, presets, msg);
  return panel;
}
