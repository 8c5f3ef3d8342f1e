"""The drum kits drumgen renders with, and the mix it gives them: each fact declared once.

Where a soundfont keeps its kits and how its keys map to our nine drums, which kit suits a
style, where each drum sits in the stereo image, the room reverb and the loudness target.
`drumgen.render` reads them; the README's kit table and the tests quote them.
"""

from __future__ import annotations

from .constants import DRUM_CHANNEL, DRUMS

#: GM 2 / GS drum-kit programs on bank 128 -> kit name (FluidR3_GM has all of them).
GM_PROGRAMS: dict[str, int] = {"standard": 0, "room": 8, "power": 16, "electronic": 24,
                               "808": 25, "jazz": 32, "brush": 40}

#: AVL Drumkits' key map (x42/avldrums.lv2 `src/midnam.h`): 36 kick, 38 snare centre, 42
#: closed hat, 46 semi-open hat (its longest-ringing open hat), 41 floor tom, 45 rack tom, 47
#: rack tom edge, 49 crash, 51 ride tip. The kits are 4-piece: one rack tom plays the mid and
#: the high tom (centre and edge), the floor tom the low one.
AVL_KEYS: tuple[int, ...] = (36, 38, 42, 46, 41, 45, 47, 49, 51)

#: Multi-sampled acoustic kits, by the preset name their soundfont gives them on **bank 0**
#: (not the GM percussion bank 128: selected on the drum channel explicitly, they sound there)
#: -> (kit name, the key of each drum in DRUMS order).
ACOUSTIC_KITS: dict[str, tuple[str, tuple[int, ...]]] = {
    "Black_Pearl_4pc": ("black pearl", AVL_KEYS),
    "Red_Zeppelin_4pc": ("red zeppelin", AVL_KEYS),
}

#: Kits by how they sound, best first: multi-sampled acoustic kits, then kits from GM
#: soundfonts installed on the system, then our own synthesized kit, which is always there.
RANK_ACOUSTIC, RANK_GM, RANK_OURS = 0, 1, 2

#: The kits a style asks for, best first; the first one installed plays. A style not listed,
#: or none of whose kits is installed, gets the best installed kit. Presets name their own kit
#: (`drumgen.presets`), tried before their style's.
STYLE_KITS: dict[str, tuple[str, ...]] = {
    "jazz": ("jazz", "brush"),
    "rock": ("red zeppelin",),
    "punk": ("red zeppelin",),
}

#: Where each drum sits, from the drummer's seat, as stereo balance (right minus left RMS, dB):
#: hats left, toms from high (left) to floor (right), crash left, ride right, kick and snare
#: centred. Every kit is panned to it, drum by drum (`Renderer._measure_pans`), whatever
#: image its soundfont gives (AVL's is already close; FluidR3's hats lean right). FluidR3's
#: stereo samples reach at most about 7.6 dB either way; its hats about 4 dB left.
BALANCE_DB: dict[str, float] = {
    "kick": 0.0, "snare": 0.0, "closed_hat": -6.0, "open_hat": -6.0,
    "low_tom": 6.0, "mid_tom": 1.0, "high_tom": -4.0, "crash": -4.0, "ride": 5.0,
}

#: MIDI channel of each drum, so that each can have its own pan. Hats share one channel: a
#: closed hat chokes an open one only within a channel (the soundfont's exclusive class).
#: The kick plays on the GM drum channel (10).
DRUM_CHANNELS: dict[str, int] = {
    "kick": DRUM_CHANNEL, "snare": 0, "closed_hat": 1, "open_hat": 1,
    "low_tom": 2, "mid_tom": 3, "high_tom": 4, "crash": 5, "ride": 6,
}

#: A light room: FluidSynth's own reverb (its defaults: roomsize 0.2, damping 0, width 0.5,
#: level 0.9), fed from every drum channel at REVERB_SEND (CC 91; AVL's instruments send
#: nothing of their own, FluidR3's some). On a GMD funk groove the wet signal sits 19 dB under
#: the dry with Black Pearl and our kit, 12 dB with FluidR3's kits (bench/render.py).
REVERB: dict[str, float] = {"roomsize": 0.3, "damping": 0.6, "width": 0.8, "level": 0.5}
REVERB_SEND = 127

#: Every render is scaled to this loudness: K-weighted per ITU-R BS.1770, over the whole
#: loop, ungated (a loop has no silence to gate out). -23 LUFS is EBU R128's programme
#: loudness. Raw drum loops here peak 15-23 dB above their loudness (bench/render.py), so
#: under the PEAK_DBFS ceiling nearly all reach it and the peakiest stay up to 1 dB under.
LOUDNESS_LUFS = -23.0
#: No render peaks above this (sample peak, dBFS): a quiet, peaky loop stays under the target
#: rather than clipping.
PEAK_DBFS = -1.0


assert list(BALANCE_DB) == list(DRUM_CHANNELS) == list(DRUMS)
