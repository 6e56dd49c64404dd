"""The Jinja2 templates and the stylesheet of the report pages (rendered with autoescape)."""

from __future__ import annotations

CSS = """
:root { --fg: #1d1d1f; --muted: #666; --line: #e3e3e3; --good: #1a7f37; --bad: #b42318;
        --warn-bg: #fff6e0; --warn: #8a5a00; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; }
header h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
.sub, .note { color: var(--muted); font-size: .9rem; }
nav { margin: .75rem 0 1.25rem; font-size: .9rem; }
nav a { color: var(--accent); margin-right: 1rem; text-decoration: none; }
section { background: white; border: 1px solid var(--line); border-radius: 8px;
          padding: 1rem 1.25rem; margin: 0 0 1.25rem; overflow-x: auto; }
section h2 { font-size: 1.2rem; margin: 0 0 .75rem; }
h3 { font-size: 1rem; margin: 1.25rem 0 .5rem; }
.answer { font-size: 1.35rem; font-weight: 600; margin: .25rem 0 .5rem; }
.answer.win { color: var(--good); } .answer.loss { color: var(--bad); }
.warn { background: var(--warn-bg); color: var(--warn); border-radius: 6px;
        padding: .5rem .75rem; margin: .5rem 0; list-style: none; }
.message { color: var(--muted); font-style: italic; }
td.decision { font-weight: 600; } tr.reading td { color: var(--muted); padding-top: 0; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }  /* numbers stay whole; their headers may wrap */
code, pre { font: .85rem/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: .75rem;
      overflow-x: auto; }
.figure { margin: .75rem 0; min-height: 120px; }
.yes { color: var(--good); font-weight: 600; }
"""

_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>{{ css }}</style>
{% if plotlyjs %}<script>{{ plotlyjs }}</script>{% endif %}
</head>
"""

_MACROS = """
{% macro figure(f) %}<div class="figure" id="{{ f.id }}">{{ f.html }}</div>{% endmacro %}
{% macro message(text) %}{% if text %}<p class="message">{{ text }}</p>{% endif %}{% endmacro %}
{% macro mean_ci(ci, digits, sign=false) %}{{ ci_text(ci, digits, sign=sign) }}{% endmacro %}
{% macro interval(ci, digits) %}{% if ci is none or ci.low is none %}–{% else -%}
[{{ signed(ci.low, digits) }}, {{ signed(ci.high, digits) }}]{{ cut if ci.truncated }}{% endif %}
{%- endmacro %}
{% macro interval_notes(any_cut, units) %}
{%- if any_cut %}<p class="note">{{ cut }} The Student-t interval reached
past what the metric can be (an accuracy lies in 0–100 points, a difference of two in ±100, a
loss at or above 0) and is shown cut there; the cut interval covers the true value whenever
the uncut one does.</p>{% endif %}
{%- if units %}<p class="note">No interval below 3 replicates (with 2, the Student t has one
degree of freedom): each search's own value is shown instead, and no comparison is decided on
them.</p>{% endif %}{% endmacro %}
"""

REPORT = (
    _HEAD
    + _MACROS
    + """
<body>
<main>
<header>
<h1>Did dynamic L2 beat an equally well tuned fixed λ?</h1>
<p class="sub">Experiment <code>{{ d.experiment }}</code> · report generated {{ d.generated }}
 · test metric: {{ v.metric }}{% if v.unit %} ({{ v.unit }}){% endif %},
 {{ "higher" if v.higher_is_better else "lower" }} is better</p>
</header>
<nav>{% for id, name in sections %}<a href="#{{ id }}">{{ name }}</a>{% endfor %}</nav>

<section id="verdict">
<h2>Verdict</h2>
<p class="answer {{ answer_class }}">{{ v.sentence }}</p>
<p>{{ v.basis }}</p>
{% for w in v.warnings %}<p class="warn">⚠ {{ w }}</p>{% endfor %}
<table>
<tr><th>arm</th><th>scheme</th><th class="num">{{ v.metric }} mean ± 95% CI</th>
<th class="num">{{ "seeds" if v.replicates == 1 else "runs" }}</th><th class="num">failed</th></tr>
{% for a in v.arms %}
<tr><td>{{ a.arm }}</td><td>{{ a.scheme }}</td><td class="num">{{ a.text(digits) }}</td>
<td class="num">{{ a.runs|length }}</td><td class="num">{{ a.n_failed }}</td></tr>
{% endfor %}
</table>
{% if v.comparisons %}
<h3>Every arm against {{ v.fixed_arm }}, paired by {{ "seed" if v.replicates == 1 else
 "replicate and seed (interval over the replicates' means)" }}</h3>
<table>
<tr><th>arm − {{ v.fixed_arm }}</th>
<th class="num">paired {{ "seeds" if v.replicates == 1 else "runs" }}</th>
<th class="num">difference ± 95% CI</th><th class="num">95% CI</th>
<th class="num">P(better) [95% CI]</th><th class="num">p</th>
<th class="num">Cohen's d<sub>z</sub></th><th>decision</th></tr>
{% for c in v.comparisons %}
{% set dd = v.decisions[loop.index0] if v.decisions else none %}
<tr><td>{{ c.arm }}</td><td class="num">{{ c.n_pairs }}</td>
<td class="num">{{ mean_ci(c.diff, digits, true) }}
{%- set own = v.replicate_differences[loop.index0] if v.replicate_differences else () %}
{%- if c.diff and c.diff.low is none and own %} {{ units_text(own, digits, sign=true) }}
{%- endif %}</td>
<td class="num">{{ interval(c.diff, digits) }}</td>
<td class="num">{% if dd and dd.prob_better %}{{ "%.0f%%"|format(100 * dd.prob_better.mean) }}
{%- if dd.prob_better.low is not none %} [{{ "%.0f"|format(100 * dd.prob_better.low) }},
 {{ "%.0f"|format(100 * dd.prob_better.high) }}]{% endif %}{% else %}–{% endif %}</td>
<td class="num">{{ pval(c.p_value) }}</td><td class="num">{{ num(c.cohen_dz, 2) }}</td>
<td class="decision">{{ dd.decision if dd else "–" }}</td></tr>
<tr class="reading"><td></td><td colspan="7">{{ v.comparison_sentences[loop.index0] }}</td></tr>
{% endfor %}
</table>
{{ interval_notes(any_cut, too_few) }}
<p class="note">Decision: better or worse when the 95% interval excludes 0; equivalent when,
with a margin ({% if v.margin %}±{{ "%g"|format(v.margin) }}{% else %}none set:
<code>[evaluate] margin</code>{% endif %}), the 90% interval lies inside it (two one-sided
tests); inconclusive otherwise. P(better): the share of paired runs the arm won, the chance
it beats {{ v.fixed_arm }} on a fresh search and seed.</p>
{% endif %}
{% for f in figs.verdict %}{{ figure(f) }}{% endfor %}
</section>

<section id="setup">
<h2>Setup</h2>
<table>
<tr><th>data</th><td>{{ kv(s.data) }}</td></tr>
<tr><th>model</th><td>{{ kv(s.model) }}</td></tr>
<tr><th>training</th><td>{{ kv(s.train) }}</td></tr>
<tr><th>search</th><td>sampler {{ s.sampler }}, pruner {{ s.pruner }}, metric {{ s.metric }},
 {{ s.n_trials }} trials per searched arm{% if s.replicates > 1 %} in each of
 {{ s.replicates }} independent searches (replicates){% endif %}</td></tr>
<tr><th>evaluation</th><td>{{ s.seeds }} seeds per arm{% if s.replicates > 1 %} and
 replicate{% endif %}, test split</td></tr>
<tr><th>report host</th><td>{{ kv(s.hardware) }}</td></tr>
<tr><th>versions</th><td>{{ kv(s.versions) }}</td></tr>
</table>
<table>
<tr><th>arm</th><th>scheme</th><th>settings</th><th>search space</th><th class="num">budget</th>
<th class="num">trials</th><th>device</th><th class="num">compute (s)</th></tr>
{% for a in s.arms %}
<tr><td>{{ a.arm }}</td><td>{{ a.scheme }}</td><td>{{ kv(a.settings) or "–" }}
{%- if a.reading %}<br><span class="note">{{ a.reading }}</span>{% endif %}</td>
<td>{% for sp in a.spaces %}{{ sp.name }} ∈ [{{ g(sp.low) }}, {{ g(sp.high) }}]
{%- if sp.log %} log{% endif %}{% if sp.step %} step {{ sp.step }}{% endif %}
{%- if not loop.last %}<br>{% endif %}
{%- else %}nothing searched{% endfor %}</td>
<td class="num">{{ a.budget }}</td><td class="num">{{ a.trials }}</td>
<td>{{ a.devices|join(", ") or "–" }}</td>
<td class="num"
 title="trials {{ num(a.trial_seconds, 1) }} s + evaluation {{ num(a.eval_seconds, 1) }} s">
{{ num(a.compute_seconds, 1) }}</td></tr>
{% endfor %}
</table>
<h3>Reproduce</h3>
<p>Save the config below as <code>{{ d.experiment }}.toml</code> and run
<code>{{ s.command }}</code>.</p>
{% if s.reproducibility %}<p>{{ s.reproducibility }}</p>{% endif %}
<pre>{{ s.config_toml }}</pre>
</section>

<section id="search">
<h2>Search</h2>
{% if search.arms %}
<table>
<tr><th>arm</th>{% for st in states %}<th class="num">{{ st }}</th>{% endfor %}</tr>
{% for a in search.arms %}
<tr><td>{{ a.arm }}</td>
{%- for st in states %}<td class="num">{{ a.counts.get(st, 0) }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% endif %}
{{ message(search.message) }}
{% for f in figs.search %}{{ figure(f) }}{% endfor %}
{% if search.budget_sentence %}<p>{{ search.budget_sentence }} (Expected best of n trials drawn
 from each search's results without replacement; pruned and diverged trials count toward n but
 are never the best.)</p>{% endif %}
{% set failures = search.arms|selectattr("failures")|list %}
{% if failures %}
<h3>Failed trials</h3>
<table><tr><th>arm</th><th class="num">trial</th><th>reason</th></tr>
{% for a in failures %}{% for fl in a.failures %}
<tr><td>{{ a.arm }}</td><td class="num">{{ fl.number }}</td><td>{{ fl.reason }}</td></tr>
{% endfor %}{% endfor %}
</table>
{% endif %}
</section>

<section id="sensitivity">
<h2>Sensitivity</h2>
{{ message(sens.message) }}
{% if sens.arms %}
<table>
<tr><th>arm</th><th class="num">complete trials</th><th class="num">near the best</th>
<th>parameter importance</th></tr>
{% for a in sens.arms %}
<tr><td>{{ a.arm }}</td><td class="num">{{ a.n_complete }}</td>
<td class="num" title="within {{ a.near_best_tolerance }} of the arm's best">
{{ pct(a.near_best_share) }}</td>
<td>{% for name, value in a.importances %}{{ name }} {{ num(value, 2) }}
{%- if not loop.last %}, {% endif %}
{%- endfor %} <span class="note">({{ a.importance_note }})</span></td></tr>
{% endfor %}
</table>
<p class="note">"Near the best": the share of an arm's complete trials whose validation metric
is within {{ sens.arms[0].near_best_tolerance }} of that arm's best; a high share means the arm
is easy to tune.</p>
{% endif %}
{% for f in figs.sensitivity %}{{ figure(f) }}{% endfor %}
</section>

<section id="dynamics">
<h2>Training dynamics of each arm's best trial</h2>
{{ message(dyn.message) }}
{% if dyn.arms %}<p class="note">{% for a in dyn.arms %}{{ a.arm }}: trial {{ a.number }}
 ({{ search.metric }} {{ g(a.value, 4) }}){% if not loop.last %} · {% endif %}{% endfor %}</p>
{%- endif %}
{% for f in figs.dynamics %}{{ figure(f) }}{% endfor %}
</section>

<section id="tables">
<h2>Tables</h2>
{{ message(t.message) }}
{% if t.top_trials %}
<h3>Top {{ top_n }} trials per arm</h3>
<table>
<tr><th>arm</th><th class="num">trial</th><th class="num">{{ search.metric }}</th><th>params</th>
<th class="num">best epoch</th><th class="num">duration (s)</th></tr>
{% for r in t.top_trials %}
<tr><td>{{ r.arm }}</td><td class="num">{{ r.number }}</td><td class="num">{{ g(r.value, 4) }}</td>
<td>{{ kv(r.params) }}</td>
<td class="num">{{ r.best_epoch if r.best_epoch is not none else "–" }}</td>
<td class="num">{{ num(r.duration_s, 2) }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% if t.evaluations %}
<h3>Every evaluation seed</h3>
<table>
<tr><th>arm</th><th class="num">seed</th>
<th class="num">{{ v.metric }}{% if v.unit %} ({{ v.unit }}){% endif %}</th>
<th class="num">test_loss</th><th class="num">seconds</th></tr>
{% for r in t.evaluations %}
<tr><td>{{ r.arm }}</td><td class="num">{{ r.seed }}</td>
<td class="num">{{ num(r.metric, digits) }}</td>
<td class="num">{{ num(r.test_loss, 4) }}</td><td class="num">{{ num(r.seconds, 2) }}</td></tr>
{% endfor %}
</table>
{% endif %}
</section>
</main>
</body>
</html>
"""
)

COMPARE = (
    _HEAD
    + _MACROS
    + """
<body>
<main>
<header>
<h1>Did dynamic L2 beat an equally well tuned fixed λ? — {{ rows|length }} experiments</h1>
<p class="sub">One row per experiment: dynamic − fixed on the test split, paired by seed.</p>
</header>
<section id="verdict">
<h2>Verdicts</h2>
{% if not rows %}<p class="message">No experiments given.</p>{% endif %}
<table>
<tr><th>experiment</th><th>metric</th><th class="num">dynamic</th><th class="num">fixed</th>
<th class="num">difference ± 95% CI</th><th class="num">p</th><th class="num">d<sub>z</sub></th>
<th class="num">seeds</th><th>verdict</th></tr>
{% for r in rows %}
<tr><td>{{ r.experiment }}</td><td>{{ r.metric }}{% if r.unit %} ({{ r.unit }}){% endif %}</td>
<td class="num">{{ mean_ci(r.dynamic, r.digits) }}</td>
<td class="num">{{ mean_ci(r.fixed, r.digits) }}</td>
<td class="num">{{ mean_ci(r.main.diff if r.main else none, r.digits, true) }}</td>
<td class="num">{{ pval(r.main.p_value if r.main else none) }}</td>
<td class="num">{{ num(r.main.cohen_dz if r.main else none, 2) }}</td>
<td class="num">{{ r.main.n_pairs if r.main else 0 }}</td>
<td>{{ r.sentence }}
{%- for w in r.warnings %}<br><span class="note">⚠ {{ w }}</span>{% endfor %}</td></tr>
{% endfor %}
</table>
</section>
</main>
</body>
</html>
"""
)
