"""``transliterate``: words in other scripts also match through their Latin spelling."""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import rss
from tests.servers import Route
from watcher.config import loads
from watcher.cycle import run_once
from watcher.models import Entry
from watcher.query import parse
from watcher.rules import Matcher, Rule
from watcher.search import find
from watcher.state import NewItem, Store, open_store
from watcher.state.sql import item_words
from watcher.text import (
    _SPELLINGS,
    _WORD,
    _spelled,
    _spelled_as_cp1251,
    highlight,
    latin_words,
    words,
)

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "spelled"),
    [
        ("Песков заявил", ["peskov", "zayavil"]),
        ("Шойгу объявил", ["shoygu", "obyavil"]),  # й is y; the hard sign no split
        ("Київ і Україна", ["kiiv", "i", "ukraina"]),  # Ukrainian yi and i
        ("єдність, ґанок", ["iednist", "ganok"]),  # Ukrainian є, ґ; the soft sign dropped
        ("Αθήνα, Ερντογάν", ["athina", "erntogan"]),
        ("Peskov и Лавров", ["peskov", "i", "lavrov"]),
        ("Kırım İstanbul", None),  # Latin letters: the words are those words() gives
        ("Søren Łódź straße Peskóv", None),
        ("Peskov", None),
    ],
)
def test_words_of_other_scripts_are_spelled_in_latin_letters(text, spelled):
    assert latin_words(text) == spelled


LATIN = st.text(
    alphabet=st.sampled_from(list("abcdeklmnoprstvz ABKPZ'-.,éÉøŁłıİßçÇğşüÜ")), max_size=40
)


@given(text=LATIN, query=st.sampled_from(["peskov", "kırım", "İstanbul", "søren", "ab*", "çağ"]))
@settings(max_examples=300)
def test_latin_text_matches_the_same_with_the_option_on_and_off(text, query):
    """Latin letters (Turkish dotted and dotless i, ø, ł, accents included) are never
    transliterated: the option changes nothing for text that has no other script."""
    assert latin_words(text) is None
    node = parse(query)
    plain_rule, latin_rule = Rule("q", node), Rule("q", node, transliterate=True)
    fields = {"title": text}
    assert Matcher([plain_rule]).match(fields, "f") == Matcher([latin_rule]).match(fields, "f")


@pytest.mark.parametrize(
    ("query", "text", "words_marked"),
    [
        ("Peskov", "Дмитрий Песков заявил", ["Песков"]),
        ("Peskov*", "слова Пескова", ["Пескова"]),
        ('"Dmitriy Peskov"', "Дмитрий Песков заявил", ["Дмитрий", "Песков"]),
        ("Peskov NEAR/2 zayavil", "Песков сегодня заявил", ["Песков", "заявил"]),
        ("Peskov -Lavrov", "Песков и Лавров", None),
        ("Песков", "Dmitry Peskov said", ["Peskov"]),  # a rule written in Cyrillic
        ("Shoygu", "Шойгу", ["Шойгу"]),
        ("Athina", "Αθήνα", ["Αθήνα"]),
        ("Ukraina", "Україна", ["Україна"]),
    ],
)
def test_a_rule_with_the_option_matches_other_scripts_and_marks_the_original_words(
    query, text, words_marked
):
    rule = Rule("r", parse(query), transliterate=True)
    found = Matcher([rule]).match({"title": text}, "f")
    if words_marked is None:
        assert found == []
        return
    (match,) = found
    marked = highlight(text, match.words, lambda word: f"[{word}]", str)
    assert [part.split("]")[0] for part in marked.split("[")[1:]] == words_marked


def test_the_option_is_per_rule_and_rules_without_it_match_as_before():
    rules = [
        Rule("latin", parse("Peskov"), transliterate=True),
        Rule("plain", parse("Peskov")),
        Rule("cyrillic", parse("Песков")),
        Rule("both", parse("Песков AND Peskov")),
    ]
    matcher = Matcher(rules)
    assert [m.rule for m in matcher.match({"title": "Песков"}, "f")] == ["latin", "cyrillic"]
    assert [m.rule for m in matcher.match({"title": "Peskov"}, "f")] == ["latin", "plain"]
    assert [m.rule for m in matcher.match({"title": "Peskov, Песков"}, "f")] == [
        "latin",
        "plain",
        "cyrillic",
        "both",
    ]


def test_settings_turn_it_on_and_a_rule_may_turn_it_off():
    config = loads(
        """
settings: {transliterate: true}
feeds: [{url: "https://example.org/feed.xml"}]
rules:
  - {name: latin, query: Peskov}
  - {name: plain, query: Peskov, transliterate: false}
"""
    )
    assert [(rule.name, rule.transliterate) for rule in config.compiled_rules()] == [
        ("latin", True),
        ("plain", False),
    ]
    assert (
        not loads('feeds: [{url: "https://example.org/feed.xml"}]\nrules: [{name: r, query: x}]')
        .compiled_rules()[0]
        .transliterate
    )


def test_the_search_index_holds_the_latin_spelling_too():
    stored = item_words("wire", Entry("1", title="Песков: переговоры"))
    assert stored is not None and set(stored.split()) >= {"песков", "peskov", "peregovory"}
    assert item_words("wire", Entry("2", title="Peskov talks")) == "peskov talks wire"


def test_a_search_with_the_option_finds_other_scripts_on_each_backend(store: Store):
    for key, title in [("1", "Дмитрий Песков о переговорах"), ("2", "Peskov on the talks")]:
        store.ingest(
            "wire",
            "http://example.org/wire",
            etag=None,
            last_modified=None,
            present=[],
            new_items=[NewItem(Entry(key, title=title))],
            now=NOW,
        )
    latin = find(store, parse("Peskov AND peregovor*"), transliterate=True)
    assert [found.item.entry.key for found in latin.found] == ["1"]
    both = find(store, parse("Peskov"), transliterate=True)
    assert [found.item.entry.key for found in both.found] == ["2", "1"]
    plain = find(store, parse("Peskov"))
    assert [found.item.entry.key for found in plain.found] == ["2"]


def test_a_feed_in_cyrillic_alerts_a_latin_rule_end_to_end(make_config, feed_server, receiver):
    feed_server.routes["/ru.xml"] = Route(rss())
    config = make_config(
        settings={"transliterate": True, "timeout": "2s"},
        feeds=[{"url": feed_server.url("/ru.xml"), "name": "ru"}],
        rules=[{"name": "peskov", "query": "Peskov*", "notify": ["hook"]}],
        notify={"hook": {"type": "webhook", "url": receiver.url("/hook")}},
    )
    run_once(config)  # the baseline
    feed_server.routes["/ru.xml"] = Route(
        rss(
            {
                "guid": "1",
                "title": "Заявление Пескова о переговорах",
                "link": "https://ru.example/1",
            },
            {"guid": "2", "title": "Погода в Москве", "link": "https://ru.example/2"},
        )
    )
    report = run_once(config)
    assert report.delivery.sent == 1
    (request,) = receiver.requests
    payload = json.loads(request.body)
    assert payload["item"]["title"] == "Заявление Пескова о переговорах"
    assert payload["matched"] == ["Peskov*"] and payload["highlight"] == ["peskova"]


def test_items_stored_before_get_their_latin_spelling_indexed(tmp_path):
    path = tmp_path / "old.db"
    store = open_store(str(path))
    for key, title in [("1", "Дмитрий Песков"), ("2", "Peskov talks")]:
        store.ingest(
            "wire",
            "u",
            etag=None,
            last_modified=None,
            present=[],
            new_items=[NewItem(Entry(key, title=title))],
            now=NOW,
        )
    store.close()
    connection = sqlite3.connect(path)
    with connection:  # as the index was before: the words in their own script only
        connection.execute("UPDATE items SET words = 'дмитрии песков wire' WHERE key = '1'")
        connection.execute("DELETE FROM _sqlite_migrations WHERE name = 'index_latin_spellings'")
    connection.close()
    store = open_store(str(path))
    try:
        found = find(store, parse("Peskov"), transliterate=True)
        assert [f.item.entry.key for f in found.found] == ["2", "1"]
    finally:
        store.close()


CP1251 = bytes(range(32, 256)).decode("cp1251", errors="ignore")


@given(st.text(alphabet=st.sampled_from(list(CP1251 + "Песков Київ ґ є ї і ъ ь ")), max_size=60))
@settings(max_examples=500)
def test_text_windows_1251_holds_is_spelled_as_word_by_word(text):
    """The letter-at-a-time path for text Windows-1251 can hold (most Cyrillic news) gives
    the very words of the word-by-word path, which every other script takes."""
    fast = _spelled_as_cp1251(text)
    if fast is None:
        return
    found = _WORD.findall(unicodedata.normalize("NFC", text.casefold()))
    _SPELLINGS.clear()
    word_by_word = " ".join(_spelled(word) for word in found).split()
    assert words(fast) == word_by_word
