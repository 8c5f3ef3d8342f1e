"""App benchmark: start-up time, click-to-audio latency and load, in one run.

    python bench/app_load.py [--calls 20] [--clients 12] [--per-client 4]

Starts app.py as a subprocess on a free port (as a user would), then measures, in one run:

- the time until the app answers;
- click to audio through gradio_client: the /generate call, then the audio file fetched over
  one kept-alive connection, as a browser's player fetches it (the .mid and .wav wait until the
  user asks for them);
- the same call with gradio_client downloading every file it returns (audio, .mid and .wav,
  one new HTTP client each), the slowest way an API user can call it;
- click to audio in Debian's Chromium, when it is installed: from the click on Generate until
  the player holds the new audio, timed inside the page;
- p50/p95 latency and throughput with N concurrent clients.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import apputil  # noqa: E402  (the tests' launcher: one way to start the app)
import httpx  # noqa: E402

ARGS = dict(style="funk", tempo=100, bars=4, temperature=0.95, top_k=0, top_p=0.95)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# Timed inside the page: Playwright's own waiting polls from another process, and on two cores
# that added about 0.4 s to every figure.
CLICK_TO_AUDIO_JS = """async (seed) => {
  const button = [...document.querySelectorAll('button.primary')]
    .find(b => b.textContent.trim() === 'Generate');
  const link = `a[download][href*='seed${seed}'][href$='.ogg']`;
  const start = performance.now();
  const ready = new Promise(resolve => {
    const watch = new MutationObserver(() => {
      if (document.querySelector(link)) { watch.disconnect(); resolve(performance.now() - start); }
    });
    watch.observe(document.body, {subtree: true, childList: true, attributes: true});
  });
  button.click();
  return await ready;
}"""


def browser_click_to_audio(url: str, calls: int) -> list[float]:
    """Seconds from the click on Generate until the player holds the new groove's audio, timed
    in Debian's Chromium; empty when it or Playwright is missing."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return []
    if not apputil.CHROMIUM.is_file():
        return []
    times = []
    with apputil.browser_page(url) as page:
        seed = page.get_by_role("spinbutton", name="Seed", exact=True)
        for i in range(calls + 1):  # the first is a warm-up
            seed.fill(str(1000 + i))
            page.wait_for_timeout(200)  # let the page take the new seed
            ms = page.evaluate(CLICK_TO_AUDIO_JS, 1000 + i)
            if i:
                times.append(ms / 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--per-client", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        app = apputil.launch(Path(tmp) / "app", one_thread=False)  # as `make demo` runs it
        started = time.perf_counter() - start
        try:
            client = app.client(Path(tmp) / "dl")
            client.predict(**ARGS, seed=0, api_name="/generate")  # warm-up
            bare = app.client(downloads=False)
            to_audio = []
            with httpx.Client() as player:
                for i in range(args.calls):
                    t = time.perf_counter()
                    out = bare.predict(**ARGS, seed=i, api_name="/generate")
                    audio = player.get(out[0]["url"])
                    audio.raise_for_status()
                    assert len(audio.content) > 1000  # the OGG is here
                    to_audio.append(time.perf_counter() - t)
            every_file = []
            for i in range(args.calls):
                t = time.perf_counter()
                out = client.predict(**ARGS, seed=i, api_name="/generate")
                assert Path(out[0]).stat().st_size > 0
                every_file.append(time.perf_counter() - t)
            browser = browser_click_to_audio(app.url, args.calls)
            latencies, lock = [], threading.Lock()

            def user(i: int) -> None:
                c = app.client(Path(tmp) / f"u{i}")
                for j in range(args.per_client):
                    t = time.perf_counter()
                    c.predict(**ARGS, seed=100 * i + j, api_name="/generate")
                    with lock:
                        latencies.append(time.perf_counter() - t)

            threads = [threading.Thread(target=user, args=(i,)) for i in range(args.clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
        finally:
            app.stop()
    print(f"app start (launch to first answer): {started:.1f} s")
    print(f"click to audio (gradio_client call + the audio file), {args.calls} sequential "
          f"calls: p50 {pct(to_audio, 0.5) * 1000:.0f} ms, p90 {pct(to_audio, 0.9) * 1000:.0f} ms")
    print(f"gradio_client downloading every file (audio, .mid, .wav): p50 "
          f"{pct(every_file, 0.5) * 1000:.0f} ms, p90 {pct(every_file, 0.9) * 1000:.0f} ms")
    if browser:
        print(f"click to audio in Chromium (click -> player holds the audio): p50 "
              f"{pct(browser, 0.5) * 1000:.0f} ms, p90 {pct(browser, 0.9) * 1000:.0f} ms")
    else:
        print("click to audio in Chromium: skipped (no /usr/bin/chromium or no playwright)")
    print(f"{args.clients} concurrent clients x {args.per_client}: {len(latencies)} calls in "
          f"{wall:.1f} s = {len(latencies) / wall:.2f} grooves/s; latency p50 "
          f"{pct(latencies, 0.5):.2f} s, p95 {pct(latencies, 0.95):.2f} s")


if __name__ == "__main__":
    main()
