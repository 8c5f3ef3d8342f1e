"""Compound-token drum tokenizer and its grammar.

A sequence reads::

    BOS TEMPO_k DENS_k  BAR POS_p HIT.. POS_p HIT..  FILL POS_p HIT..  EOS

`BAR` opens a groove bar and `FILL` a fill bar. Each `HIT_d_v_s` token is one hit: drum `d`,
velocity bin `v` and microtiming bin `s` together. Compound hits make a bar about 33 tokens
against about 73 for one token per attribute (measured in `drumgen data stats`), so generation
takes less than half the steps; the price is a larger vocabulary (1,152 hit tokens), which a
small embedding table pays easily.

The vocabulary is a list of token names saved with each model. Tokens are looked up by name, so
appending a token kind later leaves saved models working.

A velocity bin decodes to one velocity per drum: by default the bin's centre, and for a trained
model the mean velocity of that drum's training hits in that bin (`fit_velocities`, saved as
`velocities.json`). Centres lose loudness: the top bin holds 112-127 but GMD's hits in it
average 124-126, because drummers hit the ceiling, so decoding to centres played every style
1.2-3.5 velocity units softer than its data (mean per-bar velocity of GMD's train and
validation grooves, style by style, before and after a round trip).

The grammar is one state machine (`Grammar`) used three ways: `check` reports what is wrong
with a sequence, `Grammar.allowed` masks the next token during generation, and `encode` only
ever produces sequences it accepts.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .constants import (
    DENSITY_EDGES,
    DRUMS,
    MAX_STEPS_PER_BAR,
    SHIFT_BINS,
    TEMPO_EDGES,
    VELOCITY_BINS,
)
from .pattern import Hit, Pattern, atomic_write_bytes

SPECIALS = ("PAD", "BOS", "EOS", "BAR", "FILL")


def base_vocab() -> list[str]:
    """The vocabulary of drumgen 0.1, in id order."""
    vocab = list(SPECIALS)
    vocab += [f"TEMPO_{i}" for i in range(len(TEMPO_EDGES) + 1)]
    vocab += [f"DENS_{i}" for i in range(len(DENSITY_EDGES) + 1)]
    vocab += [f"POS_{i}" for i in range(MAX_STEPS_PER_BAR)]
    vocab += [f"HIT_{d}_{v}_{s}" for d in range(len(DRUMS))
              for v in range(VELOCITY_BINS) for s in range(SHIFT_BINS)]
    return vocab


def velocity_bin(velocity: int) -> int:
    return min(VELOCITY_BINS - 1, (velocity - 1) * VELOCITY_BINS // 127)


def bin_velocity(index: int) -> int:
    return round(1 + (index + 0.5) * 127 / VELOCITY_BINS - 0.5)


def shift_bin(offset: float) -> int:
    return min(SHIFT_BINS - 1, max(0, int((offset + 0.5) * SHIFT_BINS)))


def bin_shift(index: int) -> float:
    return (index + 0.5) / SHIFT_BINS - 0.5


def tempo_bucket(bpm: float) -> int:
    return bisect.bisect_right(TEMPO_EDGES, bpm)


def density_bucket(hits_per_bar: float) -> int:
    return bisect.bisect_right(DENSITY_EDGES, hits_per_bar)


def bucket_center(edges: tuple[float, ...], index: int) -> float:
    lo = edges[index - 1] if index > 0 else edges[0] - (edges[1] - edges[0])
    hi = edges[index] if index < len(edges) else edges[-1] + (edges[-1] - edges[-2])
    return (lo + hi) / 2


VELOCITY_FILE = "velocities.json"
SETTINGS_FILE = "tokenizer.json"


def settings(steps_per_bar: int = 16) -> dict:
    """What a model's tokens mean, saved beside its vocabulary (SETTINGS_FILE)."""
    return {"steps_per_bar": steps_per_bar, "max_steps_per_bar": MAX_STEPS_PER_BAR,
            "drums": list(DRUMS), "velocity_bins": VELOCITY_BINS, "shift_bins": SHIFT_BINS,
            "tempo_edges": list(TEMPO_EDGES), "density_edges": list(DENSITY_EDGES)}


def _check_velocities(table) -> list[list[int]]:
    """A velocity table: one row per drum, one whole velocity per bin, inside that bin."""
    shape_ok = isinstance(table, list) and len(table) == len(DRUMS) and all(
        isinstance(row, list) and len(row) == VELOCITY_BINS for row in table)
    if not shape_ok:
        raise ValueError(f"{VELOCITY_FILE} must hold {len(DRUMS)} rows of {VELOCITY_BINS} "
                         "velocities")
    for d, row in enumerate(table):
        for b, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 127 \
                    or velocity_bin(v) != b:
                raise ValueError(f"{VELOCITY_FILE}: drum {d}, bin {b} holds {v!r}, which is "
                                 "not a velocity in that bin")
    return [list(row) for row in table]


class TokenError(ValueError):
    """A token sequence that breaks the grammar; the message says where and how."""


@dataclass
class _State:
    """Where a sequence stands in the grammar."""

    phase: str = "BOS"  # BOS, TEMPO, DENS, BODY, DONE
    bars: int = 0  # bar tokens seen
    pos: int = -1  # last POS in this bar, -1 for none
    hit: int = -1  # last hit index at this POS, -1 for none


class Tokenizer:
    """Encodes patterns to token ids and back, over a saved vocabulary."""

    def __init__(self, vocab: list[str] | None = None, steps_per_bar: int = 16,
                 velocities: list[list[int]] | None = None):
        self.vocab = list(vocab or base_vocab())
        self.ids = {name: i for i, name in enumerate(self.vocab)}
        if len(self.ids) != len(self.vocab):
            raise ValueError("the vocabulary has duplicate tokens")
        missing = [t for t in base_vocab() if t not in self.ids]
        if missing:
            raise ValueError(f"the vocabulary lacks {len(missing)} tokens, e.g. {missing[0]}")
        self.steps_per_bar = steps_per_bar
        self.pad, self.bos, self.eos = self.ids["PAD"], self.ids["BOS"], self.ids["EOS"]
        self.bar, self.fill = self.ids["BAR"], self.ids["FILL"]
        self.velocities = _check_velocities(velocities) if velocities is not None else \
            [[bin_velocity(b) for b in range(VELOCITY_BINS)] for _ in DRUMS]
        self._tables()

    # -- vocabulary ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.vocab)

    def save(self, folder: str | os.PathLike) -> None:
        atomic_write_bytes(Path(folder) / "vocab.json", json.dumps(self.vocab).encode())
        atomic_write_bytes(Path(folder) / VELOCITY_FILE, json.dumps(self.velocities).encode())
        atomic_write_bytes(Path(folder) / SETTINGS_FILE,
                           json.dumps(settings(self.steps_per_bar), indent=1).encode())

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Tokenizer:
        """The folder's vocabulary, and its velocity table (bin centres where it has none).
        Refuses a folder whose saved settings (SETTINGS_FILE) differ from this code's: its
        tokens would mean something else here. Folders from before the file load as they
        are."""
        folder = Path(folder)
        saved = folder / SETTINGS_FILE
        steps = 16
        if saved.is_file():
            theirs = json.loads(saved.read_text())
            steps = theirs.get("steps_per_bar", 16)
            ours = settings(steps)
            wrong = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            if wrong:
                raise TokenError(f"{SETTINGS_FILE} says the model was trained with other "
                                 f"tokenizer settings ({', '.join(wrong)}: "
                                 f"{[theirs.get(k) for k in wrong]} here "
                                 f"{[ours.get(k) for k in wrong]}); load it with the drumgen "
                                 "version that trained it")
        table = folder / VELOCITY_FILE
        velocities = json.loads(table.read_text()) if table.is_file() else None
        return cls(json.loads((folder / "vocab.json").read_text()), steps, velocities)

    def fit_velocities(self, patterns) -> Tokenizer:
        """Decode each (drum, velocity bin) to the mean velocity of those hits in `patterns`;
        pairs with no hits keep the bin centre. Returns self."""
        total = [[0] * VELOCITY_BINS for _ in DRUMS]
        count = [[0] * VELOCITY_BINS for _ in DRUMS]
        for pattern in patterns:
            for h in pattern.hits:
                b = velocity_bin(h.velocity)
                total[h.drum][b] += h.velocity
                count[h.drum][b] += 1
        self.velocities = [[round(total[d][b] / count[d][b]) if count[d][b] else bin_velocity(b)
                            for b in range(VELOCITY_BINS)] for d in range(len(DRUMS))]
        return self

    def extended(self, names) -> Tokenizer:
        """This tokenizer with `names` appended to its vocabulary where missing."""
        vocab = self.vocab + [n for n in names if n not in self.ids]
        return self if len(vocab) == len(self.vocab) else \
            Tokenizer(vocab, self.steps_per_bar, self.velocities)

    def hit_token(self, drum: int, vel_bin: int, shift: int) -> int:
        return self.ids[f"HIT_{drum}_{vel_bin}_{shift}"]

    def _tables(self) -> None:
        """Per-token kind and value, and the masks the grammar ORs together."""
        n = len(self.vocab)
        self.kind = ["OTHER"] * n
        self.value = [0] * n
        for i, name in enumerate(self.vocab):
            head, _, rest = name.partition("_")
            if head in ("TEMPO", "DENS", "POS"):
                self.kind[i], self.value[i] = head, int(rest)
            elif head == "HIT":
                d, v, s = map(int, rest.split("_"))
                self.kind[i] = "HIT"
                self.value[i] = (d * VELOCITY_BINS + v) * SHIFT_BINS + s  # hit order
            elif name in SPECIALS:
                self.kind[i] = name
        kinds = torch.tensor([hash(k) for k in self.kind])
        values = torch.tensor(self.value)
        def of(kind: str) -> torch.Tensor:
            return kinds == hash(kind)
        self._mask = {k: of(k) for k in ("TEMPO", "DENS", "BOS", "EOS", "BAR", "FILL", "PAD",
                                         "POS", "HIT")}
        #: per token: its hit order for HIT tokens (drum, velocity bin, shift bin), its value
        #: for the others; the constraint layer reads it (constraints.EditGrammar)
        self._values = values
        self._drum_masks: dict[tuple[int, ...], torch.Tensor] = {}  # filled by constraints.py
        n_hits = len(DRUMS) * VELOCITY_BINS * SHIFT_BINS
        # pos_after[p]: POS tokens after position p (p = -1 .. steps-1), inside the bar
        self._pos_after = torch.stack([of("POS") & (values > p) & (values < self.steps_per_bar)
                                       for p in range(-1, MAX_STEPS_PER_BAR)])
        self._hit_after = torch.stack([of("HIT") & (values > h) for h in range(-1, n_hits)])

    # -- encode / decode -------------------------------------------------------------------
    def encode(self, pattern: Pattern, fills: list[bool] | bool = False,
               density: int | None = None) -> list[int]:
        """Token ids for `pattern`. `fills` marks fill bars (one bool, or one per bar)."""
        if pattern.steps_per_bar != self.steps_per_bar:
            raise TokenError(f"this tokenizer encodes {self.steps_per_bar} steps a bar; the "
                             f"pattern has {pattern.steps_per_bar}")
        if isinstance(fills, bool):
            fills = [fills] * pattern.bars
        if density is None:
            density = density_bucket(len(pattern.hits) / pattern.bars)
        ids = [self.bos, self.ids[f"TEMPO_{tempo_bucket(pattern.tempo)}"],
               self.ids[f"DENS_{density}"]]
        return ids + self.encode_bars(pattern, fills)

    def encode_bars(self, pattern: Pattern, fills: list[bool]) -> list[int]:
        """The body tokens of `pattern` (bar tokens and hits), no prefix or EOS."""
        by_bar: dict[int, dict[int, set[int]]] = {}
        for h in pattern.hits:
            token = self.hit_token(h.drum, velocity_bin(h.velocity), shift_bin(h.offset))
            by_bar.setdefault(h.bar, {}).setdefault(h.step, set()).add(token)
        ids = []
        for bar in range(pattern.bars):
            ids.append(self.fill if fills[bar] else self.bar)
            for step, tokens in sorted(by_bar.get(bar, {}).items()):
                ids.append(self.ids[f"POS_{step}"])
                ids += sorted(tokens, key=lambda t: self.value[t])
        return ids

    def decode(self, ids: list[int], tempo: float | None = None) -> Pattern:
        """The pattern a valid sequence describes; raises `TokenError` on an invalid one.

        `tempo` defaults to the centre of the sequence's tempo bucket."""
        errors = self.check(ids, partial=True)
        if errors:
            raise TokenError("; ".join(errors))
        hits, bar, step, bucket = [], -1, 0, 4
        for t in ids:
            kind = self.kind[t]
            if kind == "TEMPO":
                bucket = self.value[t]
            elif kind in ("BAR", "FILL"):
                bar += 1
            elif kind == "POS":
                step = self.value[t]
            elif kind == "HIT":
                d, v, s = self.vocab[t].split("_")[1:]
                hits.append(Hit(bar, step, int(d), self.velocities[int(d)][int(v)],
                                bin_shift(int(s))))
        bpm = tempo if tempo is not None else bucket_center(TEMPO_EDGES, bucket)
        return Pattern(hits, max(bar + 1, 1), bpm, (self.steps_per_bar // 4, 4))

    def fill_flags(self, ids: list[int]) -> list[bool]:
        return [self.kind[t] == "FILL" for t in ids if self.kind[t] in ("BAR", "FILL")]

    # -- grammar ---------------------------------------------------------------------------
    def check(self, ids: list[int], bars: int | None = None, partial: bool = False) -> list[str]:
        """What is wrong with `ids`, one message per problem; empty when valid.

        `bars` requires that many bars; `partial` accepts a sequence that has not ended yet."""
        grammar = Grammar(self, bars)
        errors = []
        for i, t in enumerate(ids):
            if not 0 <= t < len(self):
                errors.append(f"token {i}: id {t} is outside the vocabulary")
                break
            problem = grammar.why_not(t)
            if problem:
                errors.append(f"token {i} ({self.vocab[t]}): {problem}")
                break
            grammar.advance(t)
        if not errors and not partial and grammar.state.phase != "DONE":
            errors.append("the sequence does not end with EOS")
        return errors


class Grammar:
    """The grammar as a state machine over one sequence, optionally with a bar count and forced
    bar kinds. `allowed` gives the mask of legal next tokens; `why_not` explains a refusal."""

    def __init__(self, tok: Tokenizer, bars: int | None = None, fills: list[bool] | None = None,
                 tempo: int | None = None, density: int | None = None):
        if bars is not None and bars < 1:
            raise ValueError(f"a sequence has at least one bar; got bars={bars}")
        self.tok, self.bars, self.fills = tok, bars, fills
        self.tempo, self.density = tempo, density
        self.state = _State()
        #: tokens left before the context is full; near the end only bar tokens and EOS remain
        self.budget: int | None = None
        #: bars that came whole in the prompt (context): none of them may grow, so the next
        #: token after them opens a new bar
        self.closed = 0

    def allowed(self) -> torch.Tensor:
        """Boolean mask over the vocabulary: the tokens that may come next (never empty)."""
        tok, s = self.tok, self.state
        m = tok._mask
        if s.phase == "BOS":
            return m["BOS"].clone()
        if s.phase == "TEMPO":
            return self._forced("TEMPO", self.tempo)
        if s.phase == "DENS":
            return self._forced("DENS", self.density)
        if s.phase == "DONE":
            return m["PAD"].clone()
        if s.pos >= 0 and s.hit < 0:  # a POS must carry at least one hit
            return tok._hit_after[0].clone()
        if 0 < s.bars <= self.closed and (self.bars is None or s.bars < self.bars):
            return self._bar_mask(s.bars)
        if self.bars is not None and self.budget is not None and s.bars > 0 \
                and self.budget <= self.bars - s.bars + 2:
            return self._bar_mask(s.bars) if s.bars < self.bars else m["EOS"].clone()
        mask = tok._pos_after[s.pos + 1].clone() if s.bars > 0 else torch.zeros_like(m["PAD"])
        if s.pos >= 0:
            mask |= tok._hit_after[s.hit + 1]
        if self.bars is None or s.bars < self.bars:
            mask |= self._bar_mask(s.bars)
        if s.bars > 0 and (self.bars is None or s.bars == self.bars):
            mask |= m["EOS"]
        return mask

    def _forced(self, kind: str, value: int | None) -> torch.Tensor:
        if value is None:
            return self.tok._mask[kind].clone()
        mask = torch.zeros_like(self.tok._mask[kind])
        mask[self.tok.ids[f"{kind}_{value}"]] = True
        return mask

    def _bar_mask(self, index: int) -> torch.Tensor:
        m = self.tok._mask
        if self.fills is None or index >= len(self.fills):
            return m["BAR"] | m["FILL"]
        return (m["FILL"] if self.fills[index] else m["BAR"]).clone()

    def why_not(self, t: int) -> str | None:
        """None if `t` may come next, else the reason in words."""
        if self.allowed()[t]:
            return None
        tok, s, kind = self.tok, self.state, self.tok.kind[t]
        expected = {"BOS": "BOS", "TEMPO": "a TEMPO token", "DENS": "a DENS token",
                    "DONE": "nothing after EOS"}
        if s.phase in expected:
            return f"expected {expected[s.phase]}"
        if kind == "POS" and s.bars == 0:
            return "a position before the first BAR"
        if kind == "POS" and tok.value[t] >= tok.steps_per_bar:
            return f"position {tok.value[t]} is past the bar's {tok.steps_per_bar} steps"
        if kind == "POS" and s.hit < 0 and s.pos >= 0:
            return f"POS_{s.pos} has no hit"
        if kind == "POS":
            return f"position {tok.value[t]} does not come after position {s.pos}"
        if kind == "HIT" and s.pos < 0:
            return "a hit before any position in the bar"
        if kind == "HIT":
            return "hits at one position must be in increasing (drum, velocity, shift) order"
        if kind in ("BAR", "FILL") and s.pos >= 0 and s.hit < 0:
            return f"POS_{s.pos} has no hit"
        if kind in ("BAR", "FILL") and self.bars is not None and s.bars >= self.bars:
            return f"more than the {self.bars} bars asked for"
        if kind in ("BAR", "FILL"):
            return f"bar {s.bars + 1} must be a {'FILL' if self.fills[s.bars] else 'BAR'}"
        if kind == "EOS" and s.bars == 0:
            return "EOS before any bar"
        if kind == "EOS" and s.pos >= 0 and s.hit < 0:
            return f"POS_{s.pos} has no hit"
        if kind == "EOS":
            return f"EOS after {s.bars} bars; {self.bars} were asked for"
        return f"{tok.vocab[t]} cannot appear in the body of a sequence"

    def advance(self, t: int) -> None:
        """Move past token `t` (assumed allowed)."""
        s, kind, value = self.state, self.tok.kind[t], self.tok.value[t]
        if s.phase == "BOS":
            s.phase = "TEMPO"
        elif s.phase == "TEMPO":
            s.phase = "DENS"
        elif s.phase == "DENS":
            s.phase = "BODY"
        elif kind in ("BAR", "FILL"):
            s.bars, s.pos, s.hit = s.bars + 1, -1, -1
        elif kind == "POS":
            s.pos, s.hit = value, -1
        elif kind == "HIT":
            s.hit = value
        elif kind == "EOS":
            s.phase = "DONE"
