//! save_token: the upsert rules. A save updates the token find would match (by id first), or
//! inserts one; concurrent saves of one user never make two rows; an import never rolls a newer
//! stored token back to an older one.

use super::{seal, tenancy, Saved, Tenancy, TokenService};
use crate::domain::{InvalidField, PartialToken, TenantName, Token, TokenId, TokenStatus};
use crate::error::{Error, Result};
use crate::store::StoreError;

/// How many times save retries after losing an insert race before it reports a conflict.
const SAVE_ATTEMPTS: usize = 5;

impl TokenService {
    /// save_token: updates the token the partial one matches (by id first, then the find rules),
    /// or inserts it with a generated id (or the given one, for callers of every tenant). Never creates a second row for a token
    /// that find would match, even when saves of the same user race.
    pub async fn save(&self, tenancy: &Tenancy, partial: PartialToken) -> Result<(Token, Saved)> {
        self.save_merging(tenancy, partial, Freshness::Caller, false)
            .await
    }

    /// Like [`save`](Self::save), for the grant of a login or exchange: reported to the webhook
    /// endpoints as `connection.created` or `connection.replaced`.
    pub async fn save_connection(
        &self,
        tenancy: &Tenancy,
        partial: PartialToken,
    ) -> Result<(Token, Saved)> {
        self.save_merging(tenancy, partial, Freshness::Caller, true)
            .await
    }

    /// Like [`save`](Self::save), for imports of other stores' files: a row whose access token
    /// expires before the stored one's is older than what the broker has (it refreshed since the
    /// file was written), so its access token, expiry and grant are not taken.
    pub async fn save_import(
        &self,
        tenancy: &Tenancy,
        partial: PartialToken,
    ) -> Result<(Token, Saved)> {
        self.save_merging(tenancy, partial, Freshness::KeepNewer, false)
            .await
    }

    async fn save_merging(
        &self,
        tenancy: &Tenancy,
        partial: PartialToken,
        freshness: Freshness,
        connection: bool,
    ) -> Result<(Token, Saved)> {
        use crate::webhooks::EventKind;
        let tenant = tenancy.resolve(partial.tenant.as_ref())?;
        if let (Some(p), Some(known)) = (&partial.provider, &self.known_providers) {
            if !known.contains(p.as_str()) {
                return Err(InvalidField::new(
                    "provider",
                    "not a provider configured on this broker",
                )
                .into());
            }
        }
        for _ in 0..SAVE_ATTEMPTS {
            let existing = match &partial.id {
                Some(id) => self.get(tenancy, id).await.map(Some).or_else(|e| match e {
                    Error::NotFound => Ok(None),
                    e => Err(e),
                })?,
                None => None,
            }
            // Found by id: it keeps its own tenant unless the request names a different one.
            .filter(|t| partial.tenant.is_none() || t.tenant == tenant);
            let existing = match existing {
                Some(t) => Some(t),
                None => {
                    self.find_in(tenancy::to_column(tenant.as_ref()), &partial)
                        .await?
                }
            };
            let now = self.clock.now_ms();
            match existing {
                Some(current) => {
                    let was = current.status;
                    let merged = match freshness {
                        Freshness::KeepNewer if is_older_than(&partial, &current) => {
                            merge(current, &without_credentials(&partial), now)
                        }
                        _ => merge(current, &partial, now),
                    };
                    let mut events = Vec::new();
                    if connection {
                        events = self.events_about(
                            EventKind::ConnectionReplaced,
                            &merged,
                            serde_json::json!({}),
                        );
                    }
                    if was != merged.status {
                        let kind = match merged.status {
                            TokenStatus::Revoked => Some(EventKind::TokenRevoked),
                            TokenStatus::NeedsReauth => Some(EventKind::TokenNeedsReauth),
                            TokenStatus::Active => None,
                        };
                        if let Some(kind) = kind {
                            events.extend(self.events_about(kind, &merged, serde_json::json!({})));
                        }
                    }
                    let reported = !events.is_empty();
                    self.forget(merged.id.as_str());
                    match self
                        .store
                        .update_token(seal(&self.keys, &merged), events)
                        .await
                    {
                        Ok(true) => {
                            // Also after the write: a reader may have cached the old row meanwhile.
                            self.forget(merged.id.as_str());
                            if reported {
                                self.events_committed();
                            }
                            return Ok((merged, Saved::Updated));
                        }
                        // Deleted between our read and write: start over (it may insert now).
                        Ok(false) => continue,
                        Err(StoreError::Conflict) => return Err(Error::Conflict(
                            "another token of this tenant already has that provider and user_name"
                                .into(),
                        )),
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {
                    // A caller confined to a tenant never names a new token: were its id taken
                    // by another tenant's token, the save would fail where a free id succeeds,
                    // telling the caller that the other tenant has it. The broker names it.
                    let id = match tenancy {
                        Tenancy::Unrestricted => partial.id.clone(),
                        Tenancy::Only(_) => None,
                    };
                    let token = self.new_token(&partial, id, tenant.clone(), now)?;
                    let events = if connection {
                        self.events_about(
                            EventKind::ConnectionCreated,
                            &token,
                            serde_json::json!({}),
                        )
                    } else {
                        Vec::new()
                    };
                    let reported = !events.is_empty();
                    match self
                        .store
                        .insert_token(seal(&self.keys, &token), events)
                        .await
                    {
                        Ok(()) => {
                            if reported {
                                self.events_committed();
                            }
                            return Ok((token, Saved::Created));
                        }
                        // A concurrent save won the race: the next round finds and updates it.
                        Err(StoreError::Conflict) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(Error::Conflict(
            "the token could not be saved: its id or user_name is taken by a token you cannot update"
                .into(),
        ))
    }

    pub(super) fn new_token(
        &self,
        p: &PartialToken,
        id: Option<TokenId>,
        tenant: Option<TenantName>,
        now: i64,
    ) -> Result<Token> {
        if p.refresh_token.is_none() && p.access_token.is_none() && p.grant_token.is_none() {
            return Err(InvalidField::new(
                "refresh_token",
                "a new token needs at least one of refresh_token, access_token or grant_token",
            )
            .into());
        }
        Ok(Token {
            id: id.unwrap_or_else(TokenId::generate),
            tenant,
            provider: p
                .provider
                .clone()
                .unwrap_or_else(|| self.default_provider.clone()),
            user_name: p.user_name.clone(),
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.clone(),
            refresh_token: p.refresh_token.clone(),
            access_token: p.access_token.clone(),
            grant_token: p.grant_token.clone(),
            expiry_time: p.expiry_time,
            granted_lifetime_ms: p.granted_lifetime_ms,
            redirect_url: p.redirect_url.clone(),
            api_domain: p.api_domain.clone(),
            status: p.status.unwrap_or(TokenStatus::Active),
            identity: p.identity.clone(),
            scopes: p.scopes.clone(),
            created_at: now,
            updated_at: now,
        })
    }
}

/// Whose values a save takes when they are older than the stored ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// A caller's save: what it sends wins (the SDKs save what they just got).
    Caller,
    /// An import: never roll a newer stored token back to the file's older one.
    KeepNewer,
}

/// True when `p`'s access token expires before the stored token's: `p` predates the stored one.
fn is_older_than(p: &PartialToken, stored: &Token) -> bool {
    matches!(
        (p.expiry_time, stored.expiry_time, &stored.access_token),
        (Some(theirs), Some(ours), Some(_)) if theirs < ours
    )
}

/// `p` without the credentials that belong to one moment of the grant.
fn without_credentials(p: &PartialToken) -> PartialToken {
    PartialToken {
        access_token: None,
        expiry_time: None,
        refresh_token: None,
        grant_token: None,
        status: None,
        ..p.clone()
    }
}

/// Applies the fields a save carries to the stored token; absent fields keep their stored value.
/// A save that brings new credentials and no explicit status makes the token active again.
pub fn merge(mut t: Token, p: &PartialToken, now: i64) -> Token {
    let brings_credentials =
        p.refresh_token.is_some() || p.access_token.is_some() || p.grant_token.is_some();
    macro_rules! take {
        ($($field:ident),*) => { $( if let Some(v) = &p.$field { t.$field = Some(v.clone()); } )* };
    }
    take!(
        user_name,
        client_id,
        client_secret,
        refresh_token,
        access_token,
        grant_token,
        expiry_time,
        redirect_url,
        api_domain,
        identity,
        scopes
    );
    if let Some(provider) = &p.provider {
        t.provider = provider.clone();
    }
    // A new expiry from a caller comes with no known lifetime; one from the broker's own grant does.
    if p.expiry_time.is_some() {
        t.granted_lifetime_ms = p.granted_lifetime_ms;
    }
    match p.status {
        Some(s) => t.status = s,
        None if brings_credentials => t.status = TokenStatus::Active,
        None => {}
    }
    t.updated_at = now;
    t
}
