"""Launching `app.py` as a real subprocess for the end-to-end tests (test_app.py and
test_browser.py share one running app per test session).

The app gets its own temp folder (TMPDIR and GRADIO_TEMP_DIR), so everything it writes can be
inspected and is removed with pytest's tmp dirs; trained models go to DRUMGEN_USER_MODELS.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 90
# Debian's Chromium, driven by Playwright (never `playwright install`): the browser test and
# bench/app_load.py launch it the same way
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGE_TIMEOUT_MS = 60_000


@contextmanager
def browser_page(url: str, **options):
    """A page of Debian's Chromium open at `url`, closed afterwards; `options` go to
    `new_page` (the viewport is 1400 x 1000)."""
    assert CHROMIUM.is_file(), (f"Debian's Chromium is missing at {CHROMIUM}: run `make test` "
                                "(it installs it) or `apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(**{"viewport": {"width": 1400, "height": 1000}, **options})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(url)
            yield page
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class RunningApp:
    proc: subprocess.Popen
    url: str
    home: Path  # this app's folder: tmp/, gradio/, models/, app.log
    log: Path

    @property
    def user_models(self) -> Path:
        return self.home / "models"

    @property
    def temp(self) -> Path:
        return self.home / "tmp"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def client(self, downloads: Path | None | bool = None):
        """A gradio_client for this app, downloading output files into `downloads` (this
        app's downloads/ by default), or not at all with `downloads=False`."""
        from gradio_client import Client
        if downloads is False:
            return Client(self.url, verbose=False, download_files=False,
                          analytics_enabled=False)
        folder = downloads or self.home / "downloads"
        folder.mkdir(parents=True, exist_ok=True)
        return Client(self.url, verbose=False, download_files=str(folder),
                      analytics_enabled=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # lets Gradio close its server cleanly
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def launch(home: Path, *args: str, timeout: float = START_TIMEOUT_S,
           one_thread: bool = True, env: dict | None = None) -> RunningApp:
    """Start `python app.py *args` on a free port and wait until it answers; fail with the
    app's log if it exits or does not answer within `timeout` seconds."""
    home.mkdir(parents=True, exist_ok=True)
    for sub in ("tmp", "gradio", "models"):
        (home / sub).mkdir(exist_ok=True)
    port = free_port()
    extra = env or {}
    env = {**os.environ,
           "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "DRUMGEN_USER_MODELS": str(home / "models"),
           "DRUMGEN_ENABLE_TRAINING": "1", "TMPDIR": str(home / "tmp"),
           "GRADIO_TEMP_DIR": str(home / "gradio"),
           }
    if one_thread:  # a 2-core machine: one math thread keeps the app polite next to the tests
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("DRUMGEN_SHARE", None)
    env.update(extra)
    log = home / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    app = RunningApp(proc, f"http://127.0.0.1:{port}/", home, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app.py exited with {proc.returncode}:\n{app.log_tail()}")
        if answers(app.url):
            return app
        time.sleep(0.5)
    app.stop()
    raise AssertionError(f"app.py did not answer at {app.url} within {timeout:.0f} s:\n"
                         f"{app.log_tail()}")


_shared: RunningApp | None = None
_users = 0


@contextmanager
def shared_app(tmp_path_factory):
    """One app for the whole session: started by the first module that asks, stopped when the
    last session fixture using it is torn down."""
    global _shared, _users
    if _shared is None or _shared.proc.poll() is not None:
        _shared = launch(tmp_path_factory.mktemp("app"))
    _users += 1
    running = _shared
    try:
        yield running
    finally:
        _users -= 1
        if _users == 0:
            running.stop()
            _shared = None


def midi_end_tick(mid) -> int:
    """The latest end_of_track over all tracks, in ticks."""
    ends = []
    for track in mid.tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "end_of_track":
                ends.append(now)
    assert len(ends) == len(mid.tracks)
    return max(ends)
