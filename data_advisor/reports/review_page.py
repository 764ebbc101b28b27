"""``review.html``: label the prompts of ``review.jsonl`` one at a time, by keyboard, offline from ``file://``.

Why a page and not a spreadsheet: a reviewer should see one prompt, the audit's suggestion already selected, and
press one key.  The page is self-contained (no network, no external file) and the **Download labels** button saves
the JSONL byte for byte as ``review`` wrote it, ``label`` filled in: the page carries each original line and only
replaces its final ``null`` (``label`` is the last key), so ``audit --labels`` reads the download exactly like a file
edited by hand.

Safety: prompts and anchor names are hostile text.  They travel as JSON in a ``<script type="application/json">``
block with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped (:func:`~data_advisor.reports._page.script_json`), are
shown only through ``textContent``, and a Content-Security-Policy lets only the page's own (nonce-bearing) script
run, so even a mistake in escaping could not execute a prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from data_advisor.reports._page import FONT_STACK, esc, script_json

#: Keys for the choices, in anchor order; ``n`` is reserved for "none".  Anchors past these are chosen by click.
CHOICE_KEYS = "1234567890abcdefghijklmopqrstuvwxyz"
#: The final characters of every review line: the page replaces the ``null``.
LABEL_TAIL = '"label": null}'

_CSS = """
*{box-sizing:border-box}body{margin:0;font-family:%(font)s;color:#212529;background:#f8f9fa}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #dee2e6;padding:10px 20px;display:flex;
gap:16px;align-items:center;flex-wrap:wrap;z-index:1}
h1{font-size:17px;margin:0 12px 0 0}#progress{font-size:14px;color:#495057}
.bar{flex:1;min-width:120px;height:8px;background:#e9ecef;border-radius:4px;overflow:hidden}
.bar>div{height:100%%;background:#2f9e44;width:0}
button{font:inherit;cursor:pointer}
#download{background:#1c7ed6;color:#fff;border:0;border-radius:6px;padding:8px 14px;font-weight:600}
main{max-width:980px;margin:18px auto;padding:0 20px}
.meta{font-size:13px;color:#495057;margin-bottom:6px;display:flex;gap:14px;flex-wrap:wrap}
.why{font-weight:600}.why.random{color:#5f3dc4}.why.informative{color:#c2255c}
#prompt{background:#fff;border:1px solid #ced4da;border-radius:8px;padding:16px;white-space:pre-wrap;
overflow-wrap:anywhere;font-size:16px;max-height:45vh;overflow:auto}
#state{margin:10px 0;font-size:14px}
#choices{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:6px;margin-top:8px}
.choice{display:flex;gap:10px;align-items:center;text-align:left;background:#fff;border:1px solid #ced4da;
border-radius:6px;padding:7px 10px}
.choice kbd{min-width:24px;text-align:center;font-family:ui-monospace,monospace;background:#f1f3f5;
border:1px solid #adb5bd;border-radius:4px;padding:1px 5px}
.choice .aid{color:#868e96;font-size:12px;margin-left:auto}
.choice.suggested{border:2px dashed #f59f00}.choice.chosen{background:#d3f9d8;border:2px solid #2f9e44}
.help{font-size:13px;color:#495057;margin-top:14px;line-height:1.6}
.help kbd{font-family:ui-monospace,monospace;background:#f1f3f5;border:1px solid #adb5bd;border-radius:4px;padding:0 4px}
nav{display:flex;gap:8px;margin-top:12px}nav button{background:#fff;border:1px solid #ced4da;border-radius:6px;padding:6px 12px}
"""

_JS = r"""
(function () {
  'use strict';
  var DATA = JSON.parse(document.getElementById('review-data').textContent);
  var KEYS = DATA.keys, TAIL = DATA.tail, rows = DATA.rows, choices = DATA.choices;
  var STORE = 'data-advisor-review:' + DATA.token;
  var labels = rows.map(function () { return null; });
  var valid = {};
  choices.forEach(function (c) { valid[c.id] = true; });
  valid.none = true;
  try {  // labels survive a reload (same page, same browser); a damaged entry is ignored
    var saved = JSON.parse(window.localStorage.getItem(STORE) || 'null');
    if (saved && saved.length === rows.length) {
      labels = saved.map(function (v) { return typeof v === 'string' && valid[v] ? v : null; });
    }
  } catch (e) { /* storage unavailable: labels live in this tab only */ }
  var cur = labels.indexOf(null);
  if (cur < 0) cur = 0;
  var $ = function (id) { return document.getElementById(id); };
  var buttons = {};

  function save() {
    try { window.localStorage.setItem(STORE, JSON.stringify(labels)); } catch (e) { /* ignore */ }
  }
  function nameOf(id) {
    if (id === 'none') return 'none of these (benign or off-taxonomy)';
    for (var i = 0; i < choices.length; i++) if (choices[i].id === id) return choices[i].name;
    return id;
  }
  function makeChoice(id, name, key) {
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'choice';
    b.setAttribute('data-id', id);
    var k = document.createElement('kbd');
    k.textContent = key || '\u00a0';
    var s = document.createElement('span');
    s.textContent = name;
    var a = document.createElement('span');
    a.className = 'aid';
    a.textContent = id;
    b.appendChild(k); b.appendChild(s); b.appendChild(a);
    b.addEventListener('click', function () { choose(id); });
    $('choices').appendChild(b);
    buttons[id] = b;
  }
  choices.forEach(function (c, i) { makeChoice(c.id, c.name, i < KEYS.length ? KEYS.charAt(i) : ''); });
  makeChoice('none', 'none of these (benign or off-taxonomy)', 'n');

  function suggestion(i) { return rows[i].suggested === null ? 'none' : rows[i].suggested; }
  function render() {
    var r = rows[cur], done = labels.filter(function (v) { return v !== null; }).length;
    $('progress').textContent = 'prompt ' + (cur + 1) + ' of ' + rows.length + ' \u00b7 ' + done + ' labelled';
    $('bar').style.width = (100 * done / rows.length) + '%';
    $('why').textContent = r.why;
    $('why').className = 'why ' + (r.why === 'random' ? 'random' : 'informative');
    $('pid').textContent = 'id ' + r.id;
    $('margin').textContent = 'margin ' + r.margin;
    $('prompt').textContent = r.text;
    var sug = suggestion(cur), lab = labels[cur];
    $('state').textContent = lab === null
      ? 'suggested: ' + nameOf(sug) + ' \u2014 Enter or Space accepts it'
      : 'labelled: ' + nameOf(lab);
    Object.keys(buttons).forEach(function (id) {
      buttons[id].classList.toggle('suggested', id === sug && lab === null);
      buttons[id].classList.toggle('chosen', id === lab);
    });
    $('count').textContent = String(done);
  }
  function move(d) { cur = Math.max(0, Math.min(rows.length - 1, cur + d)); render(); }
  function choose(id) {
    labels[cur] = id;
    save();
    if (cur < rows.length - 1) cur += 1;
    render();
  }
  function jsonl() {
    return DATA.lines.map(function (line, i) {
      if (labels[i] === null) return line + '\n';
      return line.slice(0, line.length - 5) + JSON.stringify(labels[i]) + '}\n';
    }).join('');
  }
  function download() {
    var blob = new Blob([jsonl()], { type: 'application/x-ndjson' });
    var a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = DATA.filename;
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  window.reviewJsonl = jsonl;  // for tests and the console
  $('download').addEventListener('click', download);
  $('prev').addEventListener('click', function () { move(-1); });
  $('next').addEventListener('click', function () { move(1); });
  document.addEventListener('keydown', function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;  // leave browser shortcuts alone
    var k = ev.key;
    if (k === 'ArrowLeft' || k === 'ArrowUp') { move(-1); }
    else if (k === 'ArrowRight' || k === 'ArrowDown') { move(1); }
    else if (k === 'Enter' || k === ' ') { choose(suggestion(cur)); }
    else if (k === 'Backspace' || k === 'Delete') { labels[cur] = null; save(); render(); }
    else if (k === 'n' || k === 'N') { choose('none'); }
    else if (k.length === 1 && KEYS.indexOf(k.toLowerCase()) >= 0 && KEYS.indexOf(k.toLowerCase()) < choices.length) {
      choose(choices[KEYS.indexOf(k.toLowerCase())].id);
    } else { return; }
    ev.preventDefault();
  });
  render();
})();
"""


def render_review_page(lines: Sequence[str], rows: Sequence[dict[str, Any]], choices: Sequence[tuple[str, str]], *,
                       download_name: str = "review.jsonl", title: str = "Review") -> str:
    """The page for ``rows`` (dicts with id, text, suggested, margin, why) whose JSONL ``lines`` (same order) the
    download reproduces; ``choices`` are the leaf anchors as (id, name), in taxonomy order."""
    if len(lines) != len(rows):
        raise ValueError("one JSONL line per row")
    for line in lines:
        if not line.endswith(LABEL_TAIL):
            raise ValueError(f"a review line must end with {LABEL_TAIL!r}")
    data = {
        "rows": [{k: r[k] for k in ("id", "text", "suggested", "margin", "why")} for r in rows],
        "lines": list(lines),
        "choices": [{"id": cid, "name": name} for cid, name in choices],
        "keys": CHOICE_KEYS,
        "tail": LABEL_TAIL,
        "filename": download_name,
        "token": hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16],
    }
    nonce = hashlib.sha256(("nonce\n" + "\n".join(lines)).encode("utf-8")).hexdigest()[:24]
    n_keys = min(len(choices), len(CHOICE_KEYS))
    key_range = "" if not n_keys else f"<kbd>{esc(CHOICE_KEYS[0])}</kbd>–<kbd>{esc(CHOICE_KEYS[n_keys - 1])}</kbd>"
    by_click = (f" (anchors past the {len(CHOICE_KEYS)}th: click)" if len(choices) > len(CHOICE_KEYS) else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_CSS % {"font": FONT_STACK}}</style></head>
<body>
<header><h1>{esc(title)}</h1><span id="progress"></span><div class="bar"><div id="bar"></div></div>
<button type="button" id="download">Download labels (<span id="count">0</span>)</button></header>
<main>
<div class="meta"><span id="why" class="why"></span><span id="pid"></span><span id="margin"></span></div>
<div id="prompt"></div>
<div id="state"></div>
<div id="choices"></div>
<nav><button type="button" id="prev">← previous</button><button type="button" id="next">next →</button></nav>
<p class="help">{key_range} choose an anchor{by_click} · <kbd>n</kbd> none of these · <kbd>Enter</kbd> or
<kbd>Space</kbd> accept the suggested (dashed) one · <kbd>←</kbd> <kbd>→</kbd> move · <kbd>Backspace</kbd> clear.
Choosing moves to the next prompt. <b>Download labels</b> saves {esc(download_name)} with your labels (unlabelled
prompts keep <code>null</code> and are ignored); then run <code>data-advisor audit INPUT --labels {esc(download_name)}
</code>. Labels are kept in this browser if you reload. Prompts marked <i>random</i> measure accuracy: label them as
they are, without skipping.</p>
</main>
<script type="application/json" id="review-data">{script_json(data)}</script>
<script nonce="{nonce}">{_JS}</script>
</body></html>
"""
