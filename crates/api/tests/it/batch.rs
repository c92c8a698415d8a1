//! A batch of deliveries as one unit of work (`api::batch`) against the
//! reference, the same deliveries applied one at a time
//! (`api::receiver::process`): same answers, same rows, same events with the
//! same `eventId`s. Both run on one database, each on its own users and jobs.

use std::collections::HashMap;

use api::batch::{self, Delivery};
use api::jobs::WriteCtx;
use api::receiver::Outcome;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;
use webhook_types::WebhookPayload;

use crate::helpers::*;

const CTX: WriteCtx<'static> = WriteCtx {
    cdn_domain: Some(CDN),
};

/// A delivery described without the ids of any one world.
#[derive(Debug, Clone)]
struct Abstract {
    /// Index of the job; `None`: a job that does not exist.
    job: Option<usize>,
    /// Name the job by our id (else only by the worker's).
    by_our_id: bool,
    /// The webhook's body, with `JOB` standing for our id of the job.
    body: Value,
    /// The `webhook-id`, the same for a delivery and its repeats.
    webhook_id: String,
}

/// Users and jobs of one world: the batched one or the reference.
struct World {
    tag: &'static str,
    users: Vec<Uuid>,
    jobs: Vec<Uuid>,
    /// Stands in for a job that does not exist.
    missing: Uuid,
}

impl World {
    /// `owners[i]` is the index of job `i`'s user. Jobs start `submitted`
    /// without a worker id (no submission row, so no submitter touches them).
    async fn make(pool: &PgPool, tag: &'static str, users: usize, owners: &[usize]) -> World {
        let mut ids = Vec::new();
        for _ in 0..users {
            let email = format!("{tag}-{}@example.com", Uuid::now_v7());
            ids.push(api::store::create_user(pool, &email, None).await.unwrap().0);
        }
        let mut jobs = Vec::new();
        for &owner in owners {
            let job = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO clipping_jobs (id, user_id, status, video_url, request) \
                 VALUES ($1, $2, 'submitted', 'https://example.com/v', '{}')",
            )
            .bind(job)
            .bind(ids[owner])
            .execute(pool)
            .await
            .unwrap();
            jobs.push(job);
        }
        World {
            tag,
            users: ids,
            jobs,
            missing: Uuid::now_v7(),
        }
    }

    fn concrete(&self, d: &Abstract) -> (String, WebhookPayload) {
        let job = d.job.map_or(self.missing, |i| self.jobs[i]);
        let mut body = d.body.clone();
        body["job_id"] = json!(format!("w-{job}"));
        if let Some(o) = body.get_mut("output") {
            o["job_id"] = json!(format!("w-{job}"));
        }
        if d.by_our_id {
            body["external_job_id"] = json!(job.to_string());
        } else {
            body.as_object_mut().unwrap().remove("external_job_id");
        }
        let payload = webhook_types::parse_json(&serde_json::to_vec(&body).unwrap()).unwrap();
        (format!("{}-{}", self.tag, d.webhook_id), payload)
    }

    /// Every delivery in its own transaction, in order.
    async fn one_at_a_time(&self, pool: &PgPool, deliveries: &[Abstract]) -> Vec<Outcome> {
        let mut out = Vec::new();
        for d in deliveries {
            let (id, payload) = self.concrete(d);
            out.push(
                api::receiver::process(pool, Some(&id), &payload, CTX)
                    .await
                    .unwrap(),
            );
        }
        out
    }

    /// The deliveries cut into batches of these sizes, each batch one
    /// transaction.
    async fn batched(
        &self,
        pool: &PgPool,
        deliveries: &[Abstract],
        sizes: &[usize],
    ) -> Vec<Outcome> {
        let concrete: Vec<(String, WebhookPayload)> =
            deliveries.iter().map(|d| self.concrete(d)).collect();
        let mut out = Vec::new();
        let mut rest = &concrete[..];
        let mut sizes = sizes.iter().copied().cycle();
        while !rest.is_empty() {
            let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
            let (now, later) = rest.split_at(n);
            rest = later;
            let batch: Vec<Delivery<'_>> = now
                .iter()
                .map(|(id, payload)| Delivery {
                    webhook_id: Some(id),
                    payload,
                })
                .collect();
            let mut tx = pool.begin().await.unwrap();
            out.extend(batch::apply(&mut tx, &batch, CTX).await.unwrap());
            tx.commit().await.unwrap();
        }
        out
    }

    /// Everything the deliveries can have changed, with this world's ids
    /// replaced by indices, so that two worlds compare equal.
    async fn snapshot(&self, pool: &PgPool) -> Value {
        let jobs: Vec<Value> = sqlx::query_scalar(
            "SELECT jsonb_build_object('id', id, 'user', user_id, 'status', status, \
               'worker_job_id', worker_job_id, 'progress', progress_percent, \
               'step', current_step, 'pipeline', pipeline_status, \
               'clips_completed', clips_completed, 'total_clips', total_clips, 'error', error, \
               'title', source_video_title, 'duration', source_video_duration_seconds, \
               'processing', processing_time_seconds, 'last_sequence', last_sequence, \
               'heard', last_heard_at IS NOT NULL, 'changed', updated_at <> created_at, \
               'completed_at', completed_at IS NOT NULL, 'failed_at', failed_at IS NOT NULL) \
             FROM clipping_jobs WHERE id = ANY($1) ORDER BY array_position($1, id)",
        )
        .bind(&self.jobs)
        .fetch_all(pool)
        .await
        .unwrap();
        let clips: Vec<Value> = sqlx::query_scalar(
            "SELECT to_jsonb(c) - 'created_at' FROM clips c WHERE job_id = ANY($1) \
             ORDER BY array_position($1, job_id), clip_index",
        )
        .bind(&self.jobs)
        .fetch_all(pool)
        .await
        .unwrap();
        let events: Vec<Value> = sqlx::query_scalar(
            "SELECT jsonb_build_object('user', user_id, 'event_id', event_id, 'job', job_id, \
               'message', message - 'at') \
             FROM user_events WHERE user_id = ANY($1) \
             ORDER BY array_position($1, user_id), event_id",
        )
        .bind(&self.users)
        .fetch_all(pool)
        .await
        .unwrap();
        let counters: Vec<i64> = sqlx::query_scalar(
            "SELECT last_event_id FROM users WHERE id = ANY($1) ORDER BY array_position($1, id)",
        )
        .bind(&self.users)
        .fetch_all(pool)
        .await
        .unwrap();
        let receipts: Vec<Value> = sqlx::query_scalar(
            "SELECT jsonb_build_object('id', substr(webhook_id, length($1) + 2), 'job', job_id, \
               'event', event, 'sequence', sequence, 'outcome', outcome) \
             FROM webhook_receipts WHERE webhook_id LIKE $1 || '-%' ORDER BY webhook_id",
        )
        .bind(self.tag)
        .fetch_all(pool)
        .await
        .unwrap();
        let mut text = json!({
            "jobs": jobs, "clips": clips, "events": events,
            "counters": counters, "receipts": receipts,
        })
        .to_string();
        for (i, id) in self.jobs.iter().enumerate() {
            text = text.replace(&id.to_string(), &format!("JOB{i}"));
        }
        for (i, id) in self.users.iter().enumerate() {
            text = text.replace(&id.to_string(), &format!("USER{i}"));
        }
        serde_json::from_str(&text).unwrap()
    }
}

fn step(event: &str, seq: Option<u64>, status: &str, pct: f64, text: &str) -> Value {
    let mut body = payload(Uuid::nil(), event, 0, status, pct, text);
    if event == "job.failed" {
        body["error"] = json!(format!("Rendering failed: {text}"));
    }
    match seq {
        Some(seq) => body["sequence"] = json!(seq),
        None => {
            body.as_object_mut().unwrap().remove("sequence");
        }
    }
    body
}

fn done(seq: u64, clips: usize) -> Value {
    let mut body = completed(Uuid::nil(), seq);
    let all = body["output"]["clips"].as_array().unwrap().clone();
    body["output"]["clips"] = json!(all[..clips.min(all.len())]);
    body.as_object_mut().unwrap().remove("clips_completed");
    body
}

fn delivery(job: usize, id: &str, body: Value) -> Abstract {
    Abstract {
        job: Some(job),
        by_our_id: true,
        body,
        webhook_id: id.to_owned(),
    }
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn one_batch_ends_where_one_at_a_time_delivery_ends(pool: PgPool) {
    // Job 0 (user 0): started, progress, a repeat of that progress, completed
    // and a progress arriving late; jobs 1 to 3 belong to three other users.
    let deliveries = vec![
        delivery(
            0,
            "a1",
            step("job.started", Some(1), "downloading", 0.0, "Starting"),
        ),
        delivery(
            1,
            "b1",
            step("job.started", Some(1), "downloading", 0.0, "go"),
        ),
        delivery(
            0,
            "a2",
            step(
                "job.progress",
                Some(2),
                "transcribing",
                30.0,
                "Transcribing",
            ),
        ),
        delivery(
            2,
            "c1",
            step("job.progress", Some(4), "rendering", 55.0, "r"),
        ),
        delivery(
            0,
            "a2",
            step(
                "job.progress",
                Some(2),
                "transcribing",
                30.0,
                "Transcribing",
            ),
        ),
        delivery(0, "a3", done(3, 2)),
        delivery(3, "d1", step("job.failed", Some(2), "failed", 10.0, "x")),
        delivery(
            0,
            "a4",
            step("job.progress", Some(4), "rendering", 90.0, "Late"),
        ),
        delivery(
            2,
            "c0",
            step("job.progress", Some(3), "rendering", 50.0, "old"),
        ),
    ];
    let owners = [0, 1, 2, 3];
    let reference = World::make(&pool, "one", 4, &owners).await;
    let batched = World::make(&pool, "batch", 4, &owners).await;

    let expected = reference.one_at_a_time(&pool, &deliveries).await;
    let got = batched
        .batched(&pool, &deliveries, &[deliveries.len()])
        .await;

    use Outcome::*;
    assert_eq!(
        expected,
        [
            Applied, Applied, Applied, Applied, Duplicate, Applied, Applied, Terminal, Stale
        ]
    );
    assert_eq!(got, expected);
    let want = reference.snapshot(&pool).await;
    let have = batched.snapshot(&pool).await;
    assert_eq!(have, want);
    // Job 0's owner got started, progress, completed as 1, 2, 3; the
    // completion carries the clips as stored.
    let events = have["events"].as_array().unwrap();
    let of_user0: Vec<&Value> = events.iter().filter(|e| e["user"] == "USER0").collect();
    let kinds: Vec<(&Value, &Value)> = of_user0
        .iter()
        .map(|e| (&e["event_id"], &e["message"]["type"]))
        .collect();
    assert_eq!(
        kinds,
        [
            (&json!(1), &json!("clipping.started")),
            (&json!(2), &json!("clipping.progress")),
            (&json!(3), &json!("clipping.completed")),
        ]
    );
    assert_eq!(of_user0[2]["message"]["eventId"], 3);
    assert_eq!(of_user0[2]["message"]["clipCount"], 2);
    assert_eq!(have["counters"], json!([3, 1, 1, 1]));
    assert_eq!(have["jobs"][0]["worker_job_id"], "w-JOB0");
}

/// A small deterministic generator (xorshift64*), started from the case's
/// number, so that a failing case can be replayed from that number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Random event streams of a few jobs, interleaved: repeats, reorderings,
/// events without sequence, by the worker's id only, after the end, and for
/// jobs that do not exist.
fn random_case(rng: &mut Rng) -> (usize, Vec<usize>, Vec<Abstract>) {
    let users = 1 + rng.below(3) as usize;
    let jobs = 2 + rng.below(3) as usize;
    let owners: Vec<usize> = (0..jobs)
        .map(|_| rng.below(users as u64) as usize)
        .collect();
    let steps = ["Downloading", "Transcribing", "Rendering clip", "Uploading"];
    let statuses = ["downloading", "transcribing", "planning", "rendering"];
    let mut streams: Vec<Vec<Abstract>> = Vec::new();
    for job in 0..jobs {
        let mut stream = Vec::new();
        let mut seq = 0u64;
        let mut pct = 0.0;
        let push = |body: Value, stream: &mut Vec<Abstract>, rng: &mut Rng| {
            let id = format!("j{job}-{}", stream.len());
            stream.push(Abstract {
                job: Some(job),
                by_our_id: !rng.chance(20),
                body,
                webhook_id: id,
            });
        };
        seq += 1;
        push(
            step("job.started", Some(seq), "downloading", 0.0, "Starting"),
            &mut stream,
            rng,
        );
        for _ in 0..rng.below(6) {
            seq += 1;
            pct = (pct + rng.below(30) as f64).min(99.0);
            let s = rng.below(4) as usize;
            let legacy = rng.chance(10);
            let mut body = step(
                "job.progress",
                (!legacy).then_some(seq),
                statuses[s],
                pct,
                steps[s],
            );
            if rng.chance(50) {
                body["clips_completed"] = json!(rng.below(3));
                body["total_clips"] = json!(3);
            }
            push(body, &mut stream, rng);
        }
        match rng.below(10) {
            0..=3 => {
                seq += 1;
                push(done(seq, 1 + rng.below(2) as usize), &mut stream, rng);
            }
            4..=6 => {
                seq += 1;
                push(
                    step("job.failed", Some(seq), "failed", pct, "Failed"),
                    &mut stream,
                    rng,
                );
            }
            _ => {}
        }
        if rng.chance(30) {
            seq += 1;
            push(
                step("job.progress", Some(seq), "rendering", 95.0, "Late"),
                &mut stream,
                rng,
            );
        }
        // Repeats of earlier deliveries, under the same id.
        for _ in 0..rng.below(3) {
            let i = rng.below(stream.len() as u64) as usize;
            let again = stream[i].clone();
            let at = i + 1 + rng.below((stream.len() - i) as u64) as usize;
            stream.insert(at, again);
        }
        // Neighbours swapped: the later one arrives first.
        for _ in 0..rng.below(2) {
            let i = rng.below(stream.len() as u64) as usize;
            if i + 1 < stream.len() {
                stream.swap(i, i + 1);
            }
        }
        streams.push(stream);
    }
    if rng.chance(40) {
        streams.push(vec![Abstract {
            job: None,
            by_our_id: rng.chance(50),
            body: step("job.progress", Some(2), "rendering", 5.0, "Nobody's"),
            webhook_id: "nobody".into(),
        }]);
    }
    // Interleave, keeping each stream's own order.
    let mut out = Vec::new();
    let mut heads: Vec<std::collections::VecDeque<Abstract>> =
        streams.into_iter().map(Into::into).collect();
    while heads.iter().any(|h| !h.is_empty()) {
        let live: Vec<usize> = (0..heads.len()).filter(|&i| !heads[i].is_empty()).collect();
        let pick = live[rng.below(live.len() as u64) as usize];
        out.push(heads[pick].pop_front().unwrap());
    }
    (users, owners, out)
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn batched_and_one_at_a_time_agree_over_random_interleavings(pool: PgPool) {
    let mut largest = 0;
    for case in 1..=40u64 {
        let mut rng = Rng(case.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (users, owners, deliveries) = random_case(&mut rng);
        // Batches of random sizes, one of them often the whole stream.
        let sizes: Vec<usize> = if rng.chance(30) {
            vec![deliveries.len()]
        } else {
            (0..4).map(|_| 1 + rng.below(12) as usize).collect()
        };
        largest = largest.max(*sizes.iter().max().unwrap());
        let reference = World::make(&pool, "one", users, &owners).await;
        let batched = World::make(&pool, "batch", users, &owners).await;
        // Receipts of earlier cases must not collide.
        let deliveries: Vec<Abstract> = deliveries
            .into_iter()
            .map(|mut d| {
                d.webhook_id = format!("{case}-{}", d.webhook_id);
                d
            })
            .collect();

        let expected = reference.one_at_a_time(&pool, &deliveries).await;
        let got = batched.batched(&pool, &deliveries, &sizes).await;
        assert_eq!(
            got, expected,
            "case {case}, batches {sizes:?}, deliveries {deliveries:#?}"
        );
        let (want, have) = (
            reference.snapshot(&pool).await,
            batched.snapshot(&pool).await,
        );
        assert_eq!(
            have, want,
            "case {case}, batches {sizes:?}, deliveries {deliveries:#?}"
        );
        // Each world's receipts are its own: clear them for the next case's
        // LIKE prefix.
        sqlx::query("DELETE FROM webhook_receipts")
            .execute(&pool)
            .await
            .unwrap();
    }
    assert!(largest > 8, "some case batched many deliveries");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn two_instances_under_concurrent_batches_neither_deadlock_nor_leave_gaps(
    opts: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool_one = opts.clone().connect_with(connect.clone()).await.unwrap();
    let pool_two = opts.connect_with(connect).await.unwrap();
    let one = TestApp::spawn(pool_one).await;
    let two = TestApp::spawn(pool_two).await;
    // Four users with four jobs each: every batch meets jobs and users that
    // batches of other lanes and of the other instance also lock.
    let owners: Vec<usize> = (0..16).map(|i| i % 4).collect();
    let world = World::make(&one.pool, "two", 4, &owners).await;
    let mut sends = Vec::new();
    for round in 0..12u64 {
        for (i, job) in world.jobs.iter().enumerate() {
            let seq = round + 2;
            let body = progress(*job, seq, seq as f64 * 5.0, &format!("s{seq}"));
            let id = format!("msg_{job}_{seq}");
            // Each delivery to both instances under one id, in either order.
            let first_to_one = (i as u64 + round).is_multiple_of(2);
            sends.push((first_to_one, id.clone(), body.clone()));
            sends.push((!first_to_one, id, body));
        }
    }
    let (one_ref, two_ref) = (&one, &two);
    let answers =
        futures_util::future::join_all(sends.into_iter().map(|(to_one, id, body)| async move {
            let app = if to_one { one_ref } else { two_ref };
            let r = app
                .post_webhook_bytes(&id, serde_json::to_vec(&body).unwrap())
                .await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }))
        .await;

    let duplicates = answers.iter().filter(|a| a["duplicate"] == true).count();
    assert_eq!(duplicates, 12 * 16, "each delivery applied exactly once");
    for app in [&one, &two] {
        let c = &app.state.committer;
        assert!(c.largest_batch() > 1, "batches formed");
        assert_eq!(c.failed_batches(), 0, "no batch failed (no deadlock)");
    }
    let steps: HashMap<Uuid, String> = sqlx::query_as::<_, (Uuid, String)>(
        "SELECT id, current_step FROM clipping_jobs WHERE id = ANY($1)",
    )
    .bind(&world.jobs)
    .fetch_all(&one.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    for job in &world.jobs {
        assert_eq!(steps[job], "s13", "every job at its last sequence");
    }
    let ids: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT user_id, event_id FROM user_events WHERE user_id = ANY($1) \
         ORDER BY user_id, event_id",
    )
    .bind(&world.users)
    .fetch_all(&one.pool)
    .await
    .unwrap();
    let mut per_user: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for (u, id) in ids {
        per_user.entry(u).or_default().push(id);
    }
    for user in &world.users {
        let ids = &per_user[user];
        assert!(
            ids.iter().copied().eq(1..=ids.len() as i64),
            "event ids of a user are gap-free: {ids:?}"
        );
        let counter: i64 = sqlx::query_scalar("SELECT last_event_id FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&one.pool)
            .await
            .unwrap();
        assert_eq!(counter, ids.len() as i64);
    }
}
