// Vigil web UI: the shell (header, role-aware navigation, router), login,
// password changes, second factor, evidence and API tokens. Plain
// JavaScript, served by the box itself, nothing fetched from elsewhere. The
// CSRF token lives in sessionStorage; the session cookie is HttpOnly.
"use strict";

import { $, api, text, cell, session, leave, say, plainError, fmtDateTime, cameraSetText, parseCameraSet } from "./ui/common.js";
import * as livePage from "./ui/live.js";
import * as playbackPage from "./ui/playback.js";
import * as dashboardPage from "./ui/dashboard.js";
import * as adminPages from "./ui/admin.js";
import * as alertsPage from "./ui/alerts.js";

let me = null;
const ROLES = ["viewer", "operator", "admin"];
const rank = (role) => ROLES.indexOf(role);

function show(id) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== id;
  const top = $("top");
  top.hidden = !me || id === "login" || id === "password" || (id === "mfa" && me.mfa_required);
  if (top.hidden) text($("who"), "");
  top.classList.remove("open");
  $("nav-toggle").setAttribute("aria-expanded", "false");
  for (const a of document.querySelectorAll("header#top nav a")) {
    if (a.getAttribute("href") === "#" + id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  leave();
  if (id !== "tokens") hideTokenSecret(); // a secret is shown once, not kept on screen
}

/// Shows an admin page: for anyone else only "This page is for
/// administrators." and none of its forms or buttons. True for an admin.
function adminPage(id) {
  show(id);
  const admin = !!me && me.role === "admin";
  const sec = $(id);
  for (const f of sec.querySelectorAll(".forbidden")) f.hidden = admin;
  for (const a of sec.querySelectorAll(".admin-only")) a.hidden = !admin;
  return admin;
}

function loggedOut(message, kind) {
  me = null;
  session.me = null;
  sessionStorage.removeItem("csrf");
  text($("who"), "");
  $("tiles").replaceChildren();
  show("login");
  say($("login-msg"), kind || "info", message || "");
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
  if (!me) {
    show("login");
    return;
  }
  if (me.csrf_token) sessionStorage.setItem("csrf", me.csrf_token);
  text($("who"), me.actor.replace(/^user:/, "") + " (" + me.role + ")");
  for (const a of document.querySelectorAll("header#top nav a[data-role]")) a.hidden = rank(me.role) < rank(a.dataset.role);
  if (me.must_change_password) return show("password");
  if (me.mfa_required || page === "mfa") return mfa(me.mfa_required);
  // The navigation's count of open alerts (those two pages fetch it themselves).
  if (page !== "alerts" && page !== "dashboard") alertsPage.openCount().catch(() => {});
  try {
    if (page === "live") { show("live"); return await livePage.render(decodeURIComponent(arg || "")); }
    if (page === "playback") { show("playback"); return await playbackPage.render(decodeURIComponent(arg || "")); }
    if (page === "users") return adminPage("users") && await adminPages.users();
    if (page === "cameras") return adminPage("cameras") && await adminPages.cameras();
    if (page === "audit") return adminPage("audit") && await adminPages.audit();
    if (page === "alerts") { show("alerts"); return await alertsPage.render(decodeURIComponent(arg || "")); }
    if (page === "evidence") return await evidence();
    if (page === "tokens") return await tokens();
    if (page === "account") return account();
    show("dashboard");
    return await dashboardPage.render();
  } catch (e) {
    if (e.status === 401) return;
    // A page that failed to load says so on the page.
    const sec = document.querySelector("main > section:not([hidden])");
    const box = sec && sec.querySelector(".msg");
    if (box) say(box, "error", plainError(e), e);
  }
}

window.addEventListener("vigil:session-ended", () => {
  if (!me) return;
  loggedOut("Your session has ended: log in again.", "info");
});

// ---- header: the menu button on phones ----
$("nav-toggle").addEventListener("click", () => {
  const open = !$("top").classList.contains("open");
  $("top").classList.toggle("open", open);
  $("nav-toggle").setAttribute("aria-expanded", String(open));
});

// ---- login and password ----
$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = { name: f.get("name"), password: f.get("password") };
  if (f.get("totp")) body.totp = f.get("totp");
  say($("login-msg"), "info", "Logging in…");
  try {
    const r = await api("POST", "/api/v1/login", body);
    sessionStorage.setItem("csrf", r.csrf_token);
    ev.target.reset();
    say($("login-msg"), "ok", "");
    location.hash = "#dashboard";
    route();
  } catch (e) {
    const m = e.status === 401 ? "The name, password or code is not right." : plainError(e);
    say($("login-msg"), "error", m, e);
  }
});

/// The first-login change (#password-form) and the Account page's
/// (#account-form): the new password twice, checked here before sending.
async function changePassword(form, msg) {
  const f = new FormData(form);
  const next = f.get("new_password") || "";
  if (next.length < 12) return say(msg, "error", "The new password must have 12 characters or more.");
  if (next !== f.get("confirm_password")) return say(msg, "error", "The two new passwords are not the same.");
  if (next === f.get("old_password")) return say(msg, "error", "The new password must differ from the current one.");
  try {
    await api("POST", "/api/v1/me/password", { old_password: f.get("old_password"), new_password: next });
    form.reset();
    say(msg, "ok", "");
    // The server ends the sessions: log in again with the new password.
    loggedOut("Password changed: log in with the new one.", "ok");
  } catch (e) {
    if (e.status === 401) return;
    const m = e.status === 403 ? "The current password is not right." : plainError(e);
    say(msg, "error", m, e);
  }
}
$("password-form").addEventListener("submit", (ev) => { ev.preventDefault(); changePassword(ev.target, $("password-msg")); });
$("account-form").addEventListener("submit", (ev) => { ev.preventDefault(); changePassword(ev.target, $("account-msg")); });

function account() {
  show("account");
  say($("account-msg"), "ok", "");
  text($("account-who"), "You are logged in as " + me.actor.replace(/^user:/, "") + ", role " + me.role + ".");
  text($("account-mfa"), me.mfa ? "A second factor is enrolled: a code from your authenticator app is asked at each login."
    : "No second factor is enrolled.");
}

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/api/v1/logout"); } catch (e) { /* already out */ }
  hideTokenSecret();
  loggedOut("");
});

// ---- second factor enrolment ----
function mfa(required) {
  show("mfa");
  say($("mfa-msg"), "ok", "");
  text($("mfa-why"), required
    ? "An administrator must sign in with a second factor. Scan the code with an authenticator app (any TOTP app), then enter the 6-digit code it shows."
    : (me.mfa ? "A second factor is enrolled. Enrolling again replaces it." : "Add a second factor: an authenticator app on your phone gives a 6-digit code at each login."));
}

$("mfa-start").addEventListener("click", async () => {
  try {
    // Replacing an enrolled second factor needs the current password.
    const r = await api("POST", "/api/v1/me/mfa", me.mfa ? { password: prompt("Your current password") || "" } : undefined);
    const svg = new DOMParser().parseFromString(r.qr_svg, "image/svg+xml").documentElement;
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "QR code for your authenticator app");
    $("mfa-qr").replaceChildren(document.importNode(svg, true));
    text($("mfa-uri"), r.otpauth_uri);
    $("mfa-form").hidden = false;
    say($("mfa-msg"), "ok", "");
  } catch (e) {
    say($("mfa-msg"), "error", e.status === 403 ? "The current password is not right." : plainError(e), e);
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
    $("mfa-form").hidden = true;
    location.hash = "#dashboard";
    route();
  } catch (e) {
    const m = /code/i.test(e.message) ? "That code is not right: check the phone's clock and try the next code." : plainError(e);
    say($("mfa-msg"), "error", m, e);
  }
});

// ---- evidence: legal holds and exports ----
/// An RFC 3339 time from the server as local date and time (no ms).
const when = (s) => (s ? fmtDateTime(Date.parse(s)) || s : "");

async function evidence() {
  show("evidence");
  say($("evidence-msg"), "ok", "");
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
    cell(tr, when(h.placed));
    cell(tr, h.placed_by);
    const td = document.createElement("td");
    if (me.role === "admin") {
      const b = text(Object.assign(document.createElement("button"), { type: "button" }), "Release");
      b.addEventListener("click", async () => {
        const reason = prompt("Why is hold " + h.id + " released?");
        if (!reason) return;
        try { await api("POST", "/api/v1/holds/" + h.id + "/release", { reason }); evidence(); }
        catch (e) { say($("evidence-msg"), "error", plainError(e), e); }
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
    cell(tr, when(x.created));
    cell(tr, x.operator);
    cell(tr, x.cameras.join(", "));
    cell(tr, when(x.start) + " – " + when(x.end));
    cell(tr, (x.bytes / 1048576).toFixed(1) + " MiB");
    cell(tr, x.sha256);
    tr.lastChild.className = "long";
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
        catch (e) { say($("evidence-msg"), "error", plainError(e), e); }
      });
      td.appendChild(b);
    } else {
      td.appendChild(text(document.createElement("span"), " held"));
    }
    tr.appendChild(td);
    rows.appendChild(tr);
  }
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
  try { list = await api("GET", "/api/v1/tokens"); } catch (e) { say($("token-msg"), "error", plainError(e), e); return; }
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
    cell(tr, when(t.created));
    cell(tr, t.expires ? when(t.expires) : "never");
    cell(tr, t.last_used ? when(t.last_used) : "never");
    const state = t.revoked ? "revoked " + when(t.revoked)
      : !t.owner || !t.expires ? "does not work"
      : Date.parse(t.expires) <= now ? "expired" : "live";
    cell(tr, state);
    const td = document.createElement("td");
    if (!t.revoked) {
      const b = text(Object.assign(document.createElement("button"), { type: "button" }), "Revoke");
      b.addEventListener("click", async () => {
        if (!confirm("Revoke the token \"" + t.name + "\"? Anything using it stops working at once.")) return;
        try { await api("DELETE", "/api/v1/tokens/" + encodeURIComponent(t.name)); tokens(); }
        catch (e) { say($("token-msg"), "error", plainError(e), e); }
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
  say($("token-msg"), "ok", "");
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
    say($("token-msg"), "error", plainError(e), e);
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

window.addEventListener("hashchange", route);
route();
