//! An acknowledged report is never lost, even when the collector is killed
//! with SIGKILL in the middle of a stream, and a resent report is not stored
//! twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;
use vakt_proto::v1;
use vakt_proto::v1::telemetry_client::TelemetryClient;
use vakt_tests::{Collector, cpu_batch, now_ms, report};

/// Batches kept in flight while streaming.
const WINDOW: u64 = 32;
/// Kill once this many batches are acknowledged (or after `KILL_AFTER`).
const KILL_AT_ACK: u64 = 1500;
const KILL_AFTER: Duration = Duration::from_secs(3);

fn value_of(sequence: u64) -> f64 {
    // Distinct per batch, within [0, 1].
    sequence as f64 / 1_000_000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_sigkill_and_resends_are_not_duplicated() {
    let mut collector = Collector::start();
    let device = collector.enroll_test_device("durable").await;
    // Batch `seq` carries one sample at `base + seq` ms: timestamps name sequences.
    let base = now_ms() - 30 * 60 * 1000;
    let batch = |seq: u64| cpu_batch(seq, base + i64::try_from(seq).expect("fits"), value_of(seq));

    let channel = collector
        .device_channel(&device)
        .await
        .expect("device channel");
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::ReportBatch>(WINDOW as usize * 2);
    let mut acks = TelemetryClient::new(channel)
        .report(ReceiverStream::new(rx))
        .await
        .expect("open Report stream")
        .into_inner();

    let started = Instant::now();
    let mut next = 1u64;
    let mut highest_ack = 0u64;
    let mut ack_count = 0usize;
    let mut killed_at: Option<(u64, u64)> = None; // (highest ack, highest sent) at the kill
    loop {
        // Keep WINDOW batches beyond the last ack in flight.
        while killed_at.is_none() && next <= highest_ack + WINDOW {
            if tx.send(batch(next)).await.is_err() {
                panic!("Report stream closed by the collector before the kill (sent {next})");
            }
            next += 1;
        }
        let wait = if killed_at.is_some() { 3 } else { 10 };
        match tokio::time::timeout(Duration::from_secs(wait), acks.message()).await {
            Ok(Ok(Some(ack))) => {
                assert!(
                    ack.acked_sequence >= highest_ack,
                    "acks never go backwards: {} after {highest_ack}",
                    ack.acked_sequence
                );
                assert!(
                    ack.acked_sequence < next,
                    "ack {} for a batch never sent (sent up to {})",
                    ack.acked_sequence,
                    next - 1
                );
                highest_ack = ack.acked_sequence;
                ack_count += 1;
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) if killed_at.is_some() => break,
            Ok(Ok(None)) => panic!("Report stream ended before the kill (acked {highest_ack})"),
            Ok(Err(status)) => panic!("Report stream failed before the kill: {status:?}"),
            Err(_) => panic!(
                "no ack within {wait} s (acked {highest_ack}, sent {})",
                next - 1
            ),
        }
        if killed_at.is_none()
            && highest_ack >= 1
            && (highest_ack >= KILL_AT_ACK || started.elapsed() >= KILL_AFTER)
        {
            killed_at = Some((highest_ack, next - 1));
            collector.kill9();
        }
    }
    drop(tx);
    let (ack_at_kill, sent) = killed_at.expect("killed");
    eprintln!(
        "acks: {ack_count} received, highest {highest_ack} ({ack_at_kill} at the kill); \
         {sent} batches sent in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(highest_ack >= 1);

    collector.serve();

    // Every acknowledged batch is stored; the collector's claim agrees.
    let shown = collector.device(&device.device_id);
    let last_sequence = shown["last_sequence"]
        .as_u64()
        .unwrap_or_else(|| panic!("no last_sequence: {shown}"));
    assert!(
        last_sequence >= highest_ack,
        "last_sequence {last_sequence} < highest ack {highest_ack}: acknowledged batches lost"
    );
    assert!(
        last_sequence <= sent,
        "last_sequence {last_sequence} > sent {sent}"
    );

    let per_sequence = points_by_sequence(&collector, &device.device_id, base);
    let missing: Vec<u64> = (1..=last_sequence)
        .filter(|seq| !per_sequence.contains_key(seq))
        .collect();
    assert!(
        missing.is_empty(),
        "batches <= last_sequence {last_sequence} (highest ack {highest_ack}) without their point: {missing:?}"
    );
    let duplicated: Vec<(&u64, &Vec<f64>)> =
        per_sequence.iter().filter(|(_, v)| v.len() != 1).collect();
    assert!(
        duplicated.is_empty(),
        "points stored more than once: {duplicated:?}"
    );
    let beyond: Vec<&u64> = per_sequence
        .keys()
        .filter(|s| **s > last_sequence)
        .collect();
    assert!(
        beyond.is_empty(),
        "points of batches above last_sequence {last_sequence}: {beyond:?}"
    );
    for (seq, values) in &per_sequence {
        assert_eq!(values[0], value_of(*seq), "value of batch {seq}");
    }

    // Resend an acknowledged batch as it was, and an old sequence with new
    // content: both acknowledged with the stored sequence, neither stored again.
    let fresh_ts = now_ms();
    for (what, resent) in [
        ("acknowledged batch resent as it was", batch(highest_ack)),
        (
            "sequence 1 resent with new content",
            cpu_batch(1, fresh_ts, 0.999),
        ),
    ] {
        let channel = collector
            .device_channel(&device)
            .await
            .expect("device channel");
        let acks = report(channel, vec![resent], last_sequence)
            .await
            .unwrap_or_else(|status| panic!("{what}: {status:?}"));
        assert_eq!(
            acks,
            vec![last_sequence],
            "{what}: acknowledged with the highest stored sequence"
        );
    }
    let after = points_by_sequence(&collector, &device.device_id, base);
    assert_eq!(
        after, per_sequence,
        "resent batches must not add or change points"
    );

    // The stream goes on after the resends.
    let channel = collector
        .device_channel(&device)
        .await
        .expect("device channel");
    let acks = report(channel, vec![batch(last_sequence + 1)], last_sequence + 1)
        .await
        .expect("next batch after restart");
    assert_eq!(acks.last(), Some(&(last_sequence + 1)));
    let shown = collector.device(&device.device_id);
    assert_eq!(shown["last_sequence"], last_sequence + 1, "{shown}");
}

/// Points of the device's CPU series, grouped by the sequence their timestamp names.
fn points_by_sequence(
    collector: &Collector,
    device_id: &str,
    base: i64,
) -> BTreeMap<u64, Vec<f64>> {
    let mut map: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (ts, value) in collector.metric_points(device_id, "system.cpu.utilization", "1h") {
        let seq = u64::try_from(ts - base)
            .unwrap_or_else(|_| panic!("point at {ts} before the first batch's timestamp {base}"));
        map.entry(seq).or_default().push(value);
    }
    map
}
