//! Key rotation: re-encrypting every stored token still under an older key with the active one,
//! page by page, while the service keeps running.

use super::{open, seal, TokenService, Unreadable};
use crate::error::Result;
use crate::store::{ListFilter, TenantFilter};

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
            for mut row in rows {
                loop {
                    if row.key_id == active {
                        report.unchanged += 1;
                        break;
                    }
                    let (read_key, read_at) = (row.key_id.clone(), row.updated_at);
                    let token = match open(&self.keys, row.clone()) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!(token_id = %row.id, error = %e, "a stored token could not be decrypted; it was not re-encrypted");
                            metrics::counter!("token_rows_unreadable_total").increment(1);
                            report.unreadable.push(Unreadable {
                                id: row.id.clone(),
                                reason: "cannot be decrypted with the configured keys".into(),
                            });
                            break;
                        }
                    };
                    let sealed = seal(&self.keys, &token);
                    if self
                        .store
                        .reencrypt_token(sealed, &read_key, read_at)
                        .await?
                    {
                        report.reencrypted += 1;
                        break;
                    }
                    // Written meanwhile: look again.
                    match self.store.token_by_id(&row.id, &TenantFilter::Any).await? {
                        Some(fresh) => row = fresh,
                        None => break,
                    }
                }
            }
        }
        Ok(report)
    }
}
