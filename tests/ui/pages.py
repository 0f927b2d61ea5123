"""The DOM contract of issue 15 (/tmp/tasks/contract.md, kept in the UI) as
the suite reads it: selectors and the JavaScript expressions that inspect
the page. One place to change if the contract changes."""
import json

# Pages the axe-core run visits (hash -> section id), admin's view.
PAGES = ["dashboard", "live", "playback", "alerts", "evidence", "cameras", "users", "audit", "account", "tokens"]
ADMIN_ONLY = ["users", "cameras", "audit"]

# The submit button of a form: <button type=submit>, <input type=submit> or
# a <button> without a type (which submits).
SUBMIT = ("js:(() => {{ const f = document.querySelector('{form}'); return f && "
          "(f.querySelector('button[type=submit], input[type=submit]') || f.querySelector('button:not([type])')); }})()")

SHOWN_JS = """(el) => { if (!el) return false; const s = getComputedStyle(el);
    if (s.display === 'none' || s.visibility === 'hidden') return false;
    const b = el.getBoundingClientRect(); return b.width > 0 && b.height > 0 && !el.closest('[hidden]'); }"""


def visible(selector):
    return f"({SHOWN_JS})(document.querySelector({json.dumps(selector)}))"


def section_shown(sec):
    return f"({SHOWN_JS})(document.querySelector('main > section#' + {json.dumps(sec)}))"


# header#top and #who as a logged-out person sees them.
HEADER_STATE = """(() => { const h = document.querySelector('header#top'); const w = document.getElementById('who');
    if (!h) return {displayed: false, height: 0, hiddenAttr: null, who: w ? w.textContent.trim() : ''};
    const b = h.getBoundingClientRect();
    return {displayed: getComputedStyle(h).display !== 'none' && b.height > 0, height: b.height,
            hiddenAttr: h.hidden, who: w ? w.textContent.trim() : ''}; })()"""

# The visible nav links: [{text, href}].
NAV_LINKS = f"""(() => Array.from(document.querySelectorAll('header#top nav a'))
    .filter(a => ({SHOWN_JS})(a) || a.closest('nav') && !a.hidden && !a.closest('[hidden]') && getComputedStyle(a).display !== 'none')
    .map(a => ({{text: a.textContent.trim(), href: a.getAttribute('href') || ''}})))()"""

# What a non-admin must not see on an admin page: visible controls.
ADMIN_CONTROLS = f"""((sec) => {{ const s = document.querySelector('main > section#' + sec);
    const shown = {SHOWN_JS};
    return {{forbidden: Array.from(s.querySelectorAll('p.forbidden')).filter(shown).map(p => p.textContent.trim()),
             controls: Array.from(s.querySelectorAll('form, button, input, select, textarea')).filter(shown)
               .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.getAttribute('name') ? '[name=' + e.getAttribute('name') + ']' : '')
                         + ' ' + (e.textContent || e.value || '').trim().slice(0, 30))}}; }})"""

# The live grid: one entry per .cam-tile.
LIVE_TILES = """(() => Array.from(document.querySelectorAll('#live .grid .cam-tile')).map(t => {
    const v = t.querySelector('video'); const lat = t.querySelector('.latency');
    const labels = Array.from(t.querySelectorAll('button[aria-label]')).map(b => b.getAttribute('aria-label'));
    return {camera: t.dataset.camera, mode: t.dataset.mode, videos: t.querySelectorAll('video').length,
            t: v ? v.currentTime : null, ready: v ? v.readyState : null,
            error: v && v.error ? v.error.message || String(v.error.code) : null,
            latency: lat ? lat.textContent.trim() : null, labels,
            text: t.textContent.trim().replace(/\\s+/g, ' ').slice(0, 160)}; }))()"""

HEVC_SUPPORTED = ("typeof MediaSource !== 'undefined' && "
                  "MediaSource.isTypeSupported('video/mp4; codecs=\"hvc1.1.6.L93.B0\"')")

# The timeline's window and rectangle, and the bars of one camera.
TIMELINE = """((cam) => { const tl = document.getElementById('timeline'); if (!tl) return null;
    const r = tl.getBoundingClientRect();
    const row = tl.querySelector('.tl-row[data-camera="' + cam + '"]');
    const segs = row ? Array.from(row.querySelectorAll('.tl-seg')).map(s => { const b = s.getBoundingClientRect();
        return {left: b.left, right: b.right, top: b.top, bottom: b.bottom}; }) : null;
    const rb = row ? row.getBoundingClientRect() : null;
    return {start: Number(tl.dataset.startMs), end: Number(tl.dataset.endMs), left: r.left, width: r.width,
            top: r.top, height: r.height, rowTop: rb ? rb.top : null, rowBottom: rb ? rb.bottom : null,
            rows: Array.from(tl.querySelectorAll('.tl-row')).map(x => x.dataset.camera), segs}; })"""

PLAYER = """(() => { const v = document.getElementById('pb-video'); const c = document.getElementById('pb-clock');
    return v ? {wall: v.hasAttribute('data-wall-ms') ? Number(v.getAttribute('data-wall-ms')) : null,
                t: v.currentTime, ready: v.readyState, paused: v.paused, seeking: v.seeking,
                error: v.error ? (v.error.message || String(v.error.code)) : null, src: v.currentSrc,
                clock: c ? c.textContent.trim() : null} : null; })()"""

# canvas#tl-thumb: shown and drawn on (its opaque pixels have more than one colour:
# a cleared or filled canvas has at most one).
THUMB = """(() => { const c = document.getElementById('tl-thumb'); if (!c) return {exists: false};
    const s = getComputedStyle(c); const b = c.getBoundingClientRect();
    const shown = s.display !== 'none' && s.visibility !== 'hidden' && b.width > 0 && !c.closest('[hidden]');
    let colours = 0;
    try { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; const seen = new Set();
          for (let i = 0; i < d.length && seen.size < 50; i += 4 * 7) if (d[i + 3] > 0) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
          colours = seen.size; } catch (e) { return {exists: true, shown, error: String(e)}; }
    return {exists: true, shown, colours, width: c.width, height: c.height}; })()"""

# Phone layout: page overflow, header height, table headers broken letter by letter.
PHONE_LAYOUT = """(() => { const h = document.querySelector('header#top');
    const shown = (el) => { const b = el.getBoundingClientRect(); return b.width > 0 && b.height > 0 && !el.closest('[hidden]'); };
    const broken = Array.from(document.querySelectorAll('main th')).filter(shown).filter(th => {
        const s = getComputedStyle(th); let lh = parseFloat(s.lineHeight);
        if (!(lh > 0)) lh = parseFloat(s.fontSize) * 1.2;
        const pad = parseFloat(s.paddingTop) + parseFloat(s.paddingBottom) + parseFloat(s.borderTopWidth) + parseFloat(s.borderBottomWidth);
        return th.getBoundingClientRect().height - pad >= 2 * lh; }).map(th => th.textContent.trim());
    // What sticks out on the right: the innermost elements (or their text) past the screen's edge.
    const w = document.documentElement.clientWidth;
    const clipped = (el) => { for (let a = el.parentElement; a && a !== document.body; a = a.parentElement)
        if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(a).overflowX)) return true; return false; };
    const right = (el) => { const b = el.getBoundingClientRect(); return Math.max(b.right, b.left + el.scrollWidth); };
    const wide = Array.from(document.querySelectorAll('body *')).filter(el => shown(el) && !clipped(el)
        && right(el) > w + 1 && !Array.from(el.children).some(c => shown(c) && right(c) > w + 1))
        .slice(0, 4).map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : '')
            + ' (' + Math.round(right(el)) + ' px: ' + JSON.stringify(el.textContent.trim().slice(0, 40)) + ')');
    return {scrollWidth: document.documentElement.scrollWidth, header: h ? h.getBoundingClientRect().height : 0, broken, wide}; })()"""

# The UI's own dialog element, if it uses one instead of confirm().
OPEN_DIALOG = f"""(() => {{ const d = Array.from(document.querySelectorAll('dialog[open], [role=dialog], [role=alertdialog]'))
    .filter({SHOWN_JS}); return d.length ? d[0].textContent.trim().replace(/\\s+/g, ' ').slice(0, 200) : null; }})()"""


def button_by_text(scope, pattern):
    """A JS target for the first displayed button/submit in `scope` whose
    text (or value/aria-label) matches the regular expression `pattern`."""
    return (f"js:Array.from(document.querySelectorAll({json.dumps(scope + ' button, ' + scope + ' input[type=submit]')}))"
            f".find(b => ({SHOWN_JS})(b) && new RegExp({json.dumps(pattern)}, 'i')"
            f".test((b.textContent || b.value || b.getAttribute('aria-label') || '').trim()))")


def click_timeline(pg, camera, lo, hi):
    """Clicks the row of `camera` on #timeline at an instant within [lo, hi]
    (epoch ms), as a person would with the keyboard and the mouse: pan (arrow
    keys) until the range is in the middle half of the window, zoom in
    (#tl-zoom-in) until a pixel is under a second, then click the middle of
    the range on a whole pixel. Returns (x, y, the instant clicked in ms)."""
    tl = TIMELINE + f"({json.dumps(camera)})"
    x = last = None
    pg.js("document.getElementById('timeline').focus(), true")
    for _ in range(80):
        w = pg.js(tl)
        size = w["end"] - w["start"]
        per_px = size / w["width"]
        mid = (lo + hi) / 2
        if per_px < 1000 and w["start"] < lo and hi < w["end"]:
            x = round(w["left"] + (mid - w["start"]) / per_px)
            break
        stuck = last == (w["start"], w["end"])  # a pan against the day's edge moves nothing
        last = (w["start"], w["end"])
        if mid < w["start"] + size / 4 and not stuck:
            pg.key("ArrowLeft", vk=37)
        elif mid > w["end"] - size / 4 and not stuck:
            pg.key("ArrowRight", vk=39)
        else:
            last = None
            pg.click("#tl-zoom-in")
            pg.js("document.getElementById('timeline').focus(), true")
        pg.pump(0.15)
    w = pg.js(tl)
    if x is None:
        raise AssertionError(f"could not bring it into the #timeline window at under 1 s a pixel with the arrow keys "
                             f"and #tl-zoom-in (window {w['start']}..{w['end']} over {w['width']:.0f} px)")
    clicked = w["start"] + (x - w["left"]) * (w["end"] - w["start"]) / w["width"]
    y = (w["rowTop"] + w["rowBottom"]) / 2 if w["rowTop"] is not None else w["top"] + w["height"] / 2
    pg.click_xy(x, y)
    return x, y, clicked


def wait_value(get, good, pg, limit):
    """Asks get() until good(answer), at most `limit` seconds while pumping
    the browser's events; returns the last answer."""
    import time
    end = time.monotonic() + limit
    v = get()
    while not good(v) and time.monotonic() < end:
        pg.pump(0.25)
        v = get()
    return v
