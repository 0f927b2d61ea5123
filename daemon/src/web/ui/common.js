// Vigil web UI, shared helpers: the API client, DOM helpers, messages,
// time and size formatting, and the page lifecycle (a page's cleanup runs
// when the user navigates away). Plain JavaScript modules, served by the box
// itself; nothing is fetched from elsewhere.
"use strict";

export const $ = (id) => document.getElementById(id);

/// Who is logged in (the answer of GET /api/v1/me), or null.
export const session = { me: null };

export async function api(method, path, body) {
  const headers = {};
  const csrf = sessionStorage.getItem("csrf");
  if (csrf) headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.error) || r.statusText);
    err.status = r.status;
    throw err;
  }
  return data;
}

export function text(el, s) { el.textContent = s; return el; }
export function cell(tr, s) { tr.appendChild(text(document.createElement("td"), s)); }

// Cleanups of the page on screen (stop streams, timers): run on navigation.
let leaving = [];
export function onLeave(f) { leaving.push(f); }
export function leave() {
  const fs = leaving;
  leaving = [];
  for (const f of fs) { try { f(); } catch (e) { /* a cleanup must not stop navigation */ } }
}
