//! Silences, stored as the JSON the notify stage gives (Alertmanager's v2
//! shape). This file knows the table, not what a silence means.

use super::{StateDb, StateError};

impl StateDb {
    pub async fn save_silence(
        &self,
        id: &str,
        body: &str,
        ends_at_ms: i64,
        updated_at_ms: i64,
    ) -> Result<(), StateError> {
        sqlx::query("INSERT INTO silences (id, body, ends_at_ms, updated_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body, ends_at_ms = excluded.ends_at_ms, updated_at_ms = excluded.updated_at_ms")
            .bind(id)
            .bind(body)
            .bind(ends_at_ms)
            .bind(updated_at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every stored silence body, oldest update first.
    pub async fn load_silences(&self) -> Result<Vec<String>, StateError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT body FROM silences ORDER BY updated_at_ms")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}
