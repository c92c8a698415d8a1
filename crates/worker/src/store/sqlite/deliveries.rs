//! SQLite: the `deliveries` outbox and its `delivery_attempts`.

use sqlx::AssertSqlSafe;

use super::{ROWS_PER_STATEMENT, Sqlite, placeholders};
use crate::clock::now_ms;
use crate::store::model::{RawAttempt, RawDelivery, parse_all};
use crate::store::{AttemptRow, DeliveryFilter, DeliveryRow, LedgerOp, LedgerSplit, split_ledger};

impl Sqlite {
    /// Every pending delivery, by job and sequence: what a starting worker
    /// resumes.
    pub(in crate::store) async fn pending_deliveries(
        &self,
    ) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawDelivery>(
            "SELECT * FROM deliveries WHERE status = 'pending' ORDER BY job_id, sequence",
        )
        .fetch_all(&self.write)
        .await?;
        parse_all(rows)
    }

    /// Commits a batch of the sender's decisions in one transaction, with a
    /// few multi-row statements rather than two statements per decision.
    pub(in crate::store) async fn apply_ledger(&self, ops: &[LedgerOp]) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let LedgerSplit {
            attempts,
            latest,
            superseded,
        } = split_ledger(ops);
        let mut tx = self.write.begin().await?;
        for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO delivery_attempts
                     (delivery_id, attempted_at, status_code, error, duration_ms)
                 VALUES {}",
                placeholders(chunk.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for op in chunk {
                if let LedgerOp::Attempt {
                    delivery_id,
                    attempted_at,
                    status_code,
                    error,
                    duration_ms,
                    ..
                } = op
                {
                    q = q
                        .bind(delivery_id)
                        .bind(attempted_at)
                        .bind(status_code.map(i64::from))
                        .bind(error)
                        .bind(*duration_ms as i64);
                }
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in latest.chunks(ROWS_PER_STATEMENT) {
            // A manual redelivery may have reset a row meanwhile; only a row
            // still pending takes the attempt's outcome.
            let sql = format!(
                "UPDATE deliveries SET status = v.column2, attempt_count = v.column3,
                        next_attempt_at = v.column4, last_error = v.column5, updated_at = ?
                 FROM (VALUES {}) AS v
                 WHERE deliveries.delivery_id = v.column1 AND deliveries.status = 'pending'",
                placeholders(chunk.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for op in chunk {
                if let LedgerOp::Attempt {
                    delivery_id,
                    error,
                    status,
                    attempt_count,
                    next_attempt_at,
                    ..
                } = op
                {
                    q = q
                        .bind(delivery_id)
                        .bind(status.as_str())
                        .bind(attempt_count)
                        .bind(next_attempt_at)
                        .bind(error);
                }
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in superseded.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE deliveries SET status = 'superseded', updated_at = ?
                 WHERE status = 'pending' AND delivery_id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// One delivery by id.
    pub(in crate::store) async fn get_delivery(
        &self,
        delivery_id: &str,
    ) -> Result<Option<DeliveryRow>, sqlx::Error> {
        sqlx::query_as::<_, RawDelivery>("SELECT * FROM deliveries WHERE delivery_id = ?")
            .bind(delivery_id)
            .fetch_optional(&self.read)
            .await?
            .map(DeliveryRow::try_from)
            .transpose()
    }

    /// The ledger, filtered; by job and sequence.
    pub(in crate::store) async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawDelivery>(
            "SELECT * FROM deliveries
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR job_id = ?2)
             ORDER BY created_at, job_id, sequence
             LIMIT ?3",
        )
        .bind(filter.status.map(|s| s.as_str()))
        .bind(&filter.job_id)
        .bind(filter.limit.map(i64::from).unwrap_or(-1))
        .fetch_all(&self.read)
        .await?;
        parse_all(rows)
    }

    /// The attempts of one delivery, oldest first.
    pub(in crate::store) async fn attempts(
        &self,
        delivery_id: &str,
    ) -> Result<Vec<AttemptRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawAttempt>(
            "SELECT attempted_at, status_code, error, duration_ms FROM delivery_attempts
             WHERE delivery_id = ? ORDER BY attempt_id",
        )
        .bind(delivery_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(AttemptRow::from).collect())
    }

    /// Puts a delivery back to pending with a fresh retry schedule, due now.
    /// `flag_for_sweep` marks it for a live worker's sweep to pick up (used
    /// by the CLI, which has no way to tell the worker directly).
    pub(in crate::store) async fn requeue_delivery(
        &self,
        delivery_id: &str,
        flag_for_sweep: bool,
    ) -> Result<Option<DeliveryRow>, sqlx::Error> {
        let now = now_ms();
        let changed = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempt_count = 0, next_attempt_at = ?,
                    requeue_requested = ?, updated_at = ?
             WHERE delivery_id = ?",
        )
        .bind(now)
        .bind(i64::from(flag_for_sweep))
        .bind(now)
        .bind(delivery_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        sqlx::query_as::<_, RawDelivery>("SELECT * FROM deliveries WHERE delivery_id = ?")
            .bind(delivery_id)
            .fetch_optional(&self.write)
            .await?
            .map(DeliveryRow::try_from)
            .transpose()
    }

    /// Takes the deliveries flagged by `webhooks redeliver` and clears their
    /// flags, in one transaction so a flag is never taken twice.
    pub(in crate::store) async fn take_requeued(&self) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        let mut tx = self.write.begin().await?;
        let rows = sqlx::query_as::<_, RawDelivery>(
            "SELECT * FROM deliveries WHERE requeue_requested = 1",
        )
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        sqlx::query("UPDATE deliveries SET requeue_requested = 0 WHERE requeue_requested = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        parse_all(rows)
    }
}

/// Delivery leases: a SQLite store has one worker, whose lanes are the only
/// ones, so every lease is granted and nothing is ever orphaned.
impl Sqlite {
    pub(in crate::store) async fn acquire_lane(
        &self,
        _job_id: &str,
        _lane: &str,
        _now: i64,
        _expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        Ok(true)
    }

    pub(in crate::store) async fn renew_lane(
        &self,
        _job_id: &str,
        _lane: &str,
        _expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        Ok(true)
    }

    pub(in crate::store) async fn release_lane(
        &self,
        _job_id: &str,
        _lane: &str,
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }

    pub(in crate::store) async fn abandon_lanes(&self, _owner: &str) -> Result<(), sqlx::Error> {
        Ok(())
    }

    pub(in crate::store) async fn announce_lane(&self, _job_id: &str) -> Result<(), sqlx::Error> {
        Ok(())
    }

    pub(in crate::store) async fn orphaned_lanes(
        &self,
        _now: i64,
        _limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        Ok(Vec::new())
    }

    pub(in crate::store) async fn pending_for_job(
        &self,
        job_id: &str,
    ) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RawDelivery>(
            "SELECT * FROM deliveries WHERE job_id = ? AND status = 'pending' ORDER BY sequence",
        )
        .bind(job_id)
        .fetch_all(&self.read)
        .await?;
        parse_all(rows)
    }
}
