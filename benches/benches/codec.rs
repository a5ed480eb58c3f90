//! Codec: parse the 1000-post Update (MB/s and posts/s) beside raw quick-xml event
//! reading of the same body (the limit), write a 50-engagement FindContent reply, and
//! judge one as a client does (`codec::client`, what `ei-load` pays per FindContent)
//! beside counting its rows by substring.
//!
//! `cargo bench -p ei-benches --bench codec`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ei_benches::data::{self, UpdateTemplate};
use quick_xml::events::Event;
use std::hint::black_box;
use std::time::Duration;

fn body() -> Vec<u8> {
    UpdateTemplate::sample_1000().body(0, data::SAMPLE_MRC)
}

/// The limit: every event of the body, unescaping nothing (tokenizing only).
fn raw_events(body: &[u8]) -> usize {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut n = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => return n,
            Ok(e) => {
                black_box(&e);
                n += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A nearer limit: namespace-resolved events with text decoded into one buffer.
fn raw_ns_text(body: &[u8]) -> usize {
    let text = std::str::from_utf8(body).unwrap();
    let mut reader = quick_xml::NsReader::from_str(text);
    let mut buf = String::new();
    loop {
        match reader.read_resolved_event() {
            Ok((_, Event::Eof)) => return buf.len(),
            Ok((ns, Event::Start(e))) => {
                black_box((&ns, e.local_name()));
            }
            Ok((_, Event::Text(t))) => {
                buf.clear();
                buf.push_str(&t.xml10_content());
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

fn parse(c: &mut Criterion) {
    let body = body();
    for (unit, throughput) in [
        ("bytes", Throughput::Bytes(body.len() as u64)),
        ("posts", Throughput::Elements(data::POSTS_PER_BODY)),
    ] {
        let mut g = c.benchmark_group(format!("parse_update_1000/{unit}"));
        g.throughput(throughput);
        g.bench_function("ours_parse_request", |b| {
            b.iter(|| ei_server::codec::parse_request(black_box(&body)).unwrap())
        });
        g.bench_function("ours_parse_and_validate", |b| {
            b.iter(|| data::transactions(black_box(&body)).unwrap())
        });
        g.bench_function("raw_quick_xml_events", |b| {
            b.iter(|| raw_events(black_box(&body)))
        });
        g.bench_function("raw_quick_xml_ns_text", |b| {
            b.iter(|| raw_ns_text(black_box(&body)))
        });
        g.finish();
    }
}

fn write_reply(c: &mut Criterion) {
    let found = data::stored_engagements(50);
    let mut probe = String::new();
    ei_server::codec::write_find_content_response(&mut probe, &found);
    let mut g = c.benchmark_group("write_find_content_reply_50");
    g.throughput(Throughput::Bytes(probe.len() as u64));
    g.bench_function("ours", |b| {
        b.iter_batched_ref(
            || String::with_capacity(600 + found.len() * 900),
            |out| ei_server::codec::write_find_content_response(out, black_box(&found)),
            BatchSize::SmallInput,
        )
    });
    // The limit: copying the finished reply into a fresh buffer.
    g.bench_function("raw_copy_of_the_reply", |b| {
        b.iter(|| black_box(probe.as_str()).to_owned())
    });
    g.finish();
}

fn classify_reply(c: &mut Criterion) {
    let found = data::stored_engagements(50);
    let mut reply = String::new();
    ei_server::codec::write_find_content_response(&mut reply, &found);
    let mut g = c.benchmark_group("classify_find_content_reply_50");
    g.throughput(Throughput::Bytes(reply.len() as u64));
    g.bench_function("ours_classify", |b| {
        b.iter(|| {
            match ei_server::codec::client::classify_find_content(200, black_box(reply.as_bytes()))
            {
                ei_server::codec::client::Outcome::Ok(rows) => rows.len(),
                other => panic!("{other}"),
            }
        })
    });
    // The XML floor: tokenizing the reply, reading nothing.
    g.bench_function("raw_quick_xml_events", |b| {
        b.iter(|| raw_events(black_box(reply.as_bytes())))
    });
    // What ei-load paid before: a UTF-8 check and a substring count.
    g.bench_function("raw_substring_count", |b| {
        b.iter(|| {
            let text = std::str::from_utf8(black_box(reply.as_bytes())).unwrap();
            text.matches("<ns2:engagement>").count()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = parse, write_reply, classify_reply
}
criterion_main!(benches);
