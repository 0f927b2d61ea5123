// Vigil web UI: the administrators' pages: cameras (add after a test, edit,
// remove into an archive, delete an archive), users (role, password reset,
// enable/disable, delete, cameras) and the audit log (filters, older pages).
// The shell shows these pages' forms to admins only.
"use strict";

import { $, api, text, cell, session, say, plainError, fmtDateTime, fmtAge, zoneName, cameraSetText, parseCameraSet, button } from "./common.js";
import { bindOnvif } from "./onvif.js";

const when = (s) => (s ? fmtDateTime(Date.parse(s)) || s : "");
const path = (name) => encodeURIComponent(name);
const myName = () => (session.me ? session.me.actor.replace(/^user:/, "") : "");

// ================= cameras =================
const isArchived = (c) => c.archived === true || (c.archived === undefined && c.source === "archive");

export async function cameras() {
  bindOnvif(cameras);
  const rows = $("camera-rows");
  const arch = $("archived-rows");
  const list = await api("GET", "/api/v1/cameras");
  rows.replaceChildren();
  arch.replaceChildren();
  const msg = $("camera-msg");
  for (const c of list) {
    if (isArchived(c)) { arch.appendChild(archivedRow(c, msg)); continue; }
    const tr = document.createElement("tr");
    cell(tr, c.name);
    cell(tr, c.source === "vigil.toml" ? "vigil.toml" : "added here");
    cell(tr, c.state + (c.last_error && c.state !== "streaming" ? " (" + plainError({ message: c.last_error }) + ")" : ""));
    cell(tr, c.codec === "h265" ? "H.265" : c.codec === "h264" ? "H.264" : c.codec || "");
    cell(tr, c.url || "");
    tr.lastChild.className = "long";
    const td = document.createElement("td");
    const acts = Object.assign(document.createElement("div"), { className: "actions" });
    if (c.source === "web") {
      acts.appendChild(button("Edit", () => editCamera(c), null));
      acts.appendChild(button(c.enabled ? "Disable" : "Enable", () => act(msg, c.enabled ? c.name + " disabled." : c.name + " enabled.",
        () => api("PUT", "/api/v1/cameras/" + path(c.name), toggleBody(c)))));
      acts.appendChild(button("Remove", () => {
        if (!confirm("Remove the camera \"" + c.name + "\"?\n\nIt stops recording. Its recordings are kept as an archive: they stay in Playback, and you can delete them later with \"Delete archive\" (recordings under a legal hold are always kept).")) return;
        act(msg, c.name + " removed; its recordings are kept as an archive.", () => api("DELETE", "/api/v1/cameras/" + path(c.name)));
      }, "danger"));
    } else {
      acts.appendChild(text(Object.assign(document.createElement("span"), { className: "muted" }), "defined in vigil.toml"));
    }
    for (const b of acts.querySelectorAll("button")) b.setAttribute("aria-label", b.textContent + " " + c.name);
    td.appendChild(acts);
    tr.appendChild(td);
    rows.appendChild(tr);
  }
  $("archived-block").hidden = !arch.children.length;
  if (!rows.children.length) {
    const tr = document.createElement("tr");
    cell(tr, "No cameras yet: add one below.");
    tr.firstChild.colSpan = 6;
    rows.appendChild(tr);
  }
}

function archivedRow(c, msg) {
  const tr = document.createElement("tr");
  cell(tr, c.name);
  const last = c.last_recording && c.last_recording.end;
  cell(tr, last ? when(last) + " (" + fmtAge(Date.parse(last)) + ")" : "");
  const td = document.createElement("td");
  const b = button("Delete archive", async () => {
    if (!confirm("Delete the recordings of \"" + c.name + "\"?\n\nThis cannot be undone. Recordings under a legal hold are kept.")) return;
    try {
      const r = await api("DELETE", "/api/v1/cameras/" + path(c.name) + "/recordings");
      const kept = r && r.kept_on_hold ? "; " + r.kept_on_hold + " kept because of a legal hold" : "";
      say(msg, "ok", "Deleted " + ((r && r.deleted) || 0) + " recording(s) of " + c.name + kept + ".");
      await cameras();
    } catch (e) {
      say(msg, "error", plainError(e), e);
    }
  }, "danger");
  b.setAttribute("aria-label", "Delete archive of " + c.name);
  td.appendChild(b);
  tr.appendChild(td);
  return tr;
}

// Enable/Disable changes only `enabled`: the server keeps what a change
// leaves out (URL, user name, password).
function toggleBody(c) {
  return { enabled: !c.enabled };
}

async function act(msg, done, fn) {
  try {
    await fn();
    say(msg, "ok", done);
    await cameras();
  } catch (e) {
    say(msg, "error", plainError(e), e);
  }
}

// ---- the add / edit form: Add only after a passing test, or "Add anyway" ----
const form = $("camera-form");
let tested = null; // the settings of the last passing test (JSON), or null
let editingUrl = null; // the URL the edited camera had when the form opened

function formBody() {
  const f = new FormData(form);
  const body = { name: (f.get("name") || "").trim(), url: (f.get("url") || "").trim() };
  // Editing: the user name always goes ("" removes it); adding: only if given.
  if (f.get("username") || form.editing.value) body.username = f.get("username") || "";
  if (f.get("password")) body.password = f.get("password"); // blank: unchanged when editing
  return body;
}

const URL_EXAMPLE = "rtsp://192.0.2.10:554/stream1 or v4l2:///dev/video0";

function resetForm() {
  form.reset();
  form.editing.value = "";
  editingUrl = null;
  form.url.placeholder = URL_EXAMPLE;
  form.url.required = true;
  form.name.readOnly = false;
  tested = null;
  $("camera-anyway").hidden = true;
  $("camera-cancel").hidden = true;
  text($("camera-form-title"), "Add a camera");
  text($("camera-submit"), "Add");
  text($("camera-password-label"), "Password");
  say($("camera-test-result"), "ok", "");
}

function editCamera(c) {
  resetForm();
  form.editing.value = c.name;
  form.name.value = c.name;
  form.name.readOnly = true;
  // A URL holding a login is listed without it: the field starts empty
  // (left empty, the stored URL stays as it is; type the whole URL to change it).
  form.url.value = c.url_redacted ? "" : c.url || "";
  form.url.placeholder = c.url_redacted ? "unchanged: " + c.url + " (type the whole URL to change it)" : URL_EXAMPLE;
  form.url.required = !c.url_redacted;
  editingUrl = form.url.value;
  form.username.value = c.username || "";
  text($("camera-form-title"), "Change " + c.name);
  text($("camera-submit"), "Save");
  text($("camera-password-label"), "Password (leave blank to keep it)");
  $("camera-cancel").hidden = false;
  form.url.focus();
}

$("camera-cancel").addEventListener("click", resetForm);
// Changed settings need a new test.
form.addEventListener("input", (ev) => { if (ev.target.name !== "anyway") tested = null; });

async function runTest() {
  const out = $("camera-test-result");
  const body = formBody();
  say(out, "info", "Testing " + (body.url || "the camera") + "…");
  try {
    const r = await api("POST", "/api/v1/probe-camera", body);
    // A verdict only: the codec and size, or why not (no picture before the camera is added).
    if (!r.ok) {
      say(out, "error", "The test failed. " + plainError({ message: r.error }), { message: r.error });
      $("camera-anyway").hidden = form.editing.value !== "";
      return false;
    }
    say(out, "ok", "The camera answered: " + (r.codec || "").toUpperCase() + " " + r.width + "×" + r.height + ".");
    tested = JSON.stringify(body);
    return true;
  } catch (e) {
    say(out, "error", "The test failed. " + plainError(e), e);
    $("camera-anyway").hidden = form.editing.value !== "";
    return false;
  }
}

$("camera-test").addEventListener("click", () => runTest());

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const msg = $("camera-msg");
  const body = formBody();
  const editing = form.editing.value;
  if (!editing && tested !== JSON.stringify(body) && !form.anyway.checked) {
    // Not tested with these settings: test now; Add only if it passes.
    if (!(await runTest())) return;
  }
  try {
    if (editing) {
      delete body.name;
      // The URL only if it was changed here (unsent: the stored one stays
      // exactly as it is); `enabled` is never sent by the form (it stays).
      if (editingUrl !== null && form.url.value === editingUrl) delete body.url;
      await api("PUT", "/api/v1/cameras/" + path(editing), body);
      say(msg, "ok", editing + " saved; it restarts with the new settings.");
    } else {
      await api("POST", "/api/v1/cameras", body);
      say(msg, "ok", body.name + " added.");
    }
    resetForm();
    await cameras();
  } catch (e) {
    say(msg, "error", plainError(e), e);
  }
});

// ================= users =================
export async function users() {
  const rows = $("user-rows");
  const msg = $("user-msg");
  const list = await api("GET", "/api/v1/users");
  rows.replaceChildren();
  const me = myName();
  for (const u of list) {
    const self = u.name === me;
    const tr = document.createElement("tr");
    cell(tr, u.name + (self ? " (you)" : ""));
    const roleTd = document.createElement("td");
    if (self) {
      text(roleTd, u.role);
    } else {
      const sel = document.createElement("select");
      sel.setAttribute("aria-label", "Role of " + u.name);
      for (const r of ["viewer", "operator", "admin"]) sel.appendChild(Object.assign(document.createElement("option"), { value: r, textContent: r, selected: r === u.role }));
      // "change" fires at once on arrow keys: ask first, and put the old role back if not.
      sel.addEventListener("change", () => {
        const role = sel.value;
        if (!confirm("Make " + u.name + " " + (role === "admin" ? "an " : "a ") + role + " (now " + u.role + ")?")) {
          sel.value = u.role;
          return;
        }
        userAct(msg, u.name + " is now " + role + ".",
          () => api("POST", "/api/v1/users/" + path(u.name) + "/role", { role }));
      });
      roleTd.appendChild(sel);
    }
    tr.appendChild(roleTd);
    cell(tr, u.disabled ? "disabled" : u.must_change_password ? "must change password" : "active");
    cell(tr, u.mfa ? "yes" : "no");
    cell(tr, cameraSetText(u.cameras));
    const td = document.createElement("td");
    const acts = Object.assign(document.createElement("div"), { className: "actions" });
    const add = (label, fn, cls) => { const b = button(label, fn, cls); b.setAttribute("aria-label", label + " " + u.name); acts.appendChild(b); };
    if (!self) {
      add(u.disabled ? "Enable" : "Disable", () => userAct(msg, u.name + (u.disabled ? " enabled." : " disabled."),
        () => api("POST", "/api/v1/users/" + path(u.name) + "/" + (u.disabled ? "enable" : "disable"))));
    }
    add("Reset password", () => resetPassword(u, msg));
    if (u.mfa) add("Reset 2FA", () => {
      if (!confirm("Remove " + u.name + "'s second factor? They enrol again at their next login.")) return;
      userAct(msg, u.name + "'s second factor was removed.", () => api("POST", "/api/v1/users/" + path(u.name) + "/reset-mfa"));
    });
    add("Cameras…", () => {
      const answer = prompt("Cameras " + u.name + " may see: \"all\", or names separated by commas:", u.cameras === null ? "all" : u.cameras.join(","));
      if (answer === null) return;
      userAct(msg, u.name + "'s cameras were changed.", () => api("PUT", "/api/v1/users/" + path(u.name) + "/cameras", { cameras: parseCameraSet(answer) }));
    });
    if (!self) {
      add("Delete", () => {
        if (!confirm("Delete the user \"" + u.name + "\"? Their sessions end at once. The audit log keeps what they did.")) return;
        userAct(msg, u.name + " deleted.", () => api("DELETE", "/api/v1/users/" + path(u.name)));
      }, "danger");
    }
    td.appendChild(acts);
    tr.appendChild(td);
    rows.appendChild(tr);
  }
}

async function userAct(msg, done, fn) {
  try {
    await fn();
    say(msg, "ok", done);
  } catch (e) {
    // 409: the server's own sentence (the last admin rule, yourself).
    say(msg, "error", plainError(e), e);
  }
  try { await users(); } catch (e) { say(msg, "error", plainError(e), e); }
}

function resetPassword(u, msg) {
  const first = prompt("A one-time password for " + u.name + " (12 characters or more). They must change it at their next login, and their sessions end now.");
  if (first === null) return;
  if (first.length < 12) return say(msg, "error", "The password must have 12 characters or more.");
  const again = prompt("The same one-time password again:");
  if (again === null) return;
  if (again !== first) return say(msg, "error", "The two passwords are not the same: nothing was changed.");
  userAct(msg, u.name + "'s password was reset: give them the one-time password.",
    () => api("POST", "/api/v1/users/" + path(u.name) + "/password", { password: first }));
}

$("user-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const msg = $("user-msg");
  try {
    const body = { name: f.get("name"), role: f.get("role"), password: f.get("password") };
    const cams = parseCameraSet(f.get("cameras"));
    if (cams !== null) body.cameras = cams;
    await api("POST", "/api/v1/users", body);
    ev.target.reset();
    say(msg, "ok", body.name + " added: they must change the password at first login.");
    await users();
  } catch (e) {
    say(msg, "error", plainError(e), e);
  }
});

// ================= audit =================
let auditQuery = "";
let oldestId = null;

export async function audit() {
  text($("audit-zone"), "Times are in " + zoneName() + ", newest first.");
  say($("audit-result"), "ok", "");
  await loadAudit(false);
}

function auditFilter() {
  const f = new FormData($("audit-filter"));
  const q = new URLSearchParams();
  if (f.get("actor")) q.set("actor", f.get("actor").trim());
  if (f.get("action")) q.set("action", f.get("action").trim());
  // datetime-local is local time: sent as UTC RFC 3339.
  for (const k of ["since", "until"]) {
    const v = f.get(k);
    if (v) { const d = new Date(v); if (!isNaN(d)) q.set(k, d.toISOString().replace(/\.\d{3}Z$/, "Z")); }
  }
  return q;
}

async function loadAudit(older) {
  const rows = $("audit-rows");
  const msg = $("audit-msg");
  const q = new URLSearchParams(auditQuery);
  q.set("limit", "200");
  if (older && oldestId !== null) q.set("before", String(oldestId));
  try {
    let entries = await api("GET", "/api/v1/audit?" + q.toString());
    entries = entries.slice().sort((a, b) => b.id - a.id);
    if (!older) rows.replaceChildren();
    // An older server ignores the filters and "before": show only what is new.
    const seen = new Set(Array.from(rows.children).map((tr) => tr.dataset.id));
    let added = 0;
    for (const e of entries) {
      if (seen.has(String(e.id))) continue;
      const tr = document.createElement("tr");
      tr.dataset.id = String(e.id);
      cell(tr, String(e.id));
      cell(tr, when(e.time));
      tr.lastChild.className = "nowrap";
      for (const k of ["actor", "action", "target", "outcome"]) cell(tr, e[k] === null || e[k] === undefined ? "" : String(e[k]));
      cell(tr, e.detail === null || e.detail === undefined ? "" : String(e.detail));
      tr.lastChild.className = "long";
      rows.appendChild(tr);
      added++;
    }
    if (entries.length) {
      const min = Math.min(...entries.map((e) => e.id));
      oldestId = older && oldestId !== null ? Math.min(oldestId, min) : min;
    }
    // A full page may have more behind it.
    $("audit-older").hidden = entries.length < 200 || added === 0;
    if (!entries.length && !older) say(msg, "info", "No entries match.");
    else if (older && !added) say(msg, "info", "No older entries.");
    else say(msg, "ok", "");
  } catch (e) {
    say(msg, "error", plainError(e), e);
  }
}

$("audit-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  auditQuery = auditFilter().toString();
  oldestId = null;
  loadAudit(false);
});

$("audit-older").addEventListener("click", () => loadAudit(true));

$("audit-verify").addEventListener("click", async () => {
  const out = $("audit-result");
  try {
    const r = await api("GET", "/api/v1/audit/verify");
    if (r.intact) say(out, "ok", "The audit log is intact: " + r.entries + " entries.");
    else say(out, "error", "The audit log is BROKEN: " + r.problem);
  } catch (e) {
    say(out, "error", plainError(e), e);
  }
});
