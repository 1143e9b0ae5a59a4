//! Imports at database speed: the rows of an import that can only be new tokens are inserted in
//! multi-row statements, a batch per transaction, instead of one save (a read, then a write) each.
//! A row is "only new" when none of its keys — id, user_name, refresh, access or grant token — is
//! stored already (ids in any tenant, the rest in the row's tenant; a coarser test than the save
//! rules, so a row it lets through can match nothing). Every other row, and every row of a batch
//! that meets a concurrent writer, goes the usual way (`save_import`).

use std::collections::HashSet;

use super::{seal, TokenService};
use crate::domain::{PartialToken, TenantName};
use crate::error::{Error, Result};
use crate::store::{KeyColumn, StoreError};

impl TokenService {
    /// Inserts those of `rows` (tokens of `tenant` sharing no key with each other) that match no
    /// stored token. Returns, per row, whether it was inserted; the rest are for `save_import`.
    pub async fn insert_new_for_import(
        &self,
        tenant: Option<&TenantName>,
        rows: &[PartialToken],
    ) -> Result<Vec<bool>> {
        let tenant_column = super::tenancy::to_column(tenant);
        let hash = |s: &Option<crate::domain::Secret>| s.as_ref().map(|s| self.keys.lookup_hash(s));
        let keys: Vec<[Option<String>; 5]> = rows
            .iter()
            .map(|p| {
                [
                    p.id.as_ref().map(|i| i.as_str().to_owned()),
                    p.user_name.as_ref().map(|u| u.as_str().to_owned()),
                    hash(&p.refresh_token),
                    hash(&p.access_token),
                    hash(&p.grant_token),
                ]
            })
            .collect();
        const COLUMNS: [KeyColumn; 5] = [
            KeyColumn::Id,
            KeyColumn::UserName,
            KeyColumn::RefreshHash,
            KeyColumn::AccessHash,
            KeyColumn::GrantHash,
        ];
        let mut stored: Vec<HashSet<String>> = Vec::with_capacity(5);
        for (i, column) in COLUMNS.into_iter().enumerate() {
            let values: Vec<String> = keys.iter().filter_map(|k| k[i].clone()).collect();
            let scope = (column != KeyColumn::Id).then_some(tenant_column);
            stored.push(if values.is_empty() {
                HashSet::new()
            } else {
                self.store.existing_values(column, scope, &values).await?
            });
        }
        let now = self.clock.now_ms();
        let mut inserted = vec![false; rows.len()];
        let mut batch = Vec::new();
        let mut in_batch = Vec::new();
        for (n, (partial, keys)) in rows.iter().zip(&keys).enumerate() {
            let known = keys
                .iter()
                .zip(&stored)
                .any(|(k, set)| k.as_ref().is_some_and(|v| set.contains(v)));
            let provider_ok = match (&partial.provider, &self.known_providers) {
                (Some(p), Some(known)) => known.contains(p.as_str()),
                _ => true,
            };
            if known || !provider_ok {
                continue;
            }
            // A row new_token refuses (no credential) is reported by the usual path.
            let Ok(token) = self.new_token(partial, partial.id.clone(), tenant.cloned(), now)
            else {
                continue;
            };
            batch.push(seal(&self.keys, &token));
            in_batch.push(n);
        }
        if batch.is_empty() {
            return Ok(inserted);
        }
        match self.store.insert_tokens(batch).await {
            Ok(()) => {
                for n in in_batch {
                    inserted[n] = true;
                }
                Ok(inserted)
            }
            // Someone wrote one of these meanwhile: the whole batch goes the usual way.
            Err(StoreError::Conflict) => Ok(inserted),
            Err(e) => Err(Error::from(e)),
        }
    }
}
