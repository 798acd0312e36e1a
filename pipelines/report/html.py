"""The report page as HTML (self-contained, offline: images by relative links) and as Markdown; `page_html` and
`page_markdown` build other pages (the verification page) from the same pieces."""

from __future__ import annotations

import html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1400px;
padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums} .best{font-weight:bold}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #ddd} figcaption{color:#555;font-size:.9em}
.note{color:#666;font-size:.9em}
"""


def _html(title: str, prov, table, metrics_png: str | None, maps: list[tuple[str, str]], notes: list[str],
          skill: list[str] = (), verification: tuple[str, str] | None = None, figures=()) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    out += [f'<p class="note">{e(n)}</p>' for n in notes]
    out.append("<h2>Provenance</h2><table>")
    out += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in prov]
    out.append("</table>")
    if table is not None:
        header, rows = table
        out += ["<h2>Metrics</h2>", *_table_html(header, rows)]
        out.append('<p class="note">Bold: best in its column. Metrics in physical units over the '
                   "evaluation period, whole grid, all channels; conventions in evaluation.json.</p>")
    if skill:
        out.append("<ul>" + "".join(f"<li>{e(s)}</li>" for s in skill) + "</ul>")
    if metrics_png:
        out.append(f'<figure><a href="{e(metrics_png)}"><img src="{e(metrics_png)}" alt="metrics by lead time">'
                   "</a><figcaption>Metric by lead time, model and reference forecasts (band: the model's 95% "
                   "interval).</figcaption></figure>")
    for rel, caption in figures:
        out.append(f'<figure><a href="{e(rel)}"><img src="{e(rel)}" alt="{e(caption)}"></a>'
                   f"<figcaption>{e(caption)}</figcaption></figure>")
    if verification:
        rel, summary = verification
        out.append(f'<h2>Verification</h2><p><a href="{e(rel)}">Verification of the archived forecasts</a>: '
                   f"{e(summary)}</p>")
    out.append("<h2>Maps</h2>")
    if not maps:
        out.append('<p class="note">No maps.</p>')
    for caption, rel in maps:
        out.append(f'<figure><a href="{e(rel)}"><img src="{e(rel)}" alt="{e(caption)}" loading="lazy"></a>'
                   f"<figcaption>{e(caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _markdown(title: str, prov, table, metrics_png: str | None, maps: list[tuple[str, str]], notes,
              skill: list[str] = (), verification: tuple[str, str] | None = None, figures=()) -> str:
    out = [f"# {title}", ""]
    out += [f"_{n}_" for n in notes] + ([""] if notes else [])
    out += ["## Provenance", "", "| | |", "| --- | --- |"]
    out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in prov]
    if table is not None:
        header, rows = table
        out += ["", "## Metrics", "", "| " + " | ".join(map(_md_cell, header)) + " |",
                "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]
        for row in rows:
            cells = [_md_cell(row[0])] + [f"**{c[:-1]}**" if c.endswith("*") else c for c in row[1:]]
            out.append("| " + " | ".join(cells) + " |")
        out += ["", "Bold: best in its column."]
    if skill:
        out += [""] + [f"- {s}" for s in skill]
    if metrics_png:
        out += ["", f"![metrics by lead time]({metrics_png})"]
    out += [x for rel, caption in figures for x in ("", f"![{caption}]({rel})")]
    if verification:
        rel, summary = verification
        out += ["", "## Verification", "", f"[Verification of the archived forecasts]({rel}): {summary}"]
    out += ["", "## Maps", ""]
    out += [f"- [{caption}]({rel})" for caption, rel in maps] or ["No maps."]
    return "\n".join(out) + "\n"


# ---- other pages from the same pieces ------------------------------------------------------------------
# A page is a title and blocks: ("h2", text), ("p", text), ("kv", [(key, value), ...]),
# ("table", header, rows, note) with a trailing '*' on a cell marking it bold, ("ul", [text, ...]),
# ("figure", relative path, caption).

def _table_html(header, rows) -> list[str]:
    e = html.escape
    out = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = [f"<td>{e(row[0])}</td>"]
        for c in row[1:]:
            best = c.endswith("*")
            cells.append(f'<td class="num{" best" if best else ""}">{e(c.rstrip("*"))}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return out


def page_html(title: str, blocks: list[tuple]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    for kind, *args in blocks:
        if kind == "h2":
            out.append(f"<h2>{e(args[0])}</h2>")
        elif kind == "p":
            out.append(f'<p class="note">{e(args[0])}</p>')
        elif kind == "kv":
            out.append("<table>")
            out += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in args[0]]
            out.append("</table>")
        elif kind == "table":
            header, rows, note = args
            out += _table_html(header, rows)
            if note:
                out.append(f'<p class="note">{e(note)}</p>')
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(s)}</li>" for s in args[0]) + "</ul>")
        elif kind == "figure":
            rel, caption = args
            out.append(f'<figure><a href="{e(rel)}"><img src="{e(rel)}" alt="{e(caption)}"></a>'
                       f"<figcaption>{e(caption)}</figcaption></figure>")
        else:
            raise ValueError(f"unknown page block {kind!r}")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def page_markdown(title: str, blocks: list[tuple]) -> str:
    out = [f"# {title}"]
    for kind, *args in blocks:
        out.append("")
        if kind == "h2":
            out.append(f"## {args[0]}")
        elif kind == "p":
            out.append(f"_{args[0]}_")
        elif kind == "kv":
            out += ["| | |", "| --- | --- |"] + [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in args[0]]
        elif kind == "table":
            header, rows, note = args
            out += markdown_table(header, rows)
            if note:
                out += ["", note]
        elif kind == "ul":
            out += [f"- {s}" for s in args[0]]
        elif kind == "figure":
            rel, caption = args
            out.append(f"![{caption}]({rel})")
        else:
            raise ValueError(f"unknown page block {kind!r}")
    return "\n".join(out) + "\n"


def markdown_table(header, rows) -> list[str]:
    """Markdown lines of a table, cells ending in '*' in bold."""
    out = ["| " + " | ".join(map(_md_cell, header)) + " |",
           "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]
    for row in rows:
        cells = [_md_cell(row[0])] + [f"**{_md_cell(c[:-1])}**" if c.endswith("*") else _md_cell(c) for c in row[1:]]
        out.append("| " + " | ".join(cells) + " |")
    return out
