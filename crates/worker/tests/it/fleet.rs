//! Several workers on one store: job claims and leases, takeover of a
//! worker's jobs, and the wake-ups that spare idle workers from polling.
//! Lease times are judged by an explicit or manual clock, never by waiting.

use std::time::Duration;

use webhook_types::{ClippingJobRequest, Event, JobState};
use worker::clock::Clock;
use worker::store::{Durability, Inserted, JobUpdate, NewDelivery, RecordError, Store};

use crate::helpers::{Receiver, StoreKind, TestStore, job, spawn_app_on};

const T: Duration = Duration::from_secs(10);

async fn open(store: &TestStore) -> Store {
    Store::connect(&store.url, store.data_dir(), Durability::Full)
        .await
        .unwrap()
}

async fn queued(store: &Store, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("job_{i}");
        let request = ClippingJobRequest::new(format!("https://youtube.com/watch?v={i}"));
        assert!(matches!(
            store.insert_job(&id, &request).await.unwrap(),
            Inserted::Created(_)
        ));
        ids.push(id);
    }
    ids
}

/// Claims go oldest first and never twice; a renewed lease holds off a
/// takeover that an expired one lets through, once, and the old holder can
/// then neither renew nor write an event.
async fn leases_expire_renew_and_are_taken_over_once(kind: StoreKind) {
    let ts = TestStore::new(kind).await;
    let store = open(&ts).await;
    let ids = queued(&store, 3).await;
    let t0 = 1_000_000;
    let lease = 10_000;

    let a = store.claim_job("a", t0 + lease).await.unwrap().unwrap();
    assert_eq!(a.job_id, ids[0], "oldest first");
    let b = store.claim_job("b", t0 + lease).await.unwrap().unwrap();
    assert_eq!(b.job_id, ids[1], "a held job is skipped");

    // Nothing has expired yet.
    assert!(
        store
            .take_expired_jobs("c", t0 + 9_000, t0 + 19_000)
            .await
            .unwrap()
            .is_empty()
    );
    // a renews; b does not.
    assert!(
        store
            .renew_job_lease(&a.job_id, "a", t0 + 9_000 + lease)
            .await
            .unwrap()
    );
    let taken = store
        .take_expired_jobs("c", t0 + 15_000, t0 + 25_000)
        .await
        .unwrap();
    let taken: Vec<&str> = taken.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(
        taken,
        [ids[1].as_str()],
        "only the lease that was not renewed"
    );
    // Taken once: another look finds nothing, and b has lost it.
    assert!(
        store
            .take_expired_jobs("d", t0 + 15_000, t0 + 25_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .renew_job_lease(&b.job_id, "b", t0 + 30_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .renew_job_lease(&b.job_id, "c", t0 + 30_000)
            .await
            .unwrap()
    );
    // Writes are fenced: the old holder's event is refused, the new
    // holder's goes in once, and a second event with the same sequence
    // (a writer that fell behind) is refused too.
    let started = |owner: &str| JobUpdate {
        job_id: b.job_id.clone(),
        state: JobState::Downloading,
        progress_percent: 0.0,
        current_step: "Starting job processing".into(),
        clips_completed: None,
        total_clips: None,
        error: None,
        output: None,
        sequence: 1,
        lease_owner: Some(owner.to_owned()),
    };
    assert!(matches!(
        store.record_event(&started("b"), None).await,
        Err(RecordError::Fenced)
    ));
    store.record_event(&started("c"), None).await.unwrap();
    assert!(matches!(
        store.record_event(&started("c"), None).await,
        Err(RecordError::Fenced)
    ));
    let row = store.get_job(&b.job_id).await.unwrap().unwrap();
    assert_eq!(row.last_sequence, 1);
    assert_eq!(row.state, JobState::Downloading);
    // a's lease runs out in its turn.
    let later = store
        .take_expired_jobs("c", t0 + 20_000, t0 + 30_000)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].job_id, ids[0]);

    // A released job is claimable again, and is the oldest queued one.
    store.release_job(&ids[0], "c").await.unwrap();
    let again = store.claim_job("e", t0 + 40_000).await.unwrap().unwrap();
    assert_eq!(again.job_id, ids[0]);
    let last = store.claim_job("e", t0 + 40_000).await.unwrap().unwrap();
    assert_eq!(last.job_id, ids[2]);
    assert!(store.claim_job("e", t0 + 40_000).await.unwrap().is_none());
    store.close().await;
}

/// Worker A's clock stands still, so its renewals never reach past the
/// present of worker B, which takes A's running job over: the job gets
/// exactly one `job.failed`, from B, after A's events and in sequence; A,
/// still alive, stops the job and writes nothing more for it.
async fn a_stale_workers_job_is_failed_once_by_the_worker_that_takes_it_over(kind: StoreKind) {
    assert_eq!(kind, StoreKind::Postgres, "a fleet needs PostgreSQL");
    let ts = TestStore::new(kind).await;
    let mut rx = Receiver::ok().await;
    let frozen = Clock::manual(1_000);
    let a = spawn_app_on(&ts, |c| {
        c.clock = frozen.clone();
        c.job_lease_ms = 300;
    })
    .await;
    // Each stage lasts ten minutes: the job is mid-pipeline until taken.
    let job_id = a
        .submit_ok(job("sim://video?stage_ms=600000", &rx.url("/s"), 2))
        .await;
    let first = rx.next(T).await;
    assert_eq!(first.payload().event, Event::Started);
    // Until the delivery leases of a fleet, a second worker's lane could
    // overtake A's: let A deliver what it has first.
    a.wait_for_ledger(&job_id, T, |l| {
        l.len() >= 2 && l.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    let mut before = vec![first];
    before.extend(rx.drain_now());
    let b = spawn_app_on(&ts, |c| c.job_lease_ms = 300).await;
    let got = rx.until_terminal(&job_id, T).await;
    let failed = got.last().unwrap().payload();
    assert_eq!(failed.event, Event::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("Job interrupted: the worker running it stopped while the job was downloading")
    );
    let mut all = before;
    all.extend(got);
    let seqs: Vec<u64> = all.iter().map(|r| r.payload().sequence.unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "in order, no gap"
    );
    assert_eq!(
        all.iter()
            .filter(|r| r.payload().event.is_terminal())
            .count(),
        1
    );
    // A learns of the loss at its next renewal and stops the job; nothing of
    // A's reaches the store after B's terminal event.
    let view = b
        .wait_for_job(&job_id, T, |v| v.status == JobState::Failed)
        .await;
    assert_eq!(view.status, JobState::Failed);
    a.stop().await;
    b.stop().await;
    let extra = rx.drain_now();
    assert!(
        extra.iter().all(|r| r.payload().job_id != job_id),
        "nothing after the terminal event: {extra:?}"
    );
}

/// An idle worker whose fallback poll is an hour away still starts, at
/// once, a job submitted to another worker that has no free slot: only the
/// PostgreSQL notification can have woken it.
async fn a_job_submitted_to_a_busy_worker_wakes_an_idle_one(kind: StoreKind) {
    assert_eq!(kind, StoreKind::Postgres, "a fleet needs PostgreSQL");
    let ts = TestStore::new(kind).await;
    let mut rx = Receiver::ok().await;
    let busy = spawn_app_on(&ts, |c| c.max_concurrent_jobs = 1).await;
    let long = busy
        .submit_ok(job("sim://video?stage_ms=600000", &rx.url("/l"), 1))
        .await;
    let started = rx.next(T).await;
    assert_eq!(started.payload().job_id, long);
    let idle = spawn_app_on(&ts, |c| c.queue_poll_ms = 3_600_000).await;
    // Two jobs, one after the other, through the busy worker: the idle one
    // runs both. Whatever woke it for the first (its start-up claim may have
    // found it), once that job has ended its dispatcher has looked at the
    // queue again and found it empty: the second can only reach it by a
    // notification.
    for n in ["n1", "n2"] {
        let next = busy
            .submit_ok(job(
                &format!("https://youtube.com/watch?v={n}"),
                &rx.url("/n"),
                1,
            ))
            .await;
        let got = rx.until_terminal(&next, T).await;
        assert_eq!(got.last().unwrap().payload().event, Event::Completed);
        assert_eq!(got[0].payload().event, Event::Started);
    }
    idle.stop().await;
    busy.stop().await;
}

/// A worker that shuts down mid-job expires its leases on the way out, so
/// another worker fails the job at its next look, long before the lease
/// (30 s here) would have run out.
async fn a_worker_that_shuts_down_hands_its_running_job_over_at_once(kind: StoreKind) {
    assert_eq!(kind, StoreKind::Postgres, "a fleet needs PostgreSQL");
    let ts = TestStore::new(kind).await;
    let mut rx = Receiver::ok().await;
    let a = spawn_app_on(&ts, |c| c.job_lease_ms = 30_000).await;
    let job_id = a
        .submit_ok(job("sim://video?stage_ms=600000", &rx.url("/h"), 1))
        .await;
    assert_eq!(rx.next(T).await.payload().event, Event::Started);
    // Started after A claimed the job: A holds it.
    // A short fallback poll: when A's release of the job's delivery lease
    // and B's announcement cross, B's lane waits for that poll (a known
    // race, see ARCHITECTURE.md), which at the default 5 s would eat most of
    // the test's 10 s.
    let b = spawn_app_on(&ts, |c| {
        c.job_lease_ms = 30_000;
        c.queue_poll_ms = 200;
    })
    .await;
    a.stop().await;
    let got = rx.until_terminal(&job_id, T).await;
    let failed = got.last().unwrap().payload();
    assert_eq!(failed.event, Event::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("Job interrupted: the worker running it stopped while the job was downloading")
    );
    b.stop().await;
}

/// One delivery lease per job: a second lane is refused while the first
/// holds it, takes it once it ran out, and the first can then neither renew
/// nor release it; a job with pending deliveries and no live lease is
/// found by the sweep's query, a held one is not.
async fn delivery_leases_allow_one_lane_per_job(kind: StoreKind) {
    assert_eq!(kind, StoreKind::Postgres, "SQLite grants every lane");
    let ts = TestStore::new(kind).await;
    let store = open(&ts).await;
    let ids = queued(&store, 2).await;
    // A pending delivery for the first job.
    let update = JobUpdate {
        job_id: ids[0].clone(),
        state: JobState::Downloading,
        progress_percent: 0.0,
        current_step: "Starting job processing".into(),
        clips_completed: None,
        total_clips: None,
        error: None,
        output: None,
        sequence: 1,
        lease_owner: None,
    };
    let delivery = NewDelivery {
        delivery_id: "msg_lease_test".into(),
        job_id: ids[0].clone(),
        sequence: 1,
        event: Event::Started,
        url: "http://127.0.0.1:9/x".into(),
        body: bytes::Bytes::from_static(b"{}"),
        created_at: 1,
    };
    store.record_event(&update, Some(&delivery)).await.unwrap();
    let t0 = 1_000_000;
    let job = ids[0].as_str();

    assert_eq!(
        store.orphaned_lanes(t0, 10).await.unwrap(),
        [job],
        "nobody holds it"
    );
    assert!(
        store
            .acquire_lane(job, "w1#1", t0, t0 + 10_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .orphaned_lanes(t0 + 5_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .acquire_lane(job, "w2#1", t0 + 5_000, t0 + 15_000)
            .await
            .unwrap()
    );
    assert!(store.renew_lane(job, "w1#1", t0 + 20_000).await.unwrap());
    assert!(
        !store
            .acquire_lane(job, "w2#1", t0 + 15_000, t0 + 25_000)
            .await
            .unwrap()
    );
    // w1 stops renewing; its lease runs out and w2 takes it.
    assert_eq!(store.orphaned_lanes(t0 + 20_001, 10).await.unwrap(), [job]);
    assert!(
        store
            .acquire_lane(job, "w2#1", t0 + 20_001, t0 + 30_000)
            .await
            .unwrap()
    );
    assert!(!store.renew_lane(job, "w1#1", t0 + 40_000).await.unwrap());
    store.release_lane(job, "w1#1").await.unwrap();
    assert!(
        !store
            .acquire_lane(job, "w3#1", t0 + 21_000, t0 + 31_000)
            .await
            .unwrap(),
        "w1's release is no release of w2's lease"
    );
    store.release_lane(job, "w2#1").await.unwrap();
    assert!(
        store
            .acquire_lane(job, "w3#1", t0 + 21_000, t0 + 31_000)
            .await
            .unwrap()
    );
    store.close().await;
}

/// Three workers; one job's callback refuses everything, the others' answer.
/// Every other job is delivered in full while the refused job's
/// `job.started` is retried, by one lane at a time across the fleet, and its
/// later events wait behind it.
async fn a_dead_callback_holds_up_only_its_own_job_fleet_wide(kind: StoreKind) {
    assert_eq!(kind, StoreKind::Postgres, "a fleet needs PostgreSQL");
    let ts = TestStore::new(kind).await;
    let mut ok = Receiver::ok().await;
    let dead = Receiver::start(|_| crate::helpers::Reply {
        status: 503,
        retry_after: None,
        hang: Some(Duration::from_millis(50)),
    })
    .await;
    let workers = [
        spawn_app_on(&ts, |c| {
            c.retry_schedule = crate::helpers::long_schedule("20ms", 1000)
        })
        .await,
        spawn_app_on(&ts, |c| {
            c.retry_schedule = crate::helpers::long_schedule("20ms", 1000)
        })
        .await,
        spawn_app_on(&ts, |c| {
            c.retry_schedule = crate::helpers::long_schedule("20ms", 1000)
        })
        .await,
    ];
    let stuck = workers[0]
        .submit_ok(job(
            "https://youtube.com/watch?v=dead",
            &dead.url("/dead"),
            1,
        ))
        .await;
    let mut others = Vec::new();
    for i in 0..9 {
        let w = &workers[i % 3];
        others.push(
            w.submit_ok(job(
                &format!("https://youtube.com/watch?v=ok{i}"),
                &ok.url("/ok"),
                1,
            ))
            .await,
        );
    }
    let mut completed = std::collections::HashSet::new();
    while completed.len() < others.len() {
        let r = ok.next(T).await;
        if r.ok() && r.payload().event == Event::Completed {
            completed.insert(r.payload().job_id.clone());
        }
    }
    // The stuck job has ended too; its deliveries have not.
    let view = workers[1]
        .wait_for_job(&stuck, T, |v| v.status.is_terminal())
        .await;
    assert_eq!(view.status, JobState::Completed);
    let ledger = workers[2]
        .wait_for_ledger(&stuck, T, |l| {
            l[0]["attempts"].as_array().is_some_and(|a| a.len() >= 3)
        })
        .await;
    assert_eq!(ledger[0]["event"], "job.started");
    assert_eq!(ledger[0]["status"], "pending");
    for later in &ledger[1..] {
        assert_eq!(later["status"], "pending", "{later:#}");
        assert_eq!(later["attempt_count"], 0, "later events wait: {later:#}");
    }
    // One lane at a time: each attempt (50 ms at the receiver) starts after
    // the previous one ended.
    let attempts = ledger[0]["attempts"].as_array().unwrap();
    let times: Vec<chrono::DateTime<chrono::Utc>> = attempts
        .iter()
        .map(|a| a["attempted_at"].as_str().unwrap().parse().unwrap())
        .collect();
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= chrono::TimeDelta::milliseconds(45),
            "overlapping attempts: {times:?}"
        );
    }
    for w in workers {
        w.stop().await;
    }
}

/// A worker shutting down hands its job's pending deliveries over: another
/// worker delivers them, in order, once the callback answers.
async fn a_stopped_workers_pending_deliveries_are_delivered_by_another(kind: StoreKind) {
    assert_eq!(kind, StoreKind::Postgres, "a fleet needs PostgreSQL");
    let ts = TestStore::new(kind).await;
    let mut rx = Receiver::start(|_| crate::helpers::Reply::status(500)).await;
    let schedule = || crate::helpers::long_schedule("100ms", 1000);
    let a = spawn_app_on(&ts, |c| c.retry_schedule = schedule()).await;
    let job_id = a
        .submit_ok(job("https://youtube.com/watch?v=h", &rx.url("/h"), 2))
        .await;
    a.wait_for_job(&job_id, T, |v| v.status.is_terminal()).await;
    let b = spawn_app_on(&ts, |c| c.retry_schedule = schedule()).await;
    a.stop().await;
    let _ = rx.drain_now();
    rx.set_script(|_| crate::helpers::Reply::status(200));
    let got = rx.until_terminal(&job_id, T).await;
    let mut seen = std::collections::HashSet::new();
    let seqs: Vec<u64> = got
        .iter()
        .filter(|r| r.ok() && seen.insert(r.webhook_id().to_owned()))
        .map(|r| r.payload().sequence.unwrap())
        .collect();
    assert_eq!(seqs.first(), Some(&1));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let ledger = b
        .wait_for_ledger(&job_id, T, |l| l.iter().all(|d| d["status"] != "pending"))
        .await;
    assert_eq!(ledger.last().unwrap()["status"], "delivered");
    b.stop().await;
}

on_both_stores!(leases_expire_renew_and_are_taken_over_once);

mod delivery_leases_allow_one_lane_per_job {
    #[tokio::test]
    async fn postgres() {
        super::delivery_leases_allow_one_lane_per_job(crate::helpers::StoreKind::Postgres).await
    }
}

mod a_dead_callback_holds_up_only_its_own_job_fleet_wide {
    #[tokio::test]
    async fn postgres() {
        super::a_dead_callback_holds_up_only_its_own_job_fleet_wide(
            crate::helpers::StoreKind::Postgres,
        )
        .await
    }
}

mod a_stopped_workers_pending_deliveries_are_delivered_by_another {
    #[tokio::test]
    async fn postgres() {
        super::a_stopped_workers_pending_deliveries_are_delivered_by_another(
            crate::helpers::StoreKind::Postgres,
        )
        .await
    }
}

mod a_worker_that_shuts_down_hands_its_running_job_over_at_once {
    #[tokio::test]
    async fn postgres() {
        super::a_worker_that_shuts_down_hands_its_running_job_over_at_once(
            crate::helpers::StoreKind::Postgres,
        )
        .await
    }
}

mod a_stale_workers_job_is_failed_once_by_the_worker_that_takes_it_over {
    #[tokio::test]
    async fn postgres() {
        super::a_stale_workers_job_is_failed_once_by_the_worker_that_takes_it_over(
            crate::helpers::StoreKind::Postgres,
        )
        .await
    }
}

mod a_job_submitted_to_a_busy_worker_wakes_an_idle_one {
    #[tokio::test]
    async fn postgres() {
        super::a_job_submitted_to_a_busy_worker_wakes_an_idle_one(
            crate::helpers::StoreKind::Postgres,
        )
        .await
    }
}
