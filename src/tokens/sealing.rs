//! Turning a `Token` into a stored row (encrypting secrets, computing lookup hashes) and back.

use super::tenancy;
use crate::crypto::KeyRing;
use crate::domain::{Identity, ProviderKey, Secret, Token, TokenId, TokenStatus, UserName};
use crate::error::Result;
use crate::store::TokenRow;

const SECRET_COLUMNS: [&str; 4] = [
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
];

/// Encrypts a token's secrets under the active key.
pub fn seal(keys: &KeyRing, t: &Token) -> TokenRow {
    let id = t.id.as_str();
    let enc = |column: &str, s: &Option<Secret>| s.as_ref().map(|s| keys.encrypt(id, column, s));
    let hash = |s: &Option<Secret>| s.as_ref().map(|s| keys.lookup_hash(s));
    TokenRow {
        id: id.to_owned(),
        tenant: tenancy::to_column(t.tenant.as_ref()).to_owned(),
        provider: t.provider.as_str().to_owned(),
        user_name: t.user_name.as_ref().map(|u| u.as_str().to_owned()),
        client_id: t.client_id.clone(),
        client_secret: enc(SECRET_COLUMNS[0], &t.client_secret),
        refresh_token: enc(SECRET_COLUMNS[1], &t.refresh_token),
        refresh_token_hash: hash(&t.refresh_token),
        access_token: enc(SECRET_COLUMNS[2], &t.access_token),
        access_token_hash: hash(&t.access_token),
        grant_token: enc(SECRET_COLUMNS[3], &t.grant_token),
        grant_token_hash: hash(&t.grant_token),
        expiry_time: t.expiry_time,
        granted_lifetime_ms: t.granted_lifetime_ms,
        redirect_url: t.redirect_url.clone(),
        api_domain: t.api_domain.clone(),
        status: t.status.as_str().to_owned(),
        key_id: keys.active_key_id().to_owned(),
        created_at: t.created_at,
        updated_at: t.updated_at,
        version: 0,
        subject: t.identity.as_ref().map(|i| i.subject.clone()),
        email: t.identity.as_ref().and_then(|i| i.email.clone()),
        display_name: t.identity.as_ref().and_then(|i| i.name.clone()),
        scopes: t.scopes.as_ref().map(|s| s.join(" ")),
    }
}

/// Decrypts a stored row. Fails if the row's key is not configured or a ciphertext was tampered with.
pub fn open(keys: &KeyRing, row: TokenRow) -> Result<Token> {
    let dec = |column: &str, blob: &Option<Vec<u8>>| -> Result<Option<Secret>> {
        blob.as_ref()
            .map(|b| keys.decrypt(&row.key_id, &row.id, column, b))
            .transpose()
            .map_err(Into::into)
    };
    let corrupt = |what: &str| anyhow::anyhow!("stored token row has an invalid {what}");
    Ok(Token {
        client_secret: dec(SECRET_COLUMNS[0], &row.client_secret)?,
        refresh_token: dec(SECRET_COLUMNS[1], &row.refresh_token)?,
        access_token: dec(SECRET_COLUMNS[2], &row.access_token)?,
        grant_token: dec(SECRET_COLUMNS[3], &row.grant_token)?,
        id: TokenId::parse(row.id.clone()).map_err(|_| corrupt("id"))?,
        tenant: tenancy::from_column(&row.tenant, "token")?,
        provider: ProviderKey::parse(row.provider.clone()).map_err(|_| corrupt("provider"))?,
        user_name: row
            .user_name
            .clone()
            .map(UserName::parse)
            .transpose()
            .map_err(|_| corrupt("user_name"))?,
        client_id: row.client_id.clone(),
        expiry_time: row.expiry_time,
        granted_lifetime_ms: row.granted_lifetime_ms,
        redirect_url: row.redirect_url.clone(),
        api_domain: row.api_domain.clone(),
        status: TokenStatus::parse(&row.status).map_err(|_| corrupt("status"))?,
        identity: row.subject.clone().map(|subject| Identity {
            subject,
            email: row.email.clone(),
            name: row.display_name.clone(),
        }),
        scopes: row
            .scopes
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_owned).collect()),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
