"""Edits as constraints on the tokenizer's grammar: forced and forbidden tokens, bar by bar.

Pure: tokens in, masks out, no model. The decoder takes an `EditGrammar` exactly as it takes
a `Grammar`, and never needs to know which edit it serves.

A bar's constraint (`BarSpec`) says, for each 16th step:

- **slots**: hits that must appear there, in hit order. A slot is satisfied by any one token
  of its mask: one exact token (a kept hit), or any velocity and timing of some drums (a
  Groove's forced hit, a Drumify onset's kick-or-snare).
- **free**: the drums the model may add there beyond the slots (none in a kept bar, every
  drum but the kept ones when keeping lanes, no kick or snare off a Drumify onset).

The grammar orders hits at one position by (drum, velocity bin, shift bin), so a free hit may
come before a pending slot only if the slot can still follow it: its value must be below the
slot's highest token. Slots at one step must therefore have increasing, disjoint value ranges;
`BarSpec` checks that.

Never an empty mask. Every allowed token keeps a completion open: a pending slot always has a
token above the last hit, a position is offered only if it has a slot or a free drum, and a
bar closes only when it has no slot left. Near the end of the context the grammar switches to
the forced path alone (the remaining slots, their positions and the bar tokens), which always
fits because a pass is only started with room for it (`EditGrammar.need`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .constants import DRUMS, HITS_PER_DRUM
from .tokenizer import Grammar, Tokenizer


class ConstraintError(ValueError):
    """A constraint that cannot be met by any sequence (a bug in its caller)."""


@dataclass(frozen=True)
class Slot:
    """A required hit: `token` exactly, or else any token of one of `drums`."""

    token: int | None = None
    drums: tuple[int, ...] = ()

    def values(self, tok: Tokenizer) -> tuple[int, int]:
        """The lowest and highest hit value this slot accepts."""
        if self.token is not None:
            return tok.value[self.token], tok.value[self.token]
        return min(self.drums) * HITS_PER_DRUM, (max(self.drums) + 1) * HITS_PER_DRUM - 1


@dataclass
class BarSpec:
    """What one bar must and may hold; see the module docstring."""

    steps: int
    slots: dict[int, list[Slot]] = field(default_factory=dict)
    free: list[tuple[int, ...]] = field(default_factory=list)  # per step: drums allowed freely
    #: a kept bar's body tokens (after BAR/FILL), which the decoder may feed without sampling
    known: list[int] | None = None

    def __post_init__(self) -> None:
        if not self.free:
            self.free = [tuple(range(len(DRUMS)))] * self.steps
        if len(self.free) != self.steps:
            raise ConstraintError(f"free drums for {len(self.free)} steps; the bar has "
                                  f"{self.steps}")
        bad = [s for s in self.slots if not 0 <= s < self.steps]
        if bad:
            raise ConstraintError(f"slots at step {bad[0]}, outside the bar's {self.steps}")
        self.slots = {s: v for s, v in sorted(self.slots.items()) if v}

    @property
    def exact(self) -> bool:
        """True when the bar is fully determined (`exact_bar`)."""
        return self.known is not None

    def cost(self) -> int:
        """Tokens the slots take: one POS per slotted step plus one per slot."""
        return sum(1 + len(v) for v in self.slots.values())

    def check(self, tok: Tokenizer) -> None:
        for step, slots in self.slots.items():
            ranges = [slot.values(tok) for slot in slots]
            if any(a[1] >= b[0] for a, b in zip(ranges, ranges[1:], strict=False)):
                raise ConstraintError(f"slots at step {step} are not in increasing hit order")


def free_bar(steps: int) -> BarSpec:
    return BarSpec(steps)


def exact_bar(tok: Tokenizer, tokens: list[int], steps: int) -> BarSpec:
    """A bar that must come out as `tokens` (its body tokens after BAR/FILL) exactly."""
    slots: dict[int, list[Slot]] = {}
    step = -1
    for t in tokens:
        if tok.kind[t] == "POS":
            step = tok.value[t]
        elif tok.kind[t] == "HIT":
            slots.setdefault(step, []).append(Slot(token=t))
    return BarSpec(steps, slots, [()] * steps, list(tokens))


def _drums_mask(tok: Tokenizer, drums: tuple[int, ...]) -> torch.Tensor:
    """HIT tokens of `drums`, built once per tokenizer and drum set (every grammar of every
    pass and variation asks for the same few), kept in the tokenizer's own mask cache."""
    if drums not in tok._drum_masks:
        drum = torch.div(tok._values, HITS_PER_DRUM, rounding_mode="floor")
        wanted = torch.tensor(drums, dtype=torch.long)
        tok._drum_masks[drums] = tok._mask["HIT"] & torch.isin(drum, wanted)
    return tok._drum_masks[drums]


class EditGrammar(Grammar):
    """`Grammar` narrowed by one `BarSpec` per bar (None: that bar is unconstrained).

    `specs` covers every bar of the sequence, context bars included; a pass whose first bars
    come from a prompt gives them None. The decoder must leave at least `need()` tokens of
    room after the prompt (the planner in `edit.py` sizes passes so that it does)."""

    def __init__(self, tok: Tokenizer, bars: int, fills: list[bool] | None,
                 tempo: int | None, density: int | None, specs: list[BarSpec | None]):
        super().__init__(tok, bars, fills, tempo, density)
        if len(specs) != bars:
            raise ConstraintError(f"{len(specs)} bar constraints for {bars} bars")
        for spec in specs:
            if spec is not None:
                spec.check(tok)
        self.specs = specs
        self._costs = [spec.cost() if spec else 0 for spec in specs]
        self._pending: list[Slot] = []  # slots still due at the current position
        self._value = tok._values
        self._is_hit, self._is_pos = tok._mask["HIT"], tok._mask["POS"]
        self._close = tok._mask["BAR"] | tok._mask["FILL"] | tok._mask["EOS"]

    # -- state ------------------------------------------------------------------------------
    def _spec(self) -> BarSpec | None:
        s = self.state
        return self.specs[s.bars - 1] if s.phase == "BODY" and s.bars > 0 else None

    def _later_steps(self, spec: BarSpec) -> list[int]:
        """Slotted steps after the current position in this bar."""
        return [step for step in spec.slots if step > self.state.pos]

    def forced_left(self) -> int:
        """Tokens the remaining slots need (this bar's and every later bar's)."""
        spec = self._spec()
        here = len(self._pending)
        if spec is not None:
            here += sum(1 + len(spec.slots[s]) for s in self._later_steps(spec))
        return here + sum(self._costs[self.state.bars:])

    def need(self) -> int:
        """The fewest tokens that complete the sequence from here: the forced path."""
        return self.forced_left() + (self.bars - self.state.bars) + 2

    def advance(self, t: int) -> None:
        super().advance(t)
        kind, spec = self.tok.kind[t], self._spec()
        if kind in ("BAR", "FILL") or kind == "POS":
            self._pending = list(spec.slots.get(self.state.pos, [])) if spec and \
                kind == "POS" else []
        elif kind == "HIT" and self._pending and self._accepts(self._pending[0], t):
            self._pending.pop(0)

    def _accepts(self, slot: Slot, t: int) -> bool:
        if slot.token is not None:
            return t == slot.token
        return self.tok.value[t] // HITS_PER_DRUM in slot.drums

    # -- masks ------------------------------------------------------------------------------
    def _drums_mask(self, drums: tuple[int, ...]) -> torch.Tensor:
        return _drums_mask(self.tok, drums)

    def _slot_mask(self, slot: Slot) -> torch.Tensor:
        if slot.token is not None:
            mask = torch.zeros_like(self._is_hit)
            mask[slot.token] = True
            return mask
        return self._drums_mask(slot.drums)

    def _positions(self, spec: BarSpec) -> torch.Tensor:
        """POS tokens that may come next: up to the next slotted step, and only steps that
        can carry a hit."""
        later = self._later_steps(spec)
        limit = later[0] if later else spec.steps - 1
        ok = [p for p in range(self.state.pos + 1, limit + 1) if spec.free[p] or p in spec.slots]
        mask = torch.zeros_like(self._is_pos)
        for p in ok:
            mask[self.tok.ids[f"POS_{p}"]] = True
        return mask

    def _hits(self, spec: BarSpec) -> torch.Tensor:
        """HIT tokens that may come next at the current position (before the base grammar's
        ordering, which the caller applies)."""
        free = self._drums_mask(spec.free[self.state.pos]) if spec.free[self.state.pos] else \
            torch.zeros_like(self._is_hit)
        if not self._pending:
            return free
        slot = self._pending[0]
        _, high = slot.values(self.tok)
        return self._slot_mask(slot) | (free & (self._value < high))

    def allowed(self) -> torch.Tensor:
        spec, budget = self._spec(), self.budget
        if spec is None:  # a free bar still leaves room for the slots of the bars after it
            if budget is not None and self.state.phase == "BODY":
                self.budget = budget - self.forced_left()
            try:
                return super().allowed()
            finally:
                self.budget = budget
        self.budget = None
        try:
            base = super().allowed()
        finally:
            self.budget = budget
        s = self.state
        tight = budget is not None and budget <= self.forced_left() + (self.bars - s.bars) + 2
        mask = torch.zeros_like(base)
        if s.pos >= 0:
            hits = self._hits(spec)
            if tight and self._pending:
                hits = self._slot_mask(self._pending[0])
            mask |= hits
        if not self._pending and (s.pos < 0 or s.hit >= 0):
            later = self._later_steps(spec)
            if tight:
                if later:
                    mask[self.tok.ids[f"POS_{later[0]}"]] = True
                else:
                    mask |= self._close
                mask &= ~self._is_hit  # the forced path adds no free hits
            else:
                mask |= self._positions(spec)
                if not later:
                    mask |= self._close
        out = base & mask
        if not bool(out.any()):  # a broken spec, never a user's input: say where it stands
            raise ConstraintError(f"no token fits bar {s.bars}, position {s.pos}, last hit "
                                  f"{s.hit}, pending {self._pending}")
        return out
