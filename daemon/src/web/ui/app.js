// Vigil web UI: plain JavaScript, served by the box itself, nothing fetched
// from elsewhere. The CSRF token lives in sessionStorage; the session cookie
// is HttpOnly.
"use strict";

import { $, api, text, cell, session, leave } from "./ui/common.js";
import * as livePage from "./ui/live.js";
import * as playbackPage from "./ui/playback.js";

let me = null;

function show(id) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== id;
  $("top").hidden = !me || id === "login" || id === "password" || (id === "mfa" && me.mfa_required);
  leave();
  if (id !== "tokens") hideTokenSecret(); // a secret is shown once, not kept on screen
}

let navigation = 0;
async function route() {
  // Only the newest navigation may change the page (an older one may still
  // be waiting for the server).
  const mine = ++navigation;
  const [page, arg] = (location.hash.slice(1) || "dashboard").split("/");
  let who = null;
  try {
    who = await api("GET", "/api/v1/me");
  } catch (e) {
    who = null;
  }
  if (mine !== navigation) return;
  me = who;
  session.me = who;
  if (!me) return show("login");
  if (me.csrf_token) sessionStorage.setItem("csrf", me.csrf_token);
  $("who").textContent = me.actor.replace(/^user:/, "") + " (" + me.role + ")";
  for (const a of document.querySelectorAll(".admin")) a.hidden = me.role !== "admin";
  if (me.must_change_password) return show("password");
  if (me.mfa_required || page === "mfa") return mfa(me.mfa_required);
  if (page === "live") { show("live"); return livePage.render(decodeURIComponent(arg || "")); }
  if (page === "playback") { show("playback"); return playbackPage.render(decodeURIComponent(arg || "")); }
  if (page === "users") return users();
  if (page === "cameras") return cameraAdmin();
  if (page === "audit") return audit();
  if (page === "evidence") return evidence();
  if (page === "tokens") return tokens();
  return dashboard();
}

// ---- login and password ----
$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = { name: f.get("name"), password: f.get("password") };
  if (f.get("totp")) body.totp = f.get("totp");
  try {
    const r = await api("POST", "/api/v1/login", body);
    sessionStorage.setItem("csrf", r.csrf_token);
    ev.target.reset();
    text($("login-error"), "");
    location.hash = "#dashboard";
    route();
  } catch (e) {
    text($("login-error"), e.status === 429 ? "Too many failed attempts: wait a minute." : e.message);
  }
});

$("password-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    await api("POST", "/api/v1/me/password", { old_password: f.get("old_password"), new_password: f.get("new_password") });
    ev.target.reset();
    sessionStorage.removeItem("csrf");
    me = null;
    show("login");
    text($("login-error"), "Password changed: log in with the new one.");
  } catch (e) {
    text($("password-error"), e.message);
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/api/v1/logout"); } catch (e) { /* already out */ }
  $("tiles").replaceChildren();
  hideTokenSecret();
  sessionStorage.removeItem("csrf");
  me = null;
  show("login");
});

// ---- second factor enrolment ----
function mfa(required) {
  show("mfa");
  text($("mfa-why"), required
    ? "An administrator must sign in with a second factor. Scan the code with an authenticator app (any TOTP app), then enter the 6-digit code it shows."
    : (me.mfa ? "A second factor is enrolled. Enrolling again replaces it." : "Add a second factor: an authenticator app on your phone gives a 6-digit code at each login."));
}

$("mfa-start").addEventListener("click", async () => {
  try {
    // Replacing an enrolled second factor needs the current password.
    const r = await api("POST", "/api/v1/me/mfa", me.mfa ? { password: prompt("Your current password") || "" } : undefined);
    const svg = new DOMParser().parseFromString(r.qr_svg, "image/svg+xml").documentElement;
    $("mfa-qr").replaceChildren(document.importNode(svg, true));
    text($("mfa-uri"), r.otpauth_uri);
    $("mfa-form").hidden = false;
  } catch (e) {
    text($("mfa-error"), e.message);
  }
});

$("mfa-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    await api("POST", "/api/v1/me/mfa/confirm", { code: f.get("code") });
    ev.target.reset();
    $("mfa-qr").replaceChildren();
    text($("mfa-uri"), "");
    location.hash = "#dashboard";
    route();
  } catch (e) {
    text($("mfa-error"), e.message);
  }
});

// ---- dashboard ----
let dashTimer = null;
async function dashboard() {
  show("dashboard");
  clearTimeout(dashTimer);
  try {
    const [health, cams] = await Promise.all([
      fetch("/health/ready").then((r) => r.json()),
      api("GET", "/api/v1/cameras"),
    ]);
    const alerts = $("alerts");
    alerts.replaceChildren();
    const alert = (s) => alerts.appendChild(text(Object.assign(document.createElement("div"), { className: "alert" }), s));
    if (health.status !== "ready") alert("Not ready: check storage and the database.");
    if (health.free_percent !== null && health.free_percent < 10) alert("Disk low: " + health.free_percent + "% free.");
    if (!health.time_synchronised) alert("The clock is not synchronised (NTP): timestamps may drift.");
    for (const c of cams) if (c.state === "offline") alert(c.name + " is offline: " + (c.last_error || "no reason given"));
    const sys = $("system");
    sys.replaceChildren();
    const fact = (s) => sys.appendChild(text(document.createElement("span"), s));
    fact("Disk free: " + (health.free_percent === null ? "?" : health.free_percent + "%"));
    fact("Clock: " + (health.time_synchronised ? "synchronised" : "not synchronised"));
    fact("Keys: " + health.key_source);
    const tiles = $("tiles");
    tiles.replaceChildren();
    for (const c of cams) {
      const t = document.createElement("div");
      t.className = "tile " + c.state;
      t.appendChild(text(document.createElement("h2"), c.name));
      t.appendChild(text(document.createElement("div"), c.state + (c.since ? " since " + c.since : "")));
      if (c.last_error) t.appendChild(text(Object.assign(document.createElement("div"), { className: "muted" }), c.last_error));
      const links = document.createElement("div");
      const l = Object.assign(document.createElement("a"), { href: "#live/" + encodeURIComponent(c.name) });
      links.appendChild(text(l, "Live"));
      links.appendChild(document.createTextNode(" · "));
      const p = Object.assign(document.createElement("a"), { href: "#playback/" + encodeURIComponent(c.name) });
      links.appendChild(text(p, "Playback"));
      t.appendChild(links);
      tiles.appendChild(t);
    }
  } catch (e) {
    if (e.status === 401) return show("login");
  }
  dashTimer = setTimeout(() => { if (!$("dashboard").hidden) dashboard(); }, 5000);
}

async function evidence() {
  show("evidence");
  text($("evidence-error"), "");
  try {
    const d = await api("GET", "/api/v1/device");
    text($("device-id"), "Device " + d.device_id + ", signing key fingerprint " + d.signing_key.fingerprint_sha256);
  } catch (e) {
    text($("device-id"), "");
  }
  const holds = $("hold-rows");
  holds.replaceChildren();
  const active = await api("GET", "/api/v1/holds");
  if (!active.length) {
    const tr = document.createElement("tr");
    cell(tr, "");
    cell(tr, "No active holds.");
    holds.appendChild(tr);
  }
  for (const h of active) {
    const tr = document.createElement("tr");
    cell(tr, String(h.id));
    cell(tr, h.what);
    cell(tr, h.reason);
    cell(tr, h.placed);
    cell(tr, h.placed_by);
    const td = document.createElement("td");
    if (me.role === "admin") {
      const b = text(Object.assign(document.createElement("button"), { type: "button" }), "Release");
      b.addEventListener("click", async () => {
        const reason = prompt("Why is hold " + h.id + " released?");
        if (!reason) return;
        try { await api("POST", "/api/v1/holds/" + h.id + "/release", { reason }); evidence(); }
        catch (e) { text($("evidence-error"), e.message); }
      });
      td.appendChild(b);
    }
    tr.appendChild(td);
    holds.appendChild(tr);
  }
  const rows = $("export-rows");
  rows.replaceChildren();
  if (me.role === "viewer") return;
  for (const x of await api("GET", "/api/v1/exports")) {
    const tr = document.createElement("tr");
    cell(tr, String(x.id));
    cell(tr, x.created);
    cell(tr, x.operator);
    cell(tr, x.cameras.join(", "));
    cell(tr, x.start + " – " + x.end);
    cell(tr, (x.bytes / 1048576).toFixed(1) + " MiB");
    cell(tr, x.sha256);
    const td = document.createElement("td");
    if (x.downloadable) {
      const a = text(Object.assign(document.createElement("a"), { href: "/api/v1/exports/" + x.id + "/download" }), "Download");
      td.appendChild(a);
    }
    if (!x.held) {
      const b = text(Object.assign(document.createElement("button"), { type: "button" }), "Hold");
      b.addEventListener("click", async () => {
        const reason = prompt("Reason for holding export " + x.id + ":");
        if (!reason) return;
        try { await api("POST", "/api/v1/holds", { export_id: x.id, reason }); evidence(); }
        catch (e) { text($("evidence-error"), e.message); }
      });
      td.appendChild(b);
    } else {
      td.appendChild(text(document.createElement("span"), " held"));
    }
    tr.appendChild(td);
    rows.appendChild(tr);
  }
}

// ---- cameras (admin) ----
async function cameraAdmin() {
  show("cameras");
  const rows = $("camera-rows");
  rows.replaceChildren();
  for (const c of await api("GET", "/api/v1/cameras")) {
    const tr = document.createElement("tr");
    cell(tr, c.name);
    cell(tr, c.source);
    cell(tr, c.state + (c.last_error ? " (" + c.last_error + ")" : ""));
    cell(tr, c.url || "");
    const td = document.createElement("td");
    if (c.source === "web") {
      const act = (label, fn) => {
        const b = text(Object.assign(document.createElement("button"), { type: "button" }), label);
        b.addEventListener("click", async () => {
          try { await fn(); cameraAdmin(); } catch (e) { text($("camera-error"), e.message); }
        });
        td.appendChild(b);
      };
      act(c.enabled ? "Disable" : "Enable", () => api("PUT", "/api/v1/cameras/" + encodeURIComponent(c.name), { url: c.url, username: c.username, enabled: !c.enabled }));
      act("Remove", () => api("DELETE", "/api/v1/cameras/" + encodeURIComponent(c.name)));
    }
    tr.appendChild(td);
    rows.appendChild(tr);
  }
}

function cameraBody() {
  const f = new FormData($("camera-form"));
  const body = { name: f.get("name"), url: f.get("url") };
  if (f.get("username")) body.username = f.get("username");
  if (f.get("password")) body.password = f.get("password");
  return body;
}

$("camera-test").addEventListener("click", async () => {
  const out = $("camera-test-result");
  const video = $("camera-snapshot");
  text(out, "testing…");
  video.hidden = true;
  try {
    const r = await api("POST", "/api/v1/probe-camera", cameraBody());
    // A verdict only: the codec and size, or why not (no picture before the camera is added).
    if (!r.ok) { text(out, "Failed: " + r.error); return; }
    text(out, "OK: " + r.codec + " " + r.width + "x" + r.height);
  } catch (e) {
    text(out, "Failed: " + e.message);
  }
});

$("camera-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("POST", "/api/v1/cameras", cameraBody());
    ev.target.reset();
    text($("camera-error"), "");
    cameraAdmin();
  } catch (e) {
    text($("camera-error"), e.message);
  }
});

// ---- users (admin) ----
async function users() {
  show("users");
  const rows = $("user-rows");
  rows.replaceChildren();
  for (const u of await api("GET", "/api/v1/users")) {
    const tr = document.createElement("tr");
    cell(tr, u.name);
    cell(tr, u.role);
    cell(tr, u.disabled ? "disabled" : u.must_change_password ? "must change password" : "active");
    cell(tr, u.mfa ? "yes" : "no");
    cell(tr, cameraSetText(u.cameras));
    const td = document.createElement("td");
    const act = (label, what) => {
      const b = text(Object.assign(document.createElement("button"), { type: "button" }), label);
      b.addEventListener("click", async () => {
        try { await api("POST", "/api/v1/users/" + encodeURIComponent(u.name) + "/" + what); users(); }
        catch (e) { text($("user-error"), e.message); }
      });
      td.appendChild(b);
    };
    act(u.disabled ? "Enable" : "Disable", u.disabled ? "enable" : "disable");
    if (u.mfa) act("Reset 2FA", "reset-mfa");
    const cams = text(Object.assign(document.createElement("button"), { type: "button" }), "Cameras…");
    cams.addEventListener("click", async () => {
      const answer = prompt("Cameras " + u.name + " may see: \"all\", or names separated by commas:", u.cameras === null ? "all" : u.cameras.join(","));
      if (answer === null) return;
      try {
        await api("PUT", "/api/v1/users/" + encodeURIComponent(u.name) + "/cameras", { cameras: parseCameraSet(answer) });
        users();
      } catch (e) { text($("user-error"), e.message); }
    });
    td.appendChild(cams);
    tr.appendChild(td);
    rows.appendChild(tr);
  }
}

$("user-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const body = { name: f.get("name"), role: f.get("role"), password: f.get("password") };
    const cams = parseCameraSet(f.get("cameras"));
    if (cams !== null) body.cameras = cams;
    await api("POST", "/api/v1/users", body);
    ev.target.reset();
    text($("user-error"), "");
    users();
  } catch (e) {
    text($("user-error"), e.message);
  }
});

// ---- camera sets: null is every camera ----
function cameraSetText(set) {
  if (set === null || set === undefined) return "all";
  return set.length ? set.join(", ") : "none";
}

function parseCameraSet(s) {
  const t = (s || "").trim();
  if (t === "" || t === "all") return null;
  return t.split(",").map((x) => x.trim()).filter((x) => x);
}

// ---- API tokens (everyone: their own; admins: all) ----
function hideTokenSecret() {
  text($("token-value"), "");
  text($("token-copied"), "");
  $("token-secret").hidden = true;
}

async function tokens() {
  show("tokens");
  const roles = ["viewer", "operator", "admin"];
  const sel = $("token-role");
  // A token's role is at most yours.
  for (const o of sel.options) o.disabled = roles.indexOf(o.value) > roles.indexOf(me.role);
  if (sel.selectedOptions[0] && sel.selectedOptions[0].disabled) sel.value = "viewer";
  const rows = $("token-rows");
  rows.replaceChildren();
  let list = [];
  try { list = await api("GET", "/api/v1/tokens"); } catch (e) { text($("token-error"), e.message); return; }
  if (!list.length) {
    const tr = document.createElement("tr");
    cell(tr, "No tokens.");
    rows.appendChild(tr);
  }
  const now = Date.now();
  for (const t of list) {
    const tr = document.createElement("tr");
    cell(tr, t.name);
    cell(tr, t.owner || "(none: made before owners)");
    cell(tr, t.role);
    cell(tr, cameraSetText(t.cameras));
    cell(tr, t.created);
    cell(tr, t.expires || "never");
    cell(tr, t.last_used || "never");
    const state = t.revoked ? "revoked " + t.revoked
      : !t.owner || !t.expires ? "does not work"
      : Date.parse(t.expires) <= now ? "expired" : "live";
    cell(tr, state);
    const td = document.createElement("td");
    if (!t.revoked) {
      const b = text(Object.assign(document.createElement("button"), { type: "button" }), "Revoke");
      b.addEventListener("click", async () => {
        if (!confirm("Revoke the token \"" + t.name + "\"? Anything using it stops working at once.")) return;
        try { await api("DELETE", "/api/v1/tokens/" + encodeURIComponent(t.name)); tokens(); }
        catch (e) { text($("token-error"), e.message); }
      });
      td.appendChild(b);
    }
    tr.appendChild(td);
    rows.appendChild(tr);
  }
}

$("token-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  hideTokenSecret();
  text($("token-error"), "");
  const body = { name: f.get("name"), role: f.get("role"), expires_in_days: Number(f.get("days")) };
  const cams = parseCameraSet(f.get("cameras"));
  if (cams !== null) body.cameras = cams;
  try {
    const r = await api("POST", "/api/v1/tokens", body);
    ev.target.reset();
    text($("token-value"), r.token);
    $("token-secret").hidden = false;
    tokens();
  } catch (e) {
    text($("token-error"), e.message);
  }
});

$("token-copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("token-value").textContent);
    text($("token-copied"), "copied");
  } catch (e) {
    // No clipboard access: select it for Ctrl-C.
    const range = document.createRange();
    range.selectNodeContents($("token-value"));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    text($("token-copied"), "selected: press Ctrl-C");
  }
});

// ---- audit (admin) ----
async function audit() {
  show("audit");
  const rows = $("audit-rows");
  rows.replaceChildren();
  const entries = await api("GET", "/api/v1/audit?limit=200");
  for (const e of entries.reverse()) {
    const tr = document.createElement("tr");
    for (const k of ["id", "time", "actor", "action", "target", "outcome", "detail"]) cell(tr, String(e[k]));
    rows.appendChild(tr);
  }
}

$("audit-verify").addEventListener("click", async () => {
  const r = await api("GET", "/api/v1/audit/verify");
  text($("audit-result"), r.intact ? "intact: " + r.entries + " entries" : "BROKEN: " + r.problem);
});

window.addEventListener("hashchange", route);
route();
