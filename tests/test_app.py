"""End to end: `app.py` runs as a real subprocess and is driven through its API with
gradio_client, as a user's script would (README). No mocks: the shipped model generates, FluidSynth
renders, the Train tab trains a debug model on real GMD files."""

from __future__ import annotations

import csv
import re
import stat
import tempfile
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import apputil
import mido
import numpy as np
import pytest
import soundfile
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from drumgen.constants import DRUMS
from drumgen.model import read_defaults
from drumgen.render import Renderer

pytestmark = pytest.mark.slow

FUNK = dict(style="funk", tempo=100, bars=4, temperature=0.95, top_k=0, top_p=0.95, seed=7)
PPQ = 480
CALL_TIMEOUT_S = 120


def generate(client, **changes):
    return client.submit(**{**FUNK, **changes}, api_name="/generate").result(
        timeout=CALL_TIMEOUT_S)


def read_midi(path) -> mido.MidiFile:
    return mido.MidiFile(path)




def assert_drum_midi(path, bars: int, tempo: float | None = None) -> mido.MidiFile:
    """A 4/4 file of exactly `bars` bars with its notes on channel 10."""
    assert str(path).endswith(".mid")
    mid = read_midi(path)
    assert mid.ticks_per_beat == PPQ
    end = bars * 4 * PPQ
    assert apputil.midi_end_tick(mid) == end
    notes, now_max = [], 0
    for track in mid.tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type in ("note_on", "note_off"):
                notes.append(msg)
                now_max = max(now_max, now)
            if msg.type == "time_signature":
                assert (msg.numerator, msg.denominator) == (4, 4)
            if msg.type == "set_tempo" and tempo is not None:
                assert mido.tempo2bpm(msg.tempo) == pytest.approx(tempo, abs=0.01)
    onsets = [m for m in notes if m.type == "note_on" and m.velocity > 0]
    assert len(onsets) >= bars * 4, "hardly any hits"
    assert {m.channel for m in notes} == {9}, "drums belong on MIDI channel 10"
    assert now_max <= end
    return mid


def gmd_files(gmd: Path, count: int, style: str = "funk") -> list[Path]:
    with open(gmd / "info.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["style"].startswith(style)
                and r["time_signature"] == "4-4" and r["split"] == "train"]
    return [gmd / r["midi_filename"] for r in rows[:count]]


# ---------------------------------------------------------------------------------------------
# Generate

def test_generate_returns_audio_grid_midi_wav_and_info(client):
    started = time.perf_counter()
    audio, plot, midi, wav, files, info, take = generate(client)
    latency = time.perf_counter() - started
    print(f"\n/generate round trip: {latency * 1000:.0f} ms")
    assert latency < 30, f"/generate took {latency:.1f} s"

    # audio: an OGG loop of exactly 4 bars at 100 bpm, audible
    assert audio.endswith(".ogg")
    samples, rate = soundfile.read(audio, dtype="float32")
    assert samples.ndim == 2 and samples.shape[1] == 2
    assert abs(len(samples) / rate - 9.6) < 0.02
    assert float(abs(samples).max()) > 0.02
    assert float((samples.astype("float64") ** 2).mean() ** 0.5) > 0.002

    # the drum grid: the groove as a draft, one hit per note of the .mid
    notes = [m for m in read_midi(midi) if m.type == "note_on" and m.velocity > 0]
    hits = plot["draft"]["hits"]
    assert len(hits) == len(notes) > 0
    assert plot["draft"]["bars"] == 4 and plot["draft"]["tempo"] == 100
    assert {h["drum"] for h in hits} <= set(DRUMS)
    assert sorted(h["velocity"] for h in hits) == sorted(m.velocity for m in notes)

    assert_drum_midi(midi, bars=4, tempo=100)

    assert wav.endswith(".wav")
    info_wav = soundfile.info(wav)
    assert info_wav.samplerate == rate and abs(info_wav.duration - 9.6) < 1e-3

    assert files is None  # one take: no "all variations" list repeating the files above
    assert "seed **7**" in info and "funk" in info and "4 bars" in info
    assert take["visible"] is False  # one take: no variation picker


def test_the_same_seed_gives_the_same_midi(client):
    first = Path(generate(client)[2]).read_bytes()
    again = Path(generate(client)[2]).read_bytes()
    other = Path(generate(client, seed=8)[2]).read_bytes()
    assert first == again
    assert other != first


def test_variations(client):
    audio, _, midi, _, files, info, take = generate(client, variations=3)
    mids = [f for f in files if f.endswith(".mid")]
    assert len(mids) == 3
    assert len({Path(f).read_bytes() for f in mids}) == 3, "variations should differ"
    for f in mids:
        assert_drum_midi(f, bars=4)
    assert len([f for f in files if f.endswith(".ogg")]) == 3
    assert "3 variation(s)" in info
    assert take["visible"] is True and len(take["choices"]) == 3


def test_the_first_answer_carries_the_shown_take_and_the_last_every_file(client):
    """The page hears the shown take as soon as it is rendered: the first answer holds its
    OGG, grid and .mid; the .wav and the other takes' audio come in the last answer, which is
    what `predict` returns. Both are real renders of the same grooves."""
    job = client.submit(**{**FUNK, "variations": 3, "seed": 21}, api_name="/generate")
    final = job.result(timeout=CALL_TIMEOUT_S)
    first, last = job.outputs()[0], job.outputs()[-1]
    assert len(job.outputs()) == 2 and tuple(last) == tuple(final)
    audio, grid, midi, wav, files, _, _ = first
    assert audio.endswith(".ogg") and soundfile.info(audio).duration == pytest.approx(9.6, 1e-3)
    assert wav is None
    assert sorted(Path(f).suffix for f in files) == [".mid", ".mid", ".mid", ".ogg"]
    assert grid == last[1] and Path(midi).read_bytes() == Path(last[2]).read_bytes()
    # the last answer: the .wav of the take on show, every take's audio
    shown, _ = soundfile.read(audio, dtype="float32")
    full, rate = soundfile.read(last[3], dtype="float32")
    assert rate == 44100 and full.shape == shown.shape
    assert np.corrcoef(full[:, 0], shown[:, 0])[0, 1] > 0.95  # the OGG is that WAV, encoded
    oggs = [f for f in last[4] if f.endswith(".ogg")]
    assert len(oggs) == 3 and len({Path(f).read_bytes() for f in oggs}) == 3


def test_sampling_parameters_default_to_the_models_and_style_strength_applies(client, shipped):
    """Left out, temperature, top_k, top_p and style_strength take the shipped model's saved
    defaults (the page's sliders start there); a style strength sent is the one used."""
    defaults = asdict(read_defaults(shipped))
    params = {p["parameter_name"]: p for p in
              client.view_api(print_info=False, return_format="dict")["named_endpoints"][
                  "/generate"]["parameters"]}
    for name in ("temperature", "top_k", "top_p", "style_strength"):
        assert params[name]["parameter_default"] == defaults[name], name
    plain = client.submit(style="funk", seed=7, api_name="/generate").result(
        timeout=CALL_TIMEOUT_S)
    assert f"style strength {defaults['style_strength']:g}," in plain[5]
    flat = generate(client, style_strength=0)
    assert "style strength 0," in flat[5]
    assert Path(flat[2]).read_bytes() != Path(generate(client)[2]).read_bytes()


def test_a_producer_preset(client):
    audio, _, midi, wav, files, info, _ = generate(client, style="J Dilla", tempo=88)
    assert "J Dilla" in info
    assert_drum_midi(midi, bars=4, tempo=88)
    assert abs(soundfile.info(audio).duration - 4 * 4 * 60 / 88) < 0.02


def test_the_kit_fits_the_style_the_users_choice_wins_and_the_page_names_it(client):
    renderer = Renderer.default()  # the same soundfonts the app finds
    for style in ("funk", "jazz", "Metro Boomin"):
        info = generate(client, style=style, bars=1)[5]
        assert f"kit {renderer.choose(style).name}," in info, info
    ours = "standard (drumgen-kit)"
    info = generate(client, style="Metro Boomin", bars=1, kit=ours)[5]
    assert f"kit {ours}," in info, info


def test_a_presets_swing_plays_unless_the_swing_is_set(client):
    """Left out, swing is the preset's (J Dilla plays 58%); sent, it wins, straight included."""
    own = generate(client, style="J Dilla", tempo=88, swing=None)[5]
    assert "swing 58%" in own, own
    straight = generate(client, style="J Dilla", tempo=88, swing=50)[5]
    assert "swing 50%" in straight, straight


def test_prime_with_a_real_gmd_groove(client, gmd):
    prime = gmd_files(gmd, 1)[0]
    audio, _, midi, _, _, info, _ = generate(client, bars=2, prime=handle_file(str(prime)))
    assert_drum_midi(midi, bars=2, tempo=100)
    assert abs(soundfile.info(audio).duration - 2 * 4 * 60 / 100) < 0.02


def test_other_layouts_and_no_audio(client):
    _, _, midi, _, _, _, _ = generate(client, midi_layout="multitrack", bars=2)
    assert len(read_midi(midi).tracks) > 2  # a track per drum that plays
    audio, _, midi, wav, _, info, _ = generate(client, kit="none (MIDI only)", bars=1)
    assert audio is None and "Audio off" in info
    assert_drum_midi(midi, bars=1)


BAD_INPUTS = [
    (dict(bars=0), "bars"), (dict(bars=17), "bars"), (dict(bars=2.5), "bars"),
    (dict(tempo=1000), "tempo"), (dict(temperature=-1), "temperature"),
    (dict(top_p=2), "top_p"), (dict(top_k=-1), "top_k"), (dict(seed=-5), "seed"),
    (dict(variations=9), "variations"), (dict(style=""), "style"),
    (dict(style="polka"), "style"), (dict(density="huge"), "density"),
    (dict(density="0"), "density"), (dict(swing=90), "swing"), (dict(humanize=3), "humanize"),
    (dict(midi_layout="abc"), "midi_layout"), (dict(model="no-such-model"), "model"),
    (dict(kit="cowbell"), "kit"), (dict(style_strength=3.5), "style_strength"),
]
BAD_PRIMES = {
    "corrupt": b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\xff\xff garbage",
    "empty": b"",
    "text": b"this is a text file, not a groove\n",
}


@pytest.mark.parametrize("changes, name", BAD_INPUTS,
                         ids=[f"{k}={v!r}" for (c, _) in BAD_INPUTS for k, v in c.items()])
def test_bad_input_is_refused_naming_the_parameter(client, changes, name):
    with pytest.raises(AppError) as error:
        generate(client, **changes)
    message = str(error.value)
    assert re.search(rf"\b{name}\b", message), message


@pytest.mark.parametrize("kind", list(BAD_PRIMES))
def test_a_bad_prime_file_is_refused(client, tmp_path, kind):
    path = tmp_path / f"{kind}.mid"
    path.write_bytes(BAD_PRIMES[kind])
    with pytest.raises(AppError) as error:
        generate(client, prime=handle_file(str(path)))
    assert "prime" in str(error.value), str(error.value)


def test_the_app_survives_bad_input(app, client):
    assert app.proc.poll() is None, app.log_tail()
    audio, _, midi, _, _, info, _ = generate(client, seed=11)
    assert_drum_midi(midi, bars=4)
    assert "seed **11**" in info
    assert "Traceback" not in app.log_tail(200_000), "a bad input crashed a handler"


# ---------------------------------------------------------------------------------------------
# Train

def training_zip(path: Path, files: list[Path], style: str = "mystyle") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for i, f in enumerate(files):
            z.write(f, f"{style}/{i}_{f.name}")
    return path


def wait_for_output(job, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job.outputs() or job.done():
            return
        time.sleep(0.2)
    raise AssertionError("no status from /train")


def test_train_on_an_uploaded_zip_then_generate_with_it(app, client, gmd, tmp_path):
    data = training_zip(tmp_path / "mine.zip", gmd_files(gmd, 8))
    job = client.submit("Uploaded zip", handle_file(str(data)), "debug", 1, None, "ci-debug",
                        api_name="/train")
    wait_for_output(job)
    assert not job.done(), "training ended before generating could overlap it"
    # generating keeps working while the model trains
    _, _, midi, _, _, info, _ = generate(client, seed=3)
    assert_drum_midi(midi, bars=4)

    status, curve, models = job.result(timeout=300)
    assert "Finished" in status, status
    assert curve["columns"] == ["step", "loss", "curve"]  # a gr.LinePlot's data
    kinds = {row[2] for row in curve["data"]}
    assert kinds == {"train", "validation"} and len(curve["data"]) <= 400 + 10
    name = models["value"]
    assert name.startswith("ci-debug-")
    assert name in [c[0] for c in models["choices"]]
    folder = app.user_models / name
    assert (folder / "model.safetensors").is_file() and (folder / "styles.json").is_file()
    assert "mystyle" in (folder / "styles.json").read_text()

    _, _, midi, _, _, info, _ = generate(client, model=name, style="mystyle", seed=5)
    assert "mystyle" in info
    assert_drum_midi(midi, bars=4)
    # the workdir with the unpacked zip is removed once training ends
    assert not list(app.temp.glob("drumgen-*/*/data")), "the unpacked training data was left"


def evil_zip(path: Path, sample: Path, kind: str) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.write(sample, "mystyle/a.mid")
        if kind == "traversal":
            z.write(sample, "../evil.mid")
        else:
            link = zipfile.ZipInfo("mystyle/evil.mid")
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(link, "../../../../evil.mid")
    return path


@pytest.mark.parametrize("kind, why", [("traversal", "outside"), ("symlink", "symbolic link")])
def test_a_hostile_zip_is_refused_and_writes_nothing_outside(app, client, gmd, tmp_path, kind,
                                                             why):
    sample = gmd_files(gmd, 1)[0]
    data = evil_zip(tmp_path / "evil.zip", sample, kind)
    work = list(app.temp.glob("drumgen-*/*"))
    with pytest.raises(AppError) as error:
        client.submit("Uploaded zip", handle_file(str(data)), "debug", 1, None, "evil",
                      api_name="/train").result(timeout=CALL_TIMEOUT_S)
    message = str(error.value)
    assert "zip_file" in message and why in message, message
    places = [tmp_path, tmp_path.parent, app.home, app.temp, app.home.parent, apputil.ROOT,
              apputil.ROOT.parent, Path(tempfile.gettempdir()), Path("/tmp")]
    for place in places:
        assert not (place / "evil.mid").exists(), place
    assert not list(app.home.rglob("evil.mid")), "an entry of a refused zip was unpacked"
    assert list(app.temp.glob("drumgen-*/*")) == work, "a refused zip left a work folder"
    assert not any(p.name.startswith("evil-") for p in app.user_models.iterdir())


def test_train_refuses_bad_settings(client, gmd, tmp_path):
    data = training_zip(tmp_path / "mine.zip", gmd_files(gmd, 2))
    cases = [(("Uploaded zip", None, "debug", 1, None, "x"), "zip"),
             (("Uploaded zip", handle_file(str(data)), "huge", 1, None, "x"), "preset"),
             (("Uploaded zip", handle_file(str(data)), "debug", -1, None, "x"), "epochs"),
             (("Uploaded zip", handle_file(str(data)), "debug", None, None, "x"), "epochs")]
    for args, word in cases:
        with pytest.raises(AppError) as error:
            client.submit(*args, api_name="/train").result(timeout=CALL_TIMEOUT_S)
        assert word in str(error.value), (args, str(error.value))


def test_stop_training(client, gmd, tmp_path):
    assert client.predict(api_name="/stop_training") == "Nothing to stop."
    data = training_zip(tmp_path / "long.zip", gmd_files(gmd, 8))
    job = client.submit("Uploaded zip", handle_file(str(data)), "debug", None, 30, "ci-stop",
                        api_name="/train")
    deadline = time.monotonic() + 60
    while not any("step" in out[0] for out in job.outputs()):  # wait for the first step
        assert not job.done() and time.monotonic() < deadline, job.outputs()
        time.sleep(0.2)
    answer = client.predict(api_name="/stop_training")
    assert isinstance(answer, str) and answer.startswith("Stopping")
    status, _, _ = job.result(timeout=120)
    assert "Finished (stopped)" in status, status


# ---------------------------------------------------------------------------------------------
# Share

def test_share_keeps_serving_locally_when_no_share_link_can_be_made(tmp_path):
    shared = apputil.launch(tmp_path / "share-app", "--share")
    try:
        time.sleep(2)  # the share attempt fails within a second here (no internet)
        assert shared.proc.poll() is None, shared.log_tail()
        assert apputil.answers(shared.url)
        assert shared.client().predict(api_name="/new_seed") >= 0
    finally:
        shared.stop()
    assert shared.proc.poll() is not None
