#!/usr/bin/env python3
"""End-to-end benchmark: the release binary against the built-in emulator on loopback.

For each configuration (image size, -j, latency) it runs, interleaved, `repeats` times each:

- `nanobatch run` (with `--no-html`: the contact sheet's thumbnails are measured on their own,
  with `nanobatch report --html`),
- the physical-limit reference loop (`examples/reference_loop.rs`): receive, base64-decode,
  write; nothing else,

and reports medians of wall time, CPU time (user + sys) per image, images per second, peak RSS
and the emulator's CPU share. The emulator pads its PNGs to realistic sizes (~1.5 MB at 1K,
~6 MB at 2K, 10 MB at 4K) and serves them from cached bytes.

Usage (see BENCHMARKS.md):
    python3 benches/e2e.py                       # the standard suite
    python3 benches/e2e.py --quick               # a smoke run
    python3 benches/e2e.py --only cpu --repeats 5
Results: a Markdown table on stdout and target/e2e/results.json.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target"
NANOBATCH = TARGET / "release" / "nanobatch"
REFERENCE = TARGET / "release" / "examples" / "reference_loop"
WORK = TARGET / "e2e"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODEL = "gemini-3.1-flash-image-preview"
PAD_PER_MEGAPIXEL = 1_450_000
PAD_CAP = 10_000_000
# Decoded (padded PNG) size per image size, for the memory bound.
IMAGE_BYTES = {"1K": 1_520_000, "2K": 6_080_000, "4K": 10_000_000}
LAST_RSS_DECILES = []
LAST_PEAK = (0, 0.0)


def build():
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "--bin", "nanobatch", "--example", "reference_loop"],
        cwd=ROOT,
        check=True,
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu(pid):
    """User + system seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Emulator:
    def __init__(self, latency, pad=True, rpm=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [str(NANOBATCH), "mock-server", "--port", str(self.port), "--latency", latency, "-q"]
        if pad:
            args += ["--pad-per-megapixel", str(PAD_PER_MEGAPIXEL), "--pad-cap", str(PAD_CAP)]
        if rpm:
            args += ["--rpm", str(rpm)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(self.url + "/_stats", timeout=1).read()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the emulator did not start")
                time.sleep(0.05)

    def cpu(self):
        return process_cpu(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Deleter(threading.Thread):
    """Deletes finished images while a long run goes on, so 100 GB never reach the disk. Only
    for runs with --no-html (nothing reads the images again)."""

    def __init__(self, directory):
        super().__init__(daemon=True)
        self.directory = directory
        self.done = threading.Event()

    def run(self):
        # 4K images arrive at 1.5 GB/s: sweep often, or the disk fills.
        while not self.done.wait(0.2):
            now = time.time()
            for directory, _, files in os.walk(self.directory):
                for name in files:
                    if not name.endswith(".png"):
                        continue
                    path = os.path.join(directory, name)
                    try:
                        if now - os.stat(path).st_mtime > 0.5:
                            os.unlink(path)
                    except OSError:
                        pass


class RssSampler(threading.Thread):
    """Samples a process's resident memory ten times a second: a peak at the very end (the
    reports) is told apart from growth during the run, and the peak is read from the process
    itself (`VmHWM`), because `ru_maxrss` from `wait4` also counts the forking harness's memory
    (the child's pre-exec address space is the harness's)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = []
        self.hwm = 0
        self.hwm_at = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.1):
            try:
                rss = hwm = None
                for line in open(f"/proc/{self.pid}/status"):
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) * 1024
                    elif line.startswith("VmHWM:"):
                        hwm = int(line.split()[1]) * 1024
            except OSError:
                return
            if rss is None or hwm is None:
                return
            self.samples.append(rss)
            if hwm > self.hwm:
                self.hwm, self.hwm_at = hwm, len(self.samples)

    def deciles(self):
        """RSS at 10%, 20%, ... 100% of the run's duration (the last sample before exit)."""
        if not self.samples:
            return []
        n = len(self.samples)
        return [self.samples[min(n - 1, (n * k) // 10)] for k in range(1, 11)]

    def peak_position(self):
        """When the last sampled peak was reached, as a fraction of the sampled run."""
        return self.hwm_at / max(len(self.samples), 1)


def measured(cmd, env=None, cwd=None, emulator=None, delete_in=None):
    """Runs a command; returns wall s, CPU s (user+sys), peak RSS bytes, emulator CPU s."""
    log = open(WORK / "last.log", "w")
    deleter = None
    emu_before = emulator.cpu() if emulator else 0.0
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
    if delete_in is not None:
        deleter = Deleter(delete_in)
        deleter.start()
    sampler = RssSampler(proc.pid)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    sampler.done.set()
    sampler.join()
    global LAST_RSS_DECILES
    LAST_RSS_DECILES = sampler.deciles()
    global LAST_PEAK
    LAST_PEAK = (sampler.hwm, sampler.peak_position())
    if deleter:
        deleter.done.set()
        deleter.join()
    emu_cpu = (emulator.cpu() - emu_before) if emulator else 0.0
    log.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write((WORK / "last.log").read_text()[-3000:])
        raise RuntimeError(f"{cmd[0]} exited with {code}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "emulator_cpu_s": emu_cpu,
    }


def write_manifest(directory, tasks, size, rpm=None):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "products.csv", "w") as f:
        f.write("sku,name\n")
        for i in range(tasks):
            f.write(f"SKU-{i:07d},product {i}\n")
    manifest = directory / "bench.yaml"
    manifest.write_text(
        "version: 1\n"
        "retry: { attempts: 3, initial: 50ms, max: 200ms }\n"
        + (f"limits:\n  rate:\n    {MODEL}: {{ rpm: {rpm} }}\n" if rpm else "")
        + "jobs:\n"
        "  bench:\n"
        f"    model: {MODEL}\n"
        "    vars: products.csv\n"
        "    key: sku\n"
        '    prompt: "A studio photo of {{ name }} on white"\n'
        f'    sizes: ["1:1@{size}"]\n'
    )
    return manifest


class Trash:
    """Where previous outputs go instead of being deleted just before a measured run.

    On an ext4 without a journal (this VM's root), an inode freed less than
    `dirty_expire_centisecs` (30 s) ago is skipped when a file is created, and every create
    scans past all of them under the directory's lock: a run started right after deleting
    2,000 files spent a third of its CPU there, and whichever program ran second in a pair
    paid for the first one's cleanup. So outputs are renamed into the trash (instant), and
    the trash is emptied only when it grows large or a suite ends, followed by a wait of
    that long with nothing measured."""

    LIMIT = 12 << 30

    def __init__(self):
        self.dir = WORK / "trash"
        self.bytes = 0
        self.n = 0

    def put(self, out):
        if not out.exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n += 1
        self.bytes += sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        out.rename(self.dir / f"{self.n}")
        if self.bytes > self.LIMIT:
            self.empty()

    def empty(self):
        if not self.dir.exists():
            return
        shutil.rmtree(self.dir, ignore_errors=True)
        os.sync()
        self.bytes = 0
        try:
            expire = int(Path("/proc/sys/vm/dirty_expire_centisecs").read_text()) / 100
        except (OSError, ValueError):
            expire = 30
        print(f"(emptied the trash of previous outputs; waiting {expire + 1:.0f} s before measuring again)", flush=True)
        time.sleep(expire + 1)


TRASH = Trash()


def fresh_output(out):
    """Moves a previous run's output out of the way (see `Trash`) and `sync`s, so that the
    previous run's unwritten data is not written back during the run measured next."""
    TRASH.put(out)
    os.sync()


def run_nanobatch(emulator, manifest, out, jobs, delete=False, html=False):
    fresh_output(out)
    env = dict(os.environ, GEMINI_API_KEY="bench", NO_COLOR="1", NANOBATCH_LOG="nanobatch=debug")
    cmd = [
        str(NANOBATCH), "run", str(manifest), "-o", str(out), "-j", str(jobs),
        "--base-url", emulator.url, "-q",
    ]
    if not html:
        cmd.append("--no-html")
    return measured(cmd, env=env, emulator=emulator, delete_in=out if delete else None)


def logged_field(message, field):
    """A field of the last debug log line containing `message`, from the last measured run."""
    import re
    value = None
    for line in (WORK / "last.log").read_text().splitlines():
        if message in line:
            m = re.search(rf"\b{field}=(\d+)", line)
            if m:
                value = int(m.group(1))
    return value


def run_reference(emulator, tasks, jobs, out, size, discard=False):
    fresh_output(out)
    cmd = [str(REFERENCE), emulator.url, str(tasks), str(jobs), str(out), MODEL, "1:1", size]
    if discard:
        cmd.append("--discard")
    return measured(cmd, emulator=emulator)


def run_report(out):
    cmd = [str(NANOBATCH), "report", str(out), "--html", "-q"]
    return measured(cmd)


def median_of(runs, tasks):
    keys = runs[0].keys()
    m = {k: statistics.median(r[k] for r in runs) for k in keys}
    m["cpu_ms_per_image"] = 1000 * m["cpu_s"] / tasks
    m["images_per_s"] = tasks / m["wall_s"]
    m["emulator_cpu_share"] = m["emulator_cpu_s"] / max(m["wall_s"] * os.cpu_count(), 1e-9)
    m["runs"] = len(runs)
    return m


def suite_cpu(args, results):
    """CPU per image and throughput, nanobatch vs the reference, zero and lognormal latency."""
    for latency_name, latency in [("zero", "0"), ("lognormal", args.lognormal)]:
        emulator = Emulator(latency)
        try:
            for size in args.sizes:
                tasks = args.tasks if size == "1K" else max(args.tasks // 4, 50)
                manifest = write_manifest(WORK / f"m-{size}-{tasks}", tasks, size)
                for jobs in args.jobs:
                    nb, ref = [], []
                    for _ in range(args.repeats):
                        nb.append(run_nanobatch(emulator, manifest, WORK / "out-nb", jobs))
                        ref.append(run_reference(emulator, tasks, jobs, WORK / "out-ref", size))
                    row = {
                        "suite": "cpu", "latency": latency_name, "size": size, "jobs": jobs, "tasks": tasks,
                        "nanobatch": median_of(nb, tasks), "reference": median_of(ref, tasks),
                    }
                    row["overhead_ratio"] = row["nanobatch"]["cpu_ms_per_image"] / row["reference"]["cpu_ms_per_image"]
                    results.append(row)
                    print_row(row)
        finally:
            emulator.stop()


def suite_report(args, results):
    """Thumbnails and report.html for the images of one run (measured apart from the run)."""
    emulator = Emulator("0")
    try:
        tasks = args.tasks
        manifest = write_manifest(WORK / f"m-1K-{tasks}", tasks, "1K")
        run_nanobatch(emulator, manifest, WORK / "out-nb", 64)
        runs = []
        for _ in range(args.repeats):
            shutil.rmtree(WORK / "out-nb" / ".nanobatch" / "thumbs", ignore_errors=True)
            runs.append(run_report(WORK / "out-nb"))
        row = {"suite": "report", "size": "1K", "tasks": tasks, "report": median_of(runs, tasks)}
        results.append(row)
        r = row["report"]
        print(f"report --html, {tasks} 1K images, thumbnails from scratch: {r['wall_s']:.2f} s wall, "
              f"{r['cpu_ms_per_image']:.2f} ms CPU per image, {r['peak_rss_bytes'] / 2**20:.0f} MiB peak")
    finally:
        emulator.stop()


def suite_memory(args, results):
    """Peak RSS with 4K images at -j 64, for growing task counts."""
    emulator = Emulator("0")
    try:
        for tasks in args.memory_tasks:
            manifest = write_manifest(WORK / f"m-4K-{tasks}", tasks, "4K")
            repeats = args.repeats if tasks <= 2000 else 1
            runs = [run_nanobatch(emulator, manifest, WORK / "out-mem", 64, delete=True) for _ in range(repeats)]
            row = {"suite": "memory", "size": "4K", "jobs": 64, "tasks": tasks, "nanobatch": median_of(runs, tasks),
                   "rss_deciles_of_last_run": LAST_RSS_DECILES, "peak_position_of_last_run": LAST_PEAK[1]}
            row["bound_bytes"] = 64 * IMAGE_BYTES["4K"] + 100 * 2**20
            results.append(row)
            m = row["nanobatch"]
            print(f"memory 4K -j 64, {tasks} tasks: peak RSS {m['peak_rss_bytes'] / 2**20:.0f} MiB "
                  f"(bound {row['bound_bytes'] / 2**20:.0f} MiB), {m['cpu_ms_per_image']:.2f} ms CPU/image, "
                  f"{m['images_per_s']:.0f} images/s, runs: {repeats}; RSS at each tenth of the last run (MiB): "
                  f"{' '.join(str(r // 2**20) for r in LAST_RSS_DECILES)}; sampled peak {LAST_PEAK[0] >> 20} MiB "
                  f"at {100 * LAST_PEAK[1]:.0f}% of the run", flush=True)
            shutil.rmtree(WORK / "out-mem", ignore_errors=True)
    finally:
        emulator.stop()


def suite_pertask(args, results):
    """Where per-task memory goes: small unpadded images (so image buffers are negligible) at
    -j 64 for growing task counts; RSS at the start, during the run and at its end (reports)."""
    emulator = Emulator("0", pad=False)
    try:
        for tasks in args.pertask_tasks:
            manifest = write_manifest(WORK / f"m-512-{tasks}", tasks, "512")
            m = run_nanobatch(emulator, manifest, WORK / "out-pertask", 64)
            deciles = LAST_RSS_DECILES
            row = {"suite": "pertask", "tasks": tasks, "nanobatch": m, "rss_deciles": deciles,
                   "report_ms": logged_field("reports written", "ms")}
            results.append(row)
            print(f"per-task memory, {tasks} small tasks -j 64: RSS (MiB) at 10% {deciles[0] >> 20 if deciles else '?'}, "
                  f"at 90% {deciles[8] >> 20 if deciles else '?'}, peak {m['peak_rss_bytes'] >> 20} (the reports at the end, "
                  f"{row['report_ms']} ms)", flush=True)
        shutil.rmtree(WORK / "out-pertask", ignore_errors=True)
    finally:
        emulator.stop()


def suite_emulator(args, results):
    """Responses per second the emulator serves (1K, 1.5 MB) to a client that discards them."""
    emulator = Emulator("0")
    try:
        tasks = args.tasks * 2
        runs = [run_reference(emulator, tasks, 64, WORK / "out-ref", "1K", discard=True) for _ in range(args.repeats)]
        m = median_of(runs, tasks)
        row = {"suite": "emulator", "tasks": tasks, "discarding_client": m,
               "emulator_cpu_ms_per_response": 1000 * m["emulator_cpu_s"] / tasks}
        row["responses_per_s"] = tasks / m["wall_s"]
        row["responses_per_emulator_cpu_s"] = tasks / max(m["emulator_cpu_s"], 1e-9)
        results.append(row)
        print(f"emulator: {row['responses_per_s']:.0f} responses/s of 1.5 MB to a discarding client "
              f"(both on {os.cpu_count()} cores); {row['emulator_cpu_ms_per_response']:.3f} ms emulator CPU per "
              f"response = {row['responses_per_emulator_cpu_s']:.0f} responses per emulator CPU-second")
    finally:
        emulator.stop()


def stats(emulator):
    return json.loads(urllib.request.urlopen(emulator.url + "/_stats", timeout=5).read())


def requests_served(emulator):
    return sum(stats(emulator)["by_status"].values())


def timed(cmd, repeats, env=None):
    runs = [measured(cmd, env=env) for _ in range(repeats)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def suite_plan(args, results):
    """`nanobatch plan` of every example (goal: under 100 ms) and of 1,000,000 tasks (goal:
    under 3 s and 1 GiB)."""
    examples = sorted((ROOT / "examples" / "manifests").glob("*.yaml"))
    for example in examples:
        m = timed([str(NANOBATCH), "plan", str(example), "-o", str(WORK / "plan-out")], max(args.repeats, 10))
        results.append({"suite": "plan", "manifest": example.name, **m})
        print(f"plan {example.name}: {m['wall_s'] * 1000:.1f} ms wall, {m['peak_rss_bytes'] / 2**20:.0f} MiB peak")
    big = WORK / "plan-1m"
    big.mkdir(parents=True, exist_ok=True)
    with open(big / "products.csv", "w") as f:
        f.write("sku,name,color\n")
        for i in range(250_000):
            f.write(f"SKU-{i:07d},product {i},{['red', 'blue', 'green'][i % 3]}\n")
    (big / "catalogue.yaml").write_text(
        "version: 1\ndefaults:\n  model: gemini-3.1-flash-image-preview\njobs:\n  catalogue:\n"
        "    vars: products.csv\n    key: sku\n"
        '    prompt: "A studio photo of a {{ color }} {{ name }} on white"\n'
        '    sizes: ["1:1@1K", "16:9@1K", "4:5@2K", "9:16@512"]\n'
    )
    m = timed([str(NANOBATCH), "plan", str(big / "catalogue.yaml"), "-o", str(big / "out")], args.repeats)
    results.append({"suite": "plan", "manifest": "1M tasks (250k rows x 4 sizes)", **m})
    print(f"plan 1,000,000 tasks: {m['wall_s']:.2f} s wall, {m['cpu_s']:.2f} s CPU, "
          f"{m['peak_rss_bytes'] / 2**20:.0f} MiB peak (median of {args.repeats})")


def suite_resume(args, results):
    """Resume of a run whose 100,000 tasks are all done: journal + file checks, no request."""
    emulator = Emulator("0", pad=False)
    try:
        tasks = args.resume_tasks
        manifest = write_manifest(WORK / f"m-512-{tasks}", tasks, "512")
        out = WORK / "out-resume"
        first = run_nanobatch(emulator, manifest, out, 64)
        print(f"resume: first run of {tasks} small tasks took {first['wall_s']:.1f} s", flush=True)
        env = dict(os.environ, GEMINI_API_KEY="bench", NO_COLOR="1")
        cmd = [str(NANOBATCH), "run", str(manifest), "-o", str(out), "--base-url", emulator.url, "--no-html", "-q"]
        before = requests_served(emulator)
        m = timed(cmd, args.repeats, env=env)
        sent = requests_served(emulator) - before
        row = {"suite": "resume", "tasks": tasks, "requests_sent": sent, **m}
        results.append(row)
        print(f"resume of {tasks} done tasks: {m['wall_s']:.2f} s wall, {m['cpu_s']:.2f} s CPU, "
              f"{m['peak_rss_bytes'] / 2**20:.0f} MiB peak, {sent} requests sent (median of {args.repeats})")
    finally:
        emulator.stop()


def suite_report_scale(args, results):
    """report.json + report.html for a run of 5,000 tasks: from scratch (thumbnails made) and
    again (thumbnails cached); the size of report.html."""
    emulator = Emulator("0")
    try:
        tasks = args.report_tasks
        manifest = write_manifest(WORK / f"m-1K-{tasks}", tasks, "1K")
        out = WORK / "out-report"
        run_nanobatch(emulator, manifest, out, 64)
        fresh = []
        for _ in range(args.repeats):
            shutil.rmtree(out / ".nanobatch" / "thumbs", ignore_errors=True)
            fresh.append(measured([str(NANOBATCH), "report", str(out), "-q"]))
        fresh_m = {k: statistics.median(r[k] for r in fresh) for k in fresh[0]}
        cached = timed([str(NANOBATCH), "report", str(out), "-q"], args.repeats)
        html = (out / "report.html").stat().st_size
        rjson = (out / "report.json").stat().st_size
        row = {"suite": "report", "tasks": tasks, "fresh": fresh_m, "cached": cached,
               "report_html_bytes": html, "report_json_bytes": rjson}
        print(f"report of {tasks} tasks: {cached['wall_s']:.2f} s with thumbnails cached; "
              f"{fresh_m['wall_s']:.2f} s making {tasks} thumbnails ({1000 * fresh_m['cpu_s'] / tasks:.2f} ms CPU each); "
              f"report.html {html / 2**20:.2f} MiB, report.json {rjson / 2**20:.2f} MiB", flush=True)
    finally:
        emulator.stop()
    # The same run with its contact sheet, at a rate a quota allows (lognormal latency, -j 16):
    # thumbnails are made in the background as images arrive, so the report at the end is quick.
    emulator = Emulator(args.report_latency)
    try:
        end = run_nanobatch(emulator, manifest, out, 16, html=True)
        row["run_with_html"] = end
        row["end_of_run_report_ms"] = logged_field("reports written", "ms")
        row["thumbnails_left_to_report"] = logged_field("background thumbnails stopped", "dropped")
        results.append(row)
        print(f"run of {tasks} tasks with report.html (-j 16, {args.report_latency}): {end['wall_s']:.1f} s, "
              f"{1000 * end['cpu_s'] / tasks:.2f} ms CPU per image; report at the end "
              f"{row['end_of_run_report_ms']} ms ({row['thumbnails_left_to_report']} thumbnails left to it)", flush=True)
    finally:
        emulator.stop()


def suite_ratelimit(args, results):
    """With the emulator enforcing R requests per minute: the achieved rate (goal: 97% of R, no
    429) and, with lognormal latency and a small -j, the throughput (goal: 95% of min(R, j/mean))."""
    import math
    rpm = args.rpm
    for name, latency, jobs in [("ample -j", "0", 64), ("lognormal", args.ratelimit_lognormal, args.ratelimit_jobs)]:
        emulator = Emulator(latency, pad=False, rpm=rpm)
        try:
            if latency == "0":
                expected = rpm / 60
            else:
                _, median, sigma = latency.split(":")
                median_s = float(median.rstrip("ms")) / (1000 if median.endswith("ms") else 1)
                mean = median_s * math.exp(float(sigma) ** 2 / 2)
                expected = min(rpm / 60, jobs / mean)
            tasks = int(expected * args.ratelimit_seconds)
            manifest = write_manifest(WORK / f"m-rate-{tasks}", tasks, "512", rpm=rpm)
            before = stats(emulator)["by_status"]
            m = run_nanobatch(emulator, manifest, WORK / "out-rate", jobs)
            after = stats(emulator)["by_status"]
            got_429 = after.get("429", 0) - before.get("429", 0)
            achieved = tasks / m["wall_s"]
            row = {"suite": "ratelimit", "case": name, "rpm": rpm, "jobs": jobs, "latency": latency, "tasks": tasks,
                   "expected_per_s": expected, "achieved_per_s": achieved, "share": achieved / expected,
                   "responses_429": got_429, **m}
            results.append(row)
            print(f"rate limit {rpm}/min, {name} (-j {jobs}, latency {latency}): {achieved:.2f}/s of {expected:.2f}/s "
                  f"= {100 * achieved / expected:.1f}% over {m['wall_s']:.0f} s, {got_429} responses 429", flush=True)
        finally:
            emulator.stop()


def print_row(row):
    nb, ref = row["nanobatch"], row["reference"]
    print(
        f"{row['latency']:>9} {row['size']:>3} -j {row['jobs']:<4} {row['tasks']:>5} tasks | nanobatch "
        f"{nb['cpu_ms_per_image']:6.2f} ms/img {nb['images_per_s']:7.1f} img/s {nb['peak_rss_bytes'] / 2**20:6.0f} MiB"
        f" | reference {ref['cpu_ms_per_image']:6.2f} ms/img {ref['images_per_s']:7.1f} img/s"
        f" {ref['peak_rss_bytes'] / 2**20:6.0f} MiB | ratio {row['overhead_ratio']:.2f}"
        f" | emulator CPU {nb['emulator_cpu_share'] * 100:.0f}%",
        flush=True,
    )


SUITES = {
    "emulator": suite_emulator,
    "cpu": suite_cpu,
    "thumbs": suite_report,
    "memory": suite_memory,
    "pertask": suite_pertask,
    "plan": suite_plan,
    "resume": suite_resume,
    "report": suite_report_scale,
    "ratelimit": suite_ratelimit,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--jobs", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--sizes", nargs="+", default=["1K"])
    parser.add_argument("--lognormal", default="lognormal:200ms:0.5")
    parser.add_argument("--memory-tasks", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--pertask-tasks", type=int, nargs="+", default=[1000, 10_000, 40_000])
    parser.add_argument("--resume-tasks", type=int, default=100_000)
    parser.add_argument("--report-tasks", type=int, default=5000)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--ratelimit-seconds", type=int, default=120)
    parser.add_argument("--report-latency", default="lognormal:200ms:0.5")
    parser.add_argument("--ratelimit-jobs", type=int, default=4)
    parser.add_argument("--ratelimit-lognormal", default="lognormal:500ms:0.5")
    parser.add_argument("--only", nargs="+", choices=list(SUITES))
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke run")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.tasks, args.jobs, args.memory_tasks = 1, 100, [8, 64], [100, 300]
        args.resume_tasks, args.report_tasks, args.ratelimit_seconds = 2000, 300, 10
        args.pertask_tasks = [100, 1000]
    if not args.no_build:
        build()
    WORK.mkdir(parents=True, exist_ok=True)
    suites = args.only or list(SUITES)
    results = []
    machine = {
        "cpus": os.cpu_count(),
        "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "kernel": os.uname().release,
    }
    print(f"machine: {machine['cpus']} × {machine['cpu_model']}, Linux {machine['kernel']}", flush=True)
    out = WORK / f"results-{'-'.join(suites)}.json"
    for suite in suites:
        SUITES[suite](args, results)
        TRASH.empty()
        out.write_text(json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
