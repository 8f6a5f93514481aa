//! Downsampled history points and saved models. This file knows the tables, not
//! what is sampled or how models are made.

use super::{StateDb, StateError};

impl StateDb {
    /// Inserts or replaces points of one (series, step).
    pub async fn put_history(
        &self,
        series: &str,
        step_ms: i64,
        points: &[(i64, f64)],
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        for (ts, v) in points {
            sqlx::query(
                "INSERT INTO history (series, step_ms, ts_ms, value) VALUES (?, ?, ?, ?) ON CONFLICT(series, step_ms, ts_ms) DO UPDATE SET value = excluded.value",
            )
            .bind(series)
            .bind(step_ms)
            .bind(ts)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Points of one (series, step) at or after `from_ms`, oldest first.
    pub async fn history(
        &self,
        series: &str,
        step_ms: i64,
        from_ms: i64,
    ) -> Result<Vec<(i64, f64)>, StateError> {
        Ok(sqlx::query_as(
            "SELECT ts_ms, value FROM history WHERE series = ? AND step_ms = ? AND ts_ms >= ? ORDER BY ts_ms",
        )
        .bind(series)
        .bind(step_ms)
        .bind(from_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Drops points of (series, step) older than `before_ms`; returns how many.
    pub async fn prune_history(
        &self,
        series: &str,
        step_ms: i64,
        before_ms: i64,
    ) -> Result<u64, StateError> {
        Ok(
            sqlx::query("DELETE FROM history WHERE series = ? AND step_ms = ? AND ts_ms < ?")
                .bind(series)
                .bind(step_ms)
                .bind(before_ms)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    pub async fn save_model(&self, name: &str, at_ms: i64, body: &str) -> Result<(), StateError> {
        sqlx::query("INSERT INTO models (name, trained_at_ms, body) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET trained_at_ms = excluded.trained_at_ms, body = excluded.body")
            .bind(name)
            .bind(at_ms)
            .bind(body)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn load_model(&self, name: &str) -> Result<Option<(i64, String)>, StateError> {
        Ok(
            sqlx::query_as("SELECT trained_at_ms, body FROM models WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn history_round_trips_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("s.db")).await.unwrap();
        db.put_history(
            "sum(x)",
            60_000,
            &[(60_000, 1.0), (120_000, 2.0), (180_000, 3.0)],
        )
        .await
        .unwrap();
        db.put_history("sum(x)", 60_000, &[(180_000, 4.0)])
            .await
            .unwrap();
        assert_eq!(
            db.history("sum(x)", 60_000, 100_000).await.unwrap(),
            vec![(120_000, 2.0), (180_000, 4.0)]
        );
        assert_eq!(
            db.prune_history("sum(x)", 60_000, 150_000).await.unwrap(),
            2
        );
        assert!(db.history("sum(x)", 300_000, 0).await.unwrap().is_empty());
        db.save_model("autoscale:a", 5, "{}").await.unwrap();
        assert_eq!(
            db.load_model("autoscale:a").await.unwrap(),
            Some((5, "{}".into()))
        );
    }
}
