"""The report's own Markdown to one self-contained HTML page; no dependency needed.

Handles what the writer emits: headings (each gets GitHub's anchor id, so the same ``#links``
work on GitHub and in the page), paragraphs, bullet lists, pipe tables, fenced code, images,
links, ``**bold**``, ``` `code` ``` and raw anchor lines ``<a id="..."></a>``. In HTML:

- images with a relative path are read from ``base`` and embedded as base64 data URIs (the
  page reads offline, copied or mailed alone); an image that cannot be read is an error;
- an image alone in its paragraph becomes a figure with its alt text as caption;
- a table cell holding a verdict (``summary.VERDICT_TEXT``) is colour-coded, and a cell
  ``mean [lo, hi]`` shows the interval in small type under the mean, so tables stay narrow.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

from tgd.repro.report.summary import VERDICT_TEXT, slug

_STYLE = """
:root{--fg:#1d2125;--muted:#5b6570;--line:#d8dde3;--bg-alt:#f5f7f9;--accent:#1f5f99}
*{box-sizing:border-box}
body{font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:var(--fg);max-width:1220px;margin:0 auto;padding:1.5rem 1.25rem 4rem}
h1{font-size:1.75rem;line-height:1.25;margin:.2rem 0 .6rem}
h2{font-size:1.35rem;margin:2.4rem 0 .6rem;padding-top:.6rem;border-top:2px solid var(--line)}
h3{font-size:1.12rem;margin:1.8rem 0 .5rem}
h4{font-size:1rem;margin:1.4rem 0 .3rem}
p,li{max-width:52rem}
a{color:var(--accent)}
code{font:.86em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--bg-alt);
 padding:.05em .3em;border-radius:3px}
pre{background:var(--bg-alt);padding:.8rem;overflow-x:auto;font-size:.8rem;line-height:1.35;
 max-height:28rem}
pre code{background:none;padding:0}
.tw{max-width:100%;overflow-x:auto;margin:.8rem 0 1.2rem}
table{border-collapse:collapse;font-size:.84rem;line-height:1.3}
th,td{border-bottom:1px solid var(--line);padding:.32rem .55rem;text-align:right;
 vertical-align:top}
th{background:var(--bg-alt);font-weight:600;border-bottom:2px solid #b9c1ca}
td:first-child,th:first-child{text-align:left}
tbody tr:hover{background:#fafbfc}
td .ci{display:block;color:var(--muted);font-size:.78rem;white-space:nowrap}
td.v{font-weight:600;white-space:nowrap;text-align:left}
.v-holds{background:#e3f4e6;color:#1c6b2c}
.v-not{background:#fbe5e3;color:#9b2419}
.v-inc{background:#fdf3d7;color:#7d5a00}
b.v{padding:.1em .45em;border-radius:3px}
table.summary td,table.summary th{text-align:left}
table.summary td:first-child{min-width:22rem}
table.summary td:nth-child(3){white-space:nowrap}
figure{margin:1rem 0 1.6rem}
figure img,p img{max-width:100%;height:auto;display:block}
figcaption{color:var(--muted);font-size:.85rem;margin-top:.3rem}
nav.toc{background:var(--bg-alt);padding:.5rem 1rem;border-radius:4px;font-size:.92rem}
nav.toc ul{margin:.2rem 0;padding-left:1.2rem}
@media print{body{max-width:none}pre{max-height:none}}
"""

_VERDICT_CLASS = {VERDICT_TEXT["holds"]: "v v-holds", VERDICT_TEXT["does not hold"]: "v v-not",
                  VERDICT_TEXT["inconclusive"]: "v v-inc"}
_CI = re.compile(r"^(\S+) (\[[^\]]+\])$")
_ANCHOR = re.compile(r'^<a id="([\w\-]+)"></a>$')


def _data_uri(src: str, base: Path) -> str:
    path = base / src
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"image {src!r} of the report cannot be read ({err})") from err
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _inline(text: str, base: Path | None) -> str:
    t = html.escape(text, quote=False)

    def img(m) -> str:
        src = m[2]
        if base is not None and not re.match(r"^(data:|[a-z]+://)", src):
            src = _data_uri(html.unescape(src), base)
        return f'<img alt="{html.escape(m[1])}" src="{src}">'

    t = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", img, t)
    t = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', t)
    t = re.sub(r"\*\*([^*]+)\*\*", lambda m: f'<b class="{_VERDICT_CLASS[m[1]]}">{m[1]}</b>'
               if m[1] in _VERDICT_CLASS else f"<b>{m[1]}</b>", t)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", t)


def _cell(text: str, base: Path | None) -> str:
    if text in _VERDICT_CLASS:
        return f'<td class="{_VERDICT_CLASS[text]}">{html.escape(text)}</td>'
    if m := _CI.match(text):
        return f'<td>{_inline(m[1], base)}<span class="ci">{html.escape(m[2])}</span></td>'
    return f"<td>{_inline(text, base)}</td>"


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def to_html(md: str, title: str = "report", base: str | Path | None = None) -> str:
    """One HTML page; ``base``: the folder relative image paths are read from and embedded
    (None leaves them as links)."""
    base = Path(base) if base is not None else None
    out, lines, i, seen = [], md.splitlines(), 0, {}
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
        elif m := _ANCHOR.match(line.strip()):
            out.append(f'<a id="{m[1]}"></a>')
            seen[m[1]] = seen.get(m[1], 0) + 1  # a heading with the same slug gets a suffix
            i += 1
        elif m := re.match(r"^(#{1,6}) (.*)", line):
            n, text = len(m[1]), m[2]
            anchor = slug(text)
            k = seen.get(anchor, 0)
            seen[anchor] = k + 1
            anchor = anchor if k == 0 else f"{anchor}-{k}"
            out.append(f'<h{n} id="{anchor}">{_inline(text, base)}</h{n}>')
            i += 1
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            cells = [_split_row(r) for r in lines[i:j]]
            body = [r for r in cells[1:] if not all(set(c) <= set("-: ") for c in r)]
            cls = ' class="summary"' if cells[0] and cells[0][-1] == "verdict" else ""
            out.append(f'<div class="tw"><table{cls}><thead><tr>'
                       + "".join(f"<th>{_inline(c, base)}</th>" for c in cells[0])
                       + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(_cell(c, base) for c in r) + "</tr>"
                                 for r in body) + "</tbody></table></div>")
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
            out.append("<ul>" + "".join(f"<li>{_inline(t, base)}</li>" for t in items)
                       + "</ul>")
            i = j
        elif not line.strip():
            i += 1
        else:
            j = i
            while j < len(lines) and lines[j].strip() and not re.match(r"^(#|\||- |```)",
                                                                       lines[j]):
                j += 1
            text = " ".join(lines[i:j])
            if m := re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", text.strip()):
                out.append(f"<figure>{_inline(text.strip(), base)}<figcaption>"
                           f"{html.escape(m[1])}</figcaption></figure>")
            else:
                out.append("<p>" + _inline(text, base) + "</p>")
            i = j
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(out) + "\n</body></html>\n")
