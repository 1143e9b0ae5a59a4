//! Key rotation: re-encrypting every stored token still under an older key with the active one,
//! page by page (each page's writes in one transaction), while the service keeps running.

use super::{open, seal, TokenService, Unreadable};
use crate::error::Result;
use crate::store::{ListFilter, TenantFilter, TokenRow};

/// What a key rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationReport {
    pub reencrypted: usize,
    pub unchanged: usize,
    /// Rows that could not be decrypted (so not re-encrypted either): left as they are.
    pub unreadable: Vec<Unreadable>,
}

impl TokenService {
    /// Re-encrypts every token still under an older key with the active key. Safe while the
    /// service runs: a row written meanwhile (already under the active key) is left alone.
    pub async fn reencrypt_all(&self) -> Result<RotationReport> {
        let active = self.keys.active_key_id().to_owned();
        let mut report = RotationReport::default();
        let mut after = None;
        loop {
            let rows = self
                .store
                .list_tokens(
                    &TenantFilter::Any,
                    &ListFilter {
                        after: after.clone(),
                        limit: 200,
                        ..Default::default()
                    },
                )
                .await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.id.clone());
            // The page's rows under an older key, re-encrypted in one transaction; a row written
            // meanwhile is looked at again on its own.
            let mut batch = Vec::new();
            let mut ids = Vec::new();
            for row in rows {
                if row.key_id == active {
                    report.unchanged += 1;
                    continue;
                }
                if let Some(sealed) = self.resealed(&row, &mut report) {
                    ids.push(row.id.clone());
                    batch.push((sealed, row.key_id.clone(), row.updated_at));
                }
            }
            if batch.is_empty() {
                continue;
            }
            let written = self.store.reencrypt_tokens(batch).await?;
            for (id, done) in ids.into_iter().zip(written) {
                if done {
                    report.reencrypted += 1;
                } else {
                    self.reencrypt_one(&id, &active, &mut report).await?;
                }
            }
        }
        Ok(report)
    }

    /// The row sealed under the active key, or `None` (reported) when it cannot be decrypted.
    fn resealed(&self, row: &TokenRow, report: &mut RotationReport) -> Option<TokenRow> {
        match open(&self.keys, row.clone()) {
            Ok(token) => Some(seal(&self.keys, &token)),
            Err(e) => {
                tracing::error!(token_id = %row.id, error = %e, "a stored token could not be decrypted; it was not re-encrypted");
                metrics::counter!("token_rows_unreadable_total").increment(1);
                report.unreadable.push(Unreadable {
                    id: row.id.clone(),
                    reason: "cannot be decrypted with the configured keys".into(),
                });
                None
            }
        }
    }

    /// Re-encrypts one row that changed while its page was being rotated: read it again, until
    /// it is written or found under the active key (or gone).
    async fn reencrypt_one(
        &self,
        id: &str,
        active: &str,
        report: &mut RotationReport,
    ) -> Result<()> {
        loop {
            let Some(row) = self.store.token_by_id(id, &TenantFilter::Any).await? else {
                return Ok(());
            };
            if row.key_id == active {
                report.unchanged += 1;
                return Ok(());
            }
            let Some(sealed) = self.resealed(&row, report) else {
                return Ok(());
            };
            if self
                .store
                .reencrypt_token(sealed, &row.key_id, row.updated_at)
                .await?
            {
                report.reencrypted += 1;
                return Ok(());
            }
        }
    }
}
