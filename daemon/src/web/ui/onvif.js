// Vigil web UI: finding ONVIF cameras on the Cameras page (admins).
// Discover asks the box to probe the camera network (WS-Discovery out of
// its configured interface) and lists what answered: address, maker,
// model, firmware. Add takes a name and the camera's user name and
// password; the box reads the camera's main and sub stream from it and
// starts recording, or says why not (wrong password, no H.264/H.265
// profile, unreachable).
"use strict";
import { $, api, text, cell, say } from "./common.js";

export function bindOnvif(refresh) {
  const msg = $("onvif-msg");
  const rows = $("onvif-rows");
  const btn = $("onvif-discover");
  if (btn.dataset.bound) return;
  btn.dataset.bound = "1";
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    msg.hidden = false;
    say(msg, "info", "Looking for ONVIF cameras (about 2 seconds)…");
    try {
      const r = await api("GET", "/api/v1/onvif/discover");
      rows.replaceChildren();
      $("onvif-block").hidden = false;
      if (!r.cameras.length) {
        say(msg, "info", "No ONVIF camera answered on " + r.interface + ". Check that the cameras are powered and on this network.");
        return;
      }
      say(msg, "ok", r.cameras.length + " camera(s) answered on " + r.interface + ".");
      for (const c of r.cameras) rows.appendChild(row(c, msg, refresh));
    } catch (e) {
      say(msg, "error", "Discovery failed.", e);
    } finally {
      btn.disabled = false;
    }
  });
}

function suggestedName(c) {
  const base = (c.name || c.model || "camera").replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 64);
  return base || "camera";
}

function row(c, msg, refresh) {
  const tr = document.createElement("tr");
  cell(tr, c.address);
  cell(tr, c.manufacturer || "?");
  cell(tr, c.model || "?");
  cell(tr, c.firmware || "?");
  const td = document.createElement("td");
  const form = document.createElement("form");
  form.className = "onvif-add";
  const input = (label, attrs) => {
    const l = text(document.createElement("label"), label + " ");
    const i = Object.assign(document.createElement("input"), attrs);
    l.appendChild(i);
    form.appendChild(l);
    return i;
  };
  const name = input("Name", { name: "name", value: suggestedName(c), required: true, pattern: "[A-Za-z0-9_-]{1,64}" });
  const user = input("User name", { name: "username", autocomplete: "off", required: true });
  const pw = input("Password", { name: "password", type: "password", autocomplete: "new-password" });
  const add = text(Object.assign(document.createElement("button"), { type: "submit" }), "Add");
  form.appendChild(add);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    add.disabled = true;
    msg.hidden = false;
    say(msg, "info", "Reading " + c.address + "'s streams…");
    try {
      const r = await api("POST", "/api/v1/cameras/onvif", { address: c.address, username: user.value, password: pw.value, name: name.value });
      const size = (p) => p ? p.codec + " " + p.width + "×" + p.height + (p.fps ? " " + p.fps + " fps" : "") : "none";
      say(msg, "ok", r.name + " added: main stream " + size(r.main) + ", sub stream " + size(r.sub) + ".");
      pw.value = "";
      await refresh();
    } catch (e) {
      say(msg, "error", c.address + " could not be added.", e);
    } finally {
      add.disabled = false;
    }
  });
  td.appendChild(form);
  tr.appendChild(td);
  return tr;
}
