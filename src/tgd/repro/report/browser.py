"""Check a report page in a real browser: headless Chromium loads it, counts broken images,
tables wider than their column or the viewport, assets that are not embedded, and saves
screenshots.

Chromium is not a Python dependency: install the system package (Debian: ``apt-get install
chromium``). :func:`find_chromium` returns None when it is absent, and :func:`check_page`
raises :class:`BrowserMissing` with that instruction.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAX_SHOT_HEIGHT = 16000  # Chromium's limit on one screenshot is about 16 k pixels

# Appended to a copy of the page: after every image has loaded it writes its findings as JSON
# into a <pre>, which --dump-dom prints.
_PROBE = """<script>window.addEventListener('load', function () {
  var vw = document.documentElement.clientWidth;
  var imgs = Array.from(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt || i.getAttribute('src').slice(0, 80); });
  var over = Array.from(document.querySelectorAll('table')).map(function (t, k) {
      var r = t.getBoundingClientRect(), box = t.parentElement.clientWidth;
      return {table: k, first_cell: (t.rows[0] && t.rows[0].cells[0] || {}).textContent,
              width: Math.round(t.scrollWidth), room: box, right: Math.round(r.right)};
    }).filter(function (o) { return o.width > o.room + 1 || o.right > vw + 1; });
  var ext = Array.from(document.querySelectorAll('[src], link[href]')).map(function (e) {
      return e.getAttribute('src') || e.getAttribute('href'); })
    .filter(function (s) { return s && !/^(data:|#)/.test(s); });
  var out = {images: imgs.length, broken_images: broken,
             tables: document.querySelectorAll('table').length, overflowing_tables: over,
             external_assets: ext, viewport_width: vw,
             page_width: document.documentElement.scrollWidth,
             page_height: document.documentElement.scrollHeight};
  var pre = document.createElement('pre');
  pre.id = 'tgd-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


class BrowserMissing(RuntimeError):
    pass


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    return next((shutil.which(c) for c in CANDIDATES if shutil.which(c)), None)


def _run(browser: str, args: list[str], timeout: float) -> str:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", *args]
    # the browser's own profile and crash dumps go to a scratch folder, never the user's
    with tempfile.TemporaryDirectory(prefix="tgd-chromium-") as profile:
        p = subprocess.run([*cmd, f"--user-data-dir={profile}"], capture_output=True,
                           text=True, timeout=timeout, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{browser} failed (exit {p.returncode}): {p.stderr[-2000:]}")
    return p.stdout


def check_page(html: str | Path, *, width: int = 1366, height: int = 768,
               screenshot: str | Path | None = None, full_page: str | Path | None = None,
               timeout: float = 120.0) -> dict:
    """Load ``html`` in headless Chromium at ``width`` x ``height`` CSS pixels; returns
    ``{images, broken_images, tables, overflowing_tables, external_assets, viewport_width,
    page_width, page_height, problems}`` (``problems``: readable lines, empty when the page
    passes). ``screenshot``: PNG of the first screen; ``full_page``: PNG of the whole page
    (cut at :data:`MAX_SHOT_HEIGHT`)."""
    html = Path(html).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"{html} does not exist")
    browser = find_chromium()
    if browser is None:
        raise BrowserMissing("no Chromium found (looked for " + ", ".join(CANDIDATES)
                             + " and $CHROMIUM); install it, e.g. `apt-get install chromium`")
    text = html.read_text()
    if "</body>" not in text:
        raise ValueError(f"{html} has no </body>: not an HTML page")
    with tempfile.TemporaryDirectory(prefix="tgd-probe-") as tmp:
        # beside nothing: a page that still links files next to it shows them as broken
        probe = Path(tmp) / "probe.html"
        probe.write_text(text.replace("</body>", _PROBE + "</body>", 1))
        dom = _run(browser, [f"--window-size={width},{height}", "--virtual-time-budget=20000",
                             "--dump-dom", probe.as_uri()], timeout)
    m = re.search(r'<pre id="tgd-probe">(.*?)</pre>', dom, re.S)
    if not m:
        raise RuntimeError("the page never finished loading in the browser (no probe result)")
    res = json.loads(m[1].replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                     .replace("&amp;", "&"))
    problems = [f"broken image: {b}" for b in res["broken_images"]]
    problems += [f"table {o['table']} ('{o['first_cell']}') is {o['width']} px wide, "
                 f"{o['room']} px available" for o in res["overflowing_tables"]]
    problems += [f"asset not embedded: {s[:80]}" for s in res["external_assets"]]
    if res["page_width"] > res["viewport_width"] + 1:
        problems.append(f"the page is {res['page_width']} px wide in a "
                        f"{res['viewport_width']} px viewport (scrolls sideways)")
    res["problems"] = problems
    if screenshot is not None:
        _run(browser, [f"--window-size={width},{height}", f"--screenshot={Path(screenshot)}",
                       html.as_uri()], timeout)
    if full_page is not None:
        tall = min(int(res["page_height"]) + 20, MAX_SHOT_HEIGHT)
        _run(browser, [f"--window-size={width},{tall}", f"--screenshot={Path(full_page)}",
                       "--virtual-time-budget=20000", html.as_uri()], timeout)
    return res
