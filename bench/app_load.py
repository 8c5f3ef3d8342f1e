"""App benchmark: start-up time, click-to-audio latency and load, in one run.

    python bench/app_load.py [--calls 20] [--clients 12] [--per-client 4] [--starts N]

Starts app.py as a subprocess on a free port (as a user would), then measures, in one run:

- the time until the app answers (its page), and until its first groove;
- click to audio through gradio_client: the /generate call until its first answer (the shown
  take's audio, grid and .mid), then the audio file fetched over one kept-alive connection, as
  a browser's player fetches it; and until its last answer (the .wav and every take's audio),
  which is what `predict` returns;
- what Gradio adds: the client's time to the first answer minus the time the app spent
  generating and rendering (its summary line says both), next to the round trip of
  /new_seed, an endpoint that does no work (Gradio's queue and its event stream alone);
- the same call with gradio_client downloading every file it returns (audio, .mid and .wav,
  one new HTTP client each), the slowest way an API user can call it;
- click to audio in Debian's Chromium, when it is installed: from the click on Generate until
  the player holds the new audio, timed inside the page;
- p50/p95 latency and throughput with N concurrent clients.

`--starts N` measures only the start-up (page, then first groove), N times per setting.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import apputil  # noqa: E402  (the tests' launcher: one way to start the app)
import httpx  # noqa: E402
from gradio_client import handle_file  # noqa: E402

ARGS = dict(style="funk", tempo=100, bars=4, temperature=0.95, top_k=0, top_p=0.95)


def first_answer(client, player: httpx.Client, api_name: str, **kwargs) -> dict:
    """One call: seconds to the first answer's audio (fetched as the player does), to the last
    answer, and the app's own generate + render time from the first answer's summary."""
    start = time.perf_counter()
    job = client.submit(**kwargs, api_name=api_name)
    while not job.outputs() and not job.done():
        time.sleep(0.002)
    out = job.outputs()[0]
    player.get(out[0]["url"]).raise_for_status()
    first = time.perf_counter() - start
    job.result()
    spent = re.search(r"(?:generated|edited) in (\d+) ms, rendered in (\d+) ms", out[5])
    return {"first": first, "last": time.perf_counter() - start,
            "server": sum(int(g) for g in spent.groups()) / 1000}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# Timed inside the page: Playwright's own waiting polls from another process, and on two cores
# that added about 0.4 s to every figure.
CLICK_TO_AUDIO_JS = """async (seed) => {
  const button = [...document.querySelectorAll('button.primary')]
    .find(b => b.textContent.trim() === 'Generate');
  const link = `a[download][href*='seed${seed}']:is([href$='.ogg'], [href$='.flac'])`;
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


EDIT_CLICK_JS = """async () => {
  const link = () => document.querySelector("a[download][href$='.mid']").getAttribute('href');
  const before = link();
  const cell = document.querySelector("[data-cell][data-drum='crash'][data-bar='0']" +
                                      "[data-step='" + (Math.floor(Math.random() * 16)) + "']");
  const start = performance.now();
  const ready = new Promise(resolve => {
    const watch = new MutationObserver(() => {
      const a = document.querySelector("a[download]:is([href$='.ogg'], [href$='.flac'])");
      if (link() !== before && a && a.getAttribute('href').includes('draft')) {
        watch.disconnect(); resolve(performance.now() - start); }
    });
    watch.observe(document.body, {subtree: true, childList: true, attributes: true});
  });
  cell.click();
  return await ready;
}"""


def browser_edit_click(url: str, calls: int) -> list[float]:
    """Seconds from a click on a grid cell until the player holds the edited draft's audio."""
    if not apputil.CHROMIUM.is_file():
        return []
    times = []
    with apputil.browser_page(url) as page:
        page.get_by_role("button", name="Generate", exact=True).click()
        page.locator("[data-cell]").first.wait_for(state="attached")
        page.locator("a[download][href$='.mid']").first.wait_for(state="visible")
        for i in range(calls + 1):
            ms = page.evaluate(EDIT_CLICK_JS)
            page.wait_for_timeout(300)
            if i:
                times.append(ms / 1000)
    return times


def measure(args, env: dict) -> dict:
    """Every figure for one app started with `env`."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        app = apputil.launch(Path(tmp) / "app", one_thread=False, env=env)  # as `make demo`
        out["start"] = time.perf_counter() - start
        try:
            client = app.client(Path(tmp) / "dl")
            client.predict(**ARGS, seed=0, api_name="/generate")  # warm-up
            out["first_groove"] = time.perf_counter() - start
            bare = app.client(downloads=False)
            out["every_file"], out["noop"] = [], []
            for _ in range(args.calls):
                t = time.perf_counter()
                bare.predict(api_name="/new_seed")
                out["noop"].append(time.perf_counter() - t)
            with httpx.Client() as player:
                out["one"] = [first_answer(bare, player, "/generate", **ARGS, seed=i)
                              for i in range(args.calls)]
                midi = client.predict(**ARGS, seed=1, api_name="/generate")[2]
                out["edit"] = [first_answer(bare, player, "/regenerate", midi=handle_file(midi),
                                            style="funk", seed=i, keep_drums="kick,snare")
                               for i in range(args.calls)]
                out["var8"] = [first_answer(bare, player, "/generate", **ARGS, seed=i,
                                            variations=8)
                               for i in range(max(3, args.calls // 4))]
            for i in range(args.calls):
                t = time.perf_counter()
                res = client.predict(**ARGS, seed=i, api_name="/generate")
                assert Path(res[0]).stat().st_size > 0
                out["every_file"].append(time.perf_counter() - t)
            out["browser"] = browser_click_to_audio(app.url, args.calls)
            out["browser_edit"] = browser_edit_click(app.url, args.calls)
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
            out["wall"], out["load"] = time.perf_counter() - t0, latencies
        finally:
            app.stop()
    return out


def start_up(env: dict) -> tuple[float, float]:
    """Seconds from starting app.py until its page answers, and until its first groove."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        app = apputil.launch(Path(tmp) / "app", one_thread=False, env=env)
        page = time.perf_counter() - start
        try:
            app.client(downloads=False).predict(**ARGS, seed=0, api_name="/generate")
            return page, time.perf_counter() - start
        finally:
            app.stop()


def start_ups(configs: dict, times: int) -> None:
    """`--starts N`: only the start-up, N times per setting, the settings taking turns."""
    got = {name: [] for name in configs}
    for _ in range(times):
        for name, env in configs.items():
            got[name].append(start_up(env))
    print("| start-up, p50 (min) of " + str(times) + " | " + " | ".join(got) + " |")
    print("|---|" + "---|" * len(got))
    for i, label in enumerate(("app start to first answer (the page; target 5 s)",
                               "app start to the first groove")):
        cells = [f"{statistics.median(v[i] for v in runs):.1f} s "
                 f"({min(v[i] for v in runs):.1f} s)" for runs in got.values()]
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--starts", type=int, default=0,
                        help="measure only the start-up, this many times per setting")
    args = parser.parse_args()
    # side by side: the app as it was before the onnx engine, fp16 weights, FLAC for a local
    # player and serving the page before the model loads; the default before the onnx engine
    # (FastDecoder with fp16 weights); and drumgen's default. The start-up alone has the
    # default with the model loaded first instead, which isolates the page-first start
    old = {"DRUMGEN_ENGINE": "fast", "DRUMGEN_WEIGHTS": "own", "DRUMGEN_AUDIO": "ogg",
           "DRUMGEN_PRELOAD": "before"}
    old_name = " ".join(f"{k}={v}" for k, v in old.items())
    if args.starts:
        return start_ups({old_name: old, "DRUMGEN_PRELOAD=before": {"DRUMGEN_PRELOAD": "before"},
                          "default": {}}, args.starts)
    results = {name: measure(args, env) for name, env in {
        old_name: old, "DRUMGEN_ENGINE=fast": {"DRUMGEN_ENGINE": "fast"}, "default": {}}.items()}
    ms = lambda v, q: f"{pct(v, q) * 1000:.0f} ms" if v else "n/a"  # noqa: E731
    col = lambda calls, key: [c[key] for c in calls]  # noqa: E731
    gap = lambda calls: [c["first"] - c["server"] for c in calls]  # noqa: E731
    print("| figure | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    rows = [("app start to first answer (the page; target 5 s)",
             lambda r: f"{r['start']:.1f} s"),
            ("app start to the first groove (a /generate call as soon as the page answers)",
             lambda r: f"{r['first_groove']:.1f} s"),
            ("click to audio (first answer), gradio_client, p50 / p90 (target 350 ms)",
             lambda r: f"{ms(col(r['one'], 'first'), .5)} / {ms(col(r['one'], 'first'), .9)}"),
            ("  the app's generate + render in it, p50; Gradio and transport, p50",
             lambda r: f"{ms(col(r['one'], 'server'), .5)}; {ms(gap(r['one']), .5)}"),
            ("  Gradio's floor: /new_seed (no work) round trip, p50", lambda r: ms(r["noop"], .5)),
            ("  last answer (.wav too), p50", lambda r: ms(col(r["one"], "last"), .5)),
            ("predict, every file downloaded, p50", lambda r: ms(r["every_file"], .5)),
            ("8 variations, call to first audio, p50 (target 900 ms); last answer",
             lambda r: f"{ms(col(r['var8'], 'first'), .5)}; {ms(col(r['var8'], 'last'), .5)}"),
            ("after an edit (/regenerate kick+snare), to audio, p50 (target 400 ms)",
             lambda r: ms(col(r["edit"], "first"), .5)),
            ("Chromium, click Generate to player, p50 / p90",
             lambda r: f"{ms(r['browser'], .5)} / {ms(r['browser'], .9)}"),
            ("Chromium, click a grid cell to new audio, p50",
             lambda r: ms(r["browser_edit"], .5)),
            (f"{args.clients} x {args.per_client} concurrent: grooves/s, p95",
             lambda r: f"{len(r['load']) / r['wall']:.2f}, {pct(r['load'], 0.95):.2f} s")]
    for label, fn in rows:
        print(f"| {label} | " + " | ".join(fn(r) for r in results.values()) + " |")


if __name__ == "__main__":
    main()
