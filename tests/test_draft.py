"""The draft's JSON and share-link codes, and what the Share link says about them."""

from __future__ import annotations

import io

import pytest
from conftest import synthetic_groove

from drumgen import draft
from drumgen.pattern import Hit, Pattern


def midi_bytes(pattern: Pattern) -> bytes:
    buf = io.BytesIO()
    pattern.to_midi().save(file=buf)
    return buf.getvalue()


def test_json_round_trip_is_exact():
    groove = synthetic_groove("funk", 1, bars=4)
    assert draft.from_json(draft.to_json(groove)).hits == groove.hits


@pytest.mark.parametrize("style", ["funk", "rock", "jazz"])
def test_a_link_code_writes_the_same_midi_byte_for_byte(style):
    groove = synthetic_groove(style, 2, bars=4)
    code = draft.pack(groove)
    assert midi_bytes(draft.unpack(code)) == midi_bytes(groove)
    # 4 header bytes and 4 a hit, base64url: about 5.3 characters a hit
    assert len(code) == -(-(4 + 4 * len(groove.hits)) * 4 // 3)


def test_the_latest_and_earliest_offsets_survive_a_link():
    edge = Pattern([Hit(0, 15, 8, 127, 0.4999), Hit(1, 0, 0, 1, -0.5)], 2, 93.75)
    back = draft.unpack(draft.pack(edge))
    assert midi_bytes(back) == midi_bytes(edge) and back.tempo == 93.75


@pytest.mark.parametrize("code", ["!!!", "AQQ",
                                  draft.pack(Pattern([Hit(0, 0, 0, 90)], 1, 100))[:-3]])
def test_a_damaged_code_is_refused(code):
    with pytest.raises(draft.DraftError, match="draft"):
        draft.unpack(code)


def test_the_share_link_carries_an_edited_draft_and_says_when_it_cannot():
    import app
    groove = synthetic_groove("rock", 3, bars=4)
    settings = ["rock", 100, 4, 5, 1, False, "auto", None, 0, 0.95, 0, 0.95, 2.0, "gm", None]

    def session(pattern, source):
        return {"takes": [{"grid": {"draft": draft.to_json(pattern)}, "source": source}],
                "index": 0}

    query, note = app.share_link(session(groove, "generate"), *settings)
    assert "seed=5" in query and "draft=" not in query and "same groove" in note
    query, note = app.share_link(session(groove, "hand edit"), *settings)
    assert f"draft={draft.pack(groove)}" in query and "edited draft" in note
    huge = Pattern([Hit(b, s, d, 90) for b in range(64) for s in range(16) for d in range(2)],
                   64, 100)
    query, note = app.share_link(session(huge, "hand edit"), *settings)
    assert "draft=" not in query and "too large for a link" in note
