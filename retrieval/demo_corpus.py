"""A seeded, synthetic demo corpus: leads with a life event, their notes and feature profiles,
plus a few firm documents. Loaded at ``leadgw serve`` start when the store is empty, so that
SearchNotes and SummarizeLead have something real-looking to work on out of the box.

Everything here is invented. The feature names are the lead model's
(``runtimes/training/features.py``); each profile agrees with the lead's notes (a lead with a
webinar note has ``webinar_attended``; ``days_since_last_touch`` is the age of the newest note).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from retrieval.types import NoteRecord
from runtimes.types import FeatureValue, LeadInput

if TYPE_CHECKING:
    from retrieval.notes import NotesService
    from retrieval.report import IndexReport

# fmt: off
_FIRST = ("Maria", "James", "Priya", "Daniel", "Aiko", "Robert", "Fatima", "Lukas", "Grace",
          "Tomás", "Helen", "Samuel", "Ingrid", "Kwame", "Sofia", "Michael", "Leila", "Owen")
_LAST = ("Alvarez", "Brennan", "Chen", "Dubois", "Eriksen", "Fischer", "Gupta", "Haddad",
         "Ibrahim", "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Patel")
# fmt: on
_CITIES = ("Denver", "Austin", "Portland", "Raleigh", "Columbus", "Tampa")
_EMPLOYERS = (
    "a regional hospital",
    "a logistics firm",
    "the state university",
    "a software company",
    "a family-owned bakery chain",
    "an engineering consultancy",
)
_CHANNELS = ("referral", "web", "event", "seminar", "partner", "cold_list")


@dataclass(frozen=True, slots=True)
class _Story:
    name: str
    features: dict[str, FeatureValue]
    age: tuple[int, int]
    notes: tuple[tuple[str, str, str], ...]  # (kind, title, text) templates


_STORIES = (
    _Story(
        "retiring_soon",
        {"retiring_within_5y": True},
        (56, 66),
        (
            (
                "call",
                "Intro call",
                "{first} plans to retire from {employer} in about {years} "
                "years and wants to know whether ${assets} is enough to keep the same lifestyle.",
            ),
            (
                "event",
                "Webinar",
                "Attended the retirement income webinar and asked how to "
                "draw down savings without running out.",
            ),
            (
                "event",
                "Calculator",
                "Used the retirement calculator on the website; projected "
                "a shortfall of about ${gap} a year at age {retire_age}.",
            ),
            (
                "email",
                "401(k) rollover",
                "{first} asked by email how to roll the 401(k) from "
                "{employer} into an IRA and whether there are tax consequences.",
            ),
            (
                "meeting",
                "Planning meeting",
                "Reviewed Social Security timing with {first} and "
                "their spouse; they lean towards claiming at 67. Want a written income plan.",
            ),
            (
                "call",
                "Follow-up",
                "{first} worried about sequence-of-returns risk after the "
                "recent market drop; interested in a bond ladder for the first five years.",
            ),
            (
                "email",
                "Healthcare costs",
                "Question about covering health insurance between "
                "retirement and Medicare eligibility.",
            ),
        ),
    ),
    _Story(
        "inheritance",
        {"inheritance": True},
        (35, 70),
        (
            (
                "call",
                "Intro call",
                "{first} recently inherited about ${windfall} from a parent's "
                "estate, mostly in a brokerage account and a house in {city}.",
            ),
            (
                "email",
                "Estate paperwork",
                "{first} sent the executor's letter and asked what to "
                "do with the inherited IRA and the ten-year withdrawal rule.",
            ),
            (
                "meeting",
                "Discovery meeting",
                "Talked through goals for the inheritance: pay off "
                "the mortgage, fund the kids' college, invest the rest conservatively.",
            ),
            (
                "event",
                "Guide download",
                "Downloaded the guide 'Managing an inheritance: the first 90 days'.",
            ),
            (
                "call",
                "Tax question",
                "Asked whether selling the inherited stock triggers capital "
                "gains; explained the step-up in basis.",
            ),
            (
                "email",
                "Sibling question",
                "{first}'s sibling also inherited and may want advice; "
                "asked if we could meet both of them together.",
            ),
        ),
    ),
    _Story(
        "new_child",
        {"new_child": True},
        (27, 42),
        (
            (
                "call",
                "Intro call",
                "{first} and their partner just had a baby and want to start "
                "saving for college and review life insurance.",
            ),
            (
                "email",
                "529 plans",
                "{first} asked for a comparison of 529 plans and how much "
                "to put away each month for a state university.",
            ),
            ("event", "Webinar", "Attended the 'Family finances after a new baby' webinar."),
            (
                "meeting",
                "Budget review",
                "Went through the family budget; childcare costs "
                "about ${childcare} a month. Interested in term life cover and a will.",
            ),
            (
                "event",
                "Calculator",
                "Used the college savings calculator; target of ${college} by age 18.",
            ),
            (
                "call",
                "Parental leave",
                "{first} is on parental leave until {month} and prefers short evening calls.",
            ),
        ),
    ),
    _Story(
        "job_change",
        {"job_change": True},
        (30, 55),
        (
            (
                "call",
                "Intro call",
                "{first} just left {employer} for a new role with a higher "
                "salary and stock options; the old 401(k) is still with the former employer.",
            ),
            (
                "email",
                "Stock options",
                "Asked how the new employer's stock options vest and "
                "when exercising them makes sense.",
            ),
            (
                "meeting",
                "Benefits review",
                "Reviewed the new benefits package together; the "
                "employer matches 401(k) contributions up to 6 percent.",
            ),
            (
                "event",
                "Site visit",
                "Read three articles on the website about old 401(k) rollovers.",
            ),
            (
                "call",
                "Relocation",
                "{first} may relocate to {city} next year for the new job and "
                "asked about selling the current home.",
            ),
        ),
    ),
    _Story(
        "home_sale",
        {"home_sale": True},
        (45, 75),
        (
            (
                "call",
                "Intro call",
                "{first} sold the family home in {city} for about "
                "${windfall} and is downsizing to a condo.",
            ),
            (
                "email",
                "Sale proceeds",
                "The sale proceeds sit in a savings account; {first} "
                "asked where to keep them while deciding on the condo purchase.",
            ),
            (
                "meeting",
                "Goals meeting",
                "Discussed using part of the proceeds to help a child "
                "with a first home deposit and investing the rest for income.",
            ),
            ("event", "Webinar", "Attended the retirement income webinar after the home sale."),
            (
                "call",
                "Capital gains",
                "Asked whether the home sale exclusion covers the whole "
                "gain; they lived there for 22 years.",
            ),
        ),
    ),
)

# fmt: off
_GENERIC = (
    ("email", "Newsletter", "{first} opened the monthly market commentary and clicked through "
     "to the article on interest rates."),
    ("call", "Voicemail", "Left a voicemail for {first}; no answer yet."),
    ("email", "Scheduling", "{first} asked to move the next conversation to a weekday morning."),
    ("event", "Site visit", "Visited the fees page and the 'How we work' page on the website."),
    ("call", "Check-in", "Quick check-in call; {first} is busy at work this month and asked us "
     "to follow up after the holidays."),
    ("email", "Document request", "{first} asked for a copy of our privacy policy and the "
     "advisory agreement before going further."),
    ("event", "Email click", "Clicked the 'Book a call' link in the quarterly newsletter but did "
     "not finish booking."),
    ("call", "Market question", "{first} called after a volatile week to ask whether cash is "
     "safer right now; talked about time horizon."),
    ("email", "Referral", "{first} mentioned a colleague who may also want advice."),
    ("event", "Site visit", "Read the article on tax-efficient investing twice this week."),
)
# fmt: on

_FIRM_DOCUMENTS = (
    (
        "doc-retirement-income",
        "Retirement income planning guide",
        "Our approach to retirement "
        "income: a cash reserve for two years of spending, a bond ladder for years three to seven, "
        "and a diversified growth portfolio for the rest. We review withdrawal rates every year.",
    ),
    (
        "doc-fee-schedule",
        "Fee schedule",
        "Advisory fees are 0.9 percent a year on the first $1 "
        "million and 0.6 percent above that, billed quarterly. Financial plans for new clients are "
        "included in the first year.",
    ),
    (
        "doc-inheritance-checklist",
        "Inheritance checklist",
        "First 90 days after an inheritance: "
        "keep the money in cash, list every account, check the ten-year rule for inherited IRAs, "
        "note the step-up in basis, and avoid large decisions until a plan is written.",
    ),
    (
        "doc-529-overview",
        "529 college savings overview",
        "529 plans grow tax-free when used for "
        "qualified education costs. Contributions may be deductible on state taxes; unused funds "
        "can move to a sibling or, within limits, to a Roth IRA.",
    ),
    (
        "doc-rollover-faq",
        "401(k) rollover FAQ",
        "A direct rollover from a former employer's "
        "401(k) to an IRA is not taxed. Indirect rollovers must be completed within 60 days.",
    ),
)


@dataclass(frozen=True, slots=True)
class DemoLead:
    lead_id: str
    name: str
    story: str
    features: dict[str, FeatureValue]
    notes: list[NoteRecord]


def demo_leads(n: int = 24, *, seed: int = 7, now: datetime | None = None) -> list[DemoLead]:
    """``n`` leads ``demo-0001``…, each with 5-15 notes over the last ~6 months."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    return [_lead(rng, i + 1, now) for i in range(n)]


def _lead(rng: random.Random, number: int, now: datetime) -> DemoLead:
    lead_id = f"demo-{number:04d}"
    story = _STORIES[(number - 1) % len(_STORIES)]
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    age = rng.randint(*story.age)
    windfall = rng.randrange(200, 2500) * 1000
    # Savings grow with age; an inheritance or a home sale adds its windfall.
    assets = round(rng.lognormvariate(math.log(6_000 * (age - 20)), 0.5), -3)
    if story.name in ("inheritance", "home_sale"):
        assets += windfall
    values = {
        "first": first,
        "employer": rng.choice(_EMPLOYERS),
        "years": rng.randint(1, 5),
        "assets": f"{assets:,}",
        "gap": f"{rng.randrange(5, 40) * 1000:,}",
        "retire_age": rng.randint(62, 67),
        "windfall": f"{windfall:,}",
        "city": rng.choice(_CITIES),
        "childcare": f"{rng.randrange(12, 30) * 100:,}",
        "college": f"{rng.randrange(80, 250) * 1000:,}",
        "month": rng.choice(("March", "June", "September", "December")),
    }
    count = rng.randint(5, 15)
    # The story's own notes first (the intro call always), then generic touches to fill up.
    templates = [story.notes[0]]
    templates += rng.sample(story.notes[1:], min(count - 1, len(story.notes) - 1))
    templates += rng.sample(_GENERIC, count - len(templates))
    ages = sorted((rng.uniform(0.5, 180) for _ in templates), reverse=True)
    notes = [
        NoteRecord(
            note_id=f"{lead_id}-n{j + 1:02d}",
            lead_id=lead_id,
            kind=kind,
            text=text.format(**values),
            created_at=(now - timedelta(days=days)).replace(microsecond=0),
            title=title,
        )
        for j, ((kind, title, text), days) in enumerate(zip(templates, ages, strict=True))
    ]
    texts = " ".join(n.text.lower() for n in notes)
    features: dict[str, FeatureValue] = {
        "age": float(age),
        "household_income": float(rng.randrange(60, 400) * 1000),
        "investable_assets": float(assets),
        "retiring_within_5y": False,
        "job_change": False,
        "inheritance": False,
        "new_child": False,
        "home_sale": False,
        **story.features,
        "email_opens_90d": float(sum(n.kind == "email" for n in notes) + rng.randint(0, 8)),
        "site_visits_30d": float(rng.randint(0, 12)),
        "webinar_attended": "webinar" in texts,
        "calculator_used": "calculator" in texts,
        "days_since_last_touch": float(int(ages[-1])),
        "meeting_booked": any(n.kind == "meeting" for n in notes),
        "channel": rng.choice(_CHANNELS),
        "existing_accounts": float(rng.randint(0, 3)),
    }
    return DemoLead(lead_id, f"{first} {last}", story.name, features, notes)


def firm_documents(now: datetime | None = None) -> list[NoteRecord]:
    """Firm-wide documents (lead_id ""), dated a year back."""
    created = (now or datetime.now(UTC)).replace(microsecond=0) - timedelta(days=365)
    return [
        NoteRecord(note_id, "", "document", text, created, title)
        for note_id, title, text in _FIRM_DOCUMENTS
    ]


def demo_corpus(
    n: int = 24, *, seed: int = 7, now: datetime | None = None
) -> tuple[list[NoteRecord], list[LeadInput]]:
    """Every demo note and firm document, and every demo lead's profile."""
    leads = demo_leads(n, seed=seed, now=now)
    notes = [note for lead in leads for note in lead.notes] + firm_documents(now)
    return notes, [LeadInput(lead.lead_id, lead.features) for lead in leads]


async def load_demo_corpus_if_empty(
    service: NotesService,
    tenant: str = "default",
    *,
    n: int = 24,
    seed: int = 7,
    now: datetime | None = None,
) -> IndexReport | None:
    """Indexes the demo corpus for ``tenant`` when it has no notes; None when it already had."""
    if await service.count_notes(tenant) > 0:
        return None
    notes, leads = demo_corpus(n, seed=seed, now=now)
    return await service.index(tenant, notes, leads)
