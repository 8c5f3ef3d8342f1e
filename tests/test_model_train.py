"""The model folder, training, resume, fine-tuning and crash safety."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from drumgen import data as data_mod
from drumgen import model as model_mod
from drumgen.data import Example
from drumgen.model import ModelError
from drumgen.pattern import Pattern
from drumgen.tokenizer import Tokenizer
from drumgen.train import TrainConfig, epoch_sampler, latest_checkpoint, lr_schedule, train

ROOT = Path(__file__).resolve().parent.parent


def test_save_load_roundtrip(tmp_path):
    tok = Tokenizer()
    model = model_mod.build("debug", len(tok), 5).eval()
    bundle = model_mod.Bundle(model, tok, ["a", "b", "c", "d", "e"],
                              model_mod.GenerationDefaults(temperature=0.8))
    model_mod.save(bundle, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(
        (*model_mod.FILES, "velocities.json", "tokenizer.json"))
    # readable by the user a server runs as, whoever saved it (transformers writes 0600)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "m").iterdir()} == {
        name: "0o644" for name in (*model_mod.FILES, "velocities.json", "tokenizer.json")}
    loaded = model_mod.load(tmp_path / "m")
    assert loaded.styles == bundle.styles
    assert loaded.tokenizer.vocab == tok.vocab
    assert loaded.defaults.temperature == 0.8
    ids = torch.tensor([[tok.bos, tok.ids["TEMPO_3"], tok.ids["DENS_4"], tok.bar]])
    style = torch.tensor([2])
    with torch.no_grad():
        a = model(input_ids=ids, style_ids=style).logits
        b = loaded.model(input_ids=ids, style_ids=style).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert not list((tmp_path / "m").glob("*.bin")) and not list((tmp_path / "m").glob("*.pt"))


def test_style_embedding_reaches_every_position():
    tok = Tokenizer()
    model = model_mod.build("debug", len(tok), 3).eval()
    ids = torch.tensor([[tok.bos, tok.ids["TEMPO_3"], tok.ids["DENS_4"], tok.bar]])
    with torch.no_grad():
        a = model(input_ids=ids, style_ids=torch.tensor([0])).logits
        b = model(input_ids=ids, style_ids=torch.tensor([1])).logits
    assert all(not torch.allclose(a[0, i], b[0, i]) for i in range(ids.shape[1]))


@pytest.mark.parametrize("damage", ["missing_weights", "corrupt_weights", "corrupt_json",
                                    "wrong_styles", "bad_velocities", "not_a_folder"])
def test_corrupt_model_folder_gives_clear_error(tmp_path, debug_model, damage):
    folder = tmp_path / "m"
    shutil.copytree(debug_model, folder, ignore=shutil.ignore_patterns("checkpoints"))
    expected = {"missing_weights": "model.safetensors", "corrupt_weights": "weights",
                "corrupt_json": "corrupt", "wrong_styles": "does not match",
                "bad_velocities": "velocities.json: drum 0, bin 0 holds 200",
                "not_a_folder": "no model folder"}[damage]
    if damage == "missing_weights":
        (folder / "model.safetensors").unlink()
    elif damage == "corrupt_weights":
        (folder / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    elif damage == "corrupt_json":
        (folder / "styles.json").write_text("{not json")
    elif damage == "wrong_styles":
        (folder / "styles.json").write_text(json.dumps(["only_one"]))
    elif damage == "bad_velocities":
        (folder / "velocities.json").write_text(json.dumps([[200] * 8] * 9))
    else:
        folder = tmp_path / "nothing"
    with pytest.raises(ModelError, match=expected):
        model_mod.load(folder)


def test_training_lowers_loss_and_writes_checkpoints(tmp_path, train_data):
    events = []
    summary = train(TrainConfig(preset="debug", epochs=3, batch_size=8, checkpoint_every=10,
                                keep_checkpoints=2, warmup_steps=5, lr=3e-3), train_data,
                    tmp_path / "run", callback=events.append)
    evals = [e["val_loss"] for e in events if e["event"] == "eval"]
    steps = [e for e in events if e["event"] == "step"]
    # a uniform guess over the 1,189 tokens scores ln(1189) = 7.08 nats; training must beat it
    # by a clear margin and keep improving from one validation to the next
    assert len(evals) >= 3 and evals[-1] < evals[0] and evals[-1] < math.log(1189) - 1.5, evals
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert summary["best_val"] == min(evals)
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))
    assert len(checkpoints) == 2  # keeps the last 2 of them
    assert (tmp_path / "run" / "train_config.json").is_file()
    best = model_mod.load(tmp_path / "run")  # the best model sits at the top level
    assert best.styles[:3] == ["rock", "funk", "jazz"]
    # a new model's velocity bins decode to its training hits' means, not the bin centres
    assert best.tokenizer.velocities != Tokenizer().velocities
    lrs = [e["lr"] for e in steps]
    assert max(lrs) == pytest.approx(3e-3, rel=0.05) and lrs[-1] < lrs[len(lrs) // 2]


def test_resume_continues_from_saved_step(tmp_path, train_data):
    cfg = TrainConfig(preset="debug", epochs=1, batch_size=8, checkpoint_every=5)
    first = train(cfg, train_data, tmp_path / "run")
    saved = json.loads((latest_checkpoint(tmp_path / "run") / "trainer_state.json").read_text())
    assert saved["step"] == first["step"]
    events = []
    cfg.epochs = 2
    second = train(cfg, train_data, tmp_path / "run", resume=True, callback=events.append)
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps[0] == first["step"] + 1
    assert second["step"] == 2 * first["step"]
    assert any("resumed" in e.get("message", "") for e in events)


@pytest.mark.slow  # a CLI subprocess
def test_cli_fit_velocities_gives_an_older_model_its_table(tmp_path, debug_model, train_data):
    folder = tmp_path / "old"
    shutil.copytree(debug_model, folder, ignore=shutil.ignore_patterns("checkpoints"))
    trained = model_mod.load(folder).tokenizer.velocities
    (folder / "velocities.json").unlink()  # as saved before the table existed
    assert model_mod.load(folder).tokenizer.velocities == Tokenizer().velocities
    result = subprocess.run([sys.executable, "-m", "drumgen", "fit-velocities", "--model",
                             str(folder), "--data", str(train_data)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # the same training split gives the table training wrote
    assert model_mod.load(folder).tokenizer.velocities == trained
    means = re.search(r"mean velocity of those hits ([\d.]+); decoded with bin centres "
                      r"([\d.]+), with the table ([\d.]+)", result.stdout)
    real, centres, table = map(float, means.groups())
    assert abs(table - real) < 0.2 < abs(centres - real), result.stdout
    bad = subprocess.run([sys.executable, "-m", "drumgen", "fit-velocities", "--model",
                          str(tmp_path / "nowhere"), "--data", str(train_data)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no model folder" in bad.stderr


def test_resume_without_checkpoint_is_an_error(tmp_path, train_data):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(TrainConfig(preset="debug", epochs=1), train_data, tmp_path / "new", resume=True)


def _user_folder(root: Path, gmd: Path, style: str, count: int) -> Path:
    """A user's data folder of real GMD grooves, under a new style name (files are linked)."""
    folder = root / style
    folder.mkdir(parents=True)
    files = sorted((gmd / "drummer1" / "session2").glob("*_beat_*.mid"))[:count]
    for f in files:
        (folder / f.name).symlink_to(f)
    return root


def test_fine_tune_adds_a_style(tmp_path, debug_model, gmd):
    data = _user_folder(tmp_path / "data", gmd, "mydilla", 6)
    before = model_mod.load(debug_model)
    mean_row = before.model.style_emb.weight.mean(0)
    out = tmp_path / "tuned"
    train(TrainConfig(preset="debug", epochs=1, batch_size=4, checkpoint_every=1000), data,
          out, init_from=debug_model)
    after = model_mod.load(out)
    assert after.styles[: len(before.styles)] == before.styles
    assert after.styles[-1] == "mydilla"
    assert after.model.config.n_styles == len(before.styles) + 1
    assert after.tokenizer.vocab == before.tokenizer.vocab
    # the hit tokens keep the velocities they were learned with; a refit on these 6 files of
    # one drummer would change the table
    assert after.tokenizer.velocities == before.tokenizer.velocities
    refit = Tokenizer().fit_velocities(p for _, p in data_mod.read_patterns(
        data_mod.load(data).records, []))
    assert refit.velocities != before.tokenizer.velocities
    # the new row started at the mean of the old rows and has moved only a little
    assert torch.dist(after.model.style_emb.weight[-1], mean_row) < mean_row.norm()
    from drumgen.generate import Generator, Request
    groove = Generator.load(out).generate(Request(style="mydilla", bars=2, seed=1))[0]
    assert groove.pattern.bars == 2


@pytest.mark.parametrize("balance, rare_share", [(0.0, 0.05), (0.5, 0.1866), (1.0, 0.5)])
def test_style_balance_sets_each_styles_share(balance, rare_share):
    """95 examples of one style and 5 of another: the rare style's share of an epoch goes as
    count**(1 - balance), from its share of the data (0) to an even split (1)."""
    examples = [Example([1], 0)] * 9500 + [Example([1], 1)] * 500
    order = list(epoch_sampler(examples, seed=3, epoch=0, balance=balance))
    drawn = [examples[i].style for i in order]
    assert len(drawn) == len(examples)
    assert abs(sum(drawn) / len(drawn) - rare_share) < 0.015
    assert order == list(epoch_sampler(examples, seed=3, epoch=0, balance=balance))  # resumable
    assert order != list(epoch_sampler(examples, seed=3, epoch=1, balance=balance))
    if balance == 0:
        assert sorted(order) == list(range(len(examples)))


def test_the_learning_rate_warms_up_then_follows_a_cosine_to_a_tenth():
    total, peak = 1000, 1e-3
    lrs = [lr_schedule(s, total, peak, warmup_steps=200) for s in range(total + 1)]
    warm = 50  # the warmup is capped at 5% of the run
    assert lrs[0] == pytest.approx(peak / warm) and lrs[warm - 1] == pytest.approx(peak)
    assert all(a < b for a, b in zip(lrs[:warm - 1], lrs[1:warm], strict=True))
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:], strict=False))
    midway = warm + (total - warm) // 2
    assert lrs[midway] == pytest.approx(peak * (0.1 + 0.9 * 0.5), rel=1e-2)
    assert lrs[total] == pytest.approx(peak / 10)
    assert lr_schedule(5000, total, peak, 200) == pytest.approx(peak / 10)  # past the end
    assert lr_schedule(0, 10_000, peak, 200) == pytest.approx(peak / 200)  # 200 < 5%


@pytest.mark.parametrize("balance, weights, rare_share",
                         [(0.0, {1: 2.0}, 1000 / 10500), (0.5, {1: 2.0}, 0.3146),
                          (1.0, {0: 3.0}, 0.25)])
def test_style_weights_multiply_a_styles_draws_on_top_of_the_balance(balance, weights,
                                                                     rare_share):
    """A weight multiplies the named style's draw weight after the balance: at balance 0
    the rare style's 500 examples count as 1000; at 0.5 its share goes from 0.1866 to
    2 * 0.1866 / (2 * 0.1866 + 0.8134); weighting the common style 3x at balance 1 leaves
    the rare one a quarter."""
    examples = [Example([1], 0)] * 9500 + [Example([1], 1)] * 500
    order = list(epoch_sampler(examples, seed=3, epoch=0, balance=balance, weights=weights))
    drawn = [examples[i].style for i in order]
    assert len(drawn) == len(examples)
    assert abs(sum(drawn) / len(drawn) - rare_share) < 0.015
    assert order == list(epoch_sampler(examples, seed=3, epoch=0, balance=balance,
                                       weights=weights))  # resumable


def test_style_weights_name_a_known_style_and_a_positive_factor(tmp_path, train_data):
    for weights, match in (({"polka": 2}, "no style 'polka'.*funk"),
                           ({"funk": 0}, "funk's factor must be a positive number"),
                           ({"funk": float("nan")}, "funk's factor")):
        with pytest.raises(ValueError, match=match):
            train(TrainConfig(preset="debug", epochs=1, style_weights=weights), train_data,
                  tmp_path / "run")


def test_cli_style_weight_reaches_the_saved_config(tmp_path, train_data):
    """`train --style-weight funk=2` trains with funk drawn twice as often, and the run's
    train_config.json records it; a malformed value is refused by the parser."""
    from drumgen.cli import build_parser, main
    assert main(["train", "--data", str(train_data), "--out", str(tmp_path / "run"),
                 "--preset", "debug", "--epochs", "1", "--batch-size", "8",
                 "--style-weight", "funk=2", "--style-weight", "jazz=0.5"]) == 0
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["style_weights"] == {"funk": 2.0, "jazz": 0.5}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "x", "--style-weight", "funk"])


def test_style_balance_out_of_range_is_an_error(tmp_path, train_data):
    with pytest.raises(ValueError, match="style_balance"):
        train(TrainConfig(preset="debug", epochs=1, style_balance=2), train_data, tmp_path)


def test_time_budget_stops_training(tmp_path, train_data):
    start = time.time()
    summary = train(TrainConfig(preset="debug", time_budget=0.1, batch_size=8,
                                checkpoint_every=1000), train_data, tmp_path / "run")
    assert summary["reason"] in ("time budget", "done")
    assert time.time() - start < 60


def test_stop_callback_stops_training(tmp_path, train_data):
    events = []
    summary = train(TrainConfig(preset="debug", epochs=50, batch_size=8), train_data,
                    tmp_path / "run", callback=events.append,
                    should_stop=lambda: sum(e["event"] == "step" for e in events) >= 3)
    assert summary["reason"] == "stopped" and summary["step"] == 3
    assert model_mod.load(tmp_path / "run")  # stopping still leaves a usable model


@pytest.mark.slow  # a CLI subprocess
def test_killed_training_leaves_a_loadable_checkpoint_and_resumes(tmp_path, train_data):
    """SIGKILL mid-run: the last complete checkpoint loads, and --resume continues from it."""
    out = tmp_path / "run"
    base = [sys.executable, "-m", "drumgen", "train", "--data", str(train_data), "--preset",
            "debug", "--batch-size", "4", "--epochs", "100", "--out", str(out)]
    proc = subprocess.Popen(base + ["--checkpoint-every", "3"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            found = sorted((out / "checkpoints").glob("step-*[0-9]")) if out.exists() else []
            if len(found) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoints appeared")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    last = latest_checkpoint(out)
    loaded = model_mod.load(last)
    assert loaded.model.config.n_layer == 2
    step = json.loads((last / "trainer_state.json").read_text())["step"]
    result = subprocess.run(base + ["--resume", "--time-budget", "0.05"], cwd=ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resumed from {last.name} at step {step}" in result.stdout + result.stderr


def test_groove_task_fine_tune_becomes_the_models_groove_head(tmp_path, debug_model, train_data):
    """`train --task groove` extends the vocabulary with GROOVE and PLAY, learns only the
    performance tokens, and the result, saved as a model's groove/ folder, plays Groove."""
    from drumgen.data import GROOVE_TOKENS, quantize
    from drumgen.edit import GrooveRequest
    from drumgen.generate import Generator
    folder = tmp_path / "model"
    shutil.copytree(debug_model, folder, ignore=shutil.ignore_patterns("checkpoints"))
    summary = train(TrainConfig(preset="debug", epochs=1, batch_size=8, checkpoint_every=1000,
                                warmup_steps=2, task="groove"), train_data, folder / "groove",
                    init_from=debug_model)
    assert summary["step"] > 0
    head = model_mod.load(folder / "groove")
    assert head.tokenizer.vocab[-2:] == list(GROOVE_TOKENS)
    assert head.model.config.vocab_size == len(head.tokenizer)
    gen = Generator.load(folder, device="cpu")
    stiff = quantize(Pattern.from_midi(next((train_data / "funk").glob("*.mid"))).slice(0, 4))
    out = gen.groove(GrooveRequest(midi=stiff, style="funk", seed=0))[0]
    assert out.settings["player"] == "groove head"
    assert {(h.bar, h.step, h.drum) for h in out.pattern.hits} == \
        {(h.bar, h.step, h.drum) for h in stiff.hits}
    assert gen.tokenizer.check(out.tokens, bars=4) == []


def test_the_shipped_model_has_a_groove_head():
    from drumgen.generate import Generator
    gen = Generator.load(ROOT / "models" / "drumgen-small", device="cpu")
    head = gen.groove_head()
    assert head is not None and "PLAY" in head.tokenizer.ids
    assert head.styles == gen.styles


@pytest.mark.slow  # two training processes
def test_two_processes_train_in_step_on_an_uneven_split(tmp_path):
    """`accelerate launch` with 2 processes on this CPU: the prepared DataLoader shards the
    batches so that both ranks take the same number (an odd batch count, so one rank gets a
    repeat), the ranks stop at the same step, and the model they saved loads and plays."""
    from conftest import synthetic_groove
    data = tmp_path / "data"
    for style, count in (("funk", 7), ("rock", 4)):
        for i in range(count):
            synthetic_groove(style, i, bars=8 + i).save(data / style / f"{style}_{i}.mid")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch",
               "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "drumgen", "train", "--data", str(data), "--preset", "debug",
               "--epochs", "2", "--batch-size", "4", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    examples = int(re.search(r"(\d+) training and \d+ validation examples", text)[1])
    batches = math.ceil(examples / 4)
    assert batches % 2 == 1, f"{examples} examples split evenly: the test needs an odd count"
    ends = re.findall(r"\[process (\d) of 2: (\d+) batches\] finished \((\w+)\) at step (\d+)",
                      text)
    assert sorted(e[0] for e in ends) == ["1", "2"], text[-3000:]
    per_rank = math.ceil(batches / 2) * 2  # even batches, for 2 epochs
    assert {(int(n), int(step)) for _, n, _, step in ends} == {(per_rank, per_rank)}
    from drumgen.generate import Generator, Request
    groove = Generator.load(out).generate(Request(style="funk", bars=2, seed=1))[0]
    assert groove.pattern.bars == 2
