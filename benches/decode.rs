//! Decode throughput per stream: kpiflow's one-pass decoder (syntax, types,
//! metadata columns) against arrow-json alone on the same bytes, in the same run.
//!
//! `cargo bench -p kpiflow-benches --bench decode`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kpiflow_benches::{mean_size, records};
use kpiflow_ingest::decode::{RawMessage, TopicDecoder};
use kpiflow_types::Stream;

const ROWS: usize = 50_000;
const BATCH: usize = 8_192;

fn decode(c: &mut Criterion) {
    for stream in Stream::ALL {
        let records = records(stream, ROWS);
        eprintln!("{stream}: mean record {:.0} bytes", mean_size(&records));
        let mut group = c.benchmark_group(format!("decode/{stream}"));
        group.throughput(Throughput::Elements(records.len() as u64));
        group.sample_size(20);
        group.bench_function("kpiflow", |b| {
            b.iter(|| {
                let mut decoder = TopicDecoder::new(stream, BATCH);
                let mut rows = 0;
                for (offset, r) in records.iter().enumerate() {
                    let m = RawMessage {
                        partition: 0,
                        offset: offset as i64,
                        timestamp_ms: Some(offset as i64),
                        key: Some(r.key.as_bytes()),
                        payload: Some(&r.payload),
                    };
                    decoder.push(&m).expect("clean records decode");
                    if decoder.is_full() {
                        rows += decoder.finish().0.map_or(0, |b| b.num_rows());
                    }
                }
                rows += decoder.finish().0.map_or(0, |b| b.num_rows());
                black_box(rows)
            })
        });
        group.bench_function("arrow_json_alone", |b| {
            b.iter(|| {
                let mut decoder = arrow_json::ReaderBuilder::new(stream.schema())
                    .with_batch_size(BATCH)
                    .build_decoder()
                    .unwrap();
                let mut rows = 0;
                for r in &records {
                    decoder.decode(&r.payload).unwrap();
                    if decoder.len() >= BATCH {
                        rows += decoder.flush().unwrap().map_or(0, |b| b.num_rows());
                    }
                }
                rows += decoder.flush().unwrap().map_or(0, |b| b.num_rows());
                black_box(rows)
            })
        });
        let joined: Vec<u8> = records
            .iter()
            .flat_map(|r| r.payload.iter().copied().chain([b'\n']))
            .collect();
        group.bench_function("arrow_json_one_buffer", |b| {
            b.iter(|| {
                let mut decoder = arrow_json::ReaderBuilder::new(stream.schema())
                    .with_batch_size(BATCH)
                    .build_decoder()
                    .unwrap();
                let mut rows = 0;
                let mut rest = &joined[..];
                while !rest.is_empty() {
                    let n = decoder.decode(rest).unwrap();
                    rest = &rest[n..];
                    rows += decoder.flush().unwrap().map_or(0, |b| b.num_rows());
                }
                rows += decoder.flush().unwrap().map_or(0, |b| b.num_rows());
                black_box(rows)
            })
        });
        group.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
