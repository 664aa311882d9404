from __future__ import annotations

import json
import logging

from watcher import logs


def test_json_log_lines(capsys):
    logs.setup("json")
    try:
        logging.getLogger("watcher.poll").warning("poll failed: feed %s: %s", "world", "HTTP 500")
        line = capsys.readouterr().err.strip()
    finally:
        logging.getLogger().handlers.clear()
    record = json.loads(line)
    assert record["level"] == "warning"
    assert record["logger"] == "watcher.poll"
    assert record["message"] == "poll failed: feed world: HTTP 500"
    assert record["time"].endswith("+00:00")


def test_text_log_lines_and_quiet_libraries(capsys):
    logs.setup("text")
    try:
        logging.getLogger("watcher.deliver").info("alert sent")
        logging.getLogger("apprise").error("posting to tgram://secret-token")
        err = capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()
    assert err.rstrip().endswith("INFO    alert sent")
    assert "secret-token" not in err


def test_library_records_lose_their_urls_and_tracebacks(capsys):
    logs.setup("text")
    try:
        try:
            raise ValueError("unparsed data: 'Echo /hook/T0KEN-in-traceback'")
        except ValueError:
            logging.getLogger("urllib3.connection").warning(
                "Failed to parse headers (url=%s): %s",
                "http://127.0.0.1:9/hook/T0KEN-1?key=abc",
                "[MissingHeaderBodySeparatorDefect()], unparsed data: 'Echo /hook/T0KEN-2'",
                exc_info=True,
            )
        logging.getLogger("urllib3.somewhere.new").warning("retry https://x.example/T0KEN-3")
        logging.getLogger("watcher.poll").warning(
            "poll failed: feed world: see https://a.example/b"
        )
        err = capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()
    assert "T0KEN" not in err
    assert (
        "Failed to parse headers (url=***): [MissingHeaderBodySeparatorDefect()], unparsed data: ***"
        in err
    )
    assert "(ValueError)" in err and "Traceback" not in err
    assert "retry ***" in err
    assert "see https://a.example/b" in err  # watcher's own lines hold no secret: kept as they are


def test_library_records_are_redacted_before_any_handler(caplog):
    logs.redact_library_loggers()
    with caplog.at_level(logging.WARNING):
        logging.getLogger("urllib3.connectionpool").warning("url=http://h/T0KEN")
    assert caplog.messages == ["url=***"]


def test_feed_given_control_characters_never_reach_a_log_line(capsys):
    hostile = "http://news.example/7\x1b]0;PWNED\x07\x1b[2J\x9b31m\u2028next"
    try:
        for log_format in ("text", "json"):
            logs.setup(log_format)
            logging.getLogger("watcher.poll").warning("feed f moved permanently to %s", hostile)
        err = capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()
    lines = err.splitlines()
    assert len(lines) == 2 and "moved permanently to http://news.example/7" in lines[0]
    assert json.loads(lines[1])["message"].startswith("feed f moved permanently to http://")
    assert not any(char in err for char in "\x1b\x07\x9b\u2028")
