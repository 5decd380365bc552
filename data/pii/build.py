"""Writes tune.jsonl and validation.jsonl: the PII detector's labelled evaluation set.

Run once (`.venv/bin/python data/pii/build.py`); the output is committed and deterministic
(seeded). Texts come from written templates whose `{TYPE}` slots are filled with generated
values (valid checksums, valid phone numbers, ...), so every entity's offsets are exact by
construction. `{lower}` slots are risky-looking values that are *not* PII (Luhn-failing order
numbers, masked cards, public figures, ...): they are part of the text, never of the labels.

Each template's split is fixed by a stable hash of its text (`sha1("pii:" + template)`), so all
fills of a template land in the same split and the validation split holds templates never seen
while tuning. Person names, streets and cities come from pools split the same way.

A line: {"id", "split", "kind", "text", "entities": [{"type", "start", "end", "text"}]}.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import phonenumbers

HERE = Path(__file__).parent
VALIDATION_SHARE = 0.35
FILLS_POSITIVE = 2
FILLS_NEGATIVE = 2

# --- positive templates: (kind, template) --------------------------------------------------

POSITIVE: list[tuple[str, str]] = [
    # chat
    ("chat", "Hi, my name is {PERSON} and I can't log in. My account email is {EMAIL}."),
    ("chat", "can you draft a reply to {EMAIL} saying I'll be late for the 3pm call?"),
    ("chat", "My card {CREDIT_CARD} got charged twice for the same order, what should I do?"),
    ("chat", "Please rewrite this more politely: 'Call me back at {PHONE} right now.'"),
    ("chat", "I need a cover letter. Name: {PERSON}, phone {PHONE}, email {EMAIL}."),
    ("chat", "Help me fill this form. Date of birth: {DATE_OF_BIRTH}, SSN {US_SSN}."),
    ("chat", "Translate to German: I was born on {DATE_OF_BIRTH} in a small village."),
    ("chat", "Write a short bio for {PERSON}, a nurse who was born {DATE_OF_BIRTH}."),
    ("chat", "is this IBAN right? {IBAN} my landlord gave it to me for the deposit"),
    ("chat", "why does ping {IP_ADDRESS} time out from my laptop but not from the server?"),
    ("chat", "Send the package to {LOCATION} please, it's my new place."),
    ("chat", "I just moved to {LOCATION}. How do I register to vote here?"),
    ("chat", "my mom {PERSON} keeps getting spam calls on {PHONE}, how can she block them?"),
    ("chat", "Summarize this: {PERSON} ({EMAIL}) asked to reschedule the dentist appointment."),
    ("chat", "Can you check if {CREDIT_CARD} is a Visa or a Mastercard number?"),
    ("chat", "I'm {PERSON}, my DOB is {DATE_OF_BIRTH} and I lost my insurance card."),
    ("chat", "Format this as a table: {PERSON}, {EMAIL}, {PHONE}"),
    ("chat", "Write an email to my landlord at {EMAIL} about the broken heater at {LOCATION}."),
    ("chat", "my social security number is {US_SSN}, is it safe to give it to a bank on chat?"),
    ("chat", "Wire the money to {IBAN} (account holder {PERSON}) by Friday."),
    ("chat", "what's the timezone of someone with the number {PHONE}?"),
    ("chat", "Make a birthday card text for my son, he was born on {DATE_OF_BIRTH}."),
    ("chat", "Our router at {IP_ADDRESS} keeps dropping the connection every hour."),
    ("chat", "I ordered a lamp but it went to {LOCATION} instead of my address."),
    ("chat", "Pls remind me to call {PERSON} at {PHONE} tomorrow morning"),
    ("chat", "Does this look like a phishing email? It came from {EMAIL} and asks for my SSN."),
    ("chat", "Dear assistant, my husband {PERSON} and I want to open a joint account."),
    ("chat", "I paid with {CREDIT_CARD} but the hotel says the booking never went through."),
    ("chat", "who owns the IP {IP_ADDRESS}? it shows up in my router logs a lot"),
    ("chat", "Birthday: {DATE_OF_BIRTH}. What's my zodiac sign?"),
    ("chat", "Draft a complaint letter from {PERSON}, {LOCATION}, to the city council."),
    ("chat", "Here is my contact info for the recruiter: {EMAIL} / {PHONE}"),
    ("chat", "Can you explain why my bank rejected a transfer to {IBAN}?"),
    ("chat", "Hey, this is {PERSON}. I booked a table for four but need to cancel."),
    ("chat", "Convert this to JSON: name={PERSON}; dob={DATE_OF_BIRTH}; ssn={US_SSN}"),
    ("chat", "Text my sister at {PHONE} that I'm landing at 6."),
    # support tickets
    ("support", "Ticket #48213: Customer {PERSON} reports a double charge on card {CREDIT_CARD}."),
    ("support", "Hello support, I changed my email to {EMAIL} but the invoices still go to the old one."),
    ("support", "Subject: refund\n\nPlease refund to {IBAN}. Thanks,\n{PERSON}"),
    ("support", "Caller {PERSON} (callback {PHONE}) says the router keeps rebooting."),
    ("support", "Shipping address on file: {LOCATION}. Customer wants it changed before dispatch."),
    ("support", "Verification: DOB {DATE_OF_BIRTH}, last login from {IP_ADDRESS}."),
    ("support", "Hi team,\nthe user at {EMAIL} cannot reset her password.\nBest,\n{PERSON}"),
    ("support", "Please escalate: cardholder {PERSON}, card {CREDIT_CARD}, disputed amount $214.50."),
    ("support", "Customer says the technician never came to {LOCATION} on Tuesday."),
    ("support", "Account holder: {PERSON}\nIBAN: {IBAN}\nReason: duplicate direct debit"),
    ("support", "The applicant provided SSN {US_SSN} and date of birth {DATE_OF_BIRTH}."),
    ("support", "Follow-up: spoke with {PERSON} on the phone, new number is {PHONE}."),
    ("support", "Fraud alert raised for logins from {IP_ADDRESS} on the account {EMAIL}."),
    ("support", "Please update the delivery address to {LOCATION}, the old one is wrong."),
    ("support", "Chat transcript\nAgent: How can I help?\nUser: hi it's {PERSON}, my order hasn't arrived\nAgent: Can you confirm your email?\nUser: {EMAIL}"),
    ("support", "Return label requested by {PERSON}; pickup from {LOCATION}."),
    ("support", "Dear {PERSON}, we received your request and will call you at {PHONE}."),
    ("support", "Patient: {PERSON}\nDOB: {DATE_OF_BIRTH}\nInsurance ID on file. Requests a refill."),
    ("support", "Tenant {PERSON} at {LOCATION} reported a leak under the sink."),
    ("support", "The card ending differs: customer read out {CREDIT_CARD} but the system shows another."),
    ("support", "Refund approved. Bank details: {IBAN}, beneficiary {PERSON}."),
    ("support", "New hire paperwork: {PERSON}, SSN {US_SSN}, start date next Monday."),
    ("support", "Hi, I'm writing on behalf of my father {PERSON}, born {DATE_OF_BIRTH}, about his pension."),
    ("support", "User reports VPN drops; client IP {IP_ADDRESS}, gateway {IP_ADDRESS}."),
    ("support", "Can someone call the customer back? {PHONE} (ask for {PERSON})."),
    ("support", "Invoice disputed by {EMAIL}; card on file {CREDIT_CARD}."),
    ("support", "Please send the replacement device to {LOCATION}. Contact: {PHONE}."),
    ("support", "SSN: {US_SSN}\nName: {PERSON}\nRequest: tax form W-2 copy"),
    # code snippets
    ("code", 'user = User(name="{PERSON}", email="{EMAIL}", phone="{PHONE}")'),
    ("code", "curl -X POST https://api.example.net/v1/charge -d card={CREDIT_CARD} -d amount=1999"),
    ("code", 'ALLOWED_HOSTS = ["{IP_ADDRESS}", "api.internal"]'),
    ("code", "ssh deploy@{IP_ADDRESS} -p 2222 'sudo systemctl restart app'"),
    ("code", 'test_customer = {{"iban": "{IBAN}", "holder": "{PERSON}"}}'),
    ("code", "INSERT INTO patients (name, dob, ssn) VALUES ('{PERSON}', '{DATE_OF_BIRTH}', '{US_SSN}');"),
    ("code", 'git config --global user.email "{EMAIL}"'),
    ("code", "proxy_pass http://{IP_ADDRESS}:8080;"),
    ("code", 'const contact = {{ email: "{EMAIL}", tel: "{PHONE}" }};'),
    ("code", "# TODO: ask {PERSON} ({EMAIL}) before changing the billing job"),
    ("code", 'assert validate_card("{CREDIT_CARD}") is True'),
    ("code", "export DB_HOST={IP_ADDRESS}\nexport DB_PORT=5432"),
    ("code", 'address = "{LOCATION}"\ngeocode(address)'),
    ("code", 'iptables -A INPUT -s {IP_ADDRESS} -j DROP'),
    ("code", '{{"customer": {{"name": "{PERSON}", "birth_date": "{DATE_OF_BIRTH}", "email": "{EMAIL}"}}}}'),
    ("code", "payload = {{'account': '{IBAN}', 'reference': 'INV-2024-0042'}}"),
    ("code", "nmap -sV {IP_ADDRESS}"),
    ("code", "// reported by {EMAIL}: crash when the list is empty"),
    # logs
    ("log", "2024-05-12T08:14:55Z INFO login ok user={EMAIL} ip={IP_ADDRESS}"),
    ("log", "{IP_ADDRESS} - - [12/May/2024:08:14:55 +0000] \"GET /account HTTP/1.1\" 200 5120"),
    ("log", "WARN payment declined card={CREDIT_CARD} reason=insufficient_funds"),
    ("log", "ERROR sms send failed to={PHONE} provider=twilio code=30003"),
    ("log", "May 12 08:14:55 gw sshd[2231]: Failed password for root from {IP_ADDRESS} port 51122 ssh2"),
    ("log", "DEBUG kyc check name=\"{PERSON}\" dob={DATE_OF_BIRTH} result=pass"),
    ("log", "audit: user {EMAIL} exported report; src={IP_ADDRESS}"),
    ("log", "[worker-3] sepa transfer queued iban={IBAN} amount=250.00 EUR"),
    ("log", "level=info msg=\"address updated\" customer_address=\"{LOCATION}\""),
    ("log", "connection from [{IP_ADDRESS}]:443 reset by peer"),
    ("log", "2024-06-01 10:02:11 WARN duplicate ssn={US_SSN} on applications 881 and 902"),
    ("log", "notify: sent OTP to {PHONE} for {EMAIL}"),
    # email / forms
    ("email", "From: {PERSON} <{EMAIL}>\nTo: billing team\nSubject: wrong charge\n\nHi, the charge on {CREDIT_CARD} is not mine."),
    ("email", "Hi Tom,\n\nplease forward the contract to {EMAIL}. You can also reach me on {PHONE}.\n\nThanks,\n{PERSON}"),
    ("email", "Good morning,\nmy new address from June 1st is {LOCATION}.\nKind regards,\n{PERSON}"),
    ("email", "Dear HR, attached my details for payroll: IBAN {IBAN}, SSN {US_SSN}."),
    ("email", "Hello, I'm {PERSON}. I was born on {DATE_OF_BIRTH} and I'd like to request my records."),
    ("form", "Full name: {PERSON}\nEmail: {EMAIL}\nPhone: {PHONE}\nAddress: {LOCATION}"),
    ("form", "Applicant: {PERSON}; Date of Birth: {DATE_OF_BIRTH}; SSN: {US_SSN}"),
    ("form", "Card number: {CREDIT_CARD}  Exp: 09/27  Name on card: {PERSON}"),
    ("form", "Beneficiary IBAN: {IBAN}\nBeneficiary name: {PERSON}"),
    ("form", "Emergency contact: {PERSON}, {PHONE}"),
    ("form", "Billing address: {LOCATION}\nCard: {CREDIT_CARD}"),
    ("form", "DOB: {DATE_OF_BIRTH}\nMobile: {PHONE}"),
    ("chat", "Can you write a LinkedIn summary? I'm {PERSON}, a data engineer in Denver."),
    ("chat", "I keep getting emails from {EMAIL}, how do I unsubscribe from them for good?"),
    ("chat", "The delivery guy said he left it at {LOCATION} but I live somewhere else!"),
    ("chat", "My IP shows as {IP_ADDRESS}, does that mean my VPN is off?"),
    ("chat", "How do I tell my bank that {CREDIT_CARD} was stolen?"),
    ("chat", "Hello! I'm {PERSON} from accounting, could you summarise the Q3 memo?"),
    ("chat", "Please double check these digits for me: SSN {US_SSN}"),
    ("chat", "We're throwing a party for my daughter who was born {DATE_OF_BIRTH}, any theme ideas?"),
    ("support", "Agent note: verified caller via date of birth ({DATE_OF_BIRTH}) and postcode."),
    ("support", "Customer {PERSON} wants all mail sent to {LOCATION} from now on."),
    ("log", "INFO geoip lookup ip={IP_ADDRESS} country=DE"),
    ("code", "mysql -h {IP_ADDRESS} -u app -p"),
]

# --- negative templates: risky-looking, no PII ----------------------------------------------

NEGATIVE: list[tuple[str, str]] = [
    ("chat", "My order number is {order_no} and it still hasn't shipped."),
    ("chat", "The receipt shows card {masked_card}, is that mine?"),
    ("chat", "Where do I find my SSN? The form just shows XXX-XX-XXXX as an example."),
    ("chat", "What did {public} say in the speech about climate change?"),
    ("chat", "Write a short story where {fictional} visits a modern supermarket."),
    ("chat", "I'm flying to {city} next week, what should I pack?"),
    ("chat", "Thanks {first_name}, that fixed it!"),
    ("chat", "Is version {version} of the app compatible with Android 14?"),
    ("chat", "The server runs on localhost:{port}, but I can't reach it from my phone."),
    ("chat", "How do I enter an SSN in the format ###-##-####?"),
    ("chat", "Why is my tracking number {order_no} not recognised by the courier?"),
    ("chat", "Who was {public} and why is he famous?"),
    ("chat", "Explain how the Luhn check works on a number like {order_no}."),
    ("chat", "Can {fictional} beat Darth Vader in a fight?"),
    ("chat", "Best restaurants in {city} for a birthday dinner?"),
    ("chat", "{first_name} said the meeting moved to Thursday."),
    ("chat", "My flight leaves {city} at 14:35 on {date}, which terminal?"),
    ("chat", "The IBAN field says something like {bad_iban} is invalid. Why?"),
    ("chat", "What's the population of {city} compared to {city}?"),
    ("chat", "What happened on {date} in history?"),
    ("chat", "I work at 10 Downing Street... just kidding, I'm a teacher."),
    ("chat", "Is the White House at 1600 Pennsylvania Avenue open to visitors?"),
    ("chat", "Does Sherlock Holmes really live at 221B Baker Street, London?"),
    ("chat", "Hi, I'm {first_name}! Can you help with my homework?"),
    ("chat", "The course code is CS-{ticket} and the room is B-204."),
    ("chat", "Total was $1,249.99 for 3 items, order {order_no}."),
    ("chat", "My zip code is 94107, is that San Francisco?"),
    ("support", "Ticket {ticket}: customer cannot see invoice {order_no} in the portal."),
    ("support", "Payment method on file: {masked_card} (expires 04/27)."),
    ("support", "Please use the template: Name: <name>, SSN: XXX-XX-XXXX, DOB: MM/DD/YYYY."),
    ("support", "Customer in {city} reports slow speeds since the upgrade to firmware {version}."),
    ("support", "Order {order_no} was refunded on {date}; amount 49.90 EUR."),
    ("support", "The agent {first_name} closed the case after the second call."),
    ("support", "Card number entered was {masked_card}; payment processor returned code 05."),
    ("support", "RMA {ticket} approved, ship to our warehouse in {city}."),
    ("support", "Replacement part number {part_no} is out of stock until {date}."),
    ("code", "app.run(host=\"0.0.0.0\", port={port})"),
    ("code", "DATABASE_URL=postgres://app:secret@127.0.0.1:5432/app"),
    ("code", "pip install 'numpy=={version}'"),
    ("code", "const TEST_CARD = \"{masked_card}\"; // masked in fixtures"),
    ("code", "if re.match(r'\\d{{3}}-\\d{{2}}-\\d{{4}}', value): raise ValueError('no SSNs')"),
    ("code", "uuid = '3f2b8c1e-9d4a-4b7e-8c21-5a6f0e9d1b23'"),
    ("code", "commit a3f9c2d1e8b7 fixed the parser; see PR #{ticket}"),
    ("code", "color: #ff8800; margin: 10px 12px;"),
    ("code", "EXPOSE {port}\nCMD [\"uvicorn\", \"main:app\", \"--host\", \"0.0.0.0\", \"--port\", \"{port}\"]"),
    ("code", "version = \"{version}\"\nbuild = {ticket}"),
    ("code", "for i in range(1, 4111): total += i * 1111"),
    ("code", "ORDER_ID_RE = re.compile(r'ORD-\\d{{8}}')  # e.g. ORD-{ticket}"),
    ("code", "print(f\"Hello, {{user.first_name}} {{user.last_name}}!\")"),
    ("code", "class HarryPotter(Wizard): pass  # {fictional} fan fiction generator"),
    ("log", "2024-05-12T08:14:55Z INFO request id={ticket} status=200 latency=12ms"),
    ("log", "INFO listening on 0.0.0.0:{port}"),
    ("log", "DEBUG connect 127.0.0.1:{port} ok"),
    ("log", "WARN order {order_no} payment retry 2/3"),
    ("log", "[{date} 10:22:01] build {version} deployed to staging"),
    ("log", "ERROR invalid card number {masked_card} rejected by validator"),
    ("log", "INFO user_id={ticket} session=9f8e7d6c started"),
    ("log", "kernel: eth0 link up, MAC 00:1A:2B:3C:4D:5E"),
    ("log", "GET /api/v2/items?page={ticket}&size=50 200"),
    ("log", "chrome/{version} on Windows 10; screen 1920x1080"),
    ("email", "Hi all,\n\nthe release {version} is out. Thanks to {first_name} for the fixes!\n\nCheers"),
    ("email", "Reminder: the conference is in {city} on {date}. Badge pickup at the hall."),
    ("form", "Card number: {masked_card}\nExpiry: 11/26"),
    ("form", "SSN: XXX-XX-XXXX (enter yours here)"),
    ("form", "IBAN: (e.g. DE00 0000 0000 0000 0000 00)"),
    ("chat", "Give me a quote by {public} about leadership."),
    ("chat", "Summarise the plot: {fictional} discovers a secret door."),
    ("chat", "Which is older, IPv4 or IPv6? Example like 999.300.1.1 is not valid right?"),
    ("chat", "What does the error 'port {port} already in use' mean?"),
]

# --- value pools ------------------------------------------------------------------------------

FIRST_NAMES = (
    "Maria Daniel Priya Tomasz Aisha Jonas Keiko Olumide Sofia Mateo Hannah Rahul Elena Marcus "
    "Fatima Lukas Chloe Diego Ingrid Samuel Mei Oscar Leila Patrick Zara Viktor Amara Felix "
    "Nadia Henrik Grace Ravi Isabel Kwame Julia Andrei Yuki Omar Clara Tobias Rosa Emeka"
).split()
LAST_NAMES = (
    "Gonzalez Okafor Sharma Kowalski Rahman Lindqvist Tanaka Adeyemi Rossi Fernandez Becker "
    "Patel Petrova Holloway Haddad Schneider Dubois Morales Johansson Mensah Chen Nilsson "
    "Karimi O'Brien Novak Sokolov Eze Weber Moreau Brennan Kaur Vasquez Nakamura Abiodun "
    "Lindgren Castillo Hoffmann Yilmaz Murphy Sato Delgado Ferreira"
).split()
STREET_NAMES = (
    "Oak Maple Cedar Willow Birch Pine Elm Chestnut Hawthorn Juniper Magnolia Sycamore Aspen "
    "Linden Poplar Laurel Rosewood Briar Meadow Orchard Foxglove Heather Juniper Sparrow"
).split()
STREET_TYPES = "Street Avenue Road Lane Drive Court Boulevard Way Place Terrace".split()
US_CITIES = [
    ("Springfield", "IL"), ("Austin", "TX"), ("Portland", "OR"), ("Columbus", "OH"),
    ("Raleigh", "NC"), ("Tucson", "AZ"), ("Madison", "WI"), ("Boise", "ID"), ("Albany", "NY"),
    ("Fresno", "CA"), ("Dayton", "OH"), ("Tampa", "FL"), ("Omaha", "NE"), ("Eugene", "OR"),
]  # fmt: skip
UK_TOWNS = ["Leeds LS6 2AB", "Bristol BS8 1QU", "Manchester M14 5RT", "Oxford OX4 1JD"]
DE_TOWNS = ["10115 Berlin", "80331 München", "50667 Köln", "20095 Hamburg"]
DE_STREETS = ["Lindenstraße", "Bergweg", "Rosengasse", "Schillerstraße", "Gartenweg"]
FR_TOWNS = ["69003 Lyon", "75011 Paris", "33000 Bordeaux", "31000 Toulouse"]
FR_STREETS = ["rue des Lilas", "avenue Victor Hugo", "rue de la Paix", "boulevard Voltaire"]
CITIES = "Chicago Paris Tokyo Berlin Lagos Madrid Toronto Sydney Mumbai Lisbon Denver Oslo".split()
PUBLIC = ["Barack Obama", "Elon Musk", "Taylor Swift", "Angela Merkel", "Albert Einstein",
          "Bill Gates", "Serena Williams", "Nelson Mandela", "Marie Curie", "Tim Cook"]  # fmt: skip
FICTIONAL = ["Harry Potter", "Sherlock Holmes", "Hermione Granger", "Tony Stark",
             "Frodo Baggins", "Luke Skywalker", "Homer Simpson", "Katniss Everdeen"]  # fmt: skip
IBAN_FORMATS = {"DE": "8n10n", "GB": "4a6n8n", "FR": "5n5n11c2n", "NL": "4a10n",
                "ES": "4n4n2n10n", "IT": "1a5n5n12c", "BE": "3n7n2n", "CH": "5n12c"}  # fmt: skip
PHONE_SHAPES = {
    "US": ["({a}) {b}-{c}", "{a}-{b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "+1-{a}-{b}-{c}"],
}
PHONE_REGIONS = ("GB", "DE", "FR", "IN", "AU")


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def credit_card(rng: random.Random) -> str:
    network = rng.choice(["visa", "visa", "mc", "amex", "discover"])
    prefix, length = {"visa": ("4", 16), "mc": ("5" + rng.choice("12345"), 16),
                      "amex": (rng.choice(["34", "37"]), 15), "discover": ("6011", 16)}[network]  # fmt: skip
    body = prefix + _digits(rng, length - len(prefix) - 1)
    number = body + _luhn_digit(body)
    style = rng.choice(["space", "dash", "plain"])
    groups = [number[:4], number[4:10], number[10:]] if length == 15 else [
        number[i : i + 4] for i in range(0, 16, 4)
    ]
    return {"space": " ".join(groups), "dash": "-".join(groups), "plain": number}[style]


def order_number(rng: random.Random) -> str:
    """16 digits starting like a Visa number and failing Luhn."""
    body = "4" + _digits(rng, 14)
    good = _luhn_digit(body)
    return body + rng.choice([d for d in "0123456789" if d != good])


def masked_card(rng: random.Random) -> str:
    last = _digits(rng, 4)
    return rng.choice([f"**** **** **** {last}", f"XXXX-XXXX-XXXX-{last}",
                       f"4{_digits(rng, 3)} XXXX XXXX {last}", f"************{last}"])  # fmt: skip


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_FORMATS))
    bban = ""
    for count, kind in re.findall(r"(\d+)([nac])", IBAN_FORMATS[country]):
        alphabet = {"n": "0123456789", "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                    "c": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}[kind]  # fmt: skip
        bban += "".join(rng.choice(alphabet) for _ in range(int(count)))
    numeric = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    compact = f"{country}{98 - numeric % 97:02d}{bban}"
    if rng.random() < 0.6:
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


def bad_iban(rng: random.Random) -> str:
    """A well-formed IBAN with wrong check digits (exactly one pair passes mod-97)."""
    good = iban(rng)
    wrong = rng.choice([c for c in range(2, 99) if c != int(good[2:4])])
    return f"{good[:2]}{wrong:02d}{good[4:]}"


def ip_address(rng: random.Random) -> str:
    kind = rng.choice(["public", "public", "private", "v6", "v6full"])
    if kind == "public":
        return f"{rng.choice([23, 45, 62, 81, 91, 104, 151, 185, 203])}.{rng.randint(0, 255)}." \
            f"{rng.randint(0, 255)}.{rng.randint(1, 254)}"  # fmt: skip
    if kind == "private":
        return rng.choice([f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                           f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"])  # fmt: skip
    groups = [f"{rng.randint(0, 65535):x}" for _ in range(4)]
    if kind == "v6":
        return f"2001:db8:{groups[0]}::{groups[1]}"
    return "2a02:" + ":".join(f"{rng.randint(0, 65535):x}" for _ in range(7))


def phone(rng: random.Random) -> str:
    while True:
        if rng.random() < 0.55:
            a = f"{rng.choice('2345689')}{_digits(rng, 2)}"
            shape = rng.choice(PHONE_SHAPES["US"])
            text = shape.format(a=a, b=f"{rng.choice('23456789')}{_digits(rng, 2)}",
                                c=_digits(rng, 4))  # fmt: skip
            region = "US"
        else:
            region = rng.choice(PHONE_REGIONS)
            example = phonenumbers.example_number_for_type(
                region, rng.choice([phonenumbers.PhoneNumberType.MOBILE,
                                    phonenumbers.PhoneNumberType.FIXED_LINE])  # fmt: skip
            )
            assert example is not None
            national = str(example.national_number)
            keep = max(2, len(national) - 4)
            example.national_number = int(national[:keep] + _digits(rng, len(national) - keep))
            fmt = rng.choice([phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                              phonenumbers.PhoneNumberFormat.NATIONAL])  # fmt: skip
            text = phonenumbers.format_number(example, fmt)
        parsed = phonenumbers.parse(text, region)
        if phonenumbers.is_valid_number(parsed):
            return text


def date_of_birth(rng: random.Random) -> str:
    y, m, d = rng.randint(1940, 2012), rng.randint(1, 12), rng.randint(1, 28)
    month = ["January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December"][m - 1]  # fmt: skip
    return rng.choice([f"{m:02d}/{d:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}",
                       f"{month} {d}, {y}", f"{d} {month} {y}", f"{month[:3]} {d} {y}",
                       f"{m}/{d}/{y}"])  # fmt: skip


def other_date(rng: random.Random) -> str:
    y, m, d = rng.randint(2019, 2026), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{m}/{d}/{y}", f"March {d}, {y}"])


class Pools:
    """The name/street/city pools of one split."""

    def __init__(self, split: str) -> None:
        def half(items: list[str] | tuple[str, ...]) -> list[str]:
            return [x for x in items if _split_of(x) == split] or list(items)

        self.first, self.last = half(FIRST_NAMES), half(LAST_NAMES)
        self.streets = half(STREET_NAMES)
        self.cities = [c for c in US_CITIES if _split_of(c[0]) == split] or US_CITIES

    def person(self, rng: random.Random) -> str:
        first, last = rng.choice(self.first), rng.choice(self.last)
        roll = rng.random()
        if roll < 0.12:
            return f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
        if roll < 0.2:
            return f"{first} {last}-{rng.choice(self.last)}"
        return f"{first} {last}"

    def location(self, rng: random.Random) -> str:
        roll = rng.random()
        if roll < 0.12:
            return f"{rng.choice(DE_STREETS)} {rng.randint(1, 120)}, {rng.choice(DE_TOWNS)}"
        if roll < 0.22:
            return f"{rng.randint(1, 90)} {rng.choice(FR_STREETS)}, {rng.choice(FR_TOWNS)}"
        street = f"{rng.randint(2, 9800)} {rng.choice(self.streets)} {rng.choice(STREET_TYPES)}"
        if roll < 0.32:
            return f"{street}, {rng.choice(UK_TOWNS)}"
        unit = rng.choice(["", "", f", Apt {rng.randint(1, 40)}{rng.choice('ABC')}",
                           f", Suite {rng.randint(100, 990)}", f" #{rng.randint(2, 30)}"])  # fmt: skip
        city, state = rng.choice(self.cities)
        return rng.choice([
            f"{street}{unit}, {city}, {state} {_digits(rng, 5)}",
            f"{street}{unit}, {city}, {state}",
            f"{street}{unit}",
        ])  # fmt: skip


# Templates fixed after they were written keep the split their first text hashed to.
SPLIT_KEYS = {
    "From: {PERSON} <{EMAIL}>\nTo: billing team\nSubject: wrong charge\n\nHi, the charge on "
    "{CREDIT_CARD} is not mine.": "From: {PERSON} <{EMAIL}>\nTo: billing@shop.example\nSubject: "
    "wrong charge\n\nHi, the charge on {CREDIT_CARD} is not mine.",
}


def _split_of(key: str) -> str:
    key = SPLIT_KEYS.get(key, key)
    digest = hashlib.sha1(f"pii:{key}".encode()).digest()
    return "validation" if digest[0] / 256 < VALIDATION_SHARE else "tune"


def _generators(pools: Pools) -> dict[str, Callable[[random.Random], str]]:
    return {
        "EMAIL": lambda rng: _email(rng, pools),
        "PHONE": phone,
        "CREDIT_CARD": credit_card,
        "US_SSN": ssn,
        "IBAN": iban,
        "IP_ADDRESS": ip_address,
        "PERSON": pools.person,
        "LOCATION": pools.location,
        "DATE_OF_BIRTH": date_of_birth,
        "order_no": order_number,
        "masked_card": masked_card,
        "public": lambda rng: rng.choice(PUBLIC),
        "fictional": lambda rng: rng.choice(FICTIONAL),
        "city": lambda rng: rng.choice(CITIES),
        "first_name": lambda rng: rng.choice(pools.first),
        "version": lambda rng: rng.choice(["1.2.3.4", "2.10.4", "120.0.6099.109", "3.11.2",
                                           "4.0.1.7", "1.26.4"]),  # fmt: skip
        "port": lambda rng: rng.choice(["8080", "5000", "8443", "3000", "9090"]),
        "date": other_date,
        "bad_iban": bad_iban,
        "ticket": lambda rng: str(rng.randint(1000, 99999)),
        "part_no": lambda rng: f"{_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 3)}",
    }


def _email(rng: random.Random, pools: Pools) -> str:
    first, last = rng.choice(pools.first).lower(), rng.choice(pools.last).lower().replace("'", "")
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randint(1, 99)}",
                        f"{first}_{last}", f"{last}+{rng.choice(['shop', 'news'])}"])  # fmt: skip
    domain = rng.choice(["gmail.com", "outlook.com", "yahoo.co.uk", "acme-corp.io",
                         "mail.example.org", "web.de", "company.com.au"])  # fmt: skip
    return f"{local}@{domain}"


_SLOT = re.compile(r"\{([A-Za-z_]+)\}")


def fill(template: str, rng: random.Random, pools: Pools) -> tuple[str, list[dict[str, object]]]:
    generators = _generators(pools)
    text, entities, pos = "", [], 0
    # {{ and }} are literal braces (templates hold JSON and f-strings).
    template = template.replace("{{", "\x00").replace("}}", "\x01")
    for m in _SLOT.finditer(template):
        text += template[pos : m.start()]
        name = m.group(1)
        value = generators[name](rng)
        if name.isupper():
            entities.append({"type": name, "start": len(text), "end": len(text) + len(value),
                             "text": value})  # fmt: skip
        text += value
        pos = m.end()
    text += template[pos:]
    return text.replace("\x00", "{").replace("\x01", "}"), entities


def main() -> None:
    rng = random.Random(14)
    rows: dict[str, list[dict[str, object]]] = {"tune": [], "validation": []}
    for label, templates, fills in (("pos", POSITIVE, FILLS_POSITIVE),
                                    ("neg", NEGATIVE, FILLS_NEGATIVE)):  # fmt: skip
        for i, (kind, template) in enumerate(templates):
            split = _split_of(template)
            pools = Pools(split)
            seen: set[str] = set()
            for j in range(fills if _SLOT.search(template) else 1):
                text, entities = fill(template, rng, pools)
                if text in seen:
                    continue
                seen.add(text)
                rows[split].append({"id": f"{label}-{i:03d}-{j}", "split": split, "kind": kind,
                                    "text": text, "entities": entities})  # fmt: skip
    for split, items in rows.items():
        with (HERE / f"{split}.jsonl").open("w", encoding="utf-8") as out:
            for row in items:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        positives = sum(1 for r in items if r["entities"])
        print(f"{split}: {len(items)} texts, {positives} with entities, "
              f"{len(items) - positives} without")  # fmt: skip


if __name__ == "__main__":
    main()
