"""Serving figures (issue 21): throughput and latency of ``asr-adapt serve`` under concurrent
clients, against one-request-at-a-time serving measured in the same run; memory per resident
adapter; the time to load an evicted adapter.

Not a test: a measurement whose figures go into BENCHMARKS.md. Everything runs in a
temporary ``ASR_ADAPT_HOME``; the server is a real ``asr-adapt serve`` process on 127.0.0.1,
reached over HTTP with OpenAI's multipart request, exactly as a client program would.

1. One real profile: the shipped sample speaker's first ``--enroll`` enrollment utterances,
   adapted with the default settings (fixed schedule). Its archive is installed again
   under other names (``profiles import --name``): separate profiles, separate adapters
   in the server (the same weights, which changes nothing in their cost).
2. Serial: one client, one request at a time, over the profiles in turn.
   Concurrent: ``--clients`` clients at once, each over its own profile of ``--profiles``.
   Each request is one of the 30 held-out sample files (~4 s each), decoded as the server
   decodes by default.
   Throughput = audio seconds served per wall second; the ratio to serial is the figure.
3. Memory: a fresh server holding the base model, then ``--resident`` profiles touched one
   by one; the server's resident memory (VmRSS) grows by the adapters' cost.
4. Eviction: a server with ``--max-adapters 2``: a request for a profile evicted two
   requests ago, against the same request with the profile resident.

    python recipes/bench_serve.py --out recipes/results/bench_serve.json
    python recipes/bench_serve.py --clients 8 --profiles 4 --only-concurrency \
        --out recipes/results/bench_serve_ct2.json --server-flags --engine ct2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from openai import OpenAI
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
CLI = [sys.executable, "-c", "import sys; from asr_adapt.cli.main import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(*args: str, env: dict) -> str:
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"asr-adapt {' '.join(args)} failed: {result.stderr.strip()[-400:]}")
    return result.stdout


def make_profiles(env: dict, count: int, enroll: int, work: Path) -> list[str]:
    """One adapted sample-speaker profile and ``count - 1`` copies of it under other names."""
    lines = (SAMPLES / "enroll" / "manifest.jsonl").read_text().splitlines()[:enroll]
    manifest = work / "enroll.jsonl"
    rows = []
    for line in lines:
        row = json.loads(line)
        row["audio"] = str((SAMPLES / "enroll" / row["audio"]).resolve())
        rows.append(json.dumps(row))
    manifest.write_text("\n".join(rows) + "\n")
    started = time.perf_counter()
    run("enroll", "bench-0", "--from", str(manifest), env=env)  # enrolls and trains
    print(f"adapted bench-0 on {enroll} utterances in {time.perf_counter() - started:.0f} s", flush=True)
    archive = work / "bench-0.tar.gz"
    run("profiles", "export", "bench-0", "--no-audio", "-o", str(archive), env=env)
    for index in range(1, count):
        install_copy(archive, f"bench-{index}")
    return [f"bench-{index}" for index in range(count)]


def install_copy(archive: Path, name: str) -> None:
    """``asr-adapt profiles import ARCHIVE --name NAME``, in this process (a fresh process per
    copy would cost seconds each)."""
    from asr_adapt.cli.main import main as cli

    if cli(["profiles", "import", str(archive), "--name", name]) != 0:
        raise SystemExit(f"importing {archive} as {name} failed")


class Server:
    """``asr-adapt serve`` in a child process, stopped on exit."""

    def __init__(self, env: dict, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([*CLI, "serve", "--port", str(self.port), *flags], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server stopped: {self.process.stderr.read()[-800:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise SystemExit("the server did not answer /health within 300 s")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def client_for(url: str) -> OpenAI:
    """OpenAI's own client, pointed at the server (no keys: loopback)."""
    return OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=600, max_retries=0)


def transcribe(client: OpenAI, path: Path, model: str) -> float:
    """One transcription request; returns its latency in seconds."""
    started = time.perf_counter()
    with path.open("rb") as audio:
        client.audio.transcriptions.create(model=model, file=audio, response_format="json")
    return time.perf_counter() - started


def load(url: str, files: list[Path], durations: dict, profiles: list[str], clients: int, per_client: int,
) -> dict:
    """``clients`` threads, each sending ``per_client`` requests for its own profile; figures."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client_loop(index: int) -> None:
        client = client_for(url)
        for step in range(per_client):
            path = files[(index * per_client + step) % len(files)]
            latency = transcribe(client, path, profiles[index % len(profiles)])
            with lock:
                latencies.append(latency)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    audio = sum(durations[files[(i * per_client + s) % len(files)]] for i in range(clients) for s in range(per_client))
    latencies.sort()
    return {"clients": clients, "profiles": len(profiles), "requests": len(latencies), "wall_s": round(wall, 2),
            "audio_s": round(audio, 1), "throughput": round(audio / wall, 2),
            "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3)}


def concurrency(env: dict, profiles: list[str], args) -> list[dict]:
    files = sorted((SAMPLES / "test").glob("*.flac"))
    durations = {path: sf.info(str(path)).duration for path in files}
    rows = []
    with Server(env, "--max-adapters", str(max(8, len(profiles))), *args.server_flags) as server:
        for warm in profiles:  # every adapter resident and the model warm before timing
            transcribe(client_for(server.url), files[0], warm)
        for count in args.profiles:
            chosen = profiles[:count]
            serial = load(server.url, files, durations, chosen, 1, args.serial_requests)
            serial["mode"] = "serial"
            rows.append(serial)
            print(json.dumps(serial), flush=True)
            for clients in args.clients:
                row = load(server.url, files, durations, chosen, clients, max(2, args.requests // clients))
                row["mode"] = "concurrent"
                row["vs_serial"] = round(row["throughput"] / serial["throughput"], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def resident_memory(env: dict, work: Path, count: int) -> dict:
    """Server memory with the base model only, then with ``count`` adapters resident."""
    archive = work / "bench-0.tar.gz"
    names = [f"resident-{index}" for index in range(count)]
    for name in names:
        install_copy(archive, name)
    path = sorted((SAMPLES / "test").glob("*.flac"))[0]
    with Server(env, "--max-adapters", str(count + 8)) as server:
        client = client_for(server.url)
        transcribe(client, path, "whisper-tiny.en")
        before = server.rss_mib()
        for name in names:
            transcribe(client, path, name)
        after = server.rss_mib()
    return {"resident": count, "rss_base_mib": round(before, 1), "rss_after_mib": round(after, 1),
            "per_adapter_mib": round((after - before) / count, 2)}


def eviction(env: dict, profiles: list[str], rounds: int) -> dict:
    """The time to load an evicted adapter: measured where it happens (the server's
    :class:`ResidentAdapters` on the bundled model, in this process), and as a client sees it
    (a request whose profile was evicted, against the same request with the profile resident)."""
    from asr_adapt.api import load_model, open_profile
    from asr_adapt.server.adapters import AdapterKey, ResidentAdapters

    keys = [AdapterKey(name, str(open_profile(name).adapter_dir)) for name in profiles[:3]]
    adapters = ResidentAdapters(load_model("whisper-tiny.en", device="cpu"), capacity=2)
    adapters.ensure([keys[0]])  # the first adapter wraps the model in PEFT: not a reload
    loads = []
    for _ in range(rounds * 4):
        adapters.ensure([keys[1]])
        adapters.ensure([keys[2]])  # keys[0] is evicted now
        started = time.perf_counter()
        adapters.ensure([keys[0]])
        loads.append(time.perf_counter() - started)
    path = sorted((SAMPLES / "test").glob("*.flac"))[0]
    evicted, resident = [], []
    a, b, c = profiles[:3]
    with Server(env, "--max-adapters", "2") as server:
        client = client_for(server.url)
        for _ in range(rounds):
            transcribe(client, path, b)
            transcribe(client, path, c)          # a is evicted now
            evicted.append(transcribe(client, path, a))
            resident.append(transcribe(client, path, a))
    return {"rounds": rounds, "load_ms_p50": round(1000 * statistics.median(loads), 1),
            "load_ms_max": round(1000 * max(loads), 1), "evicted_request_p50_s": round(statistics.median(evicted), 3),
            "resident_request_p50_s": round(statistics.median(resident), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "recipes" / "results" / "bench_serve.json")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--profiles", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrent run (split over clients)")
    parser.add_argument("--serial-requests", type=int, default=16)
    parser.add_argument("--enroll", type=int, default=12, help="enrollment utterances of the real profile")
    parser.add_argument("--resident", type=int, default=100)
    parser.add_argument("--eviction-rounds", type=int, default=5)
    parser.add_argument("--only-concurrency", action="store_true", help="skip the eviction and memory parts")
    parser.add_argument("--server-flags", nargs=argparse.REMAINDER, default=[],
                        help="passed to asr-adapt serve for the concurrency part (last: e.g. --engine ct2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        work = Path(tmp)
        os.environ.update(ASR_ADAPT_HOME=str(work / "home"), HF_HUB_OFFLINE="1")
        env = dict(os.environ)
        profiles = make_profiles(env, max(max(args.profiles), 3), args.enroll, work)
        results = {"command": "python " + " ".join(sys.argv), "cpus": os.cpu_count(),
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        results["server_flags"] = args.server_flags
        results["concurrency"] = concurrency(env, profiles, args)
        if args.only_concurrency:
            return finish(args.out, results)
        results["eviction"] = eviction(env, profiles, args.eviction_rounds)
        print(json.dumps(results["eviction"]), flush=True)
        results["memory"] = resident_memory(env, work, args.resident)
        print(json.dumps(results["memory"]), flush=True)
    finish(args.out, results)


def finish(out: Path, results: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
