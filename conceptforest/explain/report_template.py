"""The jinja2 template of ``index.html``: one self-contained page (inline CSS and images, no script).

The table of contents stays visible (``position: sticky``); long tables, label blocks and figure groups are folded
into ``<details>`` so the page opens short. The page carries no script at all, so a label or file name can never run
as code even where a browser is lenient; tables are therefore not sortable in the page (the CSV files beside it are).
"""

from __future__ import annotations

__all__ = ["COLLAPSE_ROWS", "TEMPLATE"]

COLLAPSE_ROWS = 12  # a table with more rows than this is folded under its caption

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:Helvetica,Arial,sans-serif;margin:0 auto 2em;max-width:1100px;color:#222;line-height:1.45;
padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} td,th{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
.banner{background:#b71c1c;color:#fff;padding:.8em 1em;font-weight:bold;border-radius:4px;margin-top:1em}
.note{color:#555;font-size:.9em} img{max-width:100%;border:1px solid #eee}
nav.toc{position:sticky;top:0;z-index:10;background:#fff;border-bottom:1px solid #ccc;padding:.4em 0;
font-size:.9em} nav.toc a{margin-right:1em;white-space:nowrap}
section{scroll-margin-top:3em}
figure{margin:1em 0} figcaption{color:#555;font-size:.9em}
.finding{margin:.3em 0} .warning{background:#fff3e0;border-left:4px solid #e65100;padding:.3em .6em}
figure.example{display:flex;gap:1em;align-items:center} figure.example img{width:auto;max-width:96px}
details{margin:.4em 0} details.group{border:1px solid #e4e4e4;border-radius:4px;padding:.2em .8em}
details.group>summary{font-weight:bold;cursor:pointer;padding:.3em 0} details>summary{cursor:pointer}
div.gallery{display:flex;flex-wrap:wrap;gap:.8em} div.gallery figure{margin:.3em 0;max-width:180px}
div.gallery img{width:auto;max-width:96px}
.legend{display:flex;align-items:center;gap:.5em;font-size:.85em;color:#555}
.legend span.bar{display:inline-block;width:160px;height:12px;border:1px solid #ccc;
background:linear-gradient(to right,#ffffff,#d7301f)}
</style></head><body>
{% if banner %}<div class="banner">{{ banner }}</div>{% endif %}
<h1>{{ title }}</h1>
<nav class="toc">{% for s in sections %}<a href="#{{ s.anchor }}">{{ s.title }}</a>{% endfor %}</nav>
{% for s in sections %}
<section id="{{ s.anchor }}"><h2>{{ s.title }}</h2>
{% for item in s.items %}
{% if item.kind == "text" %}<p>{{ item.text }}</p>
{% elif item.kind == "note" %}<p class="note">{{ item.text }}</p>
{% elif item.kind == "group_start" %}<details class="group"{% if item.open %} open{% endif %}
{% if item.anchor %} id="{{ item.anchor }}"{% endif %}><summary>{{ item.summary }}</summary>
{% elif item.kind == "group_end" %}</details>
{% elif item.kind == "finding" %}<p class="finding{% if item.warning %} warning{% endif %}">{{ item.text }}
<a href="#{{ item.anchor }}">evidence</a></p>
{% elif item.kind == "example" %}<figure class="example">{% if item.thumbnail %}<img alt="{{ item.caption }}"
src="{{ item.thumbnail }}">{% endif %}<figcaption>{{ item.caption }}</figcaption></figure>
{% elif item.kind == "gallery" %}<div class="gallery">{% for image in item.images %}<figure class="thumb">
{% if image.thumbnail %}<img alt="{{ image.caption }}" src="{{ image.thumbnail }}">{% endif %}
<figcaption>{{ image.caption }}</figcaption></figure>{% endfor %}</div>
{% elif item.kind == "legend" %}<p class="legend">{{ item.low }} <span class="bar"></span> {{ item.high }}</p>
{% elif item.kind == "metrics" %}<table>{% for k, v in item.pairs %}<tr><th>{{ k }}</th>
<td class="num">{{ v }}</td></tr>{% endfor %}</table>
{% elif item.kind == "table" %}{% set folded = item.shown > collapse_rows %}
{% if folded %}<details><summary>{% else %}<p>{% endif %}<b>{{ item.caption }}</b>
{% if folded %} <span class="note">({{ item.shown }} rows; click to open)</span>{% endif %}
{% if item.truncated %}<span class="note">(first {{ item.shown }} of {{ item.total }} rows; all in
tables/{{ item.name }}.csv)</span>{% endif %}{% if folded %}</summary>{% else %}</p>{% endif %}
<table><tr>{% for c in item.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in item.rows %}<tr>{% for cell in row %}<td{% if cell.num %} class="num"{% endif %}>{{ cell.text }}</td>
{% endfor %}</tr>{% endfor %}</table>{% if folded %}</details>{% endif %}
{% elif item.kind == "figure" %}<figure><img alt="{{ item.caption }}" src="data:{{ item.mime }};base64,{{ item.data }}">
<figcaption>{{ item.caption }}</figcaption></figure>
{% endif %}{% endfor %}</section>
{% endfor %}
<footer class="note"><hr>Made by {% for k, v in made_by %}{{ k }}: {{ v }}{% if not loop.last %}; {% endif %}
{% endfor %}</footer>
</body></html>
"""
