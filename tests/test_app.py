"""End to end: `app.py` runs as a real subprocess and is driven through its API with
gradio_client, as a user's script would (README). No mocks: the shipped model generates, FluidSynth
renders, the Train tab fine-tunes the shipped model (and trains a debug model from scratch) on
real GMD files."""

from __future__ import annotations

import csv
import json
import re
import stat
import tempfile
import time
import zipfile
from dataclasses import asdict, fields
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

    # audio: a loop of exactly 4 bars at 100 bpm, audible; FLAC, as the app serves only
    # this machine (an app on a network or a share link plays OGG Vorbis: see the share test)
    assert audio.endswith(".flac") and soundfile.info(audio).format == "FLAC"
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
    assert len([f for f in files if f.endswith(".flac")]) == 3
    assert "3 variation(s)" in info
    assert take["visible"] is True and len(take["choices"]) == 3


def test_the_first_answer_carries_the_shown_take_and_the_last_every_file(client):
    """The page hears the shown take as soon as it is rendered: the first answer holds its
    audio, grid and .mid; the .wav and the other takes' audio come in the last answer, which is
    what `predict` returns. Both are real renders of the same grooves."""
    job = client.submit(**{**FUNK, "variations": 3, "seed": 21}, api_name="/generate")
    final = job.result(timeout=CALL_TIMEOUT_S)
    first, last = job.outputs()[0], job.outputs()[-1]
    assert len(job.outputs()) == 2 and tuple(last) == tuple(final)
    audio, grid, midi, wav, files, _, _ = first
    assert audio.endswith(".flac") and soundfile.info(audio).duration == pytest.approx(9.6, 1e-3)
    assert wav is None
    assert sorted(Path(f).suffix for f in files) == [".flac", ".mid", ".mid", ".mid"]
    assert grid == last[1] and Path(midi).read_bytes() == Path(last[2]).read_bytes()
    # the last answer: the .wav of the take on show, every take's audio
    shown, _ = soundfile.read(audio, dtype="float32")
    full, rate = soundfile.read(last[3], dtype="float32")
    assert rate == 44100 and full.shape == shown.shape
    assert np.corrcoef(full[:, 0], shown[:, 0])[0, 1] > 0.95  # the audio is that WAV, encoded
    played = [f for f in last[4] if f.endswith(".flac")]
    assert len(played) == 3 and len({Path(f).read_bytes() for f in played}) == 3


def test_sampling_parameters_default_to_the_models_and_style_strength_applies(client, shipped):
    """Left out, temperature, top_k, top_p and style_strength are None in the API, so they take
    the chosen model's saved defaults, and style_strength the chosen style's own (the page's
    slider holds the opening style's, which a client must not send for another style); a
    style strength sent is the one used."""
    saved = read_defaults(shipped)
    defaults = asdict(saved)
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for endpoint in ("/generate", "/regenerate", "/groove", "/drumify"):
        params = {p["parameter_name"]: p for p in api[endpoint]["parameters"]}
        for name in ("temperature", "top_k", "top_p", "style_strength"):
            assert params[name]["parameter_has_default"], (endpoint, name)
            assert params[name]["parameter_default"] is None, (endpoint, name)
    assert saved.strength_for("funk") != saved.strength_for("rock")  # else this proves little
    for style in ("funk", "rock"):
        plain = client.submit(style=style, seed=7, api_name="/generate").result(
            timeout=CALL_TIMEOUT_S)
        assert f"style strength {saved.strength_for(style):g}," in plain[5], plain[5]
        assert f"temperature {defaults['temperature']:g}" in plain[5], plain[5]
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


def train_job(client, data: Path | None, name: str, **settings):
    """A /train job on `data` (a zip), with the endpoint's parameter names."""
    return client.submit(data_source="Uploaded zip", zip_file=data and handle_file(str(data)),
                         name=name, **settings, api_name="/train")


def test_train_endpoint_takes_the_train_requests_names_and_fine_tunes_by_default(client):
    """/train's parameters are `service.TrainRequest`'s fields; left out, a job fine-tunes
    the Generate tab's model (the shipped one) for the CPU default budget."""
    from drumgen.finetune import FINETUNE_MINUTES
    from drumgen.service import TrainRequest
    params = {p["parameter_name"]: p for p in
              client.view_api(print_info=False, return_format="dict")["named_endpoints"][
                  "/train"]["parameters"]}
    assert set(params) == {f.name for f in fields(TrainRequest)}
    defaults = {name: p["parameter_default"] for name, p in params.items()
                if p["parameter_has_default"]}
    assert defaults["from_scratch"] is False and defaults["init_from"] == "drumgen-small"
    assert defaults["time_budget"] == FINETUNE_MINUTES and defaults["overwrite"] is False
    assert defaults["lr"] is None and defaults["batch_size"] is None  # the mode's default
    assert defaults["train_only"] == "style"


def test_fine_tune_a_new_style_from_a_zip_then_generate_with_it(app, client, gmd, tmp_path):
    """The Train tab's default: the shipped model fine-tuned on real GMD files under two new
    style names (hip-hop as `dilla`, soul as `questo`, as in the issue), for a short budget;
    the model takes the given name, has a card, and generates valid grooves in both."""
    data = training_zip(tmp_path / "mine.zip", gmd_files(gmd, 6, "hiphop"), "dilla")
    with zipfile.ZipFile(data, "a") as z:  # a second producer: GMD soul as `questo`
        for i, f in enumerate(gmd_files(gmd, 6, "soul")):
            z.write(f, f"questo/{i}_{f.name}")
    # lr and batch_size as the page sends its empty boxes: 0, the defaults
    job = train_job(client, data, "ci-dilla", time_budget=0.3, lr=0, batch_size=0)
    wait_for_output(job)
    assert not job.done(), "training ended before generating could overlap it"
    # generating keeps working while the model trains
    _, _, midi, _, _, info, _ = generate(client, seed=3)
    assert_drum_midi(midi, bars=4)

    status, curve, models = job.result(timeout=300)
    assert "fine-tuning **drumgen-small**" in status and "Finished" in status, status
    # the data, and what it is likely to give, in the status
    for style in ("dilla", "questo"):
        assert re.search(rf"`{style}`: \d+ files, \d+ bars, \d+ examples to train on",
                         status), status
    assert "A style takes about 10 files" in status, status
    assert curve["columns"] == ["step", "loss", "curve"]  # a gr.LinePlot's data
    assert {row[2] for row in curve["data"]} == {"train", "validation"}
    assert models["value"] == "ci-dilla"  # exactly the name given, no suffix
    assert "ci-dilla" in [c[0] for c in models["choices"]]
    folder = app.user_models / "ci-dilla"
    tuned = json.loads((folder / "styles.json").read_text())
    shipped = json.loads((apputil.ROOT / "models/drumgen-small/styles.json").read_text())
    assert tuned == shipped + ["dilla", "questo"]  # the shipped styles, then the new ones
    card = (folder / "README.md").read_text()
    for words in ("# ci-dilla", "fine-tuned from `drumgen-small`", "| dilla |", "| questo |",
                  "only the style embeddings were trained",
                  "learning rate 0.003, batch 16, time budget 0.3 min", "validation loss"):
        assert words in card, (words, card)
    assert not (folder / "checkpoints").exists()
    assert not [p for p in app.user_models.iterdir() if p.name.startswith(".")], \
        "a staging folder was left"

    for style, seed in (("dilla", 5), ("dilla", 6), ("questo", 5)):
        _, _, midi, _, _, info, _ = generate(client, model="ci-dilla", style=style,
                                             seed=seed)
        assert f"style `{style}`" in info
        assert_drum_midi(midi, bars=4)
    # the unpacked zip is removed once training ends
    assert not list(app.temp.glob("drumgen-*/*/data")), "the unpacked training data was left"


def test_train_from_scratch_then_a_taken_name_is_refused_or_overwritten(app, client, gmd,
                                                                         tmp_path):
    data = training_zip(tmp_path / "mine.zip", gmd_files(gmd, 3))
    scratch = dict(from_scratch=True, preset="debug", epochs=1, time_budget=0)
    status, _, models = train_job(client, data, "ci-twice", **scratch).result(timeout=300)
    assert "training from scratch" in status and models["value"] == "ci-twice", status
    folder = app.user_models / "ci-twice"
    card = (folder / "README.md").read_text()
    assert "trained from scratch (preset `debug`)" in card and "learning rate 0.001" in card
    first = (folder / "model.safetensors").stat().st_ino
    before = Path(generate(client, model="ci-twice", style="funk", seed=1)[2]).read_bytes()
    with pytest.raises(AppError) as error:
        train_job(client, data, "ci-twice", **scratch).result(timeout=CALL_TIMEOUT_S)
    assert "name: a model called 'ci-twice' already exists" in str(error.value)
    assert (folder / "model.safetensors").stat().st_ino == first  # untouched
    status, _, models = train_job(client, data, "ci-twice", **{**scratch, "epochs": 3},
                                  overwrite=True).result(timeout=300)
    assert "Finished" in status and models["value"] == "ci-twice"
    assert (folder / "model.safetensors").stat().st_ino != first  # replaced, as asked
    assert [c[0] for c in models["choices"]].count("ci-twice") == 1
    _, _, midi, _, _, _, _ = generate(client, model="ci-twice", style="funk", seed=1)
    assert_drum_midi(midi, bars=4)
    # the same request now plays the new weights: the old model was not kept loaded
    assert Path(midi).read_bytes() != before


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
        train_job(client, data, "evil").result(timeout=CALL_TIMEOUT_S)
    message = str(error.value)
    assert "zip_file" in message and why in message, message
    places = [tmp_path, tmp_path.parent, app.home, app.temp, app.home.parent, apputil.ROOT,
              apputil.ROOT.parent, Path(tempfile.gettempdir()), Path("/tmp")]
    for place in places:
        assert not (place / "evil.mid").exists(), place
    assert not list(app.home.rglob("evil.mid")), "an entry of a refused zip was unpacked"
    assert list(app.temp.glob("drumgen-*/*")) == work, "a refused zip left a work folder"
    assert not any(p.name.startswith(("evil", ".evil")) for p in app.user_models.iterdir())


def test_train_refuses_bad_settings(app, client, gmd, tmp_path):
    data = training_zip(tmp_path / "mine.zip", gmd_files(gmd, 2))
    cases = [((None, "x"), {}, "zip_file: no data"),
             ((data, "x"), dict(from_scratch=True, preset="huge"), "preset: Value: 'huge'"),
             ((data, "x"), dict(epochs=-1), "epochs: Value -1"),
             ((data, "x"), dict(epochs=0, time_budget=0), "epochs, time_budget: give"),
             ((data, "x"), dict(lr=0.5), "lr: Value 0.5 is greater than maximum"),
             ((data, "x"), dict(lr=-1e-4), "lr must be from 1e-06 to 0.01"),
             ((data, "x"), dict(batch_size=-2), "batch_size must be from 1 to 256"),
             ((data, "x"), dict(batch_size=300), "batch_size: Value 300"),
             ((data, "x"), dict(init_from="no-such-model"), "init_from: unknown model"),
             ((data, "../evil"), {}, "name: use 1 to 40 letters"),
             ((data, "a/b"), {}, "name: use 1 to 40"),
             ((data, ""), {}, "name: use 1 to 40"),
             ((data, "x" * 41), {}, "name: use 1 to 40"),
             ((data, ".hidden"), {}, "name: use 1 to 40"),
             ((data, "drumgen-small"), {}, "name: 'drumgen-small' is a shipped model's name")]
    for (zip_path, name), settings, words in cases:
        with pytest.raises(AppError) as error:
            train_job(client, zip_path, name, **settings).result(timeout=CALL_TIMEOUT_S)
        assert words in str(error.value), (name, settings, str(error.value))
    assert not (apputil.ROOT.parent / "evil").exists() and not (app.home / "evil").exists()
    assert not list(app.user_models.glob("*evil*")) and not list(app.user_models.glob("x*"))


def test_stop_training(client, gmd, tmp_path):
    assert client.predict(api_name="/stop_training") == "Nothing to stop."
    data = training_zip(tmp_path / "long.zip", gmd_files(gmd, 8))
    job = train_job(client, data, "ci-stop", time_budget=30)
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

def test_share_asks_gradio_for_a_link_and_keeps_serving_locally_without_one(tmp_path):
    """`--share` reaches Gradio (it reports that no link could be made: there is no internet
    here) and the app goes on serving on its local URL; the player's audio is OGG Vorbis, the
    small file, as a share link's users fetch it over the internet."""
    shared = apputil.launch(tmp_path / "share-app", "--share")
    try:
        deadline = time.monotonic() + 30
        while "Could not create share link" not in shared.log_tail(20_000) and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        assert "Could not create share link" in shared.log_tail(20_000), shared.log_tail()
        assert shared.proc.poll() is None, shared.log_tail()
        assert shared.client().predict(api_name="/new_seed") >= 0
        audio = shared.client().predict(**{**FUNK, "bars": 1}, api_name="/generate")[0]
        assert audio.endswith(".ogg") and soundfile.info(audio).format == "OGG"
        assert soundfile.info(audio).subtype == "VORBIS"
    finally:
        shared.stop()
    assert shared.proc.poll() is not None


def test_drumgen_preload_chooses_the_order_and_refuses_a_bad_value(monkeypatch):
    import app
    monkeypatch.delenv("DRUMGEN_PRELOAD", raising=False)
    assert app.preload_first() is False  # the page first, by default
    monkeypatch.setenv("DRUMGEN_PRELOAD", " Before ")
    assert app.preload_first() is True
    monkeypatch.setenv("DRUMGEN_PRELOAD", "first")
    with pytest.raises(ValueError, match="DRUMGEN_PRELOAD must be one of after, before"):
        app.preload_first()
