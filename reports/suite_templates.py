"""The Jinja2 template of the suite report (rendered with autoescape, the experiment report's
stylesheet, head and macros)."""

from __future__ import annotations

from reports.templates import _HEAD, _MACROS

__all__ = ["SUITE", "SUITE_CSS", "SUITE_SECTIONS"]

SUITE_CSS = """
.no { color: var(--bad); font-weight: 600; }
.wide { overflow-x: auto; }
"""

SUITE_SECTIONS = (
    ("summary", "Summary"),
    ("forest", "Forest plot"),
    ("pooled", "Pooled"),
    ("when", "When"),
    ("experiments", "Experiments"),
)

SUITE = (
    _HEAD
    + _MACROS
    + """
{% macro ci(low, high, truncated=false) %}{% if low is none or high is none %}–{% else -%}
[{{ signed(low, digits) }}, {{ signed(high, digits) }}]{{ cut if truncated }}{% endif %}
{%- endmacro %}
{% macro reading(direction) %}{% if direction %}<span class="{{ "yes" if direction == "better"
 else "no" }}">{{ d.main_arm if direction == "better" else d.baseline }} better</span>
{%- else %}–{% endif %}{% endmacro %}
<body>
<main>
<header>
<h1>Suite <code>{{ d.name }}</code>: did {{ d.main_arm }} beat an equally well tuned
 {{ d.baseline }} λ?</h1>
<p class="sub">{{ d.entries|length }} experiment{{ "" if d.entries|length == 1 else "s" }}
 over {{ d.factors|join(", ") or "no factor" }}
{%- if d.generated %} · report generated {{ d.generated }}{% endif %}
 · differences: arm − {{ d.baseline }}{% if d.unit %} in {{ d.unit }}{% endif %},
 {{ "higher" if d.higher_is_better else "lower" }} is better</p>
</header>
<nav>{% for id, name in sections %}<a href="#{{ id }}">{{ name }}</a>{% endfor %}</nav>

<section id="summary">
<h2>What the suite says about {{ d.main_arm }}</h2>
<p class="answer {{ answer_class }}">{{ d.headline }}</p>
<p>{{ d.sentence }}</p>
<p class="note">Each experiment's difference is its mean over paired seeds (or replicate
 means) with a Student-t 95% interval; the pooled estimate is a DerSimonian–Laird
 random-effects mean with the modified Hartung–Knapp 95% interval (Student t on k − 1 degrees
 of freedom, never narrower than the normal one), so a handful of experiments, or seeds, cannot
 make it look surer than it is.</p>
{{ interval_notes(d.any_cut, false) }}
</section>

<section id="forest">
<h2>Forest plot: {{ d.main_arm }} − {{ d.baseline }}</h2>
{% if figs.forest %}{{ figure(figs.forest) }}{% else %}
<p class="message">No experiment has a {{ d.main_arm }} − {{ d.baseline }} difference yet.</p>
{% endif %}
</section>

<section id="pooled">
<h2>Pooled estimates, every arm against {{ d.baseline }}</h2>
<table>
<tr><th>arm − {{ d.baseline }}</th><th class="num">pooled (k)</th><th class="num">not pooled</th>
<th class="num">mean</th><th class="num">95% CI</th><th class="num">p</th>
<th class="num">τ²</th><th class="num">I²</th><th>reading</th></tr>
{% for a in d.arms %}{% set p = a.pooled %}
<tr><td>{{ a.arm }}</td><td class="num">{{ p.k if p else 0 }}</td>
<td class="num">{{ a.rows|rejectattr("pooled")|list|length }}</td>
{% if p %}<td class="num">{{ signed(p.mean, digits) }}</td>
<td class="num">{{ ci(p.low, p.high, p.truncated) }}</td><td class="num">{{ pval(p.p_value) }}</td>
<td class="num">{{ g(p.tau2) }}</td><td class="num">{{ pct(p.i2) }}</td>
{% else %}<td class="num">–</td><td class="num">–</td><td class="num">–</td>
<td class="num">–</td><td class="num">–</td>{% endif %}
<td>{{ a.decision }}{% if a.direction %}: {{ a.arm if a.direction == "better" else
 d.baseline }} better{%- elif a.decision == "equivalent" %} within ±{{ "%g"|format(d.margin)
 }}{% elif p %}: no detectable difference{% else %}: nothing to pool{% endif %}</td></tr>
{% endfor %}
</table>
</section>

<section id="when">
<h2>When: {{ d.main_arm }} − {{ d.baseline }} at each value of each factor</h2>
{% if not d.main.when %}<p class="message">The suite names no matrix factor.</p>{% endif %}
{% for t in d.main.when %}
<h3><code>{{ t.factor }}</code></h3>
<table>
<tr><th>value</th><th class="num">experiments</th><th class="num">pooled (k)</th>
<th class="num">mean</th><th class="num">95% CI</th><th class="num">p</th>
<th class="num">I²</th><th>interval excludes 0</th></tr>
{% for r in t.rows %}{% set p = r.pooled %}
<tr><td>{{ r.text }}</td><td class="num">{{ r.n }}</td><td class="num">{{ p.k if p else 0 }}</td>
{% if p %}<td class="num">{{ signed(p.mean, digits) }}</td>
<td class="num">{{ ci(p.low, p.high, p.truncated) }}</td><td class="num">{{ pval(p.p_value) }}</td>
<td class="num">{{ pct(p.i2) }}</td>
{% else %}<td class="num">–</td><td class="num">–</td><td class="num">–</td>
<td class="num">–</td>{% endif %}
<td>{{ reading(r.direction) }}</td></tr>
{% endfor %}
</table>
{% endfor %}
{% if figs.when %}{{ figure(figs.when) }}{% endif %}
<p class="note">Per-value intervals are not corrected for multiple comparisons.</p>
</section>

<section id="experiments">
<h2>Experiments</h2>
<div class="wide"><table>
<tr><th>experiment</th>{% for f in d.factors %}<th>{{ f }}</th>{% endfor %}
{% for a in d.arms %}<th class="num">{{ a.arm }} − {{ d.baseline }}</th>{% endfor %}
<th>notes</th><th>report</th></tr>
{% for e in d.entries %}{% set i = loop.index0 %}
<tr id="exp-{{ loop.index }}"><td><code>{{ e.experiment }}</code></td>
{% for f in d.factors %}<td>{{ factor_text(e.factors[f]) if f in e.factors else "–" }}</td>
{% endfor %}
{% for a in d.arms %}{% set r = a.rows[i] %}
<td class="num"{% if r.reason %} title="not pooled: {{ r.reason }}"{% endif %}>
{%- if r.diff is none %}–{% else %}{{ signed(r.diff, digits) }}
{%- if r.low is not none %} {{ ci(r.low, r.high, r.truncated) }}{% endif %}
<span class="note">n = {{ r.n }}</span>{% endif %}
{%- if r.decision %}<br><span class="decision">{{ r.decision }}</span>{% endif %}</td>
{% endfor %}
<td>{% if e.note %}{{ e.note }}{% endif %}
{%- for a in d.arms %}{% set r = a.rows[i] %}{% if r.reason and r.reason != e.note %}
<br><span class="note">{{ a.arm }} not pooled: {{ r.reason }}</span>{% endif %}{% endfor %}</td>
<td>{% if e.href %}<a href="{{ e.href }}">report</a>{% else %}–{% endif %}</td></tr>
{% endfor %}
</table></div>
</section>
</main>
</body>
</html>
"""
)
