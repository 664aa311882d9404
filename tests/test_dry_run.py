"""``watcher once --dry-run`` writes nothing: no database, no migration, no record."""

from __future__ import annotations

import hashlib

from tests.conftest import rss
from tests.servers import Route
from watcher.cycle import run_once


def config_for(make_config, feed_server, tmp_path):
    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Istanbul talks"}))
    return make_config(
        settings={"database": str(tmp_path / "state" / "w.db")},
        feeds=[{"url": feed_server.url("/feed.xml"), "name": "world", "backfill": True}],
        rules=[{"name": "talks", "query": "Istanbul"}],
    )


def test_a_dry_run_on_a_new_config_creates_no_database(make_config, feed_server, tmp_path):
    report = run_once(config_for(make_config, feed_server, tmp_path), dry_run=True)
    assert [item.entry.title for item in report.outcomes[0].new_items] == ["Istanbul talks"]
    assert not (tmp_path / "state").exists()


def test_a_dry_run_leaves_an_existing_database_untouched(make_config, feed_server, tmp_path):
    config = config_for(make_config, feed_server, tmp_path)
    run_once(config)
    feed_server.routes["/feed.xml"] = Route(
        rss({"guid": "2", "title": "Istanbul again"}, {"guid": "1", "title": "Istanbul talks"})
    )
    files = sorted((tmp_path / "state").iterdir())
    before = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
    report = run_once(config, dry_run=True)
    assert [item.entry.title for item in report.outcomes[0].new_items] == ["Istanbul again"]
    after = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((tmp_path / "state").iterdir())
    }
    assert after == before


def test_once_on_a_shared_database_leaves_the_daemons_leases_alone(
    make_config, feed_server, postgres_url, receiver
):
    from datetime import UTC, datetime, timedelta

    from watcher.state import open_store

    feed_server.routes["/feed.xml"] = Route(rss({"guid": "1", "title": "Istanbul talks"}))
    config = make_config(
        settings={"database": postgres_url},
        feeds=[{"url": feed_server.url("/feed.xml"), "name": "world", "backfill": True}],
        rules=[{"name": "talks", "query": "Istanbul", "notify": ["hook"]}],
        notify={"hook": {"type": "webhook", "url": receiver.url("/hook")}},
    )
    store = open_store(postgres_url)
    try:
        now = datetime.now(UTC)
        assert store.claim_notifiers("daemon", ["hook"], now, timedelta(minutes=5)) == ["hook"]
        run_once(config)
        assert not receiver.requests  # the daemon holding the notifier sends its alerts
        assert store.claim_notifiers("other", ["hook"], now, timedelta(minutes=5)) == []
        assert store.delivery_counts() == {"pending": 1}
    finally:
        store.close()
