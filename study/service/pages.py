"""The pages of ``dynl2 serve``: Jinja2 templates (autoescaped: every name, value and message
from the store or the request is text, never markup) and the one script they load, which
keeps an experiment's page current by polling its JSON.

The pages use no inline script (the server's Content-Security-Policy allows scripts from
itself only); a stored report is shown in a sandboxed frame from ``/reports/ID``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2

__all__ = ["LIVE_JS", "render_page"]

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}dynl2{% endblock %}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header.top { background: #1f2937; color: #fff; padding: .6em 1.2em; }
header.top a { color: #fff; text-decoration: none; font-weight: 600; }
header.top .store { color: #cbd5e1; margin-left: 1em; font-size: 12px; }
main { padding: 1em 1.2em; max-width: 1200px; }
table { border-collapse: collapse; background: #fff; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f1f5f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.params { font-size: 0.9em; font-variant-numeric: tabular-nums; white-space: nowrap; }
.verdict { background: #fff; border-left: 4px solid #2563eb; padding: .5em .8em; }
.muted { color: #666; }
.error { border-left: 4px solid #b91c1c; background: #fff; padding: .5em .8em; }
iframe.report { width: 100%; height: 900px; border: 1px solid #ddd; background: #fff; }
nav.pages a, nav.pages span { margin-right: 1em; }
code { background: #f1f5f9; padding: 0 .2em; }
</style>
{% block head %}{% endblock %}
</head><body{% block body_attrs %}{% endblock %}>
<header class="top"><a href="/">dynl2</a><span class="store">{{ store }}</span></header>
<main>{% block main %}{% endblock %}</main>
</body></html>
"""

_EXPERIMENTS = """{% extends "base" %}
{% block title %}dynl2 · experiments{% endblock %}
{% block main %}
<h1>Experiments</h1>
{% if not experiments %}<p class="muted">No experiments in this store yet.</p>{% else %}
<table id="experiments">
<tr><th>experiment</th><th>created</th><th>state</th><th>arms (trials / budget)</th>
<th>replicates</th><th>evaluation runs</th><th>verdict</th></tr>
{% for e in experiments %}
{% if e.unreadable %}
<tr data-experiment="{{ e.name }}" class="unreadable">
<td>{{ e.name }}</td><td>{{ e.created }}</td><td>unreadable</td>
<td colspan="4" class="error">{{ e.unreadable }}</td>
</tr>
{% else %}
<tr data-experiment="{{ e.name }}">
<td><a href="/experiments/{{ e.name|urlencode }}">{{ e.name }}</a></td>
<td>{{ e.created }}</td><td>{{ e.state }}</td>
<td>{% for a in e.arms %}{{ a.arm }} {% if a.budget %}{{ a.results }}/{{ a.budget }}
{%- else %}(evaluated only){% endif %}{% if not loop.last %}<br>{% endif %}{% endfor %}</td>
<td class="num">{{ e.replicates }}</td>
<td class="num">{{ e.evaluations }}/{{ e.planned }}</td>
<td>{% if e.verdict %}{{ e.verdict }}{% else %}<span class="muted">no report yet</span>
{%- endif %}</td>
</tr>
{% endif %}
{% endfor %}
</table>
{% endif %}
<p class="muted">JSON: <a href="/api/experiments">/api/experiments</a></p>
{% endblock %}
"""

_EXPERIMENT = """{% extends "base" %}
{% block title %}dynl2 · {{ e.name }}{% endblock %}
{% block head %}<script src="/static/live.js" defer></script>{% endblock %}
{% block body_attrs %} data-experiment="{{ e.name }}"{% endblock %}
{% block main %}
<h1>{{ e.name }}</h1>
<p>State: <strong id="state">{{ e.state }}</strong> ·
 trials <span id="results">{{ e.results }}</span>/{{ e.budget }} ·
 evaluation runs <span id="evaluations">{{ e.evaluations }}</span>/{{ e.planned }} ·
 metric {{ e.metric }} ({{ e.direction }}) · created {{ e.created }}
 <span id="live" class="muted"></span></p>
<p class="verdict" id="verdict">{% if e.verdict %}{{ e.verdict }}{% else %}No report stored
 yet: the verdict appears when one is made (<code>dynl2 report {{ e.name }}</code>).{% endif %}</p>
<h2>Searches</h2>
<table id="searches">
<tr><th>search</th><th>trials / budget</th><th>complete</th><th>pruned</th><th>diverged</th>
<th>lost</th><th>running</th><th>queued</th><th>best</th><th>best parameters</th></tr>
{% for s in e.searches %}
<tr data-search="{{ s.search }}">
<td>{{ s.search }}</td><td class="num" data-field="results">{{ s.results }}/{{ s.budget }}</td>
{% for f in ["complete", "pruned", "diverged", "lost", "running", "waiting"] %}
<td class="num" data-field="{{ f }}">{{ s[f] }}</td>{% endfor %}
<td class="num" data-field="best">{{ "–" if s.best is none else "%.4f"|format(s.best) }}</td>
<td data-field="best_params" class="params">{% if s.best_params_text is none %}–{% else %}
{%- for line in s.best_params_text %}<div>{{ line }}</div>{% endfor %}{% endif %}</td>
</tr>
{% endfor %}
</table>
<h2>Evaluation</h2>
<table id="evaluation">
<tr><th>arm</th><th>runs</th><th>diverged</th>
<th>{{ e.evaluation[0].metric if e.evaluation else "test" }}
{%- if e.evaluation and e.evaluation[0].unit %} ({{ e.evaluation[0].unit }}){% endif %}: mean ±
 95% CI, as the report gives it</th></tr>
{% for a in e.evaluation %}
<tr data-arm="{{ a.arm }}"><td>{{ a.arm }}</td><td class="num">{{ a.runs }}</td>
<td class="num">{{ a.diverged }}</td>
<td class="num" data-field="result">{{ "–" if a.mean is none else a.text }}</td></tr>
{% endfor %}
</table>
{% if e.evaluation|selectattr("truncated")|list %}<p class="muted">† the interval is cut at what
 the metric can be.</p>{% endif %}
<p><a href="/experiments/{{ e.name|urlencode }}/trials">Trials</a> ·
 JSON: <a href="/api/experiments/{{ e.name|urlencode }}">status</a>,
 <a href="/api/experiments/{{ e.name|urlencode }}/trials?format=json">trials</a> ·
 <a href="/api/experiments/{{ e.name|urlencode }}/trials?format=csv">trials CSV</a></p>
<h2>Reports</h2>
{% if e.reports %}
<ul id="reports">{% for r in e.reports %}
<li><a href="/reports/{{ r.id }}">report {{ r.id }}</a> · {{ r.created }}
{%- if r.provisional %} · provisional{% endif %}</li>{% endfor %}</ul>
<iframe class="report" title="newest report" sandbox="allow-scripts"
 src="/reports/{{ e.reports[0].id }}"></iframe>
{% else %}<p class="muted">None stored yet.</p>{% endif %}
{% endblock %}
"""

_TRIALS = """{% extends "base" %}
{% block title %}dynl2 · {{ name }} · trials{% endblock %}
{% block main %}
<h1><a href="/experiments/{{ name|urlencode }}">{{ name }}</a> · trials</h1>
<p>{{ total }} trial{{ "" if total == 1 else "s" }}{% if arm %} of arm {{ arm }}{% endif %};
 showing {{ first }}–{{ last }}.
 Download: <a href="{{ links.csv }}">CSV</a> · <a href="{{ links.json }}">JSON</a></p>
<nav class="pages">{% if links.prev %}<a href="{{ links.prev }}">← previous</a>{% endif %}
{% if links.next %}<a href="{{ links.next }}">next →</a>{% endif %}</nav>
<table id="trials">
<tr>{% for c in columns %}<th><a href="{{ sort_links[c] }}">{{ c }}</a>
{%- if c == sort %} {{ "▲" if order == "asc" else "▼" }}{% endif %}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% endblock %}
"""

_ERROR = """{% extends "base" %}
{% block title %}dynl2 · {{ status }}{% endblock %}
{% block main %}
<h1>{{ status }} {{ reason }}</h1>
<p class="error">{{ message }}</p>
<p><a href="/">All experiments</a></p>
{% endblock %}
"""

_ENV = jinja2.Environment(
    loader=jinja2.DictLoader(
        {
            "base": _BASE,
            "experiments": _EXPERIMENTS,
            "experiment": _EXPERIMENT,
            "trials": _TRIALS,
            "error": _ERROR,
        }
    ),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render_page(name: str, context: Mapping[str, Any]) -> str:
    """Page ``name`` (experiments, experiment, trials, error) with ``context``."""
    return _ENV.get_template(name).render(**context)


# Polls the experiment's JSON every few seconds while it runs and writes what changed into
# the page as text (textContent: nothing from the store is ever parsed as HTML).
LIVE_JS = """'use strict';
(function () {
  const name = document.body.dataset.experiment;
  if (!name) return;
  const url = '/api/experiments/' + encodeURIComponent(name);
  const fixed = (x) => (x === null ? '–' : x.toFixed(4));
  const set = (el, text) => { if (el && el.textContent !== text) el.textContent = text; };
  let timer = null;
  async function poll() {
    let e;
    try {
      const response = await fetch(url, {headers: {Accept: 'application/json'}});
      if (!response.ok) throw new Error('HTTP ' + response.status);
      e = await response.json();
    } catch (err) {
      set(document.getElementById('live'), '· not updating: ' + err.message);
      return;
    }
    document.body.dataset.polled = String(Number(document.body.dataset.polled || 0) + 1);
    set(document.getElementById('state'), e.state);
    set(document.getElementById('results'), String(e.results));
    set(document.getElementById('evaluations'), String(e.evaluations));
    if (e.verdict) set(document.getElementById('verdict'), e.verdict);
    for (const s of e.searches) {
      const row = document.querySelector('tr[data-search="' + CSS.escape(s.search) + '"]');
      if (!row) continue;
      const cell = (f) => row.querySelector('[data-field="' + f + '"]');
      set(cell('results'), s.results + '/' + s.budget);
      for (const f of ['complete', 'pruned', 'diverged', 'lost', 'running', 'waiting']) {
        set(cell(f), String(s[f]));
      }
      set(cell('best'), fixed(s.best));
      const params = cell('best_params');
      const lines = s.best_params_text === null ? ['–'] : s.best_params_text;
      if (params && params.dataset.lines !== JSON.stringify(lines)) {
        params.dataset.lines = JSON.stringify(lines);
        params.replaceChildren(...lines.map((line) => {
          const div = document.createElement('div');
          div.textContent = line;
          return div;
        }));
      }
    }
    const busy = e.state !== 'done' || e.searches.some((s) => s.running + s.waiting > 0);
    set(document.getElementById('live'), busy ? '· live' : '');
    if (!busy && timer !== null) { clearInterval(timer); timer = null; }
  }
  timer = setInterval(poll, 3000);
  poll();
})();
"""
