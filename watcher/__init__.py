"""watcher: RSS/Atom feed ingestion and alerting daemon."""

__version__ = "0.1.0"
