from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st

from tests.attack.bounded import run_bounded
from watcher.text import plain, strip_html

_OLD_MARKUP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.S | re.I)
"""The expression strip_html used to run: the reference for what it must still do."""

_PIECES = [
    "<", ">", "<!--", "-->", "--", "<script", "<SCRIPT", "</script>", "</Script \n>", "</script",
    "<style", "</style >", "<scripts>", "<b>", "</b>", "<p class='x'>", "a", "Ü", " ", "\n",
    "&", "&lt;", "&amp;", "&#", "&#x", "1", "9", "0", ";", "é", "&eacute;",
]  # fmt: skip


@given(st.lists(st.sampled_from(_PIECES), max_size=25).map("".join))
def test_strip_html_does_what_the_old_expression_did(text):
    assert strip_html(text) == html.unescape(_OLD_MARKUP.sub(" ", text))


def test_strip_html_keeps_its_meaning():
    assert strip_html("<p>Istan<!-- x -->bul</p><script>evil()</script>&eacute;t&eacute;") == (
        " Istan bul  été"
    )
    assert strip_html("a < b and c > d") == "a   d"  # as before: < to the next > is a tag
    assert strip_html("Istanbul <<<< talks") == "Istanbul <<<< talks"  # no > after: text
    assert strip_html("<style>p {}</STYLE><script src=x>a<b>c</script >d") == "  d"
    assert strip_html("<script>never closed <b>bold</b>") == " never closed  bold "


def test_numeric_references_of_many_digits_are_decoded():
    # Python refuses to convert over 4,300 digits: html.unescape raised ValueError
    assert strip_html("&#" + "0" * 5000 + "65;&#" + "9" * 5000 + ";x") == "A\ufffdx"
    assert strip_html("&#00000000065 &#99999999;") == "A \ufffd"


def test_stripping_takes_linear_time_on_unclosed_markup():
    # The old expression took 4.5 s on 80,000 characters and quadratic time beyond: the
    # first of these would have taken about ten minutes, and each < held the GIL
    out = run_bounded(
        """
        from watcher.text import plain, strip_html
        for text in (
            "Istanbul " + "<" * 1_000_000,
            "Istanbul " + "<!--" * 250_000,
            "<script>" * 125_000,
            "<style " * 150_000,
            "<!--<script<style>" * 50_000,
            "&#" + "9" * 1_000_000,
        ):
            plain(strip_html(text))
        print("ok")
        """,
        seconds=30,
    )
    assert out == "ok\n"


def test_plain_of_a_huge_unclosed_text_keeps_the_text():
    assert plain("Istanbul " + "<" * 100_000, limit=12) == "Istanbul <<…"
