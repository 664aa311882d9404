"""Is this report the same story as one that already alerted the rule?

Outlets tell one event in their own words, so titles are not compared as strings. A report
is the set of its informative words (``report_of``: the title and the lead, that is the
start of the summary), each word made comparable across outlets (Brussels and the EU are
one word, 20th and twentieth too, ``sanctions`` and ``sanction`` one stem) and marked as a
name (a word capitalised inside a sentence, an acronym, a known place) or a number.

Two reports are compared by the weight of the words they share against the weight of all
their words (a weighted Dice coefficient). A word weighs by how rare it is among the rule's
recent stories (its IDF: ``Weights``), more for a name or a number, little for words that
are in news of any story (said, minister, Monday), nothing for the words that made the
match (every story of a rule ``Peskov`` has ``Peskov``). Merging two events into one loses
an alert, the worse error, so the bar is high: a report joins a story only when it shares
with one of its reports at least two anchors (names, numbers, words rare for the rule),
no headline names only people the other report never mentions (Zelensky backs a plan,
Peskov answers it: two stories; ``FOLLOW_UP`` on, one such name or figure in the new
headline is enough), and the score clears ``THRESHOLD``, which rises with the time
between the two. Every decision can be explained (``Verdict.explain``).

The choice is deterministic: the same reports in the same order make the same stories.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from watcher.story_words import (
    ALIASES,
    FAMILY_FIRST,
    GENERIC,
    HEADS,
    NAMES,
    NUMBERS,
    PHRASES,
    STOP,
    SYNONYMS,
)
from watcher.text import fold, plain

LEAD = 400
"""Characters of the summary read as the lead: the first sentences, where outlets put the
who, what and where."""
MAX_WORDS = 60
"""Informative words kept of a report (the first ones): bounds what a hostile feed's long
title costs."""
THRESHOLD = 0.22
"""Weighted Dice a report must reach with a report of a story to join it (at no gap)."""
LATE_PENALTY = 0.5
"""How much higher the bar is for a report a whole window after the one it is compared
with: the threshold times (1 + LATE_PENALTY * gap / window)."""
PRIOR = 8.0
"""Stories assumed seen before any was: keeps the first stories of a rule from taking
every word for rare."""
RARE = 1.0
"""An IDF at or above this (a word in under a third of the rule's recent stories, or so)
makes a shared word an anchor even if it is no name or number."""
NAME_BOOST = 2.0
"""A name weighs twice a word as rare: events are told by who did what."""
NUMBER_BOOST = 1.5
PLACE_BOOST = 1.0
"""A known place weighs as a word as rare: it is the setting of many stories."""
TITLE_BOOST = 1.5
"""A word of the headline weighs half as much again: the headline says what happened."""
GENERIC_WEIGHT = 0.2
"""What a word of news of any story (``story_words.GENERIC``) weighs, of a rare word."""
ACRONYM = 6
"""Letters of an acronym at most (NATO, UNESCO): a longer word in capitals is shouted."""
ANCHORS = 2
"""Shared anchors (names, numbers, rare words) a report needs with a story's report."""
FOLLOW_UP = timedelta(hours=6)
"""Outlets tell one event within hours. A report this long after another whose headline
names anyone, or gives a figure, that the other never mentions tells a development: Lavrov
rejecting, the next day, the truce Zelensky offered; Kyiv counting 3,000 breaches of the
truce Putin declared."""

ENTITIES = frozenset(ALIASES.values()) | (frozenset(PHRASES.values()) - set(SYNONYMS.values()))
"""Known places and organisations (the words ``ALIASES`` and ``PHRASES`` give)."""

_ABBREVIATIONS = re.compile(r"\b(U)\.([SKN])\.?(?=\W|$)|\b(E)\.(U)\.?(?=\W|$)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+")
"""A word, or a number with its decimals (4.5 is one number, not 4 and 5)."""
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_LEADING_ZEROS = re.compile(r"^0+(?=\d)")
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
_SENTENCE_END = re.compile(r"[.!?:;\"“”]")


@dataclass(frozen=True)
class Report:
    """The informative words of one report, each with its kind: ``e`` a name (a person,
    an organisation, a place watcher does not know), ``p`` a known place, ``n`` a number,
    ``w`` another word; followed by ``t`` when the headline holds the word."""

    words: Mapping[str, str]

    def encode(self) -> str:
        return json.dumps(dict(self.words), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> Report:
        if not text:
            return EMPTY
        try:
            found = json.loads(text)
        except ValueError:
            return EMPTY
        if not isinstance(found, dict):
            return EMPTY
        return cls({word: kind for word, kind in found.items() if kind in _FACTORS})


EMPTY = Report({})


def report_of(title: str, summary: str) -> Report:
    """The report an item makes: the words of its title and of the start of its summary
    (HTML allowed in both)."""
    words: dict[str, str] = {}
    for place, text in (("t", plain(title, LEAD)), ("", plain(summary, LEAD))):
        for word, kind in _words(text, headline=place == "t"):
            known = words.get(word)
            if known is None:
                if len(words) >= MAX_WORDS:
                    continue
                words[word] = kind + place
            elif known[0] == "w" and kind != "w":
                words[word] = kind + known[1:]
    return Report(words)


def canonical(word: str) -> str:
    """A normalised word (``text.words``) as reports hold it: its alias, number or stem."""
    if word in ENTITIES:
        return word
    if word in ALIASES:
        return ALIASES[word]
    if word in NAMES:
        return NAMES[word]
    if word in SYNONYMS:
        return _stem(SYNONYMS[word])
    if word in NUMBERS:
        return NUMBERS[word]
    ordinal = _ORDINAL.match(word)
    if ordinal:
        return _LEADING_ZEROS.sub("", ordinal.group(1))
    if _NUMBER.fullmatch(word):
        return _LEADING_ZEROS.sub("", word).replace(",", ".")
    stem = _stem(word)
    if stem in SYNONYMS:
        return _stem(SYNONYMS[stem])
    return ALIASES.get(stem) or stem


def ignored(words: Iterable[str]) -> frozenset[str]:
    """The report words of the words that made a match: they are in every story of the
    rule, so they tell none apart."""
    return frozenset(canonical(word) for word in words)


def _words(text: str, *, headline: bool = False) -> list[tuple[str, str]]:
    """(word, kind) of plain text, in order, without stop words. Of a run of capitalised
    words naming one person or thing (President Volodymyr Zelensky, Khan Younis), only the
    last is kept, so that a name counts once, by the part every outlet uses."""
    text = _ABBREVIATIONS.sub(lambda m: "".join(g for g in m.groups() if g), text)
    text = _THOUSANDS.sub("", text)
    tokens = list(_TOKEN.finditer(text))
    shouted = text.isupper()
    titled = shouted or (headline and _title_case(tokens))
    found: list[tuple[str, str, int]] = []
    """(word, kind, index of its token)."""
    capitals: set[int] = set()
    """Tokens that may be part of a name: capitalised, in a text not in Title Case."""
    skip = False
    for index, token in enumerate(tokens):
        if skip:
            skip = False
            continue
        raw = token.group()
        word = raw.lower() if raw.isascii() else fold(raw)
        if index + 1 < len(tokens):
            following = tokens[index + 1].group()
            pair = (word, following.lower() if following.isascii() else fold(following))
            if pair in PHRASES:
                phrase = PHRASES[pair]
                if phrase in ENTITIES:
                    found.append((phrase, "p", index + 1))
                else:
                    found.append((canonical(phrase), "w", index + 1))
                skip = True
                continue
        acronym = not shouted and raw.isupper() and 1 < len(raw) <= ACRONYM
        if word in STOP and not acronym:
            continue
        if word == "us" and raw == "US":
            word = "usa"
        form = canonical(word)
        if _NUMBER.fullmatch(form):
            found.append((form, "n", index))
        elif len(form) > 1 and form not in STOP:
            before = text[tokens[index - 1].end() : token.start()] if index else "."
            start = bool(_SENTENCE_END.search(before))
            if form in ENTITIES:
                kind = "p"
            elif acronym or (not titled and not start and raw[0].isupper()):
                kind = "e"
            else:
                kind = "w"
            if not titled and not acronym and kind != "p" and raw[0].isupper():
                capitals.add(index)
            found.append((form, kind, index))
    return [
        (word, kind)
        for place, (word, kind, index) in enumerate(found)
        if not _inside_name(found, place, capitals, tokens, text)
    ]


def _inside_name(
    found: Sequence[tuple[str, str, int]],
    place: int,
    capitals: set[int],
    tokens: Sequence[re.Match[str]],
    text: str,
) -> bool:
    """Whether a word is part of a longer name and not the part kept: a first name or a
    title before a name (Volodymyr in President Volodymyr Zelensky), or a head noun after
    one (Office in Foreign Office, Sea in Baltic Sea). Of a name that starts with its
    family name (Xi Jinping, Wang Yi, Kim Jong Un), the family name is kept: it is the part
    outlets use alone."""
    word, _, index = found[place]
    if index not in capitals:
        return False
    if word in _HEADS:
        return place > 0 and _joined(found[place - 1], found[place], capitals, tokens, text)

    def continues(at: int) -> bool:
        """Whether the word at ``at`` continues the name of the word before it."""
        following = found[at]
        return (
            following[1] == "e"
            and following[0] not in _HEADS
            and _joined(found[at - 1], following, capitals, tokens, text)
        )

    first, last = place, place
    while first > 0 and continues(first):
        first -= 1
    while last + 1 < len(found) and continues(last + 1):
        last += 1
    kept = next((at for at in range(first, last) if found[at][0] in FAMILY_FIRST), last)
    return place != kept


def _joined(
    first: tuple[str, str, int],
    second: tuple[str, str, int],
    capitals: set[int],
    tokens: Sequence[re.Match[str]],
    text: str,
) -> bool:
    """Whether two capitalised words follow each other with only a space between."""
    if second[2] != first[2] + 1 or first[2] not in capitals or second[2] not in capitals:
        return False
    return text[tokens[first[2]].end() : tokens[second[2]].start()].isspace()


def _title_case(tokens: Sequence[re.Match[str]]) -> bool:
    """Whether a headline capitalises its words (Title Case): its capitals then tell no
    names. It does when none of its longer words is in lower case."""
    longer = [token.group() for token in tokens[1:] if len(token.group()) > 3]
    return len(longer) >= 2 and not any(word[0].islower() for word in longer)


def _stem(word: str) -> str:
    """A light English stem: plural, -ed and -ing endings and a final e removed, so that
    agree, agrees and agreed are one word. Only the same stem matters, not a real word."""
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("ied") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif word.endswith("ed") and len(word) > 4:
        word = word[:-2]
    elif word.endswith(("sses", "shes", "ches", "xes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is", "as", "os")):
        word = word[:-1]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]
    return word


COMMON = GENERIC | frozenset(canonical(word) for word in GENERIC)
"""The words of ``story_words.GENERIC`` as reports hold them (stemmed) and as written."""
_HEADS = HEADS | frozenset(canonical(word) for word in HEADS)


BOOSTS = {"e": NAME_BOOST, "n": NUMBER_BOOST, "p": PLACE_BOOST, "w": 1.0}
_FACTORS = {
    kind + title: boost * (TITLE_BOOST if title else 1.0)
    for kind, boost in BOOSTS.items()
    for title in ("", "t")
}
_COMMON_FACTORS = {
    kind: GENERIC_WEIGHT * (TITLE_BOOST if kind.endswith("t") else 1.0) for kind in _FACTORS
}


@dataclass(frozen=True)
class Weights:
    """How much each word tells, from how many of the rule's recent stories hold it."""

    stories: int
    """The rule's stories opened in the period counted."""
    holding: Mapping[str, int]
    """Of those, how many hold each word (the words of the report being decided; any
    other word counts as held by none: as rare as can be). Words of ``COMMON`` are not
    counted: they weigh ``GENERIC_WEIGHT`` of a rare word."""

    @cached_property
    def _rarest(self) -> float:
        """The IDF of a word no story holds."""
        return math.log(self.stories + PRIOR)

    @cached_property
    def _idfs(self) -> dict[str, float]:
        """The IDF of each counted word, computed once for all the reports compared."""
        total = self.stories + PRIOR
        return {word: math.log(total / (count + 1.0)) for word, count in self.holding.items()}

    def idf(self, word: str) -> float:
        return self._idfs.get(word, self._rarest)

    def of(self, report: Report, ignore: Collection[str]) -> dict[str, float]:
        """The weight of each word of a report, but those of ``ignore``: its IDF, times its
        boosts (by its kind: ``e``, ``n``, ``p`` or ``w``, and ``t`` when the title holds
        it)."""
        idfs, rarest = self._idfs, self._rarest
        return {
            word: (_COMMON_FACTORS if word in COMMON else _FACTORS).get(kind, 1.0)
            * idfs.get(word, rarest)
            for word, kind in report.words.items()
            if word not in ignore
        }

    def anchor(self, word: str, kind: str) -> bool:
        """Whether a shared word can bind two reports: a name, a number or a rare word,
        never one of those of any story."""
        return word not in COMMON and (kind[0] in "en" or self.idf(word) >= RARE)


@dataclass(frozen=True)
class Verdict:
    """How a report compares with another report of a story."""

    score: float
    threshold: float
    shared: tuple[tuple[str, float], ...]
    """The words both hold, heaviest first, with their weights."""
    anchors: int
    apart: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    """Names (and, ``FOLLOW_UP`` on, figures) in the headline of the new report, or of the
    other, that the other report never mentions (``_apart``)."""

    @property
    def same(self) -> bool:
        return (
            self.score >= self.threshold
            and len(self.shared) >= 2
            and self.anchors >= ANCHORS
            and not (self.apart[0] or self.apart[1])
        )

    def explain(self) -> str:
        words = ", ".join(f"{word} {weight:.1f}" for word, weight in self.shared[:8]) or "none"
        outcome = "same story" if self.same else "another story"
        told = f"{outcome}: score {self.score:.2f} (needs {self.threshold:.2f}), shared {words}"
        if self.apart[0] or self.apart[1]:
            whose = "new" if self.apart[0] else "earlier"
            named = ", ".join(self.apart[0] or self.apart[1])
            told += f"; the {whose} headline's {named}: not in the other report"
        return told


def compare(
    new: Report,
    old: Report,
    weights: Weights,
    ignore: Collection[str],
    gap: timedelta = timedelta(0),
    window: timedelta = timedelta(hours=24),
) -> Verdict:
    """The weighted Dice coefficient of two reports' words, those of the match left out,
    and the names that set them apart."""
    return _compare(new, weights.of(new, ignore), old, weights, ignore, gap, window)


def _compare(
    new: Report,
    mine: Mapping[str, float],
    old: Report,
    weights: Weights,
    ignore: Collection[str],
    gap: timedelta,
    window: timedelta,
    *,
    explain: bool = True,
) -> Verdict:
    """``compare``, the new report's weights given; without ``explain``, a verdict that
    fails the score is returned without the rest (the shared words, the names)."""
    theirs = weights.of(old, ignore)
    total = sum(mine.values()) + sum(theirs.values())
    shared = mine.keys() & theirs.keys()
    score = sum(mine[word] + theirs[word] for word in shared) / total if total else 0.0
    late = max(gap, timedelta(0)) / window if window else 0.0
    threshold = THRESHOLD * (1 + LATE_PENALTY * min(late, 1.0))
    if not explain and score < threshold:
        return Verdict(score, threshold, (), 0)
    both = sorted(
        ((word, mine[word] + theirs[word]) for word in shared),
        key=lambda pair: (-pair[1], pair[0]),
    )
    anchors = sum(
        1 for word in shared if weights.anchor(word, _kind(new.words[word], old.words[word]))
    )
    return Verdict(score, threshold, tuple(both), anchors, _apart(new, old, ignore, gap))


def _names(report: Report, ignore: Collection[str]) -> set[str]:
    return {
        word
        for word, kind in report.words.items()
        if kind[0] == "e" and word not in ignore and word not in COMMON
    }


def _apart(
    new: Report, old: Report, ignore: Collection[str], gap: timedelta = timedelta(0)
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names (or figures) in one report's headline that the other report never
    mentions, when they set the two apart: two actors, two stories (Zelensky accepts a plan, Peskov
    answers it). Within ``FOLLOW_UP``, a headline sets them apart when none of its names
    is in the other report (outlets name a story's actors differently); after it, the new
    report's headline sets them apart when any of its names or figures is not (a
    development). Places do not count (they are the setting, not the actor), nor do names
    in a lead only (a lead names many in passing). Empty when nothing sets them apart."""
    for first, second, flip in ((new, old, False), (old, new, True)):
        headline = {word for word in _names(first, ignore) if first.words[word].endswith("t")}
        unknown = headline - second.words.keys()
        if not flip and gap >= FOLLOW_UP:
            unknown |= _figures(first) - second.words.keys() - set(ignore)
        if unknown and (unknown == headline or (not flip and gap >= FOLLOW_UP)):
            named = tuple(sorted(unknown))
            return ((), named) if flip else (named, ())
    return ((), ())


def _figures(report: Report) -> set[str]:
    """The numbers of a report's headline."""
    return {word for word, kind in report.words.items() if kind == "nt"}


def _kind(first: str, second: str) -> str:
    """One word's kind where two reports disagree: a name in either is a name."""
    kinds = first[0] + second[0]
    return next((kind for kind in "enp" if kind in kinds), "w")


@dataclass(frozen=True)
class Candidate:
    """An open story of the rule and its reports (when each was detected)."""

    story: int
    reports: tuple[tuple[Report, datetime], ...]


def choose(
    report: Report,
    candidates: Iterable[Candidate],
    weights: Weights,
    ignore: Collection[str],
    now: datetime,
    window: timedelta,
) -> tuple[int, Verdict] | None:
    """The story the report joins, and why: of the candidates it is the same story as (with
    one of their reports), the one it scores highest with, the oldest on a tie; None when
    it is the same story as none."""
    best: tuple[float, int, Verdict] | None = None
    mine = weights.of(report, ignore)
    for candidate in candidates:
        for other, seen in candidate.reports:
            if len(mine.keys() & other.words.keys()) < 2:
                continue  # fewer than two shared words: never the same story
            verdict = _compare(
                report, mine, other, weights, ignore, now - seen, window, explain=False
            )
            if not verdict.same:
                continue
            rank = (-verdict.score, candidate.story)
            if best is None or rank < (-best[0], best[1]):
                best = (verdict.score, candidate.story, verdict)
    return None if best is None else (best[1], best[2])
