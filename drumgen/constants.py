"""Every fixed number and map in drumgen, each with its source.

Drum classes follow Magenta's 9-class reduction of the Roland TD-11 kit used to record the
Groove MIDI Dataset (magenta/models/music_vae/data.py, `REDUCED_DRUM_PITCH_CLASSES`), extended
with the General MIDI percussion pitches a user's file is likely to carry.
"""

from __future__ import annotations

#: The nine drum classes, in the order the tokenizer and the grid use.
DRUMS: tuple[str, ...] = (
    "kick", "snare", "closed_hat", "open_hat", "low_tom", "mid_tom", "high_tom", "crash", "ride",
)
#: Names that stand for several drums wherever drums are named (`--keep-drums hats`).
DRUM_GROUPS: dict[str, tuple[str, ...]] = {
    "hats": ("closed_hat", "open_hat"),
    "toms": ("low_tom", "mid_tom", "high_tom"),
    "cymbals": ("crash", "ride"),
}
DRUM_LABELS: tuple[str, ...] = (
    "Kick", "Snare", "Closed hat", "Open hat", "Low tom", "Mid tom", "High tom", "Crash", "Ride",
)

#: Input pitch -> drum class. GMD/TD-11 pitches (22 and 26 are hi-hat edges, 58 a tom rim) per
#: Magenta, plus GM 1 percussion: 35 acoustic bass drum, 39 hand clap, 41 low floor tom.
PITCH_TO_DRUM: dict[int, int] = {
    35: 0, 36: 0,
    37: 1, 38: 1, 39: 1, 40: 1,
    42: 2, 22: 2, 44: 2,
    46: 3, 26: 3,
    41: 4, 43: 4, 58: 4,
    45: 5, 47: 5,
    48: 6, 50: 6,
    49: 7, 52: 7, 55: 7, 57: 7,
    51: 8, 53: 8, 59: 8,
}

#: Output kit maps: drum class -> MIDI pitch. "gm" is General MIDI 1; "td11" is the Roland TD-11
#: default map (tom heads 48/45/43, hi-hat bows 42/46) for users who send MIDI back to that kit.
KITS: dict[str, tuple[int, ...]] = {
    "gm": (36, 38, 42, 46, 43, 47, 50, 49, 51),
    "td11": (36, 38, 42, 46, 43, 45, 48, 49, 51),
}
#: "multitrack" writes GM pitches, one track per drum, for DAWs that mix drums on separate tracks.
MIDI_LAYOUTS: tuple[str, ...] = ("gm", "td11", "multitrack")

DRUM_CHANNEL = 9  # MIDI channel 10, zero-based, as GM reserves it for percussion
PPQ = 480  # ticks per quarter note of the files we write; common DAW default
STEPS_PER_QUARTER = 4  # the grid is 16th notes
MAX_STEPS_PER_BAR = 16  # 4/4; 2/4, 3/4, 6/8 and 7/8 fit, 5/4 and 12/8 do not
MAX_MIDI_BYTES = 2_000_000  # the largest GMD file is about 130 KB; 2 MB leaves room for long takes
MAX_MIDI_BARS = 2_000
#: The longest groove generate writes, and the longest input an edit takes; both are written
#: in passes (generate.MAX_PASS_BARS), so an edit of 64 bars takes about 16 times a 4-bar one.
MAX_BARS = 16
MAX_EDIT_BARS = 64

#: Velocity bins: uniform over 1..127 (mean absolute error of a uniform 16-wide bin is about 4,
#: inside the 6 the foundation issue allows).
VELOCITY_BINS = 8
#: Microtiming bins: uniform over [-0.5, 0.5) of a 16th step. At 100 bpm a step is 150 ms, so a
#: bin is 9.4 ms and the worst rounding error 4.7 ms.
SHIFT_BINS = 16
#: HIT tokens per drum: a HIT token's value (its hit order) is (drum, velocity bin, shift bin)
HITS_PER_DRUM = VELOCITY_BINS * SHIFT_BINS

#: Tempo buckets (bpm upper edges) for the tempo conditioning token; GMD spans about 50-230 bpm.
TEMPO_EDGES: tuple[float, ...] = (70, 85, 95, 105, 115, 130, 150)
#: Density buckets (mean hits per bar, upper edges); GMD's median is 19, p90 30 (measured over
#: the whole dataset with `python -m drumgen data stats`).
DENSITY_EDGES: tuple[float, ...] = (6, 10, 14, 18, 22, 26, 32)
#: Named densities -> a target of hits per bar.
DENSITY_NAMES: dict[str, float] = {"sparse": 9.0, "normal": 17.0, "busy": 29.0}

#: GMD primary styles, most files first (counted from GMD's info.csv, the part of `style`
#: before "/"); the shipped model's conditioning styles.
GMD_STYLES: tuple[str, ...] = (
    "rock", "funk", "jazz", "latin", "hiphop", "soul", "afrocuban", "punk", "neworleans",
    "country", "pop", "reggae", "gospel", "afrobeat", "dance", "blues", "highlife", "middleeastern",
)

#: GMD v1.0.0, MIDI only (Gillick et al. 2019, CC BY 4.0), from Magenta's public bucket. Size and
#: SHA-256 as recorded by TensorFlow Datasets (tensorflow_datasets/url_checksums/groove.txt).
GMD_URL = "https://storage.googleapis.com/magentadata/datasets/groove/groove-v1.0.0-midionly.zip"
GMD_SIZE = 3_260_318
GMD_SHA256 = "651cbc524ffb891be1a3e46d89dc82a1cecb09a57c748c7b45b844c4841dcc1e"
