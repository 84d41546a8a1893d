"""What a served page would load from another machine (issue 24 item 14: everything served
works offline). Shared by the dashboard and report tests."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: URLs a page would fetch: script/link/img/iframe/source/embed src or href, CSS url()
#: and @import, and ES-module import() — absolute (``https://``) or scheme-relative (``//``).
_FETCHED = re.compile(
    r"""<(?:script|link|img|iframe|source|embed|audio|video)\b[^>]*?\b(?:src|href)\s*=\s*["']?"""
    r"""((?:https?:)?//[^"'\s>]+)"""
    r"""|url\(\s*["']?((?:https?:)?//[^"')\s]+)"""
    r"""|@import\s+["']((?:https?:)?//[^"']+)"""
    r"""|import\(\s*["']((?:https?:)?//[^"']+)""",
    re.IGNORECASE)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def off_machine_urls(page: str) -> list[str]:
    """Every URL ``page`` would fetch from a host other than this machine."""
    found = []
    for match in _FETCHED.finditer(page):
        url = next(g for g in match.groups() if g)
        host = urlsplit(url if "://" in url else "http:" + url).hostname or ""
        if host not in LOCAL_HOSTS and not host.startswith("127."):
            found.append(url)
    return sorted(set(found))
