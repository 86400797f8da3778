"""A minimal Markdown-to-HTML converter for the report's own Markdown (headings, paragraphs,
bullet lists, pipe tables, fenced code, images, **bold**, `code`); no dependency needed."""

from __future__ import annotations

import html
import re

_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
          "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #bbb;"
          "padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}"
          "pre{background:#f4f4f4;padding:8px;overflow-x:auto;font-size:0.85em}"
          "img{max-width:100%}")


def _inline(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', t)
    t = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", t)


def to_html(md: str, title: str = "report") -> str:
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
        elif m := re.match(r"^(#{1,6}) (.*)", line):
            n = len(m[1])
            out.append(f"<h{n}>{_inline(m[2])}</h{n}>")
            i += 1
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            cells = [[c.strip() for c in r.strip("|").split("|")] for r in lines[i:j]]
            body = [r for r in cells[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
                       + "</tr>" + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>"
                                                            for c in r) + "</tr>"
                                           for r in body) + "</table>")
            i = j
        elif line.startswith("- "):
            j = i
            items = []
            while j < len(lines) and (lines[j].startswith("- ") or lines[j].startswith("  ")):
                if lines[j].startswith("- "):
                    items.append(lines[j][2:])
                else:
                    items[-1] += " " + lines[j].strip()
                j += 1
            out.append("<ul>" + "".join(f"<li>{_inline(t)}</li>" for t in items) + "</ul>")
            i = j
        elif not line.strip():
            i += 1
        else:
            j = i
            while j < len(lines) and lines[j].strip() and not re.match(r"^(#|\||- |```)",
                                                                       lines[j]):
                j += 1
            out.append("<p>" + _inline(" ".join(lines[i:j])) + "</p>")
            i = j
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>\n" + "\n".join(out)
            + "\n</body></html>\n")
