"""App benchmark: start-up time, click-to-audio latency and load, in one run.

    python bench/app_load.py [--calls 20] [--clients 12] [--per-client 4]

Starts app.py as a subprocess on a free port (as a user would), then measures through
gradio_client: the time until the app answers, p50/p90 of one /generate round trip (4 bars,
audio downloaded), and p50/p95 latency and throughput with N concurrent clients.
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

ARGS = dict(style="funk", tempo=100, bars=4, temperature=0.95, top_k=0, top_p=0.95)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


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
            times = []
            for i in range(args.calls):
                t = time.perf_counter()
                out = client.predict(**ARGS, seed=i, api_name="/generate")
                assert Path(out[0]).stat().st_size > 0  # the audio is here
                times.append(time.perf_counter() - t)
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
    print(f"click to audio, {args.calls} sequential calls: p50 {pct(times, 0.5) * 1000:.0f} ms, "
          f"p90 {pct(times, 0.9) * 1000:.0f} ms")
    print(f"{args.clients} concurrent clients x {args.per_client}: {len(latencies)} calls in "
          f"{wall:.1f} s = {len(latencies) / wall:.2f} grooves/s; latency p50 "
          f"{pct(latencies, 0.5):.2f} s, p95 {pct(latencies, 0.95):.2f} s")


if __name__ == "__main__":
    main()
