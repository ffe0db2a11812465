"""A deterministic guard on the core's hot paths: instructions counted by
valgrind (callgrind) on fixed inputs, net of the same program doing no work.
Instruction counts do not depend on machine load, so this cannot flake on a
noisy box; the budgets leave ~40% headroom over the measured counts, enough
for compiler drift, not for a regression such as parsing whole bodies."""
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

HOTPATH = ROOT / "target" / "hotpath" / "release" / "examples" / "hotpath"

# workload: (units of work, unit name, budget of instructions per unit, measured when set)
BUDGETS = {
    # A long JSON body: its first 64 KiB scanned, its usage read backward from its end, the content between
    # unread. The simulator's padding has a \" every ~20 bytes; with no service_tier after the content, the
    # backward read goes through the last 64 KiB of it.
    "json_1mib": (None, "byte", 0.7),        # measured 0.46 / byte (1.1 scanning it all, 4.5 when each \" stopped a byte search)
    # Text like a model's answer: fewer quotes to go back over.
    "json_1mib_text": (None, "byte", 0.4),   # measured 0.25 / byte (1.1 scanning it all)
    # Events that differ from the last scanned one only in string or literal text end as it did, unscanned.
    # An event that ends as the last scanned one adds its outcome again, its captures unread. An event whole in one
    # chunk (one data line, LF line ends) is compared where it lies, before its line end is searched for: the
    # bytes it shares with the last scanned one hold none.
    "sse_200": (200, "event", 850.0),      # measured 0.60k / event (0.63k with each scanner's capture slots on the heap; 0.73k when a differing string's end was found by a byte search and its text checked for line ends a byte at a time; 0.81k when each event's line end was searched for before it was compared; 0.78k when only strings without escapes could differ; 0.82k with a byte-at-a-time tail to each comparison, 1.06k when each event was copied and handed over a line at a time, 0.91k when a reused event was finished again and its outcome copied, 1.8k when its captures were read again)
    # Escapes in the content (a line break in every third event, a quote in every fifth): the differing text is
    # read with its escapes, and the event still ends as the last scanned one did.
    "sse_200_escaped": (200, "event", 870.0),  # measured 0.62k / event (0.65k with each scanner's capture slots on the heap; 0.76k when a differing string's escapes sent it to a byte search and 64-byte masks; 0.78k when a differing string's end was found by a byte search and its text checked for line ends a byte at a time; 0.86k when each event's line end was searched for before it was compared; 3.6k when only strings without escapes could differ: an escape on either side made both events be scanned)
    # The same with an `obfuscation` string of varying length, as the API sends by default.
    "sse_200_obfuscated": (200, "event", 1_050.0),  # measured 0.75k / event (0.78k with each scanner's capture slots on the heap; 0.98k when a differing string's end was found by a byte search and its text checked for line ends a byte at a time; 1.05k when each event's line end was searched for before it was compared; 1.01k when only strings without escapes could differ; 1.04k with a byte-at-a-time tail to each comparison, 1.28k when each event was copied and handed over a line at a time, 2.1k when a reused event's captures were read again)
    # Responses API deltas: a sequence number, the text and an obfuscation string differ in each.
    "sse_200_responses": (200, "event", 1_400.0),   # measured 1.00k / event (1.03k with each scanner's capture slots on the heap; 1.22k when a differing string's end was found by a byte search and its text checked for line ends a byte at a time; 1.31k when each event's line end was searched for before it was compared; 1.27k when only strings without escapes could differ; 1.43k reading each `event:` line's name a byte at a time, 1.64k when each event was copied and handed over a line at a time, 2.3k when a reused event's captures were read again)
    # Audio deltas are skipped once their type is read (150 KB deltas, type first)...
    "realtime": (None, "byte", 0.2),         # measured 0.05 / byte (0.55 when a chunk was read whole before its type)
    # ...or, when it comes last (as the simulator sends it: the benchmark's 4 x 8 KB deltas), read from the
    # message's end once the chunk that ends it arrives; in 16 KB chunks about half the deltas are cut by one.
    "realtime_8k": (None, "byte", 1.4),      # measured 1.02 / byte (0.97 before the message's last 128 bytes were kept across chunks; 1.9 when a type-last delta was searched to its end, 2.0 with serde_json reading usage, 2.6 when UTF-8 skipped ASCII 8 bytes at a time)
    "small_request": (100, "request", 20_000.0),  # measured 14.0k / request (15.2k with capture slots, store keys and money text on the heap; 16.2k with serde_json reading usage, 17.5k when each \" stopped a byte search)
    # The whole exchange as the adapter drives it (admission, body, metering,
    # booking; the store in memory): without a session, and in one of 4.
    "exchange": (100, "request", 25_000.0),           # measured 17.6k / request (18.9k with capture slots, store keys, records and money text on the heap; 19.8k with serde_json reading usage, 21.3k when each \" stopped a byte search)
    "exchange_sessions": (100, "request", 36_000.0),  # measured 25.4k / request (28.6k with capture slots, store keys, records and money text on the heap; 29.8k with serde_json reading usage, 38.4k when each request hashed its session id and scanned a held body twice)
}


def instructions(workload):
    r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", str(HOTPATH), workload],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    collected = int(re.search(r"Collected : (\d+)", r.stderr).group(1))
    sizes = r.stdout.split()
    return collected, {"json_1mib": int(sizes[1]), "sse_200": int(sizes[2]), "realtime": int(sizes[3]),
                       "realtime_8k": int(sizes[5]), "json_1mib_text": int(sizes[6])}


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_hot_path_instruction_budgets():
    assert HOTPATH.exists(), "run `make test` (it builds target/hotpath/release/examples/hotpath)"
    baseline, sizes = instructions("none")
    report = []
    failures = []
    for workload, (units, unit, budget) in BUDGETS.items():
        total, _ = instructions(workload)
        n = units or sizes[workload]
        per_unit = (total - baseline) / n
        report.append(f"{workload}: {per_unit:,.2f} instructions per {unit} (budget {budget:,})")
        if per_unit > budget:
            failures.append(report[-1])
    print("\n".join(report))
    assert not failures, failures
