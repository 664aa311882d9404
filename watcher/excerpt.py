"""The sentence around the matched words: why an alert fired when its title does not say.

A headline about "negotiations" that alerts ``Peskov`` does so through its content (the
article's text, for a ``full_text`` feed). The excerpt is the sentence of the content that
holds the most matched words, with its neighbours while they fit, cut at sentence
boundaries when it can and around the first matched word when one sentence is too long.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from watcher.text import strip_html, words

LIMIT = 200
"""Characters of an excerpt, about: two lines of a chat message."""

_BLOCK = re.compile(r"(?i)<\s*/?\s*(?:p|div|li|h[1-6]|blockquote|tr|section|br)\b[^>]*>")
_SENTENCE = re.compile(r"(?:[^.!?…。\n]|[.!?…。]+(?=[^\s\"'”»)\]]))+(?:[.!?…。]+[\"'”»)\]]*|\n|$)")
"""A sentence: up to ``.``, ``!``, ``?`` or ``…`` before a space or the end (not the point
in ``1.5``), with a closing quote or bracket, or up to the end of its line."""


def sentences(content: str) -> list[str]:
    """The content's sentences as plain text: paragraphs end one, and so do ``.``, ``!``,
    ``?`` and ``…`` (with a closing quote or bracket that follows them)."""
    text = strip_html(_BLOCK.sub("\n", content)) if "<" in content else strip_html(content)
    found = (" ".join(part.split()) for part in _SENTENCE.findall(text))
    return [sentence for sentence in found if sentence]


def excerpt(content: str, matched: Collection[str], limit: int = LIMIT) -> str:
    """The excerpt of ``content`` (HTML allowed) around the normalised ``matched`` words;
    empty when the content holds none of them."""
    if not matched or not content:
        return ""
    wanted = set(matched)
    parts = sentences(content)
    scores = [len(wanted.intersection(words(sentence))) for sentence in parts]
    if not any(scores):
        return ""
    best = max(range(len(parts)), key=lambda index: (scores[index], -index))
    if len(parts[best]) > limit:
        return _window(parts[best], wanted, limit)
    start, end = best, best + 1
    size = len(parts[best])
    while True:  # the sentences after it, then before it, while they fit
        if end < len(parts) and size + 1 + len(parts[end]) <= limit:
            size += 1 + len(parts[end])
            end += 1
        elif start > 0 and size + 1 + len(parts[start - 1]) <= limit:
            start -= 1
            size += 1 + len(parts[start])
        else:
            break
    return " ".join(parts[start:end])


def _window(sentence: str, wanted: set[str], limit: int) -> str:
    """A long sentence cut to about ``limit`` characters at word boundaries, the first
    matched word a third of the way in."""
    position = 0
    for found in re.finditer(r"[^\W_]+", sentence):
        if set(words(found.group())) & wanted:
            position = found.start()
            break
    start = max(0, position - limit // 3)
    if start:
        space = sentence.find(" ", start)
        start = space + 1 if 0 <= space < position else start
    end = min(len(sentence), start + limit)
    if end < len(sentence):
        space = sentence.rfind(" ", start, end)
        end = space if space > position else end
    text = sentence[start:end].strip()
    return ("…" if start else "") + text + ("…" if end < len(sentence) else "")
