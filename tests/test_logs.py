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
