"""watcher: RSS/Atom feed ingestion and alerting daemon."""

__version__ = "0.1.0"
DISTRIBUTION = "watcher-feeds"
"""The name to install watcher by (``pip install watcher-feeds``): "watcher" on PyPI is an
unrelated package. The import name and the ``watcher`` command stay ``watcher``."""
