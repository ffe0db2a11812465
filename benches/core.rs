//! Criterion benchmarks of the core's hot paths (`cargo bench --bench core`).
mod workloads;

use costguard::meter::BodyKind;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use workloads::*;

fn core(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");
    let json = chat_json(1 << 20);
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("json body 1 MiB", |b| {
        b.iter(|| meter(BodyKind::Json, &json))
    });
    let sse = chat_sse(200);
    g.throughput(Throughput::Bytes(sse.len() as u64));
    g.bench_function("sse 200 events", |b| {
        b.iter(|| meter(BodyKind::EventStream, &sse))
    });
    let sse_escaped = chat_sse_escaped(200);
    g.throughput(Throughput::Bytes(sse_escaped.len() as u64));
    g.bench_function("sse 200 events, escapes in the content", |b| {
        b.iter(|| meter(BodyKind::EventStream, &sse_escaped))
    });
    let rt = realtime_stream(5, 20, 150_000, false);
    g.throughput(Throughput::Bytes(rt.len() as u64));
    g.bench_function("realtime frames", |b| b.iter(|| realtime(&rt)));
    let config = costguard::config::Config::parse(b"{}").unwrap_or_else(|_| unreachable!());
    let small = chat_json(300);
    g.throughput(Throughput::Elements(1));
    g.bench_function("small request (inspect, meter, price)", |b| {
        b.iter(|| small_request(&config, &small))
    });
    g.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
