"""Prometheus metrics of the daemon, in a registry of its own.

Counters are fed by the daemon as polls and delivery passes end; the outbox backlog and the
per-feed health are read from the database at each scrape, so that they are true whatever
process changed them (``watcher retry`` included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from watcher.deliver import DeliveryReport
from watcher.errors import StateError
from watcher.poll import PollOutcome
from watcher.state import Store


class Metrics:
    def __init__(self, store: Store, parser_restarts: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        self.polls = Counter("watcher_polls", "Polls by result", ["result"], registry=self.registry)
        self.new_items = Counter(
            "watcher_new_items", "Items seen for the first time", registry=self.registry
        )
        self.matches = Counter(
            "watcher_matches", "Matches by rule", ["rule"], registry=self.registry
        )
        self.deliveries = Counter(
            "watcher_deliveries",
            "Delivery attempts by notifier and result (sent, retrying, dead)",
            ["notifier", "result"],
            registry=self.registry,
        )
        self.scheduler = Counter(
            "watcher_scheduler_events",
            "Scheduler trouble: job errors, missed runs, runs refused by max_instances",
            ["kind"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        self.registry.register(_StateCollector(store))
        self.registry.register(_ParserCollector(parser_restarts))

    def observe_poll(self, outcome: PollOutcome) -> None:
        self.polls.labels(outcome.status).inc()
        self.new_items.inc(outcome.new)
        for item in outcome.new_items:
            for match in item.matches:
                self.matches.labels(match.rule).inc()

    def observe_delivery(self, report: DeliveryReport) -> None:
        for (notifier, result), count in report.by_notifier.items():
            self.deliveries.labels(notifier, result).inc(count)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _ParserCollector(Collector):
    """How often the parser workers had to be replaced (one died, or a parse ran past its
    deadline): the pool heals itself, but a rising count is worth a look."""

    def __init__(self, restarts: Callable[[], int]) -> None:
        self.restarts = restarts

    def collect(self) -> Iterator[CounterMetricFamily]:
        counter = CounterMetricFamily(
            "watcher_parser_restarts", "Parser worker pools replaced (a worker died or hung)"
        )
        counter.add_metric([], self.restarts())
        yield counter


class _StateCollector(Collector):
    """What the database knows, read at each scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The database's figures; while it cannot be read, only ``watcher_database_up`` 0
        (the process's own counters are still served)."""
        up = GaugeMetricFamily("watcher_database_up", "Whether the database can be used")
        try:
            if self.store.writable() is not None:  # answers at once, or within 2 s
                raise StateError("the database cannot be used")
            counts = self.store.delivery_counts()
            states = self.store.feed_states()
        except StateError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        backlog = GaugeMetricFamily(
            "watcher_outbox", "Deliveries in the outbox by status", labels=["status"]
        )
        for status, count in sorted(counts.items()):
            backlog.add_metric([status], count)
        yield backlog
        success = GaugeMetricFamily(
            "watcher_feed_last_success_timestamp_seconds",
            "When each feed was last polled successfully",
            labels=["feed"],
        )
        failures = GaugeMetricFamily(
            "watcher_feed_consecutive_failures", "Failed polls in a row", labels=["feed"]
        )
        for name, state in sorted(states.items()):
            if state.last_success is not None:
                success.add_metric([name], state.last_success.timestamp())
            failures.add_metric([name], state.failures)
        yield success
        yield failures
