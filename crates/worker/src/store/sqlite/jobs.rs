//! SQLite: the `jobs` table, and the job updates of the event writer.

use sqlx::{AssertSqlSafe, SqlitePool};
use webhook_types::ClippingJobRequest;

use super::{ROWS_PER_STATEMENT, Sqlite, placeholders};
use crate::clock::now_ms;
use crate::store::model::{RawJob, parse_all};
use crate::store::{FencedUpdate, Inserted, JobRow, NewDelivery};

impl Sqlite {
    /// Stores a new queued job, or returns the existing one when its
    /// `external_job_id` (or chosen `job_id`) is already known. The unique
    /// index decides, so this holds across restarts and concurrent
    /// submissions.
    pub(in crate::store) async fn insert_job(
        &self,
        job_id: &str,
        request: &ClippingJobRequest,
        lease: Option<(&str, i64)>,
    ) -> Result<Inserted, sqlx::Error> {
        let now = now_ms();
        let request_json = serde_json::to_string(request).expect("a request serialises");
        let inserted = sqlx::query(
            "INSERT INTO jobs (job_id, external_job_id, owner_user_id, request, callback_url,
                               state, progress_percent, current_step, created_at, updated_at,
                               lease_owner, lease_expires_at)
             VALUES (?, ?, ?, ?, ?, 'queued', 0, 'Queued', ?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(job_id)
        .bind(&request.external_job_id)
        .bind(&request.owner_user_id)
        .bind(request_json)
        .bind(&request.callback_url)
        .bind(now)
        .bind(now)
        .bind(lease.map(|(owner, _)| owner))
        .bind(lease.map(|(_, expires_at)| expires_at))
        .execute(&self.write)
        .await?
        .rows_affected();
        if inserted == 1 {
            let row = self.get_job_from(&self.write, job_id).await?;
            return Ok(Inserted::Created(row.expect("the job was just inserted")));
        }
        if let Some(ext) = &request.external_job_id
            && let Some(row) = self.find_by_external(ext).await?
        {
            return Ok(Inserted::Existing(row));
        }
        let row = self.get_job_from(&self.write, job_id).await?;
        Ok(Inserted::Existing(row.ok_or(sqlx::Error::RowNotFound)?))
    }

    /// A job by the worker's id.
    pub(in crate::store) async fn get_job(
        &self,
        job_id: &str,
    ) -> Result<Option<JobRow>, sqlx::Error> {
        self.get_job_from(&self.read, job_id).await
    }

    async fn get_job_from(
        &self,
        pool: &SqlitePool,
        job_id: &str,
    ) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query_as::<_, RawJob>("SELECT * FROM jobs WHERE job_id = ?")
            .bind(job_id)
            .fetch_optional(pool)
            .await?
            .map(JobRow::try_from)
            .transpose()
    }

    async fn find_by_external(&self, ext: &str) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query_as::<_, RawJob>("SELECT * FROM jobs WHERE external_job_id = ?")
            .bind(ext)
            .fetch_optional(&self.write)
            .await?
            .map(JobRow::try_from)
            .transpose()
    }

    /// Jobs still queued, oldest first: the queue to rebuild on start.
    pub(in crate::store) async fn queued_jobs(&self) -> Result<Vec<JobRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawJob>(
            "SELECT * FROM jobs WHERE state = 'queued' ORDER BY created_at, rowid",
        )
        .fetch_all(&self.write)
        .await?;
        parse_all(rows)
    }

    /// Jobs a crash interrupted mid-pipeline: neither queued nor terminal.
    pub(in crate::store) async fn interrupted_jobs(&self) -> Result<Vec<JobRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawJob>(
            "SELECT * FROM jobs WHERE state NOT IN ('queued', 'completed', 'failed')
             ORDER BY created_at, rowid",
        )
        .fetch_all(&self.write)
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
        let mut tx = self.write.begin().await?;
        for chunk in updates.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE jobs SET state = v.column2, progress_percent = v.column3,
                    current_step = v.column4, clips_completed = v.column5,
                    total_clips = v.column6, error = v.column7, output = v.column8,
                    last_sequence = v.column9, updated_at = ?
             FROM (VALUES {}) AS v
             WHERE jobs.job_id = v.column1 AND jobs.last_sequence = v.column10
               AND jobs.lease_owner IS v.column11",
                placeholders(chunk.len(), 11)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for f in chunk {
                let u = f.update;
                let output = u
                    .output
                    .as_ref()
                    .map(|o| serde_json::to_string(o).expect("output serialises"));
                q = q
                    .bind(&u.job_id)
                    .bind(u.state.as_str())
                    .bind(u.progress_percent)
                    .bind(&u.current_step)
                    .bind(u.clips_completed)
                    .bind(u.total_clips)
                    .bind(&u.error)
                    .bind(output)
                    .bind(u.sequence as i64)
                    .bind(f.after)
                    .bind(&u.lease_owner);
            }
            // A job whose row did not match: the whole batch is dropped
            // (rolled back) and retried event by event by the writer.
            if q.execute(&mut *tx).await?.rows_affected() != chunk.len() as u64 {
                return Ok(false);
            }
        }
        for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
            let rows = vec!["(?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO deliveries (delivery_id, job_id, sequence, event, url, body, status,
                                     attempt_count, next_attempt_at, created_at, updated_at)
             VALUES {rows}"
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for d in chunk {
                q = q
                    .bind(&d.delivery_id)
                    .bind(&d.job_id)
                    .bind(d.sequence as i64)
                    .bind(d.event.as_str())
                    .bind(&d.url)
                    .bind(d.body.as_ref())
                    .bind(d.created_at)
                    .bind(d.created_at)
                    .bind(d.created_at);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// Job leases. SQLite has one writer, so a claim is simply the one
/// `UPDATE … RETURNING` that picks the oldest free queued job.
impl Sqlite {
    pub(in crate::store) async fn claim_job(
        &self,
        owner: &str,
        expires_at: i64,
    ) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query_as::<_, RawJob>(
            "UPDATE jobs SET lease_owner = ?1, lease_expires_at = ?2
             WHERE job_id = (SELECT job_id FROM jobs
                             WHERE state = 'queued' AND lease_owner IS NULL
                             ORDER BY created_at, rowid LIMIT 1)
             RETURNING *",
        )
        .bind(owner)
        .bind(expires_at)
        .fetch_optional(&self.write)
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
            "UPDATE jobs SET lease_expires_at = ?3 WHERE job_id = ?1 AND lease_owner = ?2",
        )
        .bind(job_id)
        .bind(owner)
        .bind(expires_at)
        .execute(&self.write)
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
            "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL
             WHERE job_id = ?1 AND lease_owner = ?2",
        )
        .bind(job_id)
        .bind(owner)
        .execute(&self.write)
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
            "UPDATE jobs SET lease_owner = ?1, lease_expires_at = ?2
             WHERE lease_owner IS NOT NULL AND lease_expires_at < ?3
               AND state NOT IN ('completed', 'failed')
             RETURNING *",
        )
        .bind(owner)
        .bind(expires_at)
        .bind(now)
        .fetch_all(&self.write)
        .await?;
        let mut jobs: Vec<JobRow> = parse_all(rows)?;
        jobs.sort_by_key(|j| j.created_at);
        Ok(jobs)
    }

    pub(in crate::store) async fn abandon_jobs(&self, owner: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE jobs SET lease_expires_at = 0
             WHERE lease_owner = ?1 AND state NOT IN ('completed', 'failed')",
        )
        .bind(owner)
        .execute(&self.write)
        .await
        .map(|_| ())
    }
}
