//! PostgreSQL: the `deliveries` outbox and its `delivery_attempts`.

use super::Postgres;
use crate::clock::now_ms;
use crate::store::model::{RawAttempt, RawDelivery, parse_all};
use crate::store::{AttemptRow, DeliveryFilter, DeliveryRow, LedgerOp, LedgerSplit, split_ledger};

impl Postgres {
    pub(in crate::store) async fn pending_deliveries(
        &self,
    ) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawDelivery>(
            "SELECT * FROM deliveries WHERE status = 'pending' ORDER BY job_id, sequence",
        )
        .fetch_all(&self.pool)
        .await?;
        parse_all(rows)
    }

    pub(in crate::store) async fn apply_ledger(&self, ops: &[LedgerOp]) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let LedgerSplit {
            attempts,
            latest,
            superseded,
        } = split_ledger(ops);
        let mut tx = self.pool.begin().await?;
        if !attempts.is_empty() {
            let mut ids = Vec::with_capacity(attempts.len());
            let mut at = Vec::with_capacity(attempts.len());
            let mut codes = Vec::with_capacity(attempts.len());
            let mut errors = Vec::with_capacity(attempts.len());
            let mut durations = Vec::with_capacity(attempts.len());
            for op in &attempts {
                if let LedgerOp::Attempt {
                    delivery_id,
                    attempted_at,
                    status_code,
                    error,
                    duration_ms,
                    ..
                } = op
                {
                    ids.push(delivery_id.as_str());
                    at.push(*attempted_at);
                    codes.push(status_code.map(i64::from));
                    errors.push(error.as_deref());
                    durations.push(*duration_ms as i64);
                }
            }
            sqlx::query(
                "INSERT INTO delivery_attempts
                     (delivery_id, attempted_at, status_code, error, duration_ms)
                 SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int8[])",
            )
            .bind(&ids)
            .bind(&at)
            .bind(&codes)
            .bind(&errors)
            .bind(&durations)
            .execute(&mut *tx)
            .await?;
        }
        if !latest.is_empty() {
            let mut ids = Vec::with_capacity(latest.len());
            let mut statuses = Vec::with_capacity(latest.len());
            let mut counts = Vec::with_capacity(latest.len());
            let mut next = Vec::with_capacity(latest.len());
            let mut errors = Vec::with_capacity(latest.len());
            for op in &latest {
                if let LedgerOp::Attempt {
                    delivery_id,
                    error,
                    status,
                    attempt_count,
                    next_attempt_at,
                    ..
                } = op
                {
                    ids.push(delivery_id.as_str());
                    statuses.push(status.as_str());
                    counts.push(i64::from(*attempt_count));
                    next.push(*next_attempt_at);
                    errors.push(error.as_deref());
                }
            }
            // A manual redelivery may have reset a row meanwhile; only a row
            // still pending takes the attempt's outcome.
            sqlx::query(
                "UPDATE deliveries SET status = v.status, attempt_count = v.attempts,
                        next_attempt_at = v.next_at, last_error = v.error, updated_at = $6
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[])
                      AS v(id, status, attempts, next_at, error)
                 WHERE deliveries.delivery_id = v.id AND deliveries.status = 'pending'",
            )
            .bind(&ids)
            .bind(&statuses)
            .bind(&counts)
            .bind(&next)
            .bind(&errors)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if !superseded.is_empty() {
            sqlx::query(
                "UPDATE deliveries SET status = 'superseded', updated_at = $2
                 WHERE status = 'pending' AND delivery_id = ANY($1)",
            )
            .bind(&superseded)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    pub(in crate::store) async fn get_delivery(
        &self,
        delivery_id: &str,
    ) -> Result<Option<DeliveryRow>, sqlx::Error> {
        sqlx::query_as::<_, RawDelivery>("SELECT * FROM deliveries WHERE delivery_id = $1")
            .bind(delivery_id)
            .fetch_optional(&self.pool)
            .await?
            .map(DeliveryRow::try_from)
            .transpose()
    }

    pub(in crate::store) async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        // LIMIT NULL is no limit.
        let rows = sqlx::query_as::<_, RawDelivery>(
            "SELECT * FROM deliveries
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR job_id = $2)
             ORDER BY created_at, job_id, sequence
             LIMIT $3",
        )
        .bind(filter.status.map(|s| s.as_str()))
        .bind(&filter.job_id)
        .bind(filter.limit.map(i64::from))
        .fetch_all(&self.pool)
        .await?;
        parse_all(rows)
    }

    pub(in crate::store) async fn attempts(
        &self,
        delivery_id: &str,
    ) -> Result<Vec<AttemptRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawAttempt>(
            "SELECT attempted_at, status_code, error, duration_ms FROM delivery_attempts
             WHERE delivery_id = $1 ORDER BY attempt_id",
        )
        .bind(delivery_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AttemptRow::from).collect())
    }

    pub(in crate::store) async fn requeue_delivery(
        &self,
        delivery_id: &str,
        flag_for_sweep: bool,
    ) -> Result<Option<DeliveryRow>, sqlx::Error> {
        sqlx::query_as::<_, RawDelivery>(
            "UPDATE deliveries SET status = 'pending', attempt_count = 0, next_attempt_at = $1,
                    requeue_requested = $2, updated_at = $1
             WHERE delivery_id = $3
             RETURNING *",
        )
        .bind(now_ms())
        .bind(flag_for_sweep)
        .bind(delivery_id)
        .fetch_optional(&self.pool)
        .await?
        .map(DeliveryRow::try_from)
        .transpose()
    }

    pub(in crate::store) async fn take_requeued(&self) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        // One statement: of two workers sweeping at once, the row lock lets
        // only one clear a given flag (the other's re-check sees it false).
        let rows = sqlx::query_as::<_, RawDelivery>(
            "UPDATE deliveries SET requeue_requested = false
             WHERE requeue_requested
             RETURNING *",
        )
        .fetch_all(&self.pool)
        .await?;
        parse_all(rows)
    }
}

/// Delivery leases: one sender lane per job across the fleet.
impl Postgres {
    pub(in crate::store) async fn acquire_lane(
        &self,
        job_id: &str,
        lane: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE jobs SET delivery_owner = $2, delivery_expires_at = $4
             WHERE job_id = $1
               AND (delivery_owner IS NULL OR delivery_owner = $2 OR delivery_expires_at < $3)",
        )
        .bind(job_id)
        .bind(lane)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub(in crate::store) async fn renew_lane(
        &self,
        job_id: &str,
        lane: &str,
        expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE jobs SET delivery_expires_at = $3 WHERE job_id = $1 AND delivery_owner = $2",
        )
        .bind(job_id)
        .bind(lane)
        .bind(expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub(in crate::store) async fn release_lane(
        &self,
        job_id: &str,
        lane: &str,
    ) -> Result<(), sqlx::Error> {
        // Announce the job when deliveries are still pending (committed by
        // another worker meanwhile), so some worker's sweep takes it up.
        sqlx::query(
            "WITH released AS (
                 UPDATE jobs SET delivery_owner = NULL, delivery_expires_at = NULL
                 WHERE job_id = $1 AND delivery_owner = $2
                 RETURNING job_id)
             SELECT pg_notify($3, r.job_id) FROM released r
             WHERE EXISTS (SELECT 1 FROM deliveries d
                           WHERE d.job_id = r.job_id AND d.status = 'pending')",
        )
        .bind(job_id)
        .bind(lane)
        .bind(crate::store::DELIVERIES_CHANNEL)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    pub(in crate::store) async fn abandon_lanes(&self, owner: &str) -> Result<(), sqlx::Error> {
        let held: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET delivery_expires_at = 0
             WHERE left(delivery_owner, length($1) + 1) = $1 || '#'
             RETURNING job_id",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        for job_id in held {
            self.announce_lane(&job_id).await?;
        }
        Ok(())
    }

    pub(in crate::store) async fn announce_lane(&self, job_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(crate::store::DELIVERIES_CHANNEL)
            .bind(job_id)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub(in crate::store) async fn orphaned_lanes(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT j.job_id FROM jobs j
             WHERE j.job_id IN (SELECT DISTINCT job_id FROM deliveries WHERE status = 'pending')
               AND (j.delivery_owner IS NULL OR j.delivery_expires_at < $1)
             ORDER BY j.created_at
             LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    pub(in crate::store) async fn pending_for_job(
        &self,
        job_id: &str,
    ) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawDelivery>(
            "SELECT * FROM deliveries WHERE job_id = $1 AND status = 'pending' ORDER BY sequence",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        parse_all(rows)
    }
}
