"""The synthetic world the built-in model learns, and the text corpus drawn from it.

The built-in model has to know a few facts that an attribution graph can explain, and it has to
learn them in minutes on a laptop CPU. So the world is small and fixed: 18 places (10 US states,
each in a region, and 8 countries, each with a language), every place with a capital and three
other cities, all single words so that a word-level tokenizer sees each as one token.

Facts come in two kinds:

- one-hop facts, stated directly: "Dallas is a city in Texas", "The capital of Texas is Austin",
  "People in France speak French";
- two-hop facts, which compose two one-hop facts through a place that is never named:
  "The capital of the state containing Dallas is Austin" needs Dallas -> Texas -> Austin.

A seeded random subset of the two-hop (relation, city) combinations is *held out*: it never
appears in training text, so the model can only answer it by composing the one-hop facts it did
see. Accuracy on that subset measures composition rather than memorisation. The seed prompt of
the project, "The capital of the state containing Dallas is" -> " Austin", is always trained.

Everything here is plain Python and deterministic given a seed: the same seed gives the same
held-out split and the same stream of sentences.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

SEED_PROMPT = "The capital of the state containing Dallas is"
SEED_ANSWER = "Austin"

Kind = Literal["state", "country"]


@dataclass(frozen=True)
class Place:
    """A state or a country: its capital, three other cities, and one attribute.

    `attribute` is the region of a state ("South") or the language of a country ("French").
    """

    name: str
    kind: Kind
    capital: str
    cities: tuple[str, ...]
    attribute: str

    @property
    def all_cities(self) -> tuple[str, ...]:
        """The capital first, then the other cities."""
        return (self.capital, *self.cities)


@dataclass(frozen=True)
class Fact:
    """A prompt whose next word is known: the unit of every accuracy measurement.

    `prompt` ends just before the answer word, so `prompt + " " + answer` is a training sentence.
    `relation` names the template family (e.g. "capital_of_containing"); `subject` is the city
    or place the prompt is about; `hops` is 1 or 2.
    """

    prompt: str
    answer: str
    hops: int
    relation: str
    subject: str

    @property
    def sentence(self) -> str:
        """The full sentence: the prompt followed by its answer."""
        return f"{self.prompt} {self.answer}"


# Every name is one word, and no city appears twice (a city names exactly one place).
PLACES: tuple[Place, ...] = (
    Place("Texas", "state", "Austin", ("Dallas", "Houston", "Lubbock"), "South"),
    Place("California", "state", "Sacramento", ("Fresno", "Oakland", "Pasadena"), "West"),
    Place("Florida", "state", "Tallahassee", ("Miami", "Orlando", "Tampa"), "South"),
    Place("Illinois", "state", "Springfield", ("Chicago", "Peoria", "Naperville"), "Midwest"),
    Place("Ohio", "state", "Columbus", ("Cleveland", "Cincinnati", "Dayton"), "Midwest"),
    Place("Georgia", "state", "Atlanta", ("Savannah", "Augusta", "Macon"), "South"),
    Place("Washington", "state", "Olympia", ("Seattle", "Spokane", "Tacoma"), "West"),
    Place("Massachusetts", "state", "Boston", ("Worcester", "Cambridge", "Lowell"), "Northeast"),
    Place(
        "Pennsylvania", "state", "Harrisburg", ("Philadelphia", "Pittsburgh", "Erie"), "Northeast"
    ),
    Place("Arizona", "state", "Phoenix", ("Tucson", "Mesa", "Flagstaff"), "West"),
    Place("France", "country", "Paris", ("Lyon", "Marseille", "Nice"), "French"),
    Place("Germany", "country", "Berlin", ("Munich", "Hamburg", "Cologne"), "German"),
    Place("Spain", "country", "Madrid", ("Barcelona", "Seville", "Valencia"), "Spanish"),
    Place("Italy", "country", "Rome", ("Milan", "Naples", "Turin"), "Italian"),
    Place("Japan", "country", "Tokyo", ("Osaka", "Kyoto", "Sapporo"), "Japanese"),
    Place("Brazil", "country", "Brasilia", ("Salvador", "Recife", "Manaus"), "Portuguese"),
    Place("Netherlands", "country", "Amsterdam", ("Rotterdam", "Utrecht", "Eindhoven"), "Dutch"),
    Place("Poland", "country", "Warsaw", ("Krakow", "Gdansk", "Wroclaw"), "Polish"),
)


def one_hop_facts(places: tuple[Place, ...] = PLACES) -> list[Fact]:
    """Every directly stated fact about every place, in a fixed order."""
    facts: list[Fact] = []
    for p in places:
        for city in p.all_cities:
            facts.append(Fact(f"{city} is a city in", p.name, 1, "city_in", city))
        facts.append(Fact(f"The capital of {p.name} is", p.capital, 1, "capital_of", p.name))
        facts.append(Fact(f"{p.capital} is the capital of", p.name, 1, "capital_is", p.name))
        if p.kind == "state":
            facts.append(Fact(f"{p.name} is a state in the", p.attribute, 1, "region", p.name))
            facts.append(
                Fact(f"The region of {p.name} is the", p.attribute, 1, "region_of", p.name)
            )
        else:
            facts.append(Fact(f"People in {p.name} speak", p.attribute, 1, "speak", p.name))
            facts.append(
                Fact(f"The language spoken in {p.name} is", p.attribute, 1, "language", p.name)
            )
    return facts


def two_hop_facts(places: tuple[Place, ...] = PLACES) -> list[Fact]:
    """Every two-hop fact (about the non-capital cities), in a fixed order.

    Two relation groups per city: the capital of its place, and its place's attribute. Countries
    have two attribute templates ("The language spoken in ..." and "People in ... speak"); both
    belong to the same (group, city) combination for the held-out split.
    """
    facts: list[Fact] = []
    for p in places:
        for city in p.cities:
            facts.append(
                Fact(
                    f"The capital of the {p.kind} containing {city} is",
                    p.capital,
                    2,
                    "capital_of_containing",
                    city,
                )
            )
            if p.kind == "state":
                facts.append(
                    Fact(
                        f"The state containing {city} is in the",
                        p.attribute,
                        2,
                        "region_of_containing",
                        city,
                    )
                )
            else:
                facts.append(
                    Fact(
                        f"The language spoken in the country containing {city} is",
                        p.attribute,
                        2,
                        "language_of_containing",
                        city,
                    )
                )
                facts.append(
                    Fact(
                        f"People in the country containing {city} speak",
                        p.attribute,
                        2,
                        "speak_of_containing",
                        city,
                    )
                )
    return facts


def _combination(fact: Fact) -> tuple[str, str]:
    """The (relation group, city) a two-hop fact belongs to; the unit of holding out."""
    group = "capital" if fact.relation == "capital_of_containing" else "attribute"
    return group, fact.subject


@dataclass(frozen=True)
class FactSplit:
    """The facts of the world, split into what training text states and what it never states."""

    one_hop: tuple[Fact, ...]
    two_hop_train: tuple[Fact, ...]
    two_hop_held_out: tuple[Fact, ...]


def split_facts(
    seed: int, held_out_fraction: float = 0.2, places: tuple[Place, ...] = PLACES
) -> FactSplit:
    """Hold out a seeded fraction of the two-hop (relation group, city) combinations.

    Stratified: at most one city per (place, relation group) is held out, so every place keeps
    at least two trained two-hop examples of each relation and a held-out fact tests
    composition, not a place the model never saw composed. The seed prompt's combination
    ("capital", "Dallas") is never held out: the project's demo prompt must be a trained fact.
    """
    two_hop = two_hop_facts(places)
    n_combos = len({_combination(f) for f in two_hop})
    rng = random.Random(seed)
    candidates = []  # one candidate city per (place, group), in a fixed order
    for p in places:
        for group in ("capital", "attribute"):
            cities = [c for c in p.cities if (group, c) != ("capital", "Dallas")]
            candidates.append((group, rng.choice(cities)))
    rng.shuffle(candidates)
    n_held = min(len(candidates), round(held_out_fraction * n_combos))
    held = set(candidates[:n_held])
    return FactSplit(
        one_hop=tuple(one_hop_facts(places)),
        two_hop_train=tuple(f for f in two_hop if _combination(f) not in held),
        two_hop_held_out=tuple(f for f in two_hop if _combination(f) in held),
    )


# Filler: sentences that mention cities (and nothing else) without stating a fact about them, so
# that a city name alone does not predict a fact template.
_FILLER_SUBJECTS = ("We", "They", "My friends", "Many people", "The students", "Our family")
_FILLER_VERBS = ("visited", "liked", "remember", "talked about", "wrote about")
_FILLER_TIMES = ("last year", "in the summer", "every spring", "on a rainy day", "long ago")
_FILLER_PLAIN = (
    "The weather is nice today",
    "The museum opens in the morning",
    "A long train crossed the river",
    "The old town has a quiet market",
    "We read a book about history",
    "The students walked to the library",
)


def filler_sentence(rng: random.Random, places: tuple[Place, ...] = PLACES) -> str:
    """One random filler sentence: plain, or about a city without any fact."""
    if rng.random() < 0.3:
        return rng.choice(_FILLER_PLAIN)
    city = rng.choice(rng.choice(places).all_cities)
    if rng.random() < 0.5:
        return f"{city} is a large city"
    subject, verb, time = (
        rng.choice(_FILLER_SUBJECTS),
        rng.choice(_FILLER_VERBS),
        rng.choice(_FILLER_TIMES),
    )
    return f"{subject} {verb} {city} {time}"


def all_filler_sentences(places: tuple[Place, ...] = PLACES) -> list[str]:
    """Every filler sentence the generator can produce (for building the vocabulary)."""
    out = list(_FILLER_PLAIN)
    for p in places:
        for city in p.all_cities:
            out.append(f"{city} is a large city")
            for s in _FILLER_SUBJECTS:
                for v in _FILLER_VERBS:
                    for t in _FILLER_TIMES:
                        out.append(f"{s} {v} {city} {t}")
    return out


@dataclass(frozen=True)
class CorpusMix:
    """Probabilities of each sentence kind in training text (they must sum to 1)."""

    two_hop: float = 0.3
    one_hop: float = 0.5
    filler: float = 0.2


def sentence_stream(split: FactSplit, seed: int, mix: CorpusMix | None = None) -> Iterator[str]:
    """An endless, seeded stream of training sentences (without the final period).

    Two-hop sentences come only from `split.two_hop_train`; held-out combinations never appear.
    """
    mix = mix or CorpusMix()
    rng = random.Random(seed)
    while True:
        r = rng.random()
        if r < mix.two_hop:
            yield rng.choice(split.two_hop_train).sentence
        elif r < mix.two_hop + mix.one_hop:
            yield rng.choice(split.one_hop).sentence
        else:
            yield filler_sentence(rng)


def all_sentences(split: FactSplit) -> list[str]:
    """Every sentence that any fact or filler can produce, held-out facts included.

    The tokenizer's vocabulary is built from this list so that held-out prompts and their answers
    are in the vocabulary even though they never occur in training text.
    """
    facts = [*split.one_hop, *split.two_hop_train, *split.two_hop_held_out]
    return [f.sentence for f in facts] + all_filler_sentences() + [SEED_PROMPT]
