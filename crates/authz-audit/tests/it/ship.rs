//! Audit shipping against real stores: every record reaches the sink, in seq order per chain,
//! through a sink that refuses batches and then recovers; a new shipper resumes from the
//! cursor; two shippers share the chains by lease and one takes over a lease that ran out;
//! pruned records are counted as gaps; `start = now` skips the history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authz_audit::{AuditWriter, ShipStart, ShippedRecord, Shipper, ShipperConfig, Sink};
use authz_test_support::eventually_async;

use crate::db::TestDb;
use crate::writer::{config, rec, test_key};

const WAIT: Duration = Duration::from_secs(30);

/// A sink that keeps what it accepts and refuses the next `refuse` batches.
#[derive(Clone, Default)]
struct Collect {
    got: Arc<Mutex<Vec<ShippedRecord>>>,
    refuse: Arc<AtomicU32>,
    attempts: Arc<AtomicU32>,
}

impl Sink for Collect {
    async fn send(&self, batch: &[ShippedRecord]) -> Result<(), String> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let refuse = self.refuse.load(Ordering::SeqCst);
        if refuse > 0 {
            self.refuse.store(refuse - 1, Ordering::SeqCst);
            return Err("503 from the collector".into());
        }
        self.got.lock().expect("lock").extend_from_slice(batch);
        Ok(())
    }
}

impl Collect {
    fn len(&self) -> usize {
        self.got.lock().expect("lock").len()
    }

    /// Seqs received per chain, in arrival order.
    fn seqs(&self) -> BTreeMap<String, Vec<i64>> {
        let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for r in self.got.lock().expect("lock").iter() {
            out.entry(r.chain_id.clone()).or_default().push(r.seq);
        }
        out
    }
}

fn quick(sink: &str, holder: &str) -> ShipperConfig {
    ShipperConfig {
        batch_records: 100,
        poll_interval: Duration::from_millis(20),
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(40),
        ..ShipperConfig::new(sink, holder)
    }
}

async fn write(db: &TestDb, chain: &str, range: std::ops::Range<usize>) {
    let writer = AuditWriter::spawn(db.store.clone(), config(chain), Some(test_key()))
        .await
        .expect("spawn the writer");
    for i in range {
        writer.append_buffered(rec(i)).await.expect("append");
    }
    writer.shutdown().await.expect("drain");
}

async fn every_record_arrives_once_in_order_through_a_failing_sink(db: &TestDb) {
    write(db, "gw-a", 1..451).await;
    write(db, "gw-b", 1..121).await;
    let sink = Collect::default();
    sink.refuse.store(4, Ordering::SeqCst);
    let shipper =
        Shipper::spawn(db.store.clone(), quick("siem", "r1"), sink.clone()).expect("spawn");
    // The sink has a batch before the cursor moves past it: wait for the shipper's own count.
    eventually_async("570 records shipped, no lag left", WAIT, async || {
        let st = shipper.status();
        st.shipped.load(Ordering::SeqCst) == 570
            && st.lag_records.load(Ordering::SeqCst) == 0
            && st.chains_held.load(Ordering::SeqCst) == 2
    })
    .await;
    let status = shipper.status();
    assert_eq!(status.shipped.load(Ordering::SeqCst), 570);
    assert_eq!(status.failures.load(Ordering::SeqCst), 4);
    assert_eq!(status.gaps.load(Ordering::SeqCst), 0);
    assert_eq!(status.chains_held.load(Ordering::SeqCst), 2);
    assert_eq!(status.lag_ms.load(Ordering::SeqCst), 0);
    let seqs = sink.seqs();
    assert_eq!(
        seqs["gw-a"],
        (1..=450).collect::<Vec<i64>>(),
        "in order, each once"
    );
    assert_eq!(seqs["gw-b"], (1..=120).collect::<Vec<i64>>());
    // What arrives is the record as stored, with the hash the chain holds for it.
    let first = sink.got.lock().expect("lock")[0].clone();
    assert_eq!(first.record.request_id, "r1");
    let stored = db
        .fetch_bytes(&format!(
            "SELECT hash FROM audit_records WHERE id = {}",
            first.id
        ))
        .await;
    assert_eq!(first.hash, hex(&stored));
    shipper.shutdown().await;

    let cursors = db.store.ship_cursors().await.expect("cursors");
    let at: Vec<(String, i64)> = cursors
        .iter()
        .map(|c| (c.chain_id.clone(), c.seq))
        .collect();
    assert_eq!(at, [("gw-a".to_owned(), 450), ("gw-b".to_owned(), 120)]);
    assert!(
        cursors
            .iter()
            .all(|c| c.sink == "siem" && c.holder.as_deref() == Some("r1"))
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn the_lag_grows_while_the_sink_refuses(db: &TestDb) {
    write(db, "gw-a", 1..31).await;
    let sink = Collect::default();
    sink.refuse.store(u32::MAX, Ordering::SeqCst);
    let shipper =
        Shipper::spawn(db.store.clone(), quick("siem", "r1"), sink.clone()).expect("spawn");
    // rec(i) is written at i seconds after the epoch: the oldest is decades old.
    eventually_async("the lag of the refused batch shows", WAIT, async || {
        let st = shipper.status();
        st.lag_records.load(Ordering::SeqCst) == 30
            && st.lag_ms.load(Ordering::SeqCst) > 1_000_000
            && st.failures.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(sink.len(), 0);
    sink.refuse.store(0, Ordering::SeqCst);
    eventually_async("caught up once the sink takes it", WAIT, async || {
        let st = shipper.status();
        st.shipped.load(Ordering::SeqCst) == 30 && st.lag_records.load(Ordering::SeqCst) == 0
    })
    .await;
    shipper.shutdown().await;
}

async fn a_new_shipper_resumes_from_the_cursor(db: &TestDb) {
    write(db, "gw-a", 1..201).await;
    let sink = Collect::default();
    let shipper =
        Shipper::spawn(db.store.clone(), quick("siem", "r1"), sink.clone()).expect("spawn");
    eventually_async("200 shipped", WAIT, async || sink.len() >= 200).await;
    shipper.shutdown().await;

    write(db, "gw-a", 201..261).await;
    let after = Collect::default();
    let shipper =
        Shipper::spawn(db.store.clone(), quick("siem", "r1"), after.clone()).expect("spawn");
    eventually_async("60 more shipped", WAIT, async || after.len() >= 60).await;
    eventually_async("caught up", WAIT, async || {
        shipper.status().lag_records.load(Ordering::SeqCst) == 0
            && shipper.status().chains_held.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(
        after.seqs()["gw-a"],
        (201..=260).collect::<Vec<i64>>(),
        "only what was new"
    );
    // Another sink has its own cursor: it starts from the beginning.
    let other = Collect::default();
    let second =
        Shipper::spawn(db.store.clone(), quick("archive", "r1"), other.clone()).expect("spawn");
    eventually_async("the other sink gets everything", WAIT, async || {
        other.len() >= 260
    })
    .await;
    second.shutdown().await;
    shipper.shutdown().await;
    assert_eq!(other.len(), 260);
}

async fn two_shippers_share_by_lease_and_take_over_one_that_ran_out(db: &TestDb) {
    write(db, "gw-a", 1..301).await;
    let sink = Collect::default();
    let lease = |holder: &str| ShipperConfig {
        lease_ms: 1_000,
        ..quick("siem", holder)
    };
    let a = Shipper::spawn(db.store.clone(), lease("r1"), sink.clone()).expect("spawn a");
    eventually_async("a holds the chain", WAIT, async || {
        a.status().chains_held.load(Ordering::SeqCst) == 1
    })
    .await;
    let b = Shipper::spawn(db.store.clone(), lease("r2"), sink.clone()).expect("spawn b");
    eventually_async("300 shipped", WAIT, async || sink.len() >= 300).await;
    // b ran passes too, but the chain is a's while a renews it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.status().chains_held.load(Ordering::SeqCst), 0);
    a.shutdown().await;

    write(db, "gw-a", 301..351).await;
    eventually_async(
        "b takes the lease over and ships the rest",
        WAIT,
        async || sink.len() >= 350,
    )
    .await;
    b.shutdown().await;
    assert_eq!(
        sink.seqs()["gw-a"],
        (1..=350).collect::<Vec<i64>>(),
        "no record twice without a failure"
    );
    let cursor = &db.store.ship_cursors().await.expect("cursors")[0];
    assert_eq!((cursor.holder.as_deref(), cursor.seq), (Some("r2"), 350));
}

async fn pruned_records_are_gaps_and_start_now_skips_history(db: &TestDb) {
    // rec(i) is written at i seconds: prune the first 40.
    write(db, "gw-a", 1..101).await;
    let report = db
        .store
        .prune_before(41_000, Some(&test_key()))
        .await
        .expect("prune");
    assert_eq!(report.chained_deleted, 40);
    let sink = Collect::default();
    let shipper =
        Shipper::spawn(db.store.clone(), quick("siem", "r1"), sink.clone()).expect("spawn");
    eventually_async("60 shipped", WAIT, async || sink.len() >= 60).await;
    eventually_async("the gap counted", WAIT, async || {
        shipper.status().gaps.load(Ordering::SeqCst) == 40
    })
    .await;
    assert_eq!(sink.seqs()["gw-a"], (41..=100).collect::<Vec<i64>>());
    shipper.shutdown().await;

    let fresh = Collect::default();
    let now = Shipper::spawn(
        db.store.clone(),
        ShipperConfig {
            start: ShipStart::Now,
            ..quick("live", "r1")
        },
        fresh.clone(),
    )
    .expect("spawn");
    eventually_async("the live cursor exists", WAIT, async || {
        now.status().chains_held.load(Ordering::SeqCst) == 1
    })
    .await;
    write(db, "gw-a", 101..111).await;
    eventually_async("10 new shipped", WAIT, async || fresh.len() >= 10).await;
    now.shutdown().await;
    assert_eq!(fresh.seqs()["gw-a"], (101..=110).collect::<Vec<i64>>());
    assert_eq!(fresh.attempts.load(Ordering::SeqCst), 1, "one batch");
}

async fn settings_out_of_range_are_refused(db: &TestDb) {
    for bad in [
        ShipperConfig {
            batch_records: 0,
            ..quick("s", "h")
        },
        ShipperConfig {
            lease_ms: 10,
            ..quick("s", "h")
        },
        quick("", "h"),
        ShipperConfig {
            retry_max: Duration::from_millis(1),
            ..quick("s", "h")
        },
    ] {
        let err =
            Shipper::spawn(db.store.clone(), bad.clone(), Collect::default()).expect_err("refused");
        assert!(
            matches!(err, authz_audit::Error::Config { .. }),
            "{bad:?}: {err:?}"
        );
    }
}

on_both_backends!(
    every_record_arrives_once_in_order_through_a_failing_sink,
    the_lag_grows_while_the_sink_refuses,
    a_new_shipper_resumes_from_the_cursor,
    two_shippers_share_by_lease_and_take_over_one_that_ran_out,
    pruned_records_are_gaps_and_start_now_skips_history,
    settings_out_of_range_are_refused,
);
