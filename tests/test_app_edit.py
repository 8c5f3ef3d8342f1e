"""The edit endpoints of the running app, through gradio_client and MCP, as a user's script or
an agent calls them: /regenerate, /groove, /drumify and /draft, their bad inputs, and the
MCP tools served at /gradio_api/mcp/sse."""

from __future__ import annotations

import asyncio
import json
import re

import mido
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from drumgen.pattern import Pattern

pytestmark = pytest.mark.slow

CALL_TIMEOUT_S = 120


def call(client, api_name, **kwargs):
    return client.submit(**kwargs, api_name=api_name).result(timeout=CALL_TIMEOUT_S)


@pytest.fixture(scope="module")
def groove(client):
    """A generated 4-bar funk groove: (its .mid path, its grid value)."""
    out = call(client, "/generate", style="funk", tempo=100, bars=4, seed=7)
    return out[2], out[1]


def lane(path, drums) -> list:
    return sorted(h for h in Pattern.from_midi(path).hits if h.drum in drums)


def test_regenerate_keeps_kick_and_snare(client, groove):
    midi, _ = groove
    audio, grid, out, wav, files, info, take = call(
        client, "/regenerate", midi=handle_file(midi), style="rock", seed=1,
        keep_drums="kick,snare")
    assert lane(out, (0, 1)) == lane(midi, (0, 1))
    assert lane(out, range(2, 9)) != lane(midi, range(2, 9))
    assert audio.endswith(".flac") and wav.endswith(".wav") and files is None
    assert "kept kick, snare" in info and grid["draft"]["bars"] == 4


def test_regenerate_a_bar_as_a_fill(client, groove):
    midi, _ = groove
    out = call(client, "/regenerate", midi=handle_file(midi), style="funk", seed=2, bars="4",
               fill=True)[2]
    before = sorted(h for h in Pattern.from_midi(midi).hits if h.bar < 3)
    assert sorted(h for h in Pattern.from_midi(out).hits if h.bar < 3) == before
    assert "regenerated bar(s) 4 as fills" in call(
        client, "/regenerate", midi=handle_file(midi), bars="4", fill=True, seed=2)[5]


def test_groove_keeps_the_hits_and_changes_the_velocities(client, groove):
    midi, _ = groove
    out = call(client, "/groove", midi=handle_file(midi), style="jazz", seed=3, strength=1.0)
    before, after = Pattern.from_midi(midi), Pattern.from_midi(out[2])
    assert {(h.bar, h.step, h.drum) for h in after.hits} == \
        {(h.bar, h.step, h.drum) for h in before.hits}
    assert [h.velocity for h in after.hits] != [h.velocity for h in before.hits]


def test_drumify_a_rhythm_and_a_bass_file(client, tmp_path):
    out = call(client, "/drumify", rhythm="x..x..x.x...x..." * 2, style="hiphop", seed=4)
    pattern = Pattern.from_midi(out[2])
    assert pattern.bars == 2
    assert {(h.bar, h.step) for h in pattern.hits if h.drum in (0, 1)} == \
        {(b, s) for b in range(2) for s in (0, 3, 6, 8, 12)}
    mid = mido.MidiFile(type=1)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(92))])
    prev = 0
    for step in (0, 6, 10):
        track.append(mido.Message("note_on", note=36, velocity=90, channel=0,
                                  time=120 * (step - prev)))
        track.append(mido.Message("note_off", note=36, velocity=0, channel=0, time=0))
        prev = step
    track.append(mido.MetaMessage("end_of_track", time=120 * (16 - prev)))
    mid.tracks.append(track)
    mid.save(tmp_path / "bass.mid")
    out = call(client, "/drumify", midi=handle_file(str(tmp_path / "bass.mid")), seed=5)
    pattern = Pattern.from_midi(out[2])
    assert pattern.tempo == pytest.approx(92) and pattern.bars == 1
    assert {h.step for h in pattern.hits if h.drum in (0, 1)} == {0, 6, 10}


def test_a_draft_renders_to_midi_and_audio(client, groove):
    _, grid = groove
    hits = grid["draft"]["hits"] + [{"bar": 3, "step": 15, "drum": "crash", "velocity": 120,
                                     "offset": 0.0}]
    draft = {"draft": {**grid["draft"], "hits": hits}}
    audio, midi, wav, info = call(client, "/draft", grid=draft)
    crash = [h for h in Pattern.from_midi(midi).hits if h.drum == 7 and h.bar == 3]
    assert any(h.step == 15 and h.velocity == 120 for h in crash)
    assert audio.endswith(".flac") and f"{len(hits)} hits" in info


BAD_DRAFTS = [
    ({"draft": {"bars": 4, "tempo": 100, "hits": [
        {"bar": 0, "step": 16, "drum": "kick", "velocity": 90}]}}, r"draft\.hits\[0\]\.step"),
    ({"draft": {"bars": 4, "tempo": 100, "hits": [
        {"bar": 4, "step": 0, "drum": "kick", "velocity": 90}]}}, r"draft\.hits\[0\]\.bar"),
    ({"draft": {"bars": 4, "tempo": 100, "hits": [
        {"bar": 0, "step": 0, "drum": "cowbell", "velocity": 90}]}}, r"unknown drum 'cowbell'"),
    ({"draft": {"bars": 4, "tempo": 100, "hits": [
        {"bar": 0, "step": 0, "drum": "kick", "velocity": 0}]}}, r"velocity must be from 1"),
    ({"draft": {"bars": 4, "tempo": 100, "hits": [
        {"bar": 0, "step": 0, "drum": "kick", "velocity": 90}] * 10_000}}, r"10,000 hits"),
    ({"draft": {"bars": 0, "tempo": 100, "hits": []}}, r"draft\.bars"),
    ({"draft": {"bars": 4, "tempo": 9999, "hits": []}}, r"draft\.tempo"),
    ({"draft": "nonsense"}, r"draft must be an object"),
    ("nonsense", r"no groove on the grid"),
]


@pytest.mark.parametrize("grid,words", BAD_DRAFTS, ids=[w for _, w in BAD_DRAFTS])
def test_bad_drafts_are_refused_naming_the_field(app, client, grid, words):
    with pytest.raises(AppError) as error:
        call(client, "/draft", grid=grid)
    assert re.search(words, str(error.value)), str(error.value)


@pytest.mark.parametrize("api,kwargs,words", [
    ("/regenerate", dict(keep_drums="kick,cowbell"), "keep_drums"),
    ("/regenerate", dict(bars="9"), "bars: bar 9"),
    ("/regenerate", dict(keep_drums="kick,snare,hats,toms,cymbals"), "nothing left"),
    ("/regenerate", dict(), "give keep_drums"),
    ("/groove", dict(strength=5), "strength"),
    ("/drumify", dict(rhythm="x..x"), "rhythm: 4 steps"),
])
def test_bad_edit_parameters_are_refused_and_the_app_stays_up(app, client, groove, api,
                                                             kwargs, words):
    midi = None if api == "/drumify" else handle_file(groove[0])
    with pytest.raises(AppError) as error:
        call(client, api, **({"midi": midi} if midi else {}), **kwargs)
    assert words in str(error.value), str(error.value)
    assert app.proc.poll() is None


def test_an_empty_midi_is_refused(client, tmp_path):
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match="midi: "):
        call(client, "/groove", midi=handle_file(str(empty)))


def test_mcp_lists_the_tools_and_generates_a_groove(app):
    """An MCP client (the `mcp` package, over SSE) sees the four verbs as tools with their
    docstrings, and gets a .mid back for a 4-bar funk groove at 100 bpm."""
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    async def run():
        async with sse_client(app.url + "gradio_api/mcp/sse") as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {t.name: t for t in (await session.list_tools()).tools}
                result = await session.call_tool("generate", {
                    "style": "funk", "tempo": 100, "bars": 4, "seed": 7})
                return tools, result

    tools, result = asyncio.run(asyncio.wait_for(run(), 180))
    for verb in ("generate", "regenerate", "groove", "drumify"):
        assert verb in tools, list(tools)
    assert "keep some drums or bars" in tools["regenerate"].description
    assert "keep_drums" in json.dumps(tools["regenerate"].inputSchema)
    assert not result.isError, result
    text = json.dumps([c.model_dump() for c in result.content])
    assert ".mid" in text, text[:500]
