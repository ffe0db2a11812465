"""A configuration pushed through LDS in the middle of traffic: what began
before the change is still counted and enforced (counts and Realtime
deadlines live at VM scope; only the configuration is swapped), and budgets
are kept."""
import threading
import time

from conftest import LdsEnvoy, chat, wait_until
from test_realtime import closed_by, open_session, recv_json

BEFORE = {"pricing": {"gpt-5": {"input": 10, "output": 30}, "gpt-realtime": {"input": 100, "output": 200}},
          "global": {"budget_usd": 1000000}, "session": {"budget_usd": 5, "max_duration_s": 3}}
AFTER = {**BEFORE, "session": {"budget_usd": 10, "max_duration_s": 1800}}


def test_a_pushed_configuration_keeps_what_began_before(sim, tmp_path):
    e = LdsEnvoy(sim.port, BEFORE, tmp_path)
    try:
        e.wait_ready().wait_serving()
        session = {"x-session-id": "across-the-reload"}
        # $1 spent before the change.
        r = chat(e, model="gpt-5", usage={"prompt_tokens": 100_000, "completion_tokens": 0}, headers=session)
        assert r.headers["x-costguard-session-remaining-usd"] == "5"
        e.wait_stat("costguard.cost_micro_usd", 1_000_000)

        # An HTTP stream that begins before the change and ends after it ($2).
        streamed = {}

        def stream():
            streamed["response"] = chat(
                e, model="gpt-5", stream=True, usage={"prompt_tokens": 200_000, "completion_tokens": 0},
                headers={**session, "x-sim-chunks": "8", "x-sim-delay-ms": "500", "x-trace": "across"})

        worker = threading.Thread(target=stream)
        worker.start()
        # A silent Realtime session that begins before the change (limit 3 s, reset 5 s later).
        with open_session(e) as ws:
            opened = time.monotonic()
            recv_json(ws)
            wait_until(lambda: any(q["headers"].get("x-trace") == "across" for q in sim.requests()),
                       what="the stream to reach the upstream")

            e.push(AFTER)

            # (b) The Realtime session is still reset at the limit it began with.
            code, _, _ = closed_by(ws, timeout=30)
        assert code == 1006
        assert time.monotonic() - opened < 15
        e.wait_stat("costguard.sessions.duration_exceeded", 1)
        e.wait_stat("costguard.sessions.active", 0)

        # (a) The stream that began before the change is priced and reaches /stats.
        worker.join(timeout=60)
        assert streamed["response"].status_code == 200
        assert '"prompt_tokens":200000' in streamed["response"].text
        e.wait_stat("costguard.cost_micro_usd", 3_000_000)
        e.wait_stat("costguard.model.gpt-5.cost_micro_usd", 3_000_000)

        # (c) The session kept its $3 under the new $10 budget.
        r = wait_until(lambda: (lambda r: r if r.headers.get("x-costguard-session-remaining-usd") == "7" else None)(
            chat(e, model="gpt-5", usage={"prompt_tokens": 0, "completion_tokens": 0}, headers=session)),
            timeout=30, what="the new budget with the old spend")
        assert r.status_code == 200
    finally:
        e.stop()
