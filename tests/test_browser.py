"""The app in a real browser: Debian's headless Chromium driven by Playwright clicks Generate,
waits for the player and the files, downloads the .mid through the page and saves the screenshot
the README shows (docs/screenshot.png).

Never `playwright install` (it downloads a browser, and fails here): `make test` installs
Debian's chromium, and without it this test fails rather than skips.
"""

from __future__ import annotations

import json
import os
import shutil

import apputil
import mido
import pytest

from drumgen.model import read_defaults

pytestmark = pytest.mark.slow

# The README's picture is refreshed only on request (DRUMGEN_UPDATE_SCREENSHOT=1), so a test
# run never changes a tracked file.
README_SHOT = apputil.ROOT / "docs" / "screenshot.png"


def test_generate_listen_download_in_the_browser(app, tmp_path):
    shot = tmp_path / "screenshot.png"
    with apputil.browser_page(app.url, accept_downloads=True) as page:
        page.get_by_role("button", name="Generate", exact=True).click()

        # the player is ready when its download link is there (the <audio> stays hidden)
        midi_link = page.locator("a[download][href$='.mid']").first
        midi_link.wait_for(state="visible")
        page.locator("a[download][href$='.flac']").first.wait_for(state="visible")
        page.locator("a[download][href$='.wav']").first.wait_for(state="visible")
        grid = page.locator("#drum-grid .dg-grid")
        grid.wait_for(state="visible")
        box = grid.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, box
        assert grid.locator("[data-cell][data-on='1'] .dg-hit").count() > 0
        page.get_by_text("seed 7", exact=False).first.wait_for(state="visible")

        with page.expect_download() as download_info:
            midi_link.click()
        download = download_info.value
        assert download.suggested_filename.endswith(".mid")
        midi_path = tmp_path / download.suggested_filename
        download.save_as(midi_path)

        page.wait_for_timeout(500)  # let the waveform finish drawing
        page.screenshot(path=str(shot), full_page=True)

    mid = mido.MidiFile(midi_path)
    assert apputil.midi_end_tick(mid) == 4 * 4 * mid.ticks_per_beat  # exactly 4 bars of 4/4
    notes = [m for m in mido.merge_tracks(mid.tracks) if m.type == "note_on" and m.velocity]
    assert len(notes) >= 16 and {m.channel for m in notes} == {9}

    assert shot.stat().st_size > 20_000
    if os.environ.get("DRUMGEN_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, README_SHOT)


def test_variations_list_every_take_in_the_browser(app):
    """The "All variations" list is hidden for one take, and lists every take's files once
    Variations is above 1."""
    with apputil.browser_page(app.url) as page:
        listing = page.get_by_text("All variations", exact=True)
        assert listing.count() == 0 or not listing.first.is_visible()
        count = page.get_by_role("spinbutton", name="Variations")
        count.fill("3")
        count.press("Enter")
        listing.first.wait_for(state="visible")
        page.get_by_role("button", name="Generate", exact=True).click()
        # the other takes' audio comes in the second answer, after the first take's
        page.locator("a[download][href*='_v3'][href$='.flac']").first.wait_for(state="attached")
        for v in (1, 2, 3):
            assert page.locator(f"a[download][href*='_v{v}'][href$='.mid']").count() >= 1
            assert page.locator(f"a[download][href*='_v{v}'][href$='.flac']").count() >= 1


def test_choosing_a_model_sets_the_sampling_sliders_to_its_defaults(app):
    """The More section's sampling sliders follow the chosen model's generation.json, and
    the style strength follows the style the user picks, where the model has one for it."""
    from playwright.sync_api import expect

    folder = app.user_models / "browser-defaults"
    shutil.copytree(apputil.ROOT / "models" / "drumgen-small", folder,
                    ignore=shutil.ignore_patterns("README.md"))
    (folder / "generation.json").write_text(json.dumps(
        {"temperature": 0.7, "top_k": 20, "top_p": 0.9, "style_strength": 1.2,
         "style_strengths": {"jazz": 2.25, "afrobeat": 0.75}, "extra": {}}))
    shipped = read_defaults(apputil.ROOT / "models" / "drumgen-small")
    sliders = {"Temperature": (shipped.temperature, 0.7),
               "Top-k (0 = off)": (shipped.top_k, 20), "Top-p": (shipped.top_p, 0.9),
               "Style strength": (shipped.strength_for("funk"), 1.2)}
    try:
        with apputil.browser_page(app.url) as page:
            page.get_by_text("More", exact=True).first.click()

            def values() -> dict[str, float]:
                return {name: float(page.get_by_role("spinbutton", name=name).input_value())
                        for name in sliders}

            assert values() == {k: v[0] for k, v in sliders.items()}
            model = page.get_by_role("combobox", name="Model")  # takes a typed name
            model.fill("browser-defaults")
            model.press("Enter")
            expect(page.get_by_role("spinbutton", name="Style strength")).to_have_value(
                "1.2", timeout=apputil.PAGE_TIMEOUT_MS)
            assert values() == {k: v[1] for k, v in sliders.items()}
            strength = page.get_by_role("spinbutton", name="Style strength")
            style = page.get_by_role("combobox", name="Style or preset")
            # jazz has its own strength; a preset plays its style's (Tony Allen: afrobeat);
            # rock has none, so it plays at the model's style_strength
            for pick, expected in (("jazz", "2.25"), ("tony allen", "0.75"), ("rock", "1.2")):
                style.fill(pick)
                style.press("Enter")
                expect(strength).to_have_value(expected, timeout=apputil.PAGE_TIMEOUT_MS)
    finally:
        shutil.rmtree(folder)


def test_fine_tune_from_the_train_tab_in_the_browser(app, gmd, tmp_path):
    """The page's own Start button, with its empty learning-rate and batch boxes: the shipped
    model is fine-tuned on a zip of GMD hip-hop labelled `dilla`, under the name typed."""
    import zipfile

    from test_app import gmd_files
    data = tmp_path / "dilla.zip"
    with zipfile.ZipFile(data, "w") as z:
        for i, f in enumerate(gmd_files(gmd, 4, "hiphop")):
            z.write(f, f"dilla/{i}_{f.name}")
    with apputil.browser_page(app.url) as page:
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-zip input[type=file]").set_input_files(str(data))
        page.get_by_label("Model name").fill("ci-page")
        page.get_by_label("Time budget (minutes, 0 = no limit)").fill("0.2")
        page.get_by_text("Fine-tunes drumgen-small").wait_for(state="visible")
        page.get_by_role("button", name="Start training").click()
        status = page.locator("#train-status")
        status.get_by_text("Finished").wait_for(state="visible", timeout=180_000)
        text = status.inner_text()
    assert "fine-tuning drumgen-small" in text, text
    assert "dilla: " in text and "examples to train on" in text, text
    card = (app.user_models / "ci-page" / "README.md").read_text()
    assert "fine-tuned from `drumgen-small`" in card
    assert "learning rate 0.003, batch 16, time budget 0.2 min" in card  # the page's defaults
    assert "only the style embeddings were trained" in card
