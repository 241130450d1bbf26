"""The synthetic world: fixed facts, a deterministic stratified held-out split, seeded text."""

import itertools
from collections import Counter

from circuitflow.training import world


def test_world_has_enough_single_word_places():
    assert len(world.PLACES) >= 15
    cities = [c for p in world.PLACES for c in p.all_cities]
    assert len(cities) == len(set(cities)), "a city must name exactly one place"
    names = [p.name for p in world.PLACES] + cities + [p.attribute for p in world.PLACES]
    assert all(" " not in n for n in names)
    assert all(2 <= len(p.cities) <= 4 for p in world.PLACES)


def test_seed_prompt_is_a_trained_two_hop_fact():
    split = world.split_facts(0)
    seed = [f for f in split.two_hop_train if f.prompt == world.SEED_PROMPT]
    assert [f.answer for f in seed] == [world.SEED_ANSWER]
    assert all(f.prompt != world.SEED_PROMPT for f in split.two_hop_held_out)


def test_split_is_deterministic_and_disjoint():
    a, b = world.split_facts(0), world.split_facts(0)
    assert a == b
    assert world.split_facts(1) != a
    train = {f.prompt for f in a.two_hop_train}
    held = {f.prompt for f in a.two_hop_held_out}
    assert train.isdisjoint(held)
    assert len(train) + len(held) == len(world.two_hop_facts())
    assert 0.15 < len(held) / (len(train) + len(held)) < 0.3


def test_split_holds_out_at_most_one_city_per_place_and_relation():
    split = world.split_facts(0)
    place_of = {c: p.name for p in world.PLACES for c in p.cities}
    groups = {
        (place_of[f.subject], f.relation == "capital_of_containing") for f in split.two_hop_held_out
    }
    per_group = Counter(
        (place_of[f.subject], f.relation == "capital_of_containing", f.subject)
        for f in split.two_hop_held_out
    )
    cities_per_group = Counter((p, g) for p, g, _ in per_group)
    assert all(n == 1 for n in cities_per_group.values())
    assert len(groups) == len(cities_per_group)


def test_sentence_stream_is_seeded_and_never_states_held_out_facts():
    split = world.split_facts(0)
    first = list(itertools.islice(world.sentence_stream(split, 7), 2000))
    assert first == list(itertools.islice(world.sentence_stream(split, 7), 2000))
    held = {f.sentence for f in split.two_hop_held_out}
    assert held.isdisjoint(first)
    kinds = Counter(
        "two" if "containing" in s else "filler" if s in _fillers() else "one" for s in first
    )
    assert 0.25 < kinds["two"] / len(first) < 0.35
    assert 0.15 < kinds["filler"] / len(first) < 0.25


def _fillers() -> set[str]:
    return set(world.all_filler_sentences())
