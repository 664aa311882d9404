"""The headers every response on ``listen`` carries, pages, errors and /metrics alike.

Nothing a page loads comes from another origin, and no script or style is inline: a feed's
text that got past escaping could still run nothing. Pages are never framed (clickjacking),
no type is sniffed from a body, and no address of ours leaks to a site a link leads to.
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
