//! Runs one fixed core workload once, for instruction counting under
//! valgrind (tests/integration/test_perf_guard.py): deterministic, unlike wall time.
//!   hotpath none|json_1mib|json_1mib_text|sse_200|sse_200_escaped|sse_200_obfuscated|sse_200_responses|realtime|realtime_8k|small_request|exchange|exchange_sessions

#[path = "../benches/workloads.rs"]
mod workloads;

use workloads::*;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    // Inputs are built for every workload (even `none`), so they cancel out in the difference.
    let json = chat_json(1 << 20);
    let json_text = chat_json_text(1 << 20);
    let sse = chat_sse(200);
    let sse_escaped = chat_sse_escaped(200);
    let sse_obfuscated = chat_sse_obfuscated(200);
    let sse_responses = responses_sse(200);
    let rt = realtime_stream(5, 20, 150_000, false);
    // The benchmark's shape: responses of 4 audio deltas of 8 KB, each
    // delta's type after its audio (as the simulator sends them).
    let rt_8k = realtime_stream(20, 4, 8_000, true);
    let config = costguard::config::Config::parse(b"{}").unwrap_or_else(|_| unreachable!());
    let small = chat_json(300);
    let exchange_headers = ExchangeHeaders::new();
    // JSON bodies as the filter gets them: owned chunks, copied here for
    // every workload so that the copies cancel out too.
    let (json_chunks, json_text_chunks) = (owned_chunks(&json), owned_chunks(&json_text));
    let ok = match which.as_str() {
        "none" => true,
        "json_1mib" => meter_owned(costguard::meter::BodyKind::Json, json_chunks),
        "json_1mib_text" => meter_owned(costguard::meter::BodyKind::Json, json_text_chunks),
        "sse_200" => meter(costguard::meter::BodyKind::EventStream, &sse),
        "sse_200_escaped" => meter(costguard::meter::BodyKind::EventStream, &sse_escaped),
        "sse_200_obfuscated" => meter(costguard::meter::BodyKind::EventStream, &sse_obfuscated),
        "sse_200_responses" => meter(costguard::meter::BodyKind::EventStream, &sse_responses),
        "realtime" => realtime(&rt) > 0,
        "realtime_8k" => realtime(&rt_8k) > 0,
        "small_request" => (0..100).all(|_| small_request(&config, &small) > 0),
        "exchange" | "exchange_sessions" => {
            let mut env = ExchangeEnv::new(config.clone());
            let sessions = which == "exchange_sessions";
            (0..100).all(|n| small_exchange(&mut env, &exchange_headers, n, sessions, &small))
        }
        other => {
            eprintln!("unknown workload {other}");
            std::process::exit(2);
        }
    };
    println!(
        "{which} {} {} {} {} {} {}",
        json.len(),
        sse.len(),
        rt.len(),
        ok,
        rt_8k.len(),
        json_text.len()
    );
    if !ok {
        std::process::exit(1);
    }
}
