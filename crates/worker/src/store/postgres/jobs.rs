//! PostgreSQL: the `jobs` table, and the job updates of the event writer.
//!
//! Batches are written with one statement per table over `UNNEST`ed arrays,
//! one array per column: the statement text never changes with the batch
//! size, so it is prepared once.

use webhook_types::ClippingJobRequest;

use super::Postgres;
use crate::clock::now_ms;
use crate::store::model::{RawJob, parse_all};
use crate::store::{FencedUpdate, Inserted, JobRow, NewDelivery};

impl Postgres {
    pub(in crate::store) async fn insert_job(
        &self,
        job_id: &str,
        request: &ClippingJobRequest,
        lease: Option<(&str, i64)>,
    ) -> Result<Inserted, sqlx::Error> {
        let now = now_ms();
        let request_json = serde_json::to_string(request).expect("a request serialises");
        let created = sqlx::query_as::<_, RawJob>(
            "INSERT INTO jobs (job_id, external_job_id, owner_user_id, request, callback_url,
                               state, progress_percent, current_step, created_at, updated_at,
                               lease_owner, lease_expires_at)
             VALUES ($1, $2, $3, $4, $5, 'queued', 0, 'Queued', $6, $6, $7, $8)
             ON CONFLICT DO NOTHING
             RETURNING *",
        )
        .bind(job_id)
        .bind(&request.external_job_id)
        .bind(&request.owner_user_id)
        .bind(request_json)
        .bind(&request.callback_url)
        .bind(now)
        .bind(lease.map(|(owner, _)| owner))
        .bind(lease.map(|(_, expires_at)| expires_at))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = created {
            if lease.is_some() {
                // Held from the start: nobody else may claim it.
                return Ok(Inserted::Created(row.try_into()?));
            }
            // Wakes idle workers, which claim the oldest queued job. The job
            // is stored either way: a lost wake-up only waits for the poll.
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::store::JOBS_CHANNEL)
                .bind(job_id)
                .execute(&self.pool)
                .await
            {
                tracing::warn!(%job_id, error = ?e, "failed to announce a new job to the fleet");
            }
            return Ok(Inserted::Created(row.try_into()?));
        }
        // The conflicting row committed before our insert gave up, so it is
        // visible to this next statement.
        if let Some(ext) = &request.external_job_id
            && let Some(row) =
                sqlx::query_as::<_, RawJob>("SELECT * FROM jobs WHERE external_job_id = $1")
                    .bind(ext)
                    .fetch_optional(&self.pool)
                    .await?
        {
            return Ok(Inserted::Existing(row.try_into()?));
        }
        let row = self.get_job(job_id).await?;
        Ok(Inserted::Existing(row.ok_or(sqlx::Error::RowNotFound)?))
    }

    pub(in crate::store) async fn get_job(
        &self,
        job_id: &str,
    ) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query_as::<_, RawJob>("SELECT * FROM jobs WHERE job_id = $1")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?
            .map(JobRow::try_from)
            .transpose()
    }

    pub(in crate::store) async fn queued_jobs(&self) -> Result<Vec<JobRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawJob>(
            "SELECT * FROM jobs WHERE state = 'queued' ORDER BY created_at, intake_order",
        )
        .fetch_all(&self.pool)
        .await?;
        parse_all(rows)
    }

    pub(in crate::store) async fn interrupted_jobs(&self) -> Result<Vec<JobRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawJob>(
            "SELECT * FROM jobs WHERE state NOT IN ('queued', 'completed', 'failed')
             ORDER BY created_at, intake_order",
        )
        .fetch_all(&self.pool)
        .await?;
        parse_all(rows)
    }

    /// Commits the newest state of each job in a batch of events and the
    /// batch's outbox rows, in one transaction.
    pub(in crate::store) async fn write_events(
        &self,
        updates: &[FencedUpdate<'_>],
        deliveries: &[&NewDelivery],
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        if !updates.is_empty() {
            let mut ids = Vec::with_capacity(updates.len());
            let mut states = Vec::with_capacity(updates.len());
            let mut progress = Vec::with_capacity(updates.len());
            let mut steps = Vec::with_capacity(updates.len());
            let mut done = Vec::with_capacity(updates.len());
            let mut totals = Vec::with_capacity(updates.len());
            let mut errors = Vec::with_capacity(updates.len());
            let mut outputs = Vec::with_capacity(updates.len());
            let mut sequences = Vec::with_capacity(updates.len());
            let mut afters = Vec::with_capacity(updates.len());
            let mut owners = Vec::with_capacity(updates.len());
            for f in updates {
                let u = f.update;
                afters.push(f.after);
                owners.push(u.lease_owner.as_deref());
                ids.push(u.job_id.as_str());
                states.push(u.state.as_str());
                progress.push(u.progress_percent);
                steps.push(u.current_step.as_str());
                done.push(u.clips_completed.map(i64::from));
                totals.push(u.total_clips.map(i64::from));
                errors.push(u.error.as_deref());
                outputs.push(
                    u.output
                        .as_ref()
                        .map(|o| serde_json::to_string(o).expect("output serialises")),
                );
                sequences.push(u.sequence as i64);
            }
            let written = sqlx::query(
                "UPDATE jobs SET state = v.state, progress_percent = v.progress,
                        current_step = v.step, clips_completed = v.done,
                        total_clips = v.total, error = v.error, output = v.output,
                        last_sequence = v.sequence, updated_at = $12
                 FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::text[], $5::int8[],
                             $6::int8[], $7::text[], $8::text[], $9::int8[], $10::int8[],
                             $11::text[])
                      AS v(job_id, state, progress, step, done, total, error, output, sequence,
                           after, owner)
                 WHERE jobs.job_id = v.job_id AND jobs.last_sequence = v.after
                   AND jobs.lease_owner IS NOT DISTINCT FROM v.owner",
            )
            .bind(&ids)
            .bind(&states)
            .bind(&progress)
            .bind(&steps)
            .bind(&done)
            .bind(&totals)
            .bind(&errors)
            .bind(&outputs)
            .bind(&sequences)
            .bind(&afters)
            .bind(&owners)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if written != updates.len() as u64 {
                return Ok(false);
            }
        }
        if !deliveries.is_empty() {
            let mut ids = Vec::with_capacity(deliveries.len());
            let mut jobs = Vec::with_capacity(deliveries.len());
            let mut sequences = Vec::with_capacity(deliveries.len());
            let mut events = Vec::with_capacity(deliveries.len());
            let mut urls = Vec::with_capacity(deliveries.len());
            let mut bodies = Vec::with_capacity(deliveries.len());
            let mut created = Vec::with_capacity(deliveries.len());
            for d in deliveries {
                ids.push(d.delivery_id.as_str());
                jobs.push(d.job_id.as_str());
                sequences.push(d.sequence as i64);
                events.push(d.event.as_str());
                urls.push(d.url.as_str());
                bodies.push(d.body.to_vec());
                created.push(d.created_at);
            }
            sqlx::query(
                "INSERT INTO deliveries (delivery_id, job_id, sequence, event, url, body, status,
                                         attempt_count, next_attempt_at, created_at, updated_at)
                 SELECT v.id, v.job_id, v.sequence, v.event, v.url, v.body, 'pending', 0,
                        v.created, v.created, v.created
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[],
                             $6::bytea[], $7::int8[])
                      AS v(id, job_id, sequence, event, url, body, created)",
            )
            .bind(&ids)
            .bind(&jobs)
            .bind(&sequences)
            .bind(&events)
            .bind(&urls)
            .bind(&bodies)
            .bind(&created)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// Job leases. Claims skip rows another worker is claiming at that moment
/// (`FOR UPDATE SKIP LOCKED`), so workers never wait on each other and
/// never claim the same job.
impl Postgres {
    pub(in crate::store) async fn claim_job(
        &self,
        owner: &str,
        expires_at: i64,
    ) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query_as::<_, RawJob>(
            "UPDATE jobs SET lease_owner = $1, lease_expires_at = $2
             WHERE job_id = (SELECT job_id FROM jobs
                             WHERE state = 'queued' AND lease_owner IS NULL
                             ORDER BY created_at, intake_order
                             LIMIT 1
                             FOR UPDATE SKIP LOCKED)
             RETURNING *",
        )
        .bind(owner)
        .bind(expires_at)
        .fetch_optional(&self.pool)
        .await?
        .map(JobRow::try_from)
        .transpose()
    }

    pub(in crate::store) async fn renew_job_lease(
        &self,
        job_id: &str,
        owner: &str,
        expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $3 WHERE job_id = $1 AND lease_owner = $2",
        )
        .bind(job_id)
        .bind(owner)
        .bind(expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub(in crate::store) async fn release_job(
        &self,
        job_id: &str,
        owner: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "WITH released AS (
                 UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL
                 WHERE job_id = $1 AND lease_owner = $2
                 RETURNING job_id)
             SELECT pg_notify($3, job_id) FROM released",
        )
        .bind(job_id)
        .bind(owner)
        .bind(crate::store::JOBS_CHANNEL)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    pub(in crate::store) async fn take_expired_jobs(
        &self,
        owner: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<JobRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawJob>(
            "UPDATE jobs SET lease_owner = $1, lease_expires_at = $2
             WHERE job_id IN (SELECT job_id FROM jobs
                              WHERE lease_owner IS NOT NULL AND lease_expires_at < $3
                                AND state NOT IN ('completed', 'failed')
                              FOR UPDATE SKIP LOCKED)
             RETURNING *",
        )
        .bind(owner)
        .bind(expires_at)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs: Vec<JobRow> = parse_all(rows)?;
        jobs.sort_by_key(|j| j.created_at);
        Ok(jobs)
    }

    pub(in crate::store) async fn abandon_jobs(&self, owner: &str) -> Result<(), sqlx::Error> {
        // Wakes the other workers' reapers (the payload names no job).
        sqlx::query(
            "WITH abandoned AS (
                 UPDATE jobs SET lease_expires_at = 0
                 WHERE lease_owner = $1 AND state NOT IN ('completed', 'failed')
                 RETURNING job_id)
             SELECT pg_notify($2, $3) WHERE EXISTS (SELECT 1 FROM abandoned)",
        )
        .bind(owner)
        .bind(crate::store::JOBS_CHANNEL)
        .bind(crate::store::REAP_PAYLOAD)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }
}
