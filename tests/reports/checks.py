"""Checks every rendered page must pass."""

from __future__ import annotations

import re

from plotly.offline import get_plotlyjs

SECTION_IDS = ("verdict", "setup", "search", "sensitivity", "dynamics", "tables")
_ATTR_URL = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*([^"'\s>]*)""", re.IGNORECASE)


def assert_self_contained(html: str) -> None:
    """Nothing is fetched: no http(s) src/href, no external script, stylesheet or import.

    plotly.js itself mentions URLs in its code (attribution links it may draw); it is cut out
    first, after checking it is inlined at most once.
    """
    js = get_plotlyjs()
    assert html.count(js) <= 1
    rest = html.replace(js, "")
    urls = _ATTR_URL.findall(rest)
    assert not [u for u in urls if u.lower().startswith(("http:", "https:", "//"))], urls
    assert not re.search(r"<script[^>]*\bsrc\s*=", rest, re.IGNORECASE)
    assert not re.search(r"<link\b", rest, re.IGNORECASE)
    assert "@import" not in rest
    assert not re.search(r"url\(\s*['\"]?https?:", rest, re.IGNORECASE)


def assert_sections(html: str) -> None:
    for section in SECTION_IDS:
        assert html.count(f'<section id="{section}">') == 1, section
    assert html.index('id="verdict"') < html.index('id="setup"')


def figure_ids(html: str) -> list[str]:
    return re.findall(r'<div class="figure" id="(fig-[^"]+)">', html)
