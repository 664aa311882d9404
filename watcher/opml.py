"""OPML subscription lists (what every feed reader exports) -> the ``feeds:`` YAML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import yaml

from watcher.errors import FetchError, OpmlError
from watcher.parse import without_doctype


def read_opml(path: str | Path) -> list[tuple[str, str]]:
    """The (feed URL, title) of every outline with an ``xmlUrl``, nested ones too, each URL
    once, in file order."""
    try:
        body = without_doctype(str(path), Path(path).read_bytes())
        root = ElementTree.fromstring(body)
    except OSError as exc:
        raise OpmlError(f"cannot read {path}: {exc.strerror}") from exc
    except (FetchError, ElementTree.ParseError) as exc:
        raise OpmlError(f"{path} is not a readable OPML file: {exc}") from exc
    found: dict[str, str] = {}
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or "").strip()
        if url.startswith(("http://", "https://")):
            found.setdefault(url, (outline.get("title") or outline.get("text") or "").strip())
    return list(found.items())


def feeds_yaml(feeds: list[tuple[str, str]]) -> str:
    """The ``feeds:`` section for a config, names made from the titles, unique."""
    names: set[str] = set()
    entries = []
    for url, title in feeds:
        base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "feed"
        name, number = base, 2
        while name in names:
            name, number = f"{base}-{number}", number + 1
        names.add(name)
        entries.append({"url": url, "name": name})
    return yaml.safe_dump({"feeds": entries}, sort_keys=False, allow_unicode=True)
