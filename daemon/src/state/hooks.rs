//! Deliveries of webhooks in that were already acted on.

use super::{StateDb, StateError};

impl StateDb {
    /// Records delivery `key` of `source`; true when it is new, false when
    /// it was seen before (its last-seen time is refreshed, so a delivery
    /// that keeps arriving is never pruned). Keys last seen before
    /// `forget_before_ms` are forgotten first.
    pub async fn claim_delivery(
        &self,
        source: &str,
        key: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<bool, StateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM hook_deliveries WHERE source = ? AND at_ms < ?")
            .bind(source)
            .bind(forget_before_ms)
            .execute(&mut *tx)
            .await?;
        let new = sqlx::query(
            "INSERT INTO hook_deliveries (source, key, at_ms) VALUES (?, ?, ?) ON CONFLICT(source, key) DO NOTHING",
        )
        .bind(source)
        .bind(key)
        .bind(at_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !new {
            sqlx::query("UPDATE hook_deliveries SET at_ms = ? WHERE source = ? AND key = ?")
                .bind(at_ms)
                .bind(source)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_delivery_is_new_once_and_forgotten_only_when_not_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = StateDb::open(&path).await.unwrap();
        assert!(db.claim_delivery("am", "k", 1000, 0).await.unwrap());
        assert!(!db.claim_delivery("am", "k", 2000, 0).await.unwrap());
        // Another source has its own keys.
        assert!(db.claim_delivery("pd", "k", 2000, 0).await.unwrap());
        db.close().await;
        let db = StateDb::open(&path).await.unwrap();
        // Last seen at 2000: not forgotten at 1500, forgotten at 2500.
        assert!(!db.claim_delivery("am", "k", 3000, 1500).await.unwrap());
        assert!(db.claim_delivery("am", "k", 9000, 8000).await.unwrap());
    }
}
