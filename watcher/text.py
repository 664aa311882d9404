"""Text normalisation shared by queries and feed items, so both sides agree on what a word is.

Feed text is HTML: its markup is removed (each tag becomes a space, so block elements
never glue words together) and entities decoded; angle brackets that are not markup stay
text. Words are runs of Unicode letters and digits, compared case-folded and with accents
removed: ``Peskóv's`` holds the words ``peskov`` and ``s``.
"""

from __future__ import annotations

import contextlib
import functools
import html
import re
import unicodedata
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import cast

from anyascii import anyascii

MAX_FIELD = 100_000
"""The most characters of one field of an item that are stored and matched (an article's text
is rarely a tenth of it); longer text is cut."""

HTML_ELEMENTS = frozenset(
    """
    a abbr acronym address applet area article aside audio b base basefont bdi bdo bgsound big
    blink blockquote body br button canvas caption center cite code col colgroup data datalist
    dd del details dfn dialog dir div dl dt em embed fieldset figcaption figure font footer form
    frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html i iframe image img input ins
    isindex kbd keygen label legend li link listing main map mark marquee math menu menuitem
    meta meter multicol nav nextid nobr noembed noframes noscript object ol optgroup option
    output p param picture plaintext pre progress q rb rp rt rtc ruby s samp script search
    section select slot small source spacer span strike strong style sub summary sup svg table
    tbody td template textarea tfoot th thead time title tr track tt u ul var video wbr xmp
    circle clippath defs desc ellipse g line lineargradient mask path pattern polygon polyline
    radialgradient rect stop symbol text tspan use
    """.split()
)
"""The element names whose tags are markup: HTML's, current and obsolete, and the SVG ones
seen inline in articles. Any other ``<word>`` is text (``std::vector<int>``)."""

_TAG_NAME = re.compile(r"</?([A-Za-z][A-Za-z0-9:-]*)(?=[\s/>])")
_NAMESPACED = re.compile(r"[a-z][a-z0-9]*:[a-z][a-z0-9-]*")
"""Word's ``<o:p>``, ``<st1:place>``: namespaced tags that pasted Office text carries."""
_RAW_TEXT = re.compile(r"<(script|style)(?=[\s/>])", re.I)
_RAW_TEXT_END = {
    "script": re.compile(r"</script\s*>", re.I),
    "style": re.compile(r"</style\s*>", re.I),
}
_DECLARATION = re.compile(r"<!doctype(?=[\s>])|<\?[A-Za-z]", re.I)
_CDATA = "<![CDATA["
_LONG_CHARREF = re.compile(r"&#[0-9]{8,};?")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_WORD = re.compile(r"[^\W_]+")
_ASCII_SEPARATORS = str.maketrans(
    {code: (chr(code) if chr(code).isalnum() else " ") for code in range(128)}
)
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def strip_html(text: str) -> str:
    """Plain text of an HTML fragment: markup dropped, entities decoded.

    Only real markup is dropped: tags of HTML elements (``<b>``, ``</p>``, ``<a href=...>``,
    ``<br/>``), namespaced and custom-element tags, comments, the ``<!DOCTYPE>``, processing
    instructions, and script and style elements whole. Other angle brackets are text, as a
    browser shows them: ``std::vector<int>``, ``a < b``, Slack's ``<!channel>``; so each
    channel shows them escaped in its own way, never drops them, never takes them as markup.
    """
    if "<" in text:
        if _CDATA in text:
            text = _unwrapped(text)
        text = _without_markup(text)
    if "&" in text:
        text = html.unescape(_LONG_CHARREF.sub(_short_charref, text))
    return text


def is_tag(name: str) -> bool:
    """Whether ``<name ...>`` is markup: an HTML or SVG element, a namespaced one, or a
    custom element (a name with a hyphen, as HTML defines them)."""
    name = name.lower()
    if name in HTML_ELEMENTS:
        return True
    if ":" in name:
        return _NAMESPACED.fullmatch(name) is not None
    return "-" in name and not name.endswith("-")


def _without_markup(text: str) -> str:
    """Each piece of markup replaced by a space, in linear time.

    Every search starts where the last one ended, and one that found nothing is not
    repeated: with no ``>`` left, no markup is left either. (The regular expression this
    replaced, ``<[^>]*>`` and the like, took quadratic time on text with many ``<`` and no
    ``>``: 80,000 characters took 4.5 s.) A tag ends at the first ``>``.
    """
    parts: list[str] = []
    copied = 0
    unclosed: set[str] = set()
    """The constructs (comment, script, style) with no end after the current position."""
    start = text.find("<")
    while start >= 0:
        end = _markup_end(text, start, unclosed)
        if end == 0:  # no ">" after start: nothing after it can be markup
            break
        if end < 0:
            start = text.find("<", start + 1)
            continue
        parts += (text[copied:start], " ")
        copied = end
        start = text.find("<", end)
    parts.append(text[copied:])
    return "".join(parts)


def _unwrapped(text: str) -> str:
    """Each ``<![CDATA[...]]>`` replaced by what it holds, in linear time: a feed that
    wraps its HTML twice."""
    parts: list[str] = []
    copied = 0
    start = text.find(_CDATA)
    while start >= 0:
        end = text.find("]]>", start + len(_CDATA))
        if end < 0:
            break
        parts += (text[copied:start], " ", text[start + len(_CDATA) : end], " ")
        copied = end + 3
        start = text.find(_CDATA, copied)
    parts.append(text[copied:])
    return "".join(parts)


def _markup_end(text: str, start: int, unclosed: set[str]) -> int:
    """Where the markup starting at ``start`` ends; -1 when the ``<`` there is text, 0 when
    no ``>`` follows it at all."""
    if text.startswith("<!--", start):
        if "comment" not in unclosed:
            end = text.find("-->", start + 4)
            if end >= 0:
                return end + 3
            unclosed.add("comment")
        return _tag_end(text, start)  # an unclosed comment is a tag, to its >
    if opening := _RAW_TEXT.match(text, start):
        kind = "script" if len(opening.group(1)) == 6 else "style"  # whatever its case
        if kind not in unclosed:
            closing = _RAW_TEXT_END[kind].search(text, opening.end())
            if closing is not None:
                return closing.end()
            unclosed.add(kind)
        return _tag_end(text, start)
    if _DECLARATION.match(text, start):
        return _tag_end(text, start)
    name = _TAG_NAME.match(text, start)
    if name is not None and is_tag(name.group(1)):
        return _tag_end(text, start)
    return -1


def _tag_end(text: str, start: int) -> int:
    """Just after the ``>`` that ends a tag, or 0 when there is none."""
    return text.find(">", start + 1) + 1


def _short_charref(found: re.Match[str]) -> str:
    """A numeric character reference of many digits, which ``html.unescape`` cannot convert
    (Python refuses integers of over 4,300 digits): leading zeros dropped, or U+FFFD for a
    number beyond Unicode, as ``html.unescape`` decodes it."""
    ref = found.group()
    digits = ref[2:].rstrip(";").lstrip("0")
    if len(digits) > 7:
        return "\ufffd"
    return f"&#{digits or 0}{';' if ref.endswith(';') else ''}"


def fold(text: str) -> str:
    """Case-folded, compatibility-decomposed text with accents removed.

    Decomposed before folding too: some compatibility characters (U+1D400, a mathematical
    bold A) only decompose into a letter that has a case.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    return _COMBINING.sub("", unicodedata.normalize("NFKD", decomposed.casefold()))


def words(text: str) -> list[str]:
    """The normalised words of plain text.

    ASCII text, most of what feeds carry, takes a path four times faster that gives the
    same words: lower case is its case folding and it has no accents to remove.
    """
    if text.isascii():
        return text.lower().translate(_ASCII_SEPARATORS).split()
    return _WORD.findall(fold(text))


def latin_words(text: str) -> list[str] | None:
    """The normalised words of plain text, those of other scripts spelled in Latin letters
    (``transliterate``): ``Песков`` is ``peskov``, ``Αθήνα`` is ``athina``. None when no
    word is of another script: the words are then those ``words`` gives.

    A word is transliterated from its composed form, before accents are removed: ``й``
    is then ``y`` (``Шойгу``, ``shoygu``), not the ``i`` it folds into.
    """
    if text.isascii() or not _OTHER_SCRIPTS.search(text):
        return None
    spelled_whole = _spelled_as_cp1251(text)
    if spelled_whole is not None:
        return words(spelled_whole)
    found = _WORD.findall(unicodedata.normalize("NFC", text.casefold()))
    spelled: list[str | None] = list(map(_SPELLINGS.get, found))
    missing = -1
    with contextlib.suppress(ValueError):
        while True:  # the words not met lately, found by a search in C
            missing = spelled.index(None, missing + 1)
            spelled[missing] = _spelled(found[missing])
    known = cast(list[str], spelled)
    joined = " ".join(known)
    return known if joined.count(" ") == len(known) - 1 else joined.split()


_OTHER_SCRIPTS = re.compile(
    "[\u0370-\u052f\u0530-\u1aaf\u1b00-\u1cff\u1f00-\u1fff\u2c00-\u2c5f"
    "\u2c80-\u2dff\u2e80-\ua6ff\ua800-\uab2f\uab70-\ud7ff\uf900-\ufaff"
    "\ufb1d-\ufdff\ufe70-\ufefe\uff66-\uffdc\U00010000-\U0001d3ff"
    "\U0001e000-\U0001efff\U00020000-\U0003ffff]"
)
"""The blocks of scripts other than Latin (Greek, Cyrillic, Arabic, CJK, ...): text with
none of their characters has no word to transliterate."""


def _spelled_as_cp1251(text: str) -> str | None:
    """Text that Windows-1251 can hold (Russian, Ukrainian, Belarusian, Serbian and
    Macedonian Cyrillic, with ASCII and typographic punctuation: most of what Cyrillic
    outlets publish) spelled in Latin letters a letter at a time, in C: encoded, each
    letter's byte translated, the few spelled with several letters replaced. What the word
    by word path gives, at a sixth of its cost (anyascii spells one letter at a time too;
    ``tests/test_transliterate.py`` holds the two paths to each other). None for other text."""
    try:
        encoded = text.encode("cp1251")
    except UnicodeEncodeError:
        return None
    table, dropped, longer, unlike = _cp1251_latin()
    if any(byte in encoded for byte in unlike):
        return None
    spelled = encoded.translate(table, dropped)
    for byte, letters in longer:
        if byte in spelled:
            spelled = spelled.replace(byte, letters)
    return spelled.decode("ascii")


@functools.cache
def _cp1251_latin() -> tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...], tuple[bytes, ...]]:
    """For ``_spelled_as_cp1251``: the translation table of Windows-1251's bytes, the bytes
    dropped (soft and hard signs), the bytes spelled with several letters, and those whose
    letter the word by word path spells otherwise (``µ`` folds into Greek ``μ``, say)."""
    table = bytearray(range(256))
    dropped = bytearray()
    longer = []
    unlike = []
    for code in range(128, 256):
        try:
            char = bytes([code]).decode("cp1251")
        except UnicodeDecodeError:
            continue
        if not _foreign(char):  # punctuation, signs: between words, as in words()
            table[code] = ord(" ")
            continue
        letters = anyascii(char).replace("'", "").lower().encode("ascii")
        folded = unicodedata.normalize("NFC", char.casefold())
        if _spelled(folded) != letters.decode():
            unlike.append(bytes([code]))
            continue
        if not letters:
            dropped.append(code)
        elif len(letters) == 1:
            table[code] = letters[0]
        else:
            longer.append((bytes([code]), letters))
    return bytes(table), bytes(dropped), tuple(longer), tuple(unlike)


_SPELLINGS: dict[str, str] = {}
"""``_spelled`` of the words met lately. A plain dict, looked up in one ``map`` over a
text's words: an ``lru_cache`` call per word doubled the cost of matching Cyrillic text."""
MAX_SPELLINGS = 200_000


def _spelled(word: str) -> str:
    """A word (case-folded, composed) as ``latin_words`` gives it, its words joined by
    spaces: in Latin letters when it holds a letter of another script. Apostrophes that
    stand for soft and hard signs (``ob'yavil``) are dropped rather than splitting it; a
    word of a script anyascii does not know keeps its own letters."""
    ascii_form = anyascii(word) if _foreign(word) else ""
    if ascii_form:
        spelled = " ".join(words(ascii_form.replace("'", "")))
    else:
        spelled = " ".join(words(word))
    if len(_SPELLINGS) >= MAX_SPELLINGS:
        _SPELLINGS.clear()
    _SPELLINGS[word] = spelled
    return spelled


@functools.lru_cache(maxsize=65536)
def _foreign(word: str) -> bool:
    """Whether a word holds a letter of a script other than Latin."""
    return not word.isascii() and any(
        letter.isalpha() and not unicodedata.name(letter, "").startswith("LATIN") for letter in word
    )


def plain(text: str, limit: int | None = None) -> str:
    """HTML reduced to one line of plain text, cut to ``limit`` characters with an ellipsis."""
    text = _SPACE.sub(" ", strip_html(text)).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def one_line(text: str) -> str:
    """Text safe for a header or a log line: control characters, CR and LF become spaces."""
    return _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 feed``, ``2 feeds``; ``nouns`` for the plural when adding an s is not it."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def short_duration(delay: timedelta) -> str:
    """``90s``, ``4min``, ``2h``: a wait, as a log line gives it."""
    seconds = int(delay.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}min"
    return f"{seconds // 3600}h"


def highlight(
    text: str, words: Collection[str], mark: Callable[[str], str], escape: Callable[[str], str]
) -> str:
    """Text escaped for a channel, with the words that made the match marked."""
    if not words:
        return escape(text)
    parts, last = [], 0
    for found in _WORD.finditer(text):
        if fold(found.group()) in words or _marked_in_latin(found.group(), words):
            parts += [escape(text[last : found.start()]), mark(escape(found.group()))]
            last = found.end()
    parts.append(escape(text[last:]))
    return "".join(parts)


def _marked_in_latin(word: str, marked: Collection[str]) -> bool:
    """Whether a word of another script made the match through its Latin spelling."""
    composed = unicodedata.normalize("NFC", word.casefold())
    return _foreign(composed) and any(spelled in marked for spelled in _spelled(composed).split())
