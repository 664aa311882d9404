from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import watcher.search
from watcher.cli import main
from watcher.errors import QueryError
from watcher.models import Entry
from watcher.query import And as AndNode
from watcher.query import Near, Node, Not, Or, parse, regex, term
from watcher.rules import Matcher, Rule
from watcher.search import MAX_CLAUSES, find, prefilter
from watcher.state import NewItem, Store, open_store
from watcher.state.sql import index_word, item_words

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def words(*found: str, prefix: bool = False) -> frozenset[tuple[str, bool]]:
    return frozenset((word, prefix) for word in found)


@pytest.mark.parametrize(
    ("query", "clauses"),
    [
        ("Peskov", [words("peskov")]),
        ("Peskóv's", [words("peskov"), words("s")]),
        ("cease-fire", [words("cease"), words("fire")]),
        ('"Istanbul talks"', [words("istanbul"), words("talks")]),
        ("negotiat*", [words("negotiat", prefix=True)]),
        ("Peskov OR Lavrov", [words("peskov", "lavrov")]),
        ("Peskov AND talks", [words("peskov"), words("talks")]),
        ("Peskov talks -Lavrov", [words("peskov"), words("talks")]),
        ("Peskov NEAR/5 (talks OR summit)", [words("peskov"), words("talks", "summit")]),
        ("(Peskov talks) OR Lavrov", [words("peskov", "lavrov")]),
        ("title:Peskov OR feed:reuters", [words("peskov", "reuters")]),
        ("Peskov peskov* pesk*", [words("peskov")]),
        ("peskovich peskov", [words("peskovich"), words("peskov")]),
        ("a* Peskov", [words("peskov")]),
        ("a* OR Peskov", [{("a", True), ("peskov", False)}]),
        ("a*", [words("a", prefix=True)]),
        ("/peace\\s+process/", []),
        ("NOT Peskov", []),
        ("Peskov OR /talks?/", []),
        ("Peskov OR -Lavrov", []),
        ("/talks?/ Peskov", [words("peskov")]),
    ],
)
def test_prefilter_is_what_every_match_holds(query, clauses):
    assert sorted(prefilter(parse(query)), key=sorted) == sorted(clauses, key=sorted)


def test_prefilter_keeps_the_most_selective_clauses():
    query = parse("(a OR b) " + " ".join(f"w{i}x" for i in range(20)))
    found = prefilter(query)
    assert len(found) == MAX_CLAUSES and words("a", "b") not in found


# Property: every item the matcher matches satisfies the prefilter, so a search finds every
# item a rule with the same query would match.

VOCABULARY = [
    "Peskov",
    "Peskóv",
    "PESKOV",
    "peskovich",
    "cease-fire",
    "Cease fire",
    "ceasefire",
    "Straße",
    "strasse",
    "Istanbul",
    "İstanbul",
    "talks",
    "talk",
    "été",
    "&eacute;t&eacute;",
    "<b>talks</b>",
    "x" * 250,
    "x" * 201,
    "reuters",
]
TEXTS = st.lists(st.sampled_from(VOCABULARY), max_size=6).map(" ".join)
ENTRIES = st.builds(
    lambda title, summary, author, tag, link: Entry(
        "k",
        title=title,
        summary=summary,
        author=author,
        tags=(tag,) if tag else (),
        link=f"https://n.example.org/{link}",
    ),
    TEXTS,
    TEXTS,
    TEXTS,
    TEXTS,
    st.sampled_from(["talks", "peskov-story", "x"]),
)
FEEDS = st.sampled_from(["wire", "reuters", "Istanbul news"])
FIELDS = st.sampled_from([None, None, "title", "summary", "author", "tags", "link", "feed"])
TERMS = st.builds(
    lambda text, prefix, field: term(text + ("*" if prefix else ""), field=field),
    st.sampled_from([*VOCABULARY[:16], "pesk", "x" * 220, "x" * 199, "ist", "t", "reut"]),
    st.booleans(),
    FIELDS,
)
REGEXES = st.builds(regex, st.sampled_from(["pesk.v", "^talks$", "ce+ase", "x{210}"]))
POSITIONAL = st.recursive(
    TERMS,
    lambda inner: st.one_of(
        st.builds(lambda a, b: Or((a, b)), inner, inner),
        st.builds(Near, inner, inner, st.integers(1, 3)),
    ),
    max_leaves=4,
)
QUERIES: st.SearchStrategy[Node] = st.recursive(
    st.one_of(POSITIONAL, POSITIONAL, POSITIONAL, REGEXES),  # mostly what the index can narrow
    lambda inner: st.one_of(
        st.builds(lambda a, b: AndNode((a, b)), inner, inner),
        st.builds(lambda a, b: Or((a, b)), inner, inner),
        st.builds(lambda a, b: AndNode((a, Not(b))), inner, inner),
        st.builds(Not, inner),
    ),
    max_leaves=6,
)


def corpus() -> list[tuple[str, Entry]]:
    """Items, oldest first: a few written out, then many drawn with a fixed seed."""
    written = [
        ("wire", Entry("1", title="Peskóv on the cease-fire", tags=("Kremlin",))),
        ("reuters", Entry("2", summary="<p>Cease fire talks in İstanbul</p>")),
        ("wire", Entry("3", content="Straße &eacute;t&eacute; talk", author="PESKOV")),
        ("Istanbul news", Entry("4", title="x" * 250, link="https://n.example.org/talks")),
        ("wire", Entry("5", title="peskovich ceasefire", summary="été strasse")),
        ("reuters", Entry("6", title="<b>talks</b> resume", summary="Peskov talks")),
    ]
    draw = random.Random(11)

    def text() -> str:
        return " ".join(draw.choices(VOCABULARY, k=draw.randint(0, 5)))

    drawn = [
        (
            draw.choice(["wire", "reuters", "Istanbul news"]),
            Entry(f"d{n}", title=text(), summary=text(), author=text(), tags=(text(),)),
        )
        for n in range(40)
    ]
    return written + drawn


CORPUS = corpus()


def satisfies(clauses: tuple[frozenset[tuple[str, bool]], ...], stored: str | None) -> bool:
    """Whether an item whose indexed words are ``stored`` is a candidate."""
    if stored is None:
        return True
    held = stored.split()
    return all(
        any(
            any(word.startswith(w) if prefix else word == w for word in held)
            for w, prefix in (index_word(*found) for found in clause)
        )
        for clause in clauses
    )


@given(QUERIES, ENTRIES, FEEDS)
@hypothesis_settings(max_examples=300)
def test_every_item_the_matcher_matches_is_a_candidate(query, entry, feed):
    matcher, clauses = Matcher([Rule("q", query)]), prefilter(query)
    for name, item in [(feed, entry), *CORPUS]:
        if matcher.match(item.searchable(), name):
            assert satisfies(clauses, item_words(name, item)), (name, item)


def test_a_search_finds_what_the_matcher_matches_on_each_backend(store):
    for feed, entry in CORPUS:
        store.ingest(
            feed,
            f"http://example.org/{feed}",
            etag=None,
            last_modified=None,
            present=[],
            new_items=[NewItem(entry)],
            now=NOW,
        )
    newest_first = CORPUS[::-1]

    @given(QUERIES)
    @hypothesis_settings(max_examples=60)
    def check(query: Node) -> None:
        matcher = Matcher([Rule("q", query)])
        expected = [e.key for f, e in newest_first if matcher.match(e.searchable(), f)]
        result = find(store, query, limit=100)
        assert [f.item.entry.key for f in result.found] == expected
        assert result.complete

    check()


def test_a_search_reads_at_most_its_bound_and_says_when_it_stopped(db: Store):
    items = [NewItem(Entry(f"k{i}", title=f"item {i}")) for i in range(30)]
    db.ingest("f", "u", etag=None, last_modified=None, present=[], new_items=items, now=NOW)
    stopped = find(db, parse("/item 3$/"), limit=5, examine=20)
    assert (stopped.found, stopped.examined, stopped.complete) == ((), 20, False)
    whole = find(db, parse("/item 3$/"), limit=5, examine=30)
    assert [f.item.entry.key for f in whole.found] == ["k3"] and whole.complete
    first = find(db, parse("item"), limit=2)
    assert [f.item.entry.key for f in first.found] == ["k29", "k28"] and first.complete


# The command.


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("WATCHER_CONFIG", raising=False)
    return CliRunner()


def configured(tmp_path: Path, database: str, *entries: Entry) -> Path:
    """A config on ``database``, which holds the entries, stored in that order."""
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "watch.yaml"
    data = {
        "settings": {"database": database, "listen": None},
        "feeds": [{"url": "http://127.0.0.1:9/feed.xml", "name": "world"}],
        "rules": [{"name": "talks", "query": "talks"}],
    }
    path.write_text(yaml.safe_dump(data))
    store = open_store(database)
    try:
        for entry in entries:
            store.ingest(
                "world",
                "http://127.0.0.1:9/feed.xml",
                etag=None,
                last_modified=None,
                present=[],
                new_items=[NewItem(entry)],
                now=NOW,
            )
    finally:
        store.close()
    return path


HYPHENS = (
    Entry("1", title="A cease-fire holds", link="https://n.example.org/1"),
    Entry("2", title="Fire in the hills", summary="Crews cease work"),
    Entry("3", title="Cease fire, says the UN", link="https://n.example.org/3"),
    Entry("4", title="Peskóv on the talks", link="https://n.example.org/4"),
)


def search(runner: CliRunner, path: Path, *arguments: str):
    return runner.invoke(main, ["search", *arguments, "-c", str(path)])


def test_a_hyphenated_word_finds_the_phrase_in_any_spelling(runner, tmp_path):
    path = configured(tmp_path, str(tmp_path / "w.db"), *HYPHENS)
    result = search(runner, path, "cease-fire")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["SEEN", "FEED", "TITLE", "LINK"]
    assert [row.split()[3:] for row in rows] == [
        ["world", "Cease", "fire,", "says", "the", "UN", "https://n.example.org/3"],
        ["world", "A", "cease-fire", "holds", "https://n.example.org/1"],
    ]


def test_a_bad_query_names_its_true_column_and_exits_2(runner, tmp_path):
    path = configured(tmp_path, str(tmp_path / "w.db"), *HYPHENS)
    with pytest.raises(QueryError) as parsed:
        parse("Istanbul AND (")
    assert parsed.value.column > 1
    result = search(runner, path, "Istanbul AND (")
    assert result.exit_code == 2
    assert result.stderr == f"error: query: column {parsed.value.column}: {parsed.value.message}\n"
    assert result.stdout == ""


def test_a_regular_expression_alone_searches_the_newest_items(runner, tmp_path, monkeypatch):
    path = configured(tmp_path, str(tmp_path / "w.db"), *HYPHENS)
    result = search(runner, path, "/cease.fire/", "--json")
    assert result.exit_code == 0, result.output
    assert [item["key"] for item in yaml.safe_load(result.stdout)] == ["3", "1"]
    assert result.stderr == ""
    monkeypatch.setattr(watcher.search, "MAX_EXAMINED", 1)
    stopped = search(runner, path, "/cease.fire/")
    assert stopped.exit_code == 1
    assert stopped.stdout == "nothing found\n"
    assert stopped.stderr == (
        "searched only the newest 1 items that could match; older ones were not read\n"
    )


def test_search_limits_its_results(runner, tmp_path):
    path = configured(tmp_path, str(tmp_path / "w.db"), *HYPHENS)
    result = search(runner, path, "cease OR fire", "--limit", "1", "--json")
    assert [item["key"] for item in yaml.safe_load(result.stdout)] == ["3"]
    assert search(runner, path, "fire", "--limit", "0").exit_code == 2


def test_search_on_postgresql_is_the_same_language_accents_and_all(runner, tmp_path, postgres_url):
    on_sqlite = configured(tmp_path / "sqlite", str(tmp_path / "w.db"), *HYPHENS)
    bad_query = search(runner, on_sqlite, "Istanbul AND (")
    path = configured(tmp_path, postgres_url, *HYPHENS)
    result = search(runner, path, "cease-fire")
    assert result.exit_code == 0, result.output
    assert [row.split()[4] for row in result.stdout.splitlines()[1:]] == ["Cease", "A"]
    accented = search(runner, path, "Peskov", "--json")
    assert [item["title"] for item in yaml.safe_load(accented.stdout)] == ["Peskóv on the talks"]
    assert search(runner, path, "/pesk.v/").exit_code == 0
    bad = search(runner, path, "Istanbul AND (")
    assert bad.exit_code == 2 and bad.stderr == bad_query.stderr
