"""The word tables that ``watcher.stories`` reads, kept as data: edit them, not the code.

Every word here is written as ``text.words`` gives it (lower case, no accents). A report's
words are looked up in ``ALIASES`` and ``PHRASES`` (two words) first, so that outlets
naming one thing differently (Brussels, the EU, the European Union) share a word; then
``NUMBERS`` turns number words into digits (twentieth, 20th and 20 are one word). Words of
``STOP`` carry nothing; words of ``GENERIC`` are in most news of any story (said,
minister, Monday) and weigh little.
"""

from __future__ import annotations

ALIASES: dict[str, str] = {
    # governments named by their capital or seat, and demonyms
    "brussels": "eu",
    "european": "eu",
    "moscow": "russia",
    "russian": "russia",
    "russians": "russia",
    "kremlin": "russia",
    "kyiv": "ukraine",
    "kiev": "ukraine",
    "ukrainian": "ukraine",
    "ukrainians": "ukraine",
    "washington": "usa",
    "america": "usa",
    "american": "usa",
    "americans": "usa",
    "beijing": "china",
    "chinese": "china",
    "tehran": "iran",
    "iranian": "iran",
    "iranians": "iran",
    "israeli": "israel",
    "israelis": "israel",
    "jerusalem": "israel",
    "palestinian": "palestine",
    "palestinians": "palestine",
    "gazan": "gaza",
    "gazans": "gaza",
    "london": "uk",
    "britain": "uk",
    "british": "uk",
    "paris": "france",
    "french": "france",
    "berlin": "germany",
    "german": "germany",
    "budapest": "hungary",
    "hungarian": "hungary",
    "bratislava": "slovakia",
    "slovak": "slovakia",
    "warsaw": "poland",
    "polish": "poland",
    "ankara": "turkey",
    "turkish": "turkey",
    "turkiye": "turkey",
    "doha": "qatar",
    "qatari": "qatar",
    "cairo": "egypt",
    "egyptian": "egypt",
    "damascus": "syria",
    "syrian": "syria",
    "beirut": "lebanon",
    "lebanese": "lebanon",
    "pyongyang": "korea",
    "danish": "denmark",
    "copenhagen": "denmark",
    "georgian": "georgia",
    "tbilisi": "georgia",
    "minsk": "belarus",
    "belarusian": "belarus",
    "khartoum": "sudan",
    "western": "west",
    "west": "west",
    "sudanese": "sudan",
    "tokyo": "japan",
    "japanese": "japan",
    "riyadh": "saudi",
    "saudis": "saudi",
    "delhi": "india",
    "indian": "india",
    "islamabad": "pakistan",
    "pakistani": "pakistan",
    "kabul": "afghanistan",
    "afghan": "afghanistan",
    "baghdad": "iraq",
    "iraqi": "iraq",
    "amman": "jordan",
    "jordanian": "jordan",
    "sanaa": "yemen",
    "yemeni": "yemen",
    "houthis": "houthi",
    "emirati": "uae",
    "taipei": "taiwan",
    "taiwanese": "taiwan",
    "rome": "italy",
    "italian": "italy",
    "madrid": "spain",
    "spanish": "spain",
    "dutch": "netherlands",
    "stockholm": "sweden",
    "swedish": "sweden",
    "helsinki": "finland",
    "finnish": "finland",
    "oslo": "norway",
    "norwegian": "norway",
    "vienna": "austria",
    "austrian": "austria",
    "swiss": "switzerland",
    "athens": "greece",
    "greek": "greece",
    "bucharest": "romania",
    "romanian": "romania",
    "chisinau": "moldova",
    "moldovan": "moldova",
    "belgrade": "serbia",
    "serbian": "serbia",
    "yerevan": "armenia",
    "armenian": "armenia",
    "baku": "azerbaijan",
    "azerbaijani": "azerbaijan",
    "caracas": "venezuela",
    "venezuelan": "venezuela",
    "mexican": "mexico",
    "brasilia": "brazil",
    "brazilian": "brazil",
    "ottawa": "canada",
    "canadian": "canada",
    "canberra": "australia",
    "australian": "australia",
    "abuja": "nigeria",
    "nigerian": "nigeria",
    "nairobi": "kenya",
    "kenyan": "kenya",
    "ethiopian": "ethiopia",
    "libyan": "libya",
    "algiers": "algeria",
    "algerian": "algeria",
    "rabat": "morocco",
    "moroccan": "morocco",
    "tallinn": "estonia",
    "estonian": "estonia",
    "riga": "latvia",
    "latvian": "latvia",
    "vilnius": "lithuania",
    "lithuanian": "lithuania",
    "prague": "czechia",
    "czech": "czechia",
    "idf": "israel",
}
"""Places and organisations under another name: the word they stand for, an entity."""

NAMES: dict[str, str] = {
    "zelenskiy": "zelensky",
    "zelenskyy": "zelensky",
    "zelenskyi": "zelensky",
    "peskow": "peskov",
    "lawrow": "lavrov",
}
"""Spellings of one person's name: the spelling reports hold."""

SYNONYMS: dict[str, str] = {
    "truce": "ceasefire",
    "armistice": "ceasefire",
    "captives": "hostages",
    "captive": "hostage",
    "pow": "prisoner",
    "pows": "prisoners",
    "telephone": "phone",
}
"""Common words that outlets use for one another: the word they stand for."""

PHRASES: dict[tuple[str, str], str] = {
    ("european", "union"): "eu",
    ("united", "states"): "usa",
    ("united", "kingdom"): "uk",
    ("united", "nations"): "un",
    ("white", "house"): "usa",
    ("downing", "street"): "uk",
    ("north", "korea"): "korea",
    ("cease", "fire"): "ceasefire",
    ("middle", "east"): "mideast",
    ("mid", "east"): "mideast",
    ("saudi", "arabia"): "saudi",
    ("new", "delhi"): "india",
    ("abu", "dhabi"): "uae",
    ("united", "arab"): "uae",
    ("addis", "ababa"): "ethiopia",
    ("czech", "republic"): "czechia",
}
"""Two words that name one thing."""

NUMBERS: dict[str, str] = {
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
    "twenty": "20",
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "third": "3",
    "fourth": "4",
    "fifth": "5",
    "sixth": "6",
    "seventh": "7",
    "eighth": "8",
    "ninth": "9",
    "tenth": "10",
    "eleventh": "11",
    "twelfth": "12",
    "fifteenth": "15",
    "twentieth": "20",
    "thirtieth": "30",
}
"""Number words as digits ("one" and "first" are left as words: they seldom count)."""

STOP: frozenset[str] = frozenset(
    """
    a about above across after again against all almost along also although am among an and
    another any are around as at be because been before being below between both but by can
    could did do does doing done down during each either else ever every few for from further
    had has have having he her here hers herself him himself his how however i if in into is
    it its itself just least less like many may me might more most much must my myself neither
    no nor not now of off on once one only onto or other others our ours out over own per
    rather s same she should since so some such than that the their theirs them themselves then
    there these they this those though through thus to too toward towards under until up upon
    us very via was we were what when where whether which while who whom whose why will with
    within without would yet you your yours t d ll re ve m
    """.split()
)

FAMILY_FIRST: frozenset[str] = frozenset(
    """
    wang li zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo lin gao luo zheng
    liang xie song tang han feng deng cao peng xiao cheng xi kim lee park choi jung kang cho
    yoon jang lim nguyen tran pham hoang phan vu
    """.split()
)
"""Family names that come first in a person's name (Chinese, Korean, Vietnamese): of such a
name (Xi Jinping), the family name is the part kept, the one outlets use alone."""

HEADS: frozenset[str] = frozenset(
    """
    sea seas ocean river lake gulf bay strait island islands peninsula mountains region oblast
    province district city square street avenue office ministry department agency service
    services council committee commission court assembly parliament party union group bank
    fund forces force army navy guard brigade corps company corporation
    """.split()
)
"""Head nouns of names (the Baltic Sea, the Foreign Office): of such a name, the word before
is kept, the head is not."""

GENERIC: frozenset[str] = frozenset(
    """
    say says said saying told tell telling tells ask asked asks reporter reporters journalist
    journalists statement statements comment comments news report reports reported reporting
    according added adding claim claims claimed call calls called announce announced
    announces announcement spokesman spokesperson spokeswoman spokesmen official officials
    minister ministers ministry president presidential prime foreign secretary government
    governments state states leader leaders head chief top senior country countries nation
    national people week weeks day days month months year years time times today yesterday
    tomorrow morning evening night monday tuesday wednesday thursday friday saturday sunday
    january february march april june july august september october november december new
    latest fresh first last next recent recently early late former amid despite following
    ahead still already again issue issues matter make makes made take takes took give gives
    gave go goes went get gets got come comes came see sees saw seen want wants wanted need
    needs needed plan plans planned move moves moved step steps way part set sets put
    including include includes well big major key live update updates breaking
    analysis opinion explained explainer watch video photos exclusive urgent flash
    """.split()
)
"""Words of any story; weighed at ``GENERIC_WEIGHT``."""
