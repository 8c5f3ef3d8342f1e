"""The constraint layer on its own, with no model: forced and forbidden tokens, kept hits
exact, and never an empty mask, under a random walk that tries hard to corner it."""

from __future__ import annotations

import random

import pytest

from drumgen.constants import DRUMS, SHIFT_BINS, VELOCITY_BINS
from drumgen.constraints import BarSpec, ConstraintError, EditGrammar, Slot, exact_bar
from drumgen.tokenizer import Tokenizer

TOK = Tokenizer()
STEPS = 16
ALL = tuple(range(len(DRUMS)))


def walk(specs, fills=None, room=None, seed=0, prompt_bars=0):
    """Random allowed tokens until EOS (the budget shrinking like the decoder's); returns the
    body tokens. Raises ConstraintError if a mask is ever empty."""
    rng = random.Random(seed)
    bars = len(specs)
    g = EditGrammar(TOK, bars, fills or [False] * bars, 4, 4, specs)
    out = [TOK.bos, TOK.ids["TEMPO_4"], TOK.ids["DENS_4"]]
    for t in out:
        g.advance(t)
    step = 0
    while g.state.phase != "DONE":
        if room is not None:
            g.budget = room - step
        mask = g.allowed()
        choices = mask.nonzero()[:, 0].tolist()
        assert choices, "empty mask"
        # favour hits and positions, so the walk fills bars densely and meets the end early
        weights = [3 if TOK.kind[c] in ("HIT", "POS") else 1 for c in choices]
        t = rng.choices(choices, weights)[0]
        out.append(t)
        g.advance(t)
        step += 1
        assert room is None or step <= room, "ran past the room it was given"
    assert TOK.check(out, bars=bars) == []
    return out


def bars_of(tokens):
    """{bar: {step: [hit tokens]}} of a whole sequence."""
    out, bar, step = {}, -1, -1
    for t in tokens:
        kind = TOK.kind[t]
        if kind in ("BAR", "FILL"):
            bar += 1
            out[bar] = {}
        elif kind == "POS":
            step = TOK.value[t]
            out[bar][step] = []
        elif kind == "HIT":
            out[bar][step].append(t)
    return out


def drum_of(t):
    return TOK.value[t] // (VELOCITY_BINS * SHIFT_BINS)


def kept_spec(rng, steps_with_hits, kept, free):
    slots = {}
    for s in steps_with_hits:
        tokens = sorted({TOK.hit_token(d, rng.randrange(VELOCITY_BINS), rng.randrange(SHIFT_BINS))
                         for d in kept}, key=lambda t: TOK.value[t])
        slots[s] = [Slot(token=t) for t in tokens]
    return BarSpec(STEPS, slots, [free] * STEPS)


@pytest.mark.parametrize("seed", range(12))
def test_kept_hits_come_out_exactly_and_kept_drums_nowhere_else(seed):
    rng = random.Random(seed)
    kept = tuple(sorted(rng.sample(ALL, rng.randint(1, 4))))
    free = tuple(d for d in ALL if d not in kept)
    specs = [kept_spec(rng, rng.sample(range(STEPS), rng.randint(0, STEPS)), kept, free)
             for _ in range(4)]
    out = bars_of(walk(specs, seed=seed))
    for b, spec in enumerate(specs):
        got = {s: [t for t in hits if drum_of(t) in kept] for s, hits in out[b].items()}
        want = {s: [slot.token for slot in slots] for s, slots in spec.slots.items()}
        assert {s: v for s, v in got.items() if v} == want


@pytest.mark.parametrize("seed", range(6))
def test_the_densest_constraints_never_leave_an_empty_mask(seed):
    """Every position of every bar taken, every drum kept at each (several velocity bins
    each), hits on the last tick, a tight context: the grammar still closes every bar."""
    rng = random.Random(seed)
    specs = []
    for _ in range(3):
        slots = {}
        for s in range(STEPS):
            tokens = {TOK.hit_token(d, v, SHIFT_BINS - 1) for d in (0, 1, 8)
                      for v in rng.sample(range(VELOCITY_BINS), 2)}
            slots[s] = [Slot(token=t) for t in sorted(tokens, key=lambda t: TOK.value[t])]
        specs.append(BarSpec(STEPS, slots, [(2, 3, 4)] * STEPS))
    need = sum(spec.cost() for spec in specs) + len(specs) + 2
    out = walk(specs, room=need + 3, seed=seed)  # hardly any room for free hits
    got = bars_of(out)
    for b, spec in enumerate(specs):
        for s, slots in spec.slots.items():
            assert [t for t in got[b][s] if drum_of(t) in (0, 1, 8)] == [x.token for x in slots]


@pytest.mark.parametrize("seed", range(6))
def test_groove_slots_force_every_cell_and_nothing_else(seed):
    rng = random.Random(seed)
    specs = []
    for _ in range(2):
        cells = {s: sorted(rng.sample(ALL, rng.randint(1, 9))) for s in
                 rng.sample(range(STEPS), rng.randint(1, STEPS))}
        specs.append(BarSpec(STEPS, {s: [Slot(drums=(d,)) for d in ds]
                                     for s, ds in cells.items()}, [()] * STEPS))
    out = bars_of(walk(specs, seed=seed))
    for b, spec in enumerate(specs):
        assert {s: [drum_of(t) for t in hits] for s, hits in out[b].items()} == \
            {s: [slot.drums[0] for slot in slots] for s, slots in spec.slots.items()}


@pytest.mark.parametrize("seed", range(6))
def test_drumify_onsets_carry_a_kick_or_snare_and_only_onsets_do(seed):
    rng = random.Random(seed)
    onsets = [set(rng.sample(range(STEPS), rng.randint(1, STEPS))) for _ in range(3)]
    others = tuple(range(2, len(DRUMS)))
    specs = [BarSpec(STEPS, {s: [Slot(drums=(0, 1))] for s in o},
                     [ALL if s in o else others for s in range(STEPS)]) for o in onsets]
    out = bars_of(walk(specs, seed=seed))
    for b, o in enumerate(onsets):
        ks = {s for s, hits in out[b].items() if any(drum_of(t) in (0, 1) for t in hits)}
        assert ks == o


def test_exact_bars_reproduce_their_tokens_and_free_bars_stay_free():
    body = [TOK.ids["POS_0"], TOK.hit_token(0, 6, 8), TOK.hit_token(2, 4, 8),
            TOK.ids["POS_15"], TOK.hit_token(1, 7, 15)]  # a hit on the last step, late
    specs = [exact_bar(TOK, body, STEPS), None, exact_bar(TOK, body, STEPS)]
    for seed in range(5):
        out = walk(specs, fills=[False, True, False], seed=seed)
        bars = []
        for t in out[3:-1]:
            if TOK.kind[t] in ("BAR", "FILL"):
                bars.append([t])
            else:
                bars[-1].append(t)
        assert bars[0] == [TOK.bar, *body] and bars[2] == [TOK.bar, *body]
        assert bars[1][0] == TOK.fill


def test_free_hits_never_block_a_pending_slot():
    """A kept ride (the highest drum) after free drums at the same step: free hits above the
    ride's token are refused, those below are offered."""
    ride = TOK.hit_token(8, 3, 3)
    spec = BarSpec(STEPS, {0: [Slot(token=ride)]}, [tuple(range(8))] * STEPS)
    g = EditGrammar(TOK, 1, [False], 4, 4, [spec])
    for t in (TOK.bos, TOK.ids["TEMPO_4"], TOK.ids["DENS_4"], TOK.bar):
        g.advance(t)
    mask = g.allowed()
    assert mask[TOK.ids["POS_0"]] and not mask[TOK.ids["POS_1"]]
    assert not mask[TOK.eos]  # the bar cannot close with its slot unmet
    g.advance(TOK.ids["POS_0"])
    mask = g.allowed()
    assert mask[ride] and mask[TOK.hit_token(0, 0, 0)]
    assert not mask[TOK.hit_token(8, 0, 0)] and not mask[TOK.hit_token(8, 7, 15)]
    assert not mask[TOK.ids["POS_1"]]  # the position cannot end before its slot


def test_slots_out_of_order_are_refused():
    bad = BarSpec(STEPS, {0: [Slot(drums=(1,)), Slot(drums=(0,))]}, [()] * STEPS)
    with pytest.raises(ConstraintError, match="increasing"):
        EditGrammar(TOK, 1, [False], 4, 4, [bad])
