// Vigil web UI: the Alerts page. Open alerts first, then recent (cleared)
// ones, each with its severity, what happened, the camera and since when
// in local time; for admins each alert's deliveries per channel, then the
// channels (where defined, counts, last sent, last error) and the editor of
// the channels added here (a kind select that shows only that kind's fields,
// a write-only secret, Save, Send test, Remove). Also the open-alert count
// of the navigation and the dashboard.
"use strict";

import { $, api, text, cell, session, onLeave, say, plainError, fmtDateTime, fmtAge, zoneName, parseCameraSet, button } from "./common.js";

const REFRESH_MS = 10000;
const path = (name) => encodeURIComponent(name);
const isAdmin = () => !!session.me && session.me.role === "admin";
const when = (s) => (s ? fmtDateTime(Date.parse(s)) || s : "");
const whenAgo = (s) => (s ? when(s) + " (" + fmtAge(Date.parse(s)) + ")" : "");

const SEVERITY_WORDS = { critical: "Critical", warning: "Warning", info: "Info" };
const KIND_WORDS = { webhook: "Webhook", mqtt: "MQTT", twilio: "SMS (Twilio)", email: "Email" };
const SECRET_WORDS = {
  webhook: "Signing key (HMAC secret)",
  mqtt: "Broker password",
  twilio: "Twilio auth token",
  email: "SMTP password",
};

let timer = null;
let visit = 0;

// ================= the open-alert count (navigation, dashboard) =================

/// Shows `n` open alerts on the navigation's Alerts link (nothing for 0).
export function showOpenCount(n) {
  const badge = $("nav-alerts-count");
  if (!badge) return;
  badge.replaceChildren();
  badge.hidden = !(n > 0);
  if (n > 0) {
    badge.appendChild(document.createTextNode(String(n)));
    badge.appendChild(text(Object.assign(document.createElement("span"), { className: "sr-only" }), " open"));
  }
}

/// The number of open alerts the caller may see (also shown on the
/// navigation), or null when the box does not say (an older box, an error).
export async function openCount() {
  try {
    const r = await api("GET", "/api/v1/alerts");
    const n = r && Array.isArray(r.open) ? r.open.length : null;
    showOpenCount(n || 0);
    return n;
  } catch (e) {
    if (e.status === 401) throw e;
    showOpenCount(0);
    return null;
  }
}

// ================= the page =================

export async function render(arg) {
  const mine = ++visit;
  clearTimeout(timer);
  onLeave(() => { clearTimeout(timer); visit++; });
  text($("alerts-zone"), "Times are in " + zoneName() + ".");
  const admin = isAdmin();
  $("alerts-admin").hidden = !admin;
  say($("alerts-msg"), "ok", "");
  if (admin) {
    resetForm();
    say($("channel-msg"), "ok", "");
  }
  await refresh(mine, admin);
  if (admin && arg) {
    const ch = channels.find((c) => c.name === arg);
    if (ch && ch.source !== "config") editChannel(ch);
  }
}

async function refresh(mine, admin) {
  try {
    const [list, chans] = await Promise.all([
      api("GET", "/api/v1/alerts?all=1"),
      admin ? api("GET", "/api/v1/alerts/channels") : Promise.resolve(null),
    ]);
    if (mine !== visit) return;
    const open = (list && list.open) || [];
    // Recent lists the newest alerts, open ones too: those are shown once, above.
    const openIds = new Set(open.map((a) => a.id));
    const recent = ((list && list.recent) || []).filter((a) => !openIds.has(a.id));
    showOpenCount(open.length);
    alertList($("alerts-open"), open, "No open alerts: everything is working.", false);
    alertList($("alerts-recent"), recent, "No recent alerts that are cleared.", true);
    // The table is left alone while a button in it has the focus.
    if (admin && !$("channel-rows").contains(document.activeElement)) channelRows(chans || []);
  } catch (e) {
    if (mine !== visit || e.status === 401) return;
    say($("alerts-msg"), "error", "The alerts could not be loaded. " + plainError(e), e);
  }
  if (mine === visit) timer = setTimeout(() => refresh(mine, admin), REFRESH_MS);
}

// ---- the alerts ----
function alertList(ul, alerts, empty, cleared) {
  ul.replaceChildren();
  if (!alerts.length) {
    ul.appendChild(text(Object.assign(document.createElement("li"), { className: "muted empty" }), empty));
    return;
  }
  for (const a of alerts) ul.appendChild(alertItem(a, cleared));
}

function alertItem(a, cleared) {
  const li = document.createElement("li");
  const sev = SEVERITY_WORDS[a.severity] ? a.severity : "info";
  li.className = "alert-item sev-" + sev;
  li.dataset.id = String(a.id);
  li.dataset.code = a.code || "";
  const head = document.createElement("p");
  head.className = "alert-head";
  head.appendChild(text(Object.assign(document.createElement("span"), { className: "badge sev-" + sev }), SEVERITY_WORDS[sev]));
  head.appendChild(text(Object.assign(document.createElement("strong"), { className: "alert-what" }), a.message || a.code || ""));
  li.appendChild(head);
  const facts = [];
  const about = a.subject && !["box", a.code, a.camera].includes(a.subject) ? "about " + a.subject : "";
  facts.push(a.camera ? "Camera " + a.camera : "The whole box" + (about ? ", " + about : ""));
  facts.push("since " + whenAgo(a.first_seen));
  if (cleared && a.cleared) facts.push("cleared " + when(a.cleared));
  if (a.occurrences > 1) facts.push(a.occurrences + " times" + (a.last_seen ? ", last " + when(a.last_seen) : ""));
  li.appendChild(text(Object.assign(document.createElement("p"), { className: "alert-facts" }), facts.join(" · ")));
  const code = text(Object.assign(document.createElement("p"), { className: "alert-code muted" }), a.code || "");
  li.appendChild(code);
  if (Array.isArray(a.deliveries)) li.appendChild(deliveries(a.deliveries));
  return li;
}

/// Deliveries in words: "ops: raised, sent 12:01:05".
function deliveries(list) {
  const ul = Object.assign(document.createElement("ul"), { className: "deliveries" });
  ul.setAttribute("aria-label", "Deliveries");
  if (!list.length) {
    ul.appendChild(text(Object.assign(document.createElement("li"), { className: "muted" }), "Not sent to any channel."));
    return ul;
  }
  for (const d of list) {
    const li = document.createElement("li");
    li.className = "delivery " + (d.state || "");
    li.appendChild(text(document.createElement("strong"), d.channel + ": "));
    li.appendChild(document.createTextNode(deliveryWords(d)));
    ul.appendChild(li);
  }
  return ul;
}

function deliveryWords(d) {
  const what = d.type === "resolved" ? "resolved message " : d.type === "raised" ? "alert " : "";
  const tries = d.attempts > 0 ? " (" + d.attempts + (d.attempts === 1 ? " attempt" : " attempts") + ")" : "";
  const error = d.last_error ? ": " + d.last_error : "";
  switch (d.state) {
    case "sent": return what + "sent" + (d.sent_at ? " " + when(d.sent_at) : "");
    case "pending": return what + "waiting to be sent" + tries + error;
    case "held": return what + "held for a digest";
    case "digesting": return what + "going out in a digest";
    case "failed": return what + "failed" + tries + error;
    default: return what + (d.state || "unknown") + error;
  }
}

// ================= channels (admin) =================
let channels = [];

function channelRows(list) {
  channels = list;
  const rows = $("channel-rows");
  rows.replaceChildren();
  const msg = $("channel-msg");
  if (!list.length) {
    const tr = document.createElement("tr");
    cell(tr, "No channels yet: add one below, or in vigil.toml.");
    tr.firstChild.colSpan = 8;
    rows.appendChild(tr);
    return;
  }
  for (const c of list) {
    const tr = document.createElement("tr");
    tr.dataset.channel = c.name;
    cell(tr, c.name);
    tr.lastChild.className = "nowrap";
    cell(tr, KIND_WORDS[c.kind] || c.kind);
    cell(tr, c.source === "config" ? "configuration file" : "added here");
    cell(tr, c.min_severity || "");
    cell(tr, (c.delivered || 0) + " delivered, " + (c.pending || 0) + " waiting"
      + (c.pending && c.oldest_pending_seconds ? " (oldest " + age(c.oldest_pending_seconds) + ")" : "")
      + ", " + (c.held || 0) + " held for a digest, " + (c.failed || 0) + " failed");
    cell(tr, c.last_sent ? when(c.last_sent) : "never");
    tr.lastChild.className = "nowrap";
    cell(tr, c.last_error || "");
    tr.lastChild.className = "long";
    const td = document.createElement("td");
    const acts = Object.assign(document.createElement("div"), { className: "actions" });
    const add = (label, fn, cls) => { const b = button(label, fn, cls); b.setAttribute("aria-label", label + " " + c.name); acts.appendChild(b); return b; };
    const testBtn = add("Send test", () => sendTest(c.name, msg, testBtn));
    if (c.source === "config") {
      acts.appendChild(text(Object.assign(document.createElement("span"), { className: "muted" }), "defined in the configuration file"));
    } else {
      add("Edit", () => editChannel(c));
      add("Remove", () => removeChannel(c.name, msg), "danger");
    }
    td.appendChild(acts);
    tr.appendChild(td);
    rows.appendChild(tr);
  }
}

function age(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return Math.round(seconds / 3600) + " h";
}

/// A transport's error in words (what to check), the raw text in Details.
function sendErrorWords(raw) {
  const s = String(raw || "");
  if (/connection refused|os error 111/i.test(s)) return "The receiver did not answer (connection refused). Check the address and port, and that it is running.";
  if (/timed out|timeout|no answer within/i.test(s)) return "The receiver did not answer in time. Check the address and the network.";
  if (/no route to host|unreachable|os error 113|os error 101/i.test(s)) return "The receiver cannot be reached on the network. Check the address.";
  if (/dns|resolve|lookup|name or service not known/i.test(s)) return "The receiver's name could not be looked up (DNS). Check the address.";
  if (/certificate|tls|handshake/i.test(s)) return "The secure connection failed (TLS certificate). Check the address; a private certificate authority is set in vigil.toml (ca_file).";
  if (/\b401\b|\b403\b|unauthori[sz]ed|forbidden|refused the login|authenticat/i.test(s)) return "The receiver refused the credentials. Check the user name and the secret.";
  if (/no secret|secret .*(missing|not set)/i.test(s)) return "The channel's secret is not set. Enter it and save.";
  return "The message was not delivered: " + s;
}

async function sendTest(name, out, btn) {
  say(out, "info", "Sending a test message through " + name + "…");
  if (btn) btn.disabled = true;
  try {
    const r = await api("POST", "/api/v1/alerts/channels/" + path(name) + "/test");
    if (r && r.ok) {
      say(out, "ok", "Test message sent through " + name + " in " + r.ms + " ms" + (r.key ? " (reference " + String(r.key).slice(-8) + ")." : "."));
    } else {
      const raw = (r && r.error) || "no reason given";
      say(out, "error", "The test through " + name + " failed. " + sendErrorWords(raw), { message: raw });
    }
  } catch (e) {
    say(out, "error", "The test through " + name + " failed. " + plainError(e), e);
  } finally {
    if (btn) btn.disabled = false;
  }
  reloadChannels();
}

function removeChannel(name, out) {
  if (!confirm("Remove channel " + name + "? Messages it has not delivered are dropped.")) return;
  (async () => {
    try {
      await api("DELETE", "/api/v1/alerts/channels/" + path(name));
      if (form.editing.value === name) resetForm();
      say(out, "ok", name + " removed.");
    } catch (e) {
      say(out, "error", plainError(e), e);
    }
    reloadChannels();
  })();
}

async function reloadChannels() {
  try { channelRows(await api("GET", "/api/v1/alerts/channels")); } catch (e) { /* the next refresh says it */ }
}

// ---- the editor ----
const form = $("channel-form");
const hiddenEditing = Object.assign(document.createElement("input"), { type: "hidden", name: "editing", value: "" });
form.appendChild(hiddenEditing);

/// Shows the fields of the chosen kind only; the others are disabled, so
/// the form neither checks nor sends them.
function showKind(kind) {
  for (const fs of form.querySelectorAll("fieldset.kind")) {
    const on = fs.dataset.kind === kind;
    fs.hidden = !on;
    fs.disabled = !on;
  }
  // Webhooks sign with it and Twilio logs in with it: a new one needs it.
  const needed = !form.editing.value && (kind === "webhook" || kind === "twilio");
  form.secret_value.required = needed;
  text($("channel-secret-label"), (SECRET_WORDS[kind] || "Secret")
    + (form.editing.value ? " (leave empty to keep the stored one)" : needed ? "" : " (optional)"));
}

$("channel-kind").addEventListener("change", (ev) => showKind(ev.target.value));

function resetForm() {
  form.reset();
  form.editing.value = "";
  form.name.readOnly = false;
  showKind(form.kind.value);
  text($("channel-form-title"), "Add a channel");
  text($("channel-save"), "Add");
  for (const id of ["channel-test", "channel-remove", "channel-cancel"]) $(id).hidden = true;
  say($("channel-test-result"), "ok", "");
}

function editChannel(c, quiet) {
  resetForm();
  form.editing.value = c.name;
  form.name.value = c.name;
  form.name.readOnly = true;
  form.kind.value = c.kind;
  showKind(c.kind);
  const s = Object.assign({}, c.settings || {});
  for (const k of ["min_severity", "rate_limit", "rate_window_seconds", "cameras"]) if (s[k] === undefined && c[k] !== undefined) s[k] = c[k];
  const fs = form.querySelector('fieldset.kind[data-kind="' + c.kind + '"]');
  const fields = Array.from(fs ? fs.elements : []).concat(Array.from(form.querySelectorAll("details [name]")));
  for (const el of fields) {
    const v = s[el.name];
    if (v === undefined || v === null) continue;
    if (el.type === "checkbox") el.checked = v === true;
    else if (Array.isArray(v)) el.value = v.join(", ");
    else el.value = String(v);
  }
  if (Array.isArray(s.cameras) && !s.cameras.length) form.cameras.value = "";
  // The secret is never filled back: left empty, the stored one stays.
  form.secret_value.value = "";
  form.secret_value.placeholder = c.has_secret ? "a secret is stored" : "none stored";
  text($("channel-form-title"), "Change " + c.name);
  text($("channel-save"), "Save");
  for (const id of ["channel-test", "channel-remove", "channel-cancel"]) $(id).hidden = false;
  if (quiet) return;
  form.scrollIntoView({ block: "start" });
  form.kind.focus();
}

/// The PUT body: the fields of the chosen kind, the common ones, and the
/// secret only when one was typed.
function formBody() {
  const kind = form.kind.value;
  const body = { kind };
  const fs = form.querySelector('fieldset.kind[data-kind="' + kind + '"]');
  for (const el of fs ? fs.elements : []) {
    if (!el.name) continue;
    if (el.type === "checkbox") { body[el.name] = el.checked; continue; }
    const v = el.value.trim();
    if (v === "") continue;
    if (el.name === "smtp_port") body.smtp_port = Number(v);
    else if (el.name === "to" && kind === "email") body.to = v.split(",").map((x) => x.trim()).filter((x) => x);
    else body[el.name] = v;
  }
  body.min_severity = form.min_severity.value;
  body.rate_limit = Number(form.rate_limit.value);
  body.rate_window_seconds = Number(form.rate_window_seconds.value);
  const cams = parseCameraSet(form.cameras.value);
  body.cameras = cams === null ? [] : cams;
  if (form.secret_value.value) body.secret_value = form.secret_value.value;
  return body;
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const msg = $("channel-msg");
  const name = (form.editing.value || form.name.value || "").trim();
  const adding = !form.editing.value;
  if (adding && channels.some((c) => c.name === name)) {
    return say($("channel-test-result"), "error", "There is already a channel called " + name + ": choose another name, or Edit it in the table.");
  }
  const body = formBody();
  try {
    await api("PUT", "/api/v1/alerts/channels/" + path(name), body);
    // Nothing typed stays on the page, the secret least of all: the form
    // shows the stored channel, ready for Send test.
    resetForm();
    say(msg, "ok", "");
    await reloadChannels();
    const saved = channels.find((c) => c.name === name);
    if (saved) editChannel(saved, true);
    say($("channel-test-result"), "ok", name + (adding ? " added" : " saved") + ". Use Send test to check that messages arrive.");
  } catch (e) {
    const m = e.status === 409 ? name + " is defined in the configuration file: change it there. " + (e.message || "")
      : plainError(e);
    say($("channel-test-result"), "error", m, e);
  }
});

$("channel-cancel").addEventListener("click", resetForm);
$("channel-test").addEventListener("click", (ev) => {
  if (form.editing.value) sendTest(form.editing.value, $("channel-test-result"), ev.currentTarget);
});
$("channel-remove").addEventListener("click", () => {
  if (form.editing.value) removeChannel(form.editing.value, $("channel-msg"));
});
