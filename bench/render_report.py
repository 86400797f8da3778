"""Render a report page in headless Chromium: save screenshots and fail (exit 1) on broken
images, tables wider than the page, assets that are not embedded, or sideways scrolling.

    python bench/render_report.py docs/reproduction/report.html --out docs/reproduction
    python bench/render_report.py report.html --width 1280 --height 720 --full-page

Needs the system package ``chromium`` (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tgd.repro.report.browser import BrowserMissing, check_page


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("--out", type=Path, default=None,
                    help="folder of the screenshots (default: beside the page)")
    ap.add_argument("--width", type=int, default=1366, help="viewport width (CSS px)")
    ap.add_argument("--height", type=int, default=768, help="viewport height (CSS px)")
    ap.add_argument("--full-page", action="store_true", help="also a whole-page screenshot")
    args = ap.parse_args(argv)
    out = args.out or args.html.parent
    out.mkdir(parents=True, exist_ok=True)
    first = out / f"{args.html.stem}_screenshot.png"
    try:
        res = check_page(args.html, width=args.width, height=args.height, screenshot=first,
                         full_page=out / f"{args.html.stem}_full.png" if args.full_page
                         else None)
    except BrowserMissing as err:
        print(f"render_report: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in res.items() if k != "problems"}, indent=1))
    print(f"first screen: {first}")
    for p in res["problems"]:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if res["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
