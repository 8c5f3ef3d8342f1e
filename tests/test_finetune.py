"""Fine-tuning as the Train tab runs it: its settings, what it says about small data before
and after training, the model card, and the checks of a training request."""

from __future__ import annotations

import pytest
from conftest import synthetic_groove

from drumgen import finetune
from drumgen.generate import RequestError
from drumgen.service import TrainRequest
from drumgen.train import train


def test_the_settings_are_the_fine_tuning_defaults_unless_told():
    tuned, scratch = finetune.config(), finetune.config(scratch=True)
    assert (tuned.lr, tuned.batch_size, tuned.time_budget) == (
        finetune.FINETUNE_LR, finetune.FINETUNE_BATCH, finetune.FINETUNE_MINUTES)
    assert (scratch.lr, scratch.batch_size) == (finetune.SCRATCH_LR, finetune.SCRATCH_BATCH)
    assert tuned.train_only == finetune.FINETUNE_TRAIN == "style" and scratch.train_only == "all"
    assert finetune.config(train_only="all").lr == finetune.FINETUNE_ALL_LR
    assert finetune.config(lr=2e-4, batch_size=4).lr == 2e-4
    assert TrainRequest(name="x").config() == tuned  # the request's defaults are the same


def test_fine_tuning_the_style_only_leaves_every_other_weight_as_it_was(tmp_path,
                                                                        debug_model):
    """train_only="style": a new style's row is learnt, and every other weight, the old
    styles' rows included, stays bit for bit as in the base model."""
    import torch

    from drumgen import model as model_mod
    for i in range(4):
        synthetic_groove("jazz", 100 + i).save(tmp_path / "data" / "mydilla" / f"b{i}.mid")
    summary = train(finetune.config(time_budget=None, epochs=2, batch_size=4), tmp_path / "data",
                    tmp_path / "tuned", init_from=debug_model)
    assert summary["step"] > 0
    before, after = model_mod.load(debug_model).model, model_mod.load(tmp_path / "tuned").model
    old = before.config.n_styles
    assert after.config.n_styles == old + 1
    changed = [name for name, p in after.state_dict().items() if name != "style_emb.weight"
               and not torch.equal(p, before.state_dict()[name])]
    assert changed == []
    assert torch.equal(after.style_emb.weight[:old], before.style_emb.weight)
    assert not torch.allclose(after.style_emb.weight[old], before.style_emb.weight.mean(0))
    # and the old styles play as before at any strength: the centre strength measures from
    # stays the base styles' (it once moved with the new row, shifting every old style)
    ids = torch.arange(old)
    with torch.no_grad():
        for strength in (0.0, 1.75, 2.5):
            assert torch.equal(after.style_vector(ids, strength),
                               before.style_vector(ids, strength))
    assert after.config.centre_styles == old
    with pytest.raises(ValueError, match="train_only=style fine-tunes"):
        train(finetune.config(epochs=1), tmp_path / "data", tmp_path / "x")  # no base


@pytest.fixture(scope="module")
def one_file_run(tmp_path_factory):
    """One 8-bar file, trained on until it is learnt: the issue's "1 training / 1
    validation examples" case (one file in ten goes to validation, by its name's hash, and
    `funk/one.mid` does not)."""
    root = tmp_path_factory.mktemp("one_file")
    synthetic_groove("funk", 0, bars=8).save(root / "data" / "funk" / "one.mid")
    events = []
    summary = train(finetune.config(scratch=True, preset="debug", time_budget=None,
                                    epochs=40, lr=3e-3), root / "data", root / "model",
                    callback=events.append)
    return root / "model", summary, next(e for e in events if e["event"] == "start")


def test_one_file_is_warned_about_before_and_after_training(one_file_run):
    _, summary, start = one_file_run
    report = start["data"]
    assert report["validation_is_training"] is True
    assert report["styles"]["funk"]["train_files"] == 1
    assert report["styles"]["funk"]["train_bars"] == 8
    before = " ".join(finetune.data_warnings(report))
    assert "`funk` has very little to learn from (1 files, 8 bars)" in before
    assert "fine-tuning every weight on it memorises it" in before
    assert "A style takes about 10 files" in before
    assert "validation loss is measured on a training file" in before
    assert "training files: none went to validation" in finetune.data_lines(report)[0]
    after = " ".join(finetune.result_warnings(summary))
    assert f"The validation loss {summary['best_val']:.3f} is on a file it trained on" in after


def test_enough_data_gets_no_small_data_warning():
    row = dict(train_files=12, train_bars=400, train_examples=90, val_files=2, val_bars=60,
               val_examples=12)
    assert finetune.data_warnings({"styles": {"dilla": row},
                                   "validation_is_training": False}) == []
    small = finetune.data_warnings({"styles": {"dilla": {**row, "train_bars": 200}},
                                    "validation_is_training": False})
    assert small[0].startswith("`dilla` is small (12 files, 200 bars)")


def test_the_model_card_says_base_data_settings_steps_and_loss(one_file_run, tmp_path):
    folder, summary, _ = one_file_run
    cfg = finetune.config(lr=2e-4, batch_size=8)
    card = finetune.write_card(folder, "my-funk", "drumgen-small", cfg, summary).read_text()
    assert card.startswith("# my-funk\n")
    assert "fine-tuned from `drumgen-small`" in card
    assert "| funk | 1 / 1 | 8 / 8 |" in card
    assert "learning rate 0.0002, batch 8, time budget 5 min, epochs no limit" in card
    assert f"- steps: {summary['step']} (" in card
    assert f"validation loss: {summary['best_val']:.4f} nats/token" in card
    assert "## Warnings" in card and "on a file it trained on" in card
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*"))


@pytest.mark.parametrize("changes, words", [
    (dict(name="../evil"), "name: use 1 to 40 letters"),
    (dict(name="a b"), "name: use 1 to 40"),
    (dict(name=None), "name: use 1 to 40"),
    (dict(lr=1.0), "lr must be from"),
    (dict(batch_size=2.5), "batch_size must be a whole number"),
    (dict(time_budget=-1), "time_budget must be from 0"),
    (dict(epochs=0, time_budget=0), "epochs, time_budget: give"),
    (dict(from_scratch="yes"), "from_scratch must be true or false"),
    (dict(from_scratch=True, preset="seed"), "preset must be debug or small"),
    (dict(data_source="my disk"), "data_source must be one of"),
    (dict(train_only="heads"), "train_only must be style or all"),
])
def test_a_bad_request_names_its_parameter(changes, words):
    with pytest.raises(RequestError, match=words.replace("(", r"\(")):
        TrainRequest(**{"name": "ok", **changes}).validate()


def test_the_gmd_source_without_gmd_on_the_server_is_refused_naming_data_source(monkeypatch):
    """The Trainer finds the server's GMD itself (the app only passes `data_source`)."""
    from drumgen import data, service
    monkeypatch.setattr(data, "default_data_dir", lambda: None)  # service imports it per call
    monkeypatch.setattr(service, "training_enabled", lambda: (True, ""))
    trainer = service.Trainer()
    with pytest.raises(RequestError, match="data_source: this server has no Groove MIDI"):
        trainer.start(TrainRequest(name="ok", data_source=service.GMD_SOURCE))
    assert trainer.job is None
