//! SQLite: the `jobs` table, and the job updates of the event writer.

use sqlx::{AssertSqlSafe, SqlitePool};
use webhook_types::ClippingJobRequest;

use super::{ROWS_PER_STATEMENT, Sqlite, placeholders};
use crate::clock::now_ms;
use crate::store::model::{RawJob, parse_all};
use crate::store::{Inserted, JobRow, JobUpdate, NewDelivery};

impl Sqlite {
    /// Stores a new queued job, or returns the existing one when its
    /// `external_job_id` (or chosen `job_id`) is already known. The unique
    /// index decides, so this holds across restarts and concurrent
    /// submissions.
    pub(in crate::store) async fn insert_job(
        &self,
        job_id: &str,
        request: &ClippingJobRequest,
    ) -> Result<Inserted, sqlx::Error> {
        let now = now_ms();
        let request_json = serde_json::to_string(request).expect("a request serialises");
        let inserted = sqlx::query(
            "INSERT INTO jobs (job_id, external_job_id, owner_user_id, request, callback_url,
                               state, progress_percent, current_step, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, 'queued', 0, 'Queued', ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(job_id)
        .bind(&request.external_job_id)
        .bind(&request.owner_user_id)
        .bind(request_json)
        .bind(&request.callback_url)
        .bind(now)
        .bind(now)
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
        updates: &[&JobUpdate],
        deliveries: &[&NewDelivery],
    ) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        for chunk in updates.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE jobs SET state = v.column2, progress_percent = v.column3,
                    current_step = v.column4, clips_completed = v.column5,
                    total_clips = v.column6, error = v.column7, output = v.column8,
                    last_sequence = v.column9, updated_at = ?
             FROM (VALUES {}) AS v
             WHERE jobs.job_id = v.column1",
                placeholders(chunk.len(), 9)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for u in chunk {
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
                    .bind(u.sequence as i64);
            }
            q.execute(&mut *tx).await?;
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
        tx.commit().await
    }
}
