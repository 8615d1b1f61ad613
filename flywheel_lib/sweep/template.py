"""The sweep report's Jinja2 template (kept in a module, so it ships with the package)."""

SWEEP_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Sweep {{ s.sweep_id }}</title><style>{{ css }}</style></head><body>
<h1>Sweep {{ s.sweep_id }}</h1>
<p>recipe <b>{{ spec.recipe_path }}</b> · status <span class="{{ s.status }}">{{ s.status }}</span>
 · {{ counts.succeeded }}/{{ points|length }} points succeeded{% if counts.failed %}, {{ counts.failed }} failed{% endif %}
{% if counts.other %}, {{ counts.other }} not finished{% endif %}
 · executor {{ s.executor }} ({{ s.jobs }} at a time, {{ s.threads_per_point }} thread(s) each) · {{ s.created_at }}</p>
<p class="muted">grid: {% for k, v in spec.grid.items() %}<code>{{ k }}</code> = {{ v|join(", ") }}{% if not loop.last %}; {% endif %}{% else %}(none){% endfor %}
 · seeds: {{ spec.seeds|join(", ") or "(none)" }} (<code>{{ spec.seed_key }}</code>)
{% if spec.sets %} · --set {{ spec.sets|join(" ") }}{% endif %}{% if spec.stages %} · stages {{ spec.stages|join(",") }}{% endif %}
{% if spec.from_run %} · from {{ spec.from_run }}{% endif %}</p>

<h2>Metrics across seeds</h2>
{% if metrics %}
<p class="muted">Mean over seeds with the 95% t-interval (n = seeds that finished); the interval is the spread a new
seed would show.</p>
<table><tr><th>metric</th>{% for c in configs %}<th>{{ c }}</th>{% endfor %}</tr>
{% for m in metric_names %}<tr><td>{{ m }}</td>{% for c in configs %}{% set r = metrics.get((c, m)) %}
<td class="num">{% if r %}{{ fmt(r.mean) }}{% if r.n > 1 %} <span class="muted">[{{ fmt(r.lo) }}, {{ fmt(r.hi) }}]</span>{% endif %}
<span class="muted">n={{ r.n }}</span>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
{% else %}<p class="muted">No finished point has headline metrics yet.</p>{% endif %}

{% if figures %}<h2>Metric against parameter</h2><div class="figs">
{% for f in figures %}<figure><img src="data:image/png;base64,{{ f.png }}" alt="{{ f.title }}">
<figcaption class="muted">{{ f.title }}</figcaption></figure>{% endfor %}</div>{% endif %}

<h2>Paired comparisons pooled across seeds</h2>
{% if comparisons %}
<p class="muted">Per seed, both variants answer the same items (McNemar's 2x2 table); the seeds are pooled by the
Cochran-Mantel-Haenszel test with each item pair a stratum (continuity-corrected), so the pooled p weighs every
discordant pair once. Difference = rate of b - rate of a, mean over seeds with its 95% t-interval.</p>
<table><tr><th>configuration</th><th>comparison</th><th>metric</th><th>seeds</th><th>a only / b only</th>
<th>CMH &chi;&sup2;</th><th>pooled p</th><th>odds ratio (b/a)</th><th>difference b - a</th><th>per-seed p</th></tr>
{% for r in comparisons %}<tr><td>{{ r.config }}</td><td>{{ r.a }} vs {{ r.b }}</td><td>{{ r.metric }}</td>
<td class="num">{{ r.seeds }}</td><td class="num">{{ r.a_only }} / {{ r.b_only }}</td><td class="num">{{ fmt(r.statistic) }}</td>
<td class="num">{{ pfmt(r.p_value) }}</td><td class="num">{{ fmt(r.odds_ratio) }}</td>
<td class="num">{{ "%+.3f"|format(r.mean_diff) if r.mean_diff == r.mean_diff else "-" }}{% if r.seeds > 1 %}
<span class="muted">[{{ "%+.3f"|format(r.diff_lo) }}, {{ "%+.3f"|format(r.diff_hi) }}]</span>{% endif %}</td>
<td class="muted">{{ r.seed_p|map("pfmt")|join(", ") }}</td></tr>
{% endfor %}</table>
{% else %}<p class="muted">No run of this sweep wrote <code>artifacts/predictions.parquet</code> with two variants to
compare (05_evaluate writes it).</p>{% endif %}

<h2>Points</h2>
<table><tr><th>point</th><th>configuration</th><th>seed</th><th>status</th><th>run</th><th>time</th>
<th>threads</th><th>failure</th></tr>
{% for p in points %}<tr><td>{{ p.point_id }}</td><td>{{ p.config }}</td><td>{{ p.seed if p.seed is not none else "" }}</td>
<td><span class="{{ p.status }}">{{ p.status }}</span>{% if p.attempts %} <span class="muted">(attempt {{ p.attempts|length + 1 }})</span>{% endif %}</td>
<td>{% if p.run_id %}<a href="{{ runs_rel }}/{{ p.run_id }}/index.html">{{ p.run_id }}</a>{% endif %}</td>
<td class="num">{{ "%.0f s"|format(p.duration_s) if p.duration_s else "" }}</td>
<td class="num">{{ (p.env or {}).get("OMP_NUM_THREADS") or "" }}</td>
<td>{% if p.failure %}<span class="failed">{{ p.failure }}</span>{% endif %}
{% if p.notebook %} · <a href="{{ runs_rel }}/{{ p.notebook }}">notebook</a>{% endif %}
{% if p.log %} · <a href="{{ p.log }}">log</a>{% endif %}</td></tr>
{% endfor %}</table>
<p><a href="sweep.json">sweep.json</a>{% if has_csv %} · <a href="metrics.csv">metrics.csv</a>{% endif %}
{% if comparisons %} · <a href="comparisons.csv">comparisons.csv</a>{% endif %}</p>
</body></html>
"""
