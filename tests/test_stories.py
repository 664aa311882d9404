"""One alert per story: reports of the same event from several outlets alert a rule once.

The grouping is checked on the hand-written corpus (tests/data/stories*.yaml, replayed
through a real SQLite store by tests/story_corpus.py), on bad input, in the notifiers'
messages, in ``watcher matches``, and end to end with real feed and webhook servers.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests import story_corpus
from tests.conftest import rss
from tests.servers import Route
from watcher.cli import main
from watcher.config import loads
from watcher.cycle import run_once
from watcher.models import Alert, Digest, Entry, Story, StoryReport
from watcher.notify.discord import digest_message as discord_digest
from watcher.notify.discord import message as discord_message
from watcher.notify.email import build, build_digest
from watcher.notify.slack import digest_message as slack_digest
from watcher.notify.slack import message as slack_message
from watcher.notify.webhook import payload
from watcher.rules import Hit, Match
from watcher.state import NewItem, Store, open_store
from watcher.stories import Report, Weights, compare, ignored, report_of

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
DAY = timedelta(hours=24)


# what a report is made of


def test_outlets_naming_one_thing_differently_share_its_word():
    eu = report_of("EU agrees 20th sanctions package against Russia", "")
    brussels = report_of("Brussels adopts twentieth round of Moscow sanctions", "")
    assert {"eu", "russia", "20", "sanction"} <= eu.words.keys() & brussels.words.keys()
    kyiv = report_of("Kyiv and Kiev, Ukrainian officials and the U.S. and Washington", "")
    assert {"ukraine", "usa"} <= kyiv.words.keys()
    assert report_of("Zelenskiy", "").words.keys() == report_of("Zelenskyy", "").words.keys()


def test_a_word_and_its_synonyms_are_one_word_however_written():
    """ "Truce", "ceasefire", "ceasefires" and "cease fire" are one word, so a rule
    ``ceasefire`` ignores all of them (they are in every story it matches) and two
    reports saying it in different words share it."""
    forms = ["Truce holds", "Ceasefire holds", "Ceasefires hold", "Cease fire holds"]
    words = [set(report_of(title, "").words) for title in forms]
    assert all(found == words[0] for found in words)
    assert not set(report_of("Truce holds", "").words) - ignored(["ceasefire"]) - {"hold"}
    hostages = [report_of(title, "").words.keys() for title in ("Captives freed", "Hostages freed")]
    assert hostages[0] == hostages[1]


def test_a_capital_a_demonym_and_a_country_are_one_place():
    tokyo = report_of("Tokyo tightens sanctions", "Japanese banks are named.").words
    japan = report_of("Japan imposes sanctions", "").words
    assert tokyo["japan"] == japan["japan"] == "pt"
    saudi = [report_of(title, "").words.keys() for title in ("Talks in Riyadh", "Saudi Arabia")]
    assert "saudi" in saudi[0] & saudi[1]
    assert report_of("IDF strikes", "").words.keys() == {"israel", "strik"}


def test_a_name_that_starts_with_its_family_name_keeps_the_family_name():
    """Outlets write Wang Yi or Wang, Xi Jinping or Xi: the family name is the part kept,
    so the two reports name one person and no headline sets them apart."""
    tass = report_of("Lavrov, Wang Yi hold talks in Beijing", "")
    reuters = report_of("Russia's Lavrov meets China's Wang in Beijing", "")
    assert tass.words["wang"] == reuters.words["wang"] == "et"
    assert "yi" not in tass.words
    verdict = compare(tass, reuters, Weights(10, {}), ignored(["Lavrov"]))
    assert verdict.apart == ((), ())
    assert report_of("", "Putin met President Xi Jinping.").words.keys() == {"putin", "xi", "met"}


def test_a_report_knows_names_numbers_and_places_and_counts_a_name_once():
    found = report_of(
        "Starmer hosts Zelensky in London",
        "Prime Minister Keir Starmer welcomed President Volodymyr Zelensky, the Foreign"
        " Office said, as 117 vessels sailed the Baltic Sea.",
    ).words
    assert found["starmer"][0] == "e" and found["zelensky"][0] == "e"
    assert "keir" not in found and "volodymyr" not in found  # first names and titles
    assert found["baltic"][0] == "e" and "sea" not in found  # the head of a name
    assert found["117"] == "n" and found["uk"] == "pt"  # London: a place, in the headline
    assert found["host"] == "wt"


def test_numbers_are_compared_whole_and_written_one_way():
    found = report_of("Talks 3.1 and 7.1 on the 20th", "Brent rose 4.5% to $1,000.50; 007").words
    assert {"3.1", "7.1", "20", "4.5", "1000.50", "7"} <= found.keys()
    assert {word for word, kind in found.items() if kind[0] == "n"} == {
        "3.1",
        "7.1",
        "20",
        "4.5",
        "1000.50",
        "7",
    }


def test_a_headline_in_title_case_or_capitals_names_no_one_by_its_capitals():
    titled = report_of("Lavrov Offers Russian Mediation Between Iran And U.S.", "").words
    assert titled["offer"][0] == "w" and titled["mediation"][0] == "w"
    assert titled["iran"][0] == "p" and titled["usa"][0] == "p"
    shouted = report_of("EXCLUSIVE: KREMLIN REJECTS PLAN", "").words
    assert {kind[0] for kind in shouted.values()} <= {"w", "p"}


def test_a_report_survives_its_encoding_and_bad_stored_text():
    report = report_of("Peskov: talks in Istanbul on 15 May", "The <b>Kremlin</b> said so.")
    assert Report.decode(report.encode()) == report
    assert Report.decode(None).words == {} and Report.decode("{not json").words == {}
    assert Report.decode("[1, 2]").words == {}


# deciding


def test_a_decision_explains_itself():
    weights = Weights(10, {})
    first = report_of(
        "EU agrees 20th sanctions package against Russia",
        "Targeting shadow fleet tankers.",
    )
    second = report_of("Brussels adopts 20th Moscow sanctions package", "Shadow fleet hit.")
    verdict = compare(first, second, weights, ignored(["sanctions"]))
    assert verdict.same
    assert verdict.explain().startswith("same story: score ")
    assert "20 " in verdict.explain() and "shadow" in verdict.explain()


def test_the_same_person_on_two_subjects_is_two_stories():
    weights = Weights(10, {"russia": 5})
    ignore = ignored(["lavrov"])
    sanctions = report_of(
        "Lavrov dismisses new EU sanctions",
        "Foreign Minister Sergei Lavrov said Russia had adapted to Western sanctions.",
    )
    iran = report_of(
        "Lavrov urges halt to strikes on Iran",
        "Foreign Minister Sergei Lavrov called on Israel to stop attacks on Iran.",
    )
    assert not compare(sanctions, iran, weights, ignore).same


def test_a_headline_naming_someone_the_other_report_never_mentions_sets_them_apart():
    weights = Weights(10, {})
    ignore = ignored(["ceasefire"])
    plan = report_of(
        "Zelensky backs 30-day energy ceasefire proposal",
        "Ukraine would halt strikes on energy infrastructure for 30 days.",
    )
    answer = report_of(
        "Kremlin studies 30-day energy ceasefire proposal, Peskov says",
        "Russia will consider the halt to strikes on energy infrastructure for 30 days.",
    )
    verdict = compare(answer, plan, weights, ignore)
    assert verdict.score >= verdict.threshold  # the words alone would merge them
    assert not verdict.same
    assert "the new headline's peskov: not in the other report" in verdict.explain()


def test_a_headline_naming_a_new_actor_the_next_day_tells_a_development():
    """Outlets tell one event within hours, naming its actors each their own way; a day
    later, a headline naming someone the story never mentioned is a reaction: its own
    story, which alerts."""
    weights = Weights(10, {})
    ignore = ignored(["ceasefire"])
    offer = report_of(
        "Ukraine's Zelensky offers Russia an Easter ceasefire on energy strikes",
        "Ukraine would halt strikes on Russian refineries over Easter if Moscow did the same.",
    )
    answer = report_of(
        "Easter ceasefire offer is a ploy to rearm, Lavrov says",
        "Russia dismissed Zelensky's proposal to halt strikes on refineries over Easter.",
    )
    soon = compare(answer, offer, weights, ignore, timedelta(hours=1))
    assert soon.same  # within hours, the same event (the words and Zelensky bind them)
    late = compare(answer, offer, weights, ignore, timedelta(hours=20))
    assert late.score >= late.threshold  # the words alone would still merge them
    assert not late.same
    assert "the new headline's lavrov: not in the other report" in late.explain()


def test_a_headline_giving_a_new_figure_the_next_day_tells_a_development():
    weights = Weights(10, {})
    ignore = ignored(["truce"])
    truce = report_of(
        "Putin declares a 30-hour Easter truce in Ukraine",
        "Russian forces will halt fighting from Saturday evening, the Kremlin said.",
    )
    count = report_of(
        "Easter truce broken 2,900 times, Kyiv says",
        "Russian forces kept shelling through the 30-hour truce Putin declared for Easter.",
    )
    assert compare(count, truce, weights, ignore, timedelta(hours=1)).same
    late = compare(count, truce, weights, ignore, timedelta(hours=15))
    assert late.score >= late.threshold and not late.same
    assert "the new headline's 2900: not in the other report" in late.explain()
    tally = report_of(
        "Kyiv counts Russian breaches of Putin's Easter truce",
        "Ukraine said Russian forces broke the 30-hour truce 2,900 times over Easter.",
    )
    assert compare(count, tally, weights, ignore, timedelta(hours=15)).same  # a known figure


# the corpus: tuning part, and the held-out parts written after the tuning


def grouped(tmp_path: Path, path: Path) -> story_corpus.Figures:
    store = open_store(tmp_path / f"{path.stem}.db")
    try:
        return story_corpus.figures(story_corpus.replay(store, story_corpus.load(path)))
    finally:
        store.close()


def test_the_tuning_corpus_is_grouped_losing_no_story(tmp_path):
    figures = grouped(tmp_path, story_corpus.TUNING)
    assert figures.lost == 0
    assert figures.wrong_merges == ()
    assert figures.suppressed >= 0.85
    assert (figures.matches, figures.pairs) == (61, 23)


def test_the_paraphrased_eu_package_is_one_story_and_lavrov_two(tmp_path):
    store = open_store(tmp_path / "w.db")
    groupings = story_corpus.replay(store, story_corpus.load())
    store.close()
    by_story: dict[tuple[str, str], set[int]] = {}
    for g in groupings:
        by_story.setdefault((g.rule, g.report.story), set()).add(g.story)
    package = [
        g.story
        for g in groupings
        if g.rule == "sanctions" and g.report.outlet in ("reuters", "politico", "dw")
        if g.report.story == "eu-20th-package"
    ]
    assert len(set(package)) == 1  # "EU agrees 20th ..." and "Brussels adopts fresh round ..."
    lavrov = by_story[("lavrov", "lavrov-on-sanctions")] | by_story[("lavrov", "lavrov-on-iran")]
    assert not by_story[("lavrov", "lavrov-on-sanctions")] & by_story[("lavrov", "lavrov-on-iran")]
    assert len(lavrov) >= 2
    gaza = by_story[("ceasefire", "gaza-truce-extended")]
    assert not gaza & by_story[("ceasefire", "gaza-strike-despite-truce")]
    assert not by_story[("ceasefire", "ukraine-energy-truce")] & gaza


@pytest.mark.parametrize(
    ("path", "suppressed"),
    [
        (story_corpus.HELD_OUT, 0.88),
        (story_corpus.HELD_OUT_2, 0.8),
        (story_corpus.HELD_OUT_3, 0.82),
    ],
)
def test_the_held_out_corpora_lose_no_story_and_merge_no_two(tmp_path, path, suppressed):
    """Written after the tuning, the third blind; the figures (bench/bench_stories.py) are
    lower than on the tuning part. Held-out 2 and 3 each had one wrong merge, a follow-up
    grouped into the story it follows, before ``FOLLOW_UP``: a headline naming someone, or
    giving a figure, that the earlier report never mentions."""
    figures = grouped(tmp_path, path)
    assert figures.lost == 0
    assert figures.wrong_merges == ()
    assert figures.suppressed >= suppressed


# bad input


PESKOV = Match("peskov", ("Peskov",), ("hook",), (Hit("Peskov", "title", ("peskov",)),), DAY)


def ingest(store: Store, feed: str, entries: list[Entry], now: datetime = NOW) -> int:
    return store.ingest(
        feed,
        f"https://{feed}.example/rss",
        etag=None,
        last_modified=None,
        present=[entry.key for entry in entries],
        new_items=[NewItem(entry, (PESKOV,)) for entry in entries],
        now=now,
    )


def test_reports_with_empty_titles_are_never_grouped(db):
    empty = [Entry(f"k{n}", link=f"https://x.example/{n}", content="Peskov") for n in range(3)]
    assert ingest(db, "a", empty[:2]) == 2
    assert ingest(db, "b", empty[2:], NOW + timedelta(minutes=1)) == 1


def test_titles_that_are_only_a_name_are_never_grouped(db):
    names = [Entry(f"k{n}", title="Peskov", link=f"https://x.example/{n}") for n in range(2)]
    names.append(Entry("k9", title="Dmitry Peskov", link="https://x.example/9"))
    assert ingest(db, "a", names) == 3


def test_a_feed_that_republishes_everything_with_new_ids_alerts_nothing_again(db):
    told = [
        Entry(
            "1",
            title="Kremlin rejects energy truce plan, Peskov says",
            link="https://a.example/1",
            summary="Kremlin spokesman Dmitry Peskov said Moscow rejected the 30-day truce.",
        ),
        Entry(
            "2",
            title="Peskov: Putin and Trump may talk by phone this week",
            link="https://a.example/2",
            summary="A phone call between Vladimir Putin and Donald Trump is possible.",
        ),
    ]
    assert ingest(db, "a", told) == 2
    again = [replace(entry, key=f"new-{entry.key}", link=entry.link + "?v=2") for entry in told]
    assert ingest(db, "a", again, NOW + timedelta(hours=1)) == 0
    stories = db.stories(NOW - DAY)
    assert sorted(len(story.reports) for story in stories) == [2, 2]
    assert {story.outlets for story in stories} == {("a",)}


def test_a_story_that_runs_for_days_opens_a_new_story_after_its_window(db):
    told = Entry(
        "1",
        title="Kremlin rejects energy truce plan, Peskov says",
        link="https://a.example/1",
        summary="Kremlin spokesman Dmitry Peskov said Moscow rejected the 30-day truce.",
    )
    hours = [0, 10, 23, 26, 40, 51]
    alerts = [
        ingest(
            db,
            f"f{h}",
            [replace(told, key=f"k{h}", link=f"https://f{h}.example/")],
            NOW + timedelta(hours=h),
        )
        for h in hours
    ]
    assert alerts == [1, 0, 0, 1, 0, 1]  # each story lasts 24 h from its first report


# what leaves


def alert(story: Story | None) -> Alert:
    return Alert(
        delivery_id="d-1",
        rule="peskov",
        terms=("Peskov",),
        feed_name="tass",
        feed_url="https://tass.example/rss",
        item=Entry("k", title="Kremlin rejects <truce> plan", link="https://tass.example/1"),
        detected_at=NOW,
        story=story,
    )


STORY = Story(
    7,
    tuple(
        StoryReport(feed, f"Truce rejected ({feed})", f"https://{feed}.example/1", None, NOW)
        for feed in ("tass", "reuters", "meduza", "reuters")
    ),
)


def test_the_webhook_payload_carries_the_story_and_its_reports():
    story = payload(alert(STORY))["story"]
    assert story["id"] == 7
    assert [r["feed"] for r in story["reports"]] == ["tass", "reuters", "meduza", "reuters"]
    assert story["reports"][1] == {
        "feed": "reuters",
        "title": "Truce rejected (reuters)",
        "link": "https://reuters.example/1",
        "published": None,
        "detected_at": "2026-03-02T12:00:00Z",
    }
    assert "story" not in payload(alert(None))


def test_chat_and_email_alerts_say_who_else_reported_the_story():
    assert alert(STORY).also_reported_by == ("reuters", "meduza")
    slack = slack_message(alert(STORY))["blocks"][0]["text"]["text"]
    assert "_Also reported by reuters, meduza_" in slack
    discord = discord_message(alert(STORY))["embeds"][0]["description"]
    assert "Also reported by reuters, meduza" in discord
    mail = build(alert(STORY), "w@example.org", ("desk@example.org",))
    text, html = (part.get_content() for part in mail.iter_parts())
    assert "Also reported by: reuters, meduza" in text
    assert "Also reported by reuters, meduza" in html
    alone = alert(Story(8, STORY.reports[:1]))
    assert "Also reported" not in slack_message(alone)["blocks"][0]["text"]["text"]
    assert "Also reported" not in build(alone, "w@example.org", ("d@example.org",)).as_string()


def test_digests_give_one_line_per_story_with_its_other_sources():
    digest = Digest("g", NOW, NOW + timedelta(hours=1), (alert(STORY), alert(None)))
    lines = [block["text"]["text"] for block in slack_digest(digest)["blocks"][1:]]
    assert lines[0].endswith("peskov_, tass (+2 sources)") and lines[1].endswith(", tass")
    description = discord_digest(digest)["embeds"][0]["description"]
    assert "tass \\(+2 sources\\)" in description
    text = build_digest(digest, "w@example.org", ("d@example.org",)).get_body(("plain",))
    assert "peskov, tass (+2 sources)" in text.get_content()


# configuration


def test_the_story_window_defaults_to_a_day_and_a_rule_may_change_or_drop_it():
    config = loads(
        yaml.safe_dump(
            {
                "rules": [
                    {"name": "a", "query": "x"},
                    {"name": "b", "query": "x", "stories": "2h"},
                    {"name": "c", "query": "x", "stories": None},
                ]
            }
        ),
        env={},
    )
    assert [rule.stories for rule in config.compiled_rules()] == [DAY, timedelta(hours=2), None]
    off = loads(
        yaml.safe_dump({"settings": {"stories": None}, "rules": [{"name": "a", "query": "x"}]}),
        env={},
    )
    assert [rule.stories for rule in off.compiled_rules()] == [None]


# end to end: five outlets, one story, one webhook delivery


OUTLETS = {
    "tass": (
        "Kremlin rejects US energy truce plan - Peskov",
        "Kremlin spokesman Dmitry Peskov said Moscow rejected the 30-day moratorium on strikes on energy sites proposed by Washington.",
    ),
    "reuters": (
        "Kremlin says no to 30-day energy ceasefire, Peskov says",
        "Russia will not accept a US proposal for a 30-day halt to strikes on energy infrastructure, Kremlin spokesman Dmitry Peskov told reporters.",
    ),
    "meduza": (
        "Peskov: Russia rejects energy truce proposed by US",
        "Dmitry Peskov said the Kremlin would not agree to the 30-day pause in strikes on energy facilities.",
    ),
    "interfax": (
        "Moscow turns down 30-day energy strikes moratorium - Peskov",
        "The Kremlin rejected the American proposal of a 30-day moratorium on energy strikes, Peskov said.",
    ),
    "dw": (
        "Kremlin rejects US plan for 30-day energy truce, Peskov says",
        "Russia's presidential spokesman Dmitry Peskov said Moscow would not halt strikes on energy infrastructure for 30 days.",
    ),
}


@pytest.fixture
def five_outlets(make_config, feed_server, receiver):
    for outlet in OUTLETS:
        feed_server.routes[f"/{outlet}.xml"] = Route(rss())
    return make_config(
        settings={"timeout": "2s"},
        feeds=[{"url": feed_server.url(f"/{outlet}.xml"), "name": outlet} for outlet in OUTLETS],
        rules=[{"name": "peskov", "any": ["Peskov"], "notify": ["hook"]}],
        notify={"hook": {"type": "webhook", "url": receiver.url("/hook")}},
    )


def publish(feed_server, *outlets: str) -> None:
    for outlet in outlets:
        title, lead = OUTLETS[outlet]
        item = {
            "guid": outlet,
            "title": title,
            "link": f"https://{outlet}.example/1",
            "description": lead,
        }
        feed_server.routes[f"/{outlet}.xml"] = Route(rss(item))


def test_five_outlets_reporting_one_story_make_one_delivery(
    five_outlets, feed_server, receiver, monkeypatch
):
    assert not run_once(five_outlets).failed  # the baseline: empty feeds
    publish(feed_server, "tass", "reuters")
    assert run_once(five_outlets).delivery.sent == 1
    (first,) = receiver.bodies("/hook")
    # the feeds are polled at once: either may come first
    assert sorted(r["feed"] for r in first["story"]["reports"]) == ["reuters", "tass"]
    publish(feed_server, "tass", "reuters", "meduza", "interfax", "dw")
    assert run_once(five_outlets).delivery.sent == 0
    assert len(receiver.bodies("/hook")) == 1
    monkeypatch.delenv("WATCHER_CONFIG", raising=False)
    monkeypatch.delenv("WATCHER_DB", raising=False)
    path = Path(five_outlets.settings.database).parent / "watch.yaml"
    settings = {"database": five_outlets.settings.database, "listen": None}
    rules = [{"name": "peskov", "any": ["Peskov"]}]
    path.write_text(yaml.safe_dump({"settings": settings, "rules": rules}))
    runner = CliRunner()
    listed = runner.invoke(main, ["matches", "--json", "-c", str(path)])
    assert listed.exit_code == 0, listed.output
    (story,) = json.loads(listed.stdout)
    assert sorted(story["story"]["outlets"]) == sorted(OUTLETS)
    assert story["story"]["id"] == first["story"]["id"]
    assert story["deliveries"] == {"hook": "sent"}
    assert [r["deliveries"] for r in story["story"]["reports"][1:]] == [{}] * 4
    table = runner.invoke(main, ["matches", "-c", str(path)]).stdout.splitlines()
    assert table[0].split() == ["DETECTED", "RULE", "FEED", "DELIVERIES", "STORY", "TITLE"]
    assert [line.split()[5] for line in table[1:]] == ["hook:sent", *["grouped"] * 4]
    one = runner.invoke(main, ["matches", "--story", str(story["story"]["id"]), "-c", str(path)])
    assert one.stdout == "\n".join(table) + "\n"
    missing = runner.invoke(main, ["matches", "--story", "999", "-c", str(path)])
    assert missing.exit_code == 2 and "no story 999 in the database" in missing.stderr
    huge = runner.invoke(main, ["matches", "--story", "9" * 25, "-c", str(path)])
    assert huge.exit_code == 2 and "--story" in huge.stderr  # a usage error, no traceback
    assert isinstance(huge.exception, SystemExit)


def test_the_next_digest_says_the_story_was_also_reported_elsewhere(db, receiver):
    """poll -> group -> one alert -> "+N sources" in the digest that leaves after the
    window: the reports are ingested as polls of three feeds ingest them, and the digest
    is sent by the outbox to real Slack-like and webhook receivers on loopback."""
    from watcher.config import RetrySettings
    from watcher.deliver import deliver_due
    from watcher.http import new_session
    from watcher.notify import build_notifiers

    config = loads(
        yaml.safe_dump(
            {
                "notify": {
                    "desk": {"type": "slack", "url": receiver.url("/slack"), "digest": "1h"},
                    "hook": {"type": "webhook", "url": receiver.url("/hook"), "digest": "1h"},
                }
            }
        ),
        env={},
    )
    match = PESKOV._replace(notify=("desk", "hook"))
    for minute, outlet in enumerate(("tass", "reuters", "meduza")):
        title, lead = OUTLETS[outlet]
        entry = Entry(outlet, title=title, link=f"https://{outlet}.example/1", summary=lead)
        db.ingest(
            outlet,
            f"https://{outlet}.example/rss",
            etag=None,
            last_modified=None,
            present=[outlet],
            new_items=[NewItem(entry, (match,))],
            now=NOW + timedelta(minutes=minute),
        )
    notifiers = build_notifiers(config, new_session("watcher-test"))
    retry = RetrySettings()
    report = deliver_due(db, notifiers, retry, NOW + timedelta(hours=1, minutes=1))
    assert report.sent == 2  # one digest of one alert to each notifier
    (slack,) = receiver.bodies("/slack")
    lines = [block["text"]["text"] for block in slack["blocks"][1:]]
    assert len(lines) == 1 and lines[0].endswith("_peskov_, tass (+2 sources)")
    (hook,) = receiver.bodies("/hook")
    (alerted,) = hook["alerts"]
    assert [r["feed"] for r in alerted["story"]["reports"]] == ["tass", "reuters", "meduza"]


def test_a_dry_run_lists_one_alert_for_a_story_that_five_outlets_report(
    five_outlets, feed_server, receiver, monkeypatch
):
    assert not run_once(five_outlets).failed  # the baseline: empty feeds
    publish(feed_server, *OUTLETS)
    report = run_once(five_outlets, dry_run=True)
    assert report.alerts is not None and [a.rule for a in report.alerts] == ["peskov"]
    assert sum(len(o.new_items) for o in report.outcomes) == 5  # five matches, one alert
    assert receiver.bodies("/hook") == []  # nothing sent
    monkeypatch.delenv("WATCHER_CONFIG", raising=False)
    monkeypatch.delenv("WATCHER_DB", raising=False)
    path = Path(five_outlets.settings.database).parent / "dry.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "settings": {"database": five_outlets.settings.database, "listen": None},
                "feeds": [{"url": feed_server.url(f"/{o}.xml"), "name": o} for o in OUTLETS],
                "rules": [{"name": "peskov", "any": ["Peskov"], "notify": ["hook"]}],
                "notify": {"hook": {"type": "webhook", "url": receiver.url("/hook")}},
            }
        )
    )
    printed = CliRunner().invoke(main, ["once", "--dry-run", "-c", str(path)])
    assert printed.exit_code == 0, printed.output
    rows = [line for line in printed.stdout.splitlines()[1:] if line.startswith("peskov")]
    assert len(rows) == 1 and " hook " in rows[0]
    assert run_once(five_outlets).delivery.sent == 1  # as the dry run said
