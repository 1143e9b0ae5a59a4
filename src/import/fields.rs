//! The columns of the Zoho SDK stores and what a row of them becomes: the header names each SDK
//! generation wrote, the raw fields of one row (from either source) and their conversion to the
//! `PartialToken` that is saved (given the `ImportOptions`), with every problem named by field,
//! never by value.

use std::collections::HashSet;

use crate::domain::{
    parse_text, PartialToken, ProviderKey, Secret, TenantName, TokenId, TokenStatus, UserName,
};

/// Where imported tokens go.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Provider given to every imported token (the SDK stores have none).
    pub provider: ProviderKey,
    /// Tenant of every imported token; `None` for no tenant.
    pub tenant: Option<TenantName>,
    /// Ignore the source's ids: tokens are matched by user_name (and provider) and new ones get
    /// generated ids. For stores whose small ids clash with tokens already in the broker.
    pub new_ids: bool,
}

/// A column of the SDK stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Column {
    Id,
    UserName,
    UserMail,
    ClientId,
    ClientSecret,
    RefreshToken,
    AccessToken,
    GrantToken,
    ExpiryTime,
    RedirectUrl,
    ApiDomain,
}

pub(super) const COLUMNS: usize = 11;

pub(super) const EXPECTED_COLUMNS: &str = "id, user_name or user_mail, client_id, client_secret, \
    refresh_token, access_token, grant_token, expiry_time, redirect_uri or redirect_url, api_domain";

impl Column {
    pub(super) fn from_name(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "id" => Self::Id,
            "user_name" => Self::UserName,
            "user_mail" => Self::UserMail,
            "client_id" => Self::ClientId,
            "client_secret" => Self::ClientSecret,
            "refresh_token" => Self::RefreshToken,
            "access_token" => Self::AccessToken,
            "grant_token" => Self::GrantToken,
            "expiry_time" => Self::ExpiryTime,
            "redirect_uri" | "redirect_url" => Self::RedirectUrl,
            "api_domain" => Self::ApiDomain,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::UserName => "user_name",
            Self::UserMail => "user_mail",
            Self::ClientId => "client_id",
            Self::ClientSecret => "client_secret",
            Self::RefreshToken => "refresh_token",
            Self::AccessToken => "access_token",
            Self::GrantToken => "grant_token",
            Self::ExpiryTime => "expiry_time",
            Self::RedirectUrl => "redirect_url",
            Self::ApiDomain => "api_domain",
        }
    }
}

/// Checks that a set of columns can describe a token at all.
pub(super) fn check_columns(present: &HashSet<Column>) -> Result<(), String> {
    if !present.contains(&Column::UserName) && !present.contains(&Column::UserMail) {
        return Err("no user_name (or user_mail) column".into());
    }
    let tokens = [
        Column::RefreshToken,
        Column::AccessToken,
        Column::GrantToken,
    ];
    if !tokens.iter().any(|c| present.contains(c)) {
        return Err("no refresh_token, access_token or grant_token column".into());
    }
    Ok(())
}

/// The raw fields of one row, by column; `None` when the column is missing or the value absent.
#[derive(Default)]
pub(super) struct RawFields([Option<Vec<u8>>; COLUMNS]);

impl RawFields {
    pub(super) fn set(&mut self, column: Column, value: Option<&[u8]>) {
        self.0[column as usize] = value.filter(|v| !v.is_empty()).map(<[u8]>::to_vec);
    }

    /// The field as text; `Ok(None)` when absent.
    pub(super) fn text(&self, column: Column) -> Result<Option<String>, String> {
        match &self.0[column as usize] {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.clone())
                .map(Some)
                .map_err(|_| format!("{}: not valid UTF-8", column.name())),
        }
    }
}

/// One row of the source, converted or refused.
#[derive(Debug)]
pub(super) struct ParsedRow {
    pub(super) at: String,
    pub(super) token: Result<PartialToken, String>,
}

/// Turns a row into the token to save. Every problem is reported (joined with "; "), each by
/// field name only.
pub(super) fn to_partial(raw: &RawFields, options: &ImportOptions) -> Result<PartialToken, String> {
    let mut problems: Vec<String> = Vec::new();
    let mut text = |column: Column| match raw.text(column) {
        Ok(v) => v,
        Err(reason) => {
            problems.push(reason);
            None
        }
    };
    let id = text(Column::Id).filter(|_| !options.new_ids);
    let user_name = text(Column::UserName).or_else(|| text(Column::UserMail));
    let client_id = text(Column::ClientId);
    let client_secret = text(Column::ClientSecret);
    let refresh_token = text(Column::RefreshToken);
    let access_token = text(Column::AccessToken);
    let grant_token = text(Column::GrantToken);
    let expiry_time = text(Column::ExpiryTime);
    let redirect_url = text(Column::RedirectUrl);
    let api_domain = text(Column::ApiDomain);

    let mut check = |r: Result<(), String>| {
        if let Err(reason) = r {
            problems.push(reason);
        }
    };
    let mut token = PartialToken {
        tenant: options.tenant.clone(),
        provider: Some(options.provider.clone()),
        status: Some(TokenStatus::Active),
        ..Default::default()
    };
    macro_rules! field {
        ($target:expr, $value:expr, $parse:expr) => {
            if let Some(v) = $value {
                match $parse(v) {
                    Ok(parsed) => $target = Some(parsed),
                    Err(e) => check(Err(e.to_string())),
                }
            }
        };
    }
    field!(token.id, id, TokenId::parse);
    field!(token.user_name, user_name, UserName::parse);
    field!(token.client_id, client_id, |v| parse_text(
        "client_id",
        v,
        255
    ));
    field!(token.client_secret, client_secret, |v| Secret::parse(
        "client_secret",
        v
    ));
    field!(token.refresh_token, refresh_token, |v| Secret::parse(
        "refresh_token",
        v
    ));
    field!(token.access_token, access_token, |v| Secret::parse(
        "access_token",
        v
    ));
    field!(token.grant_token, grant_token, |v| Secret::parse(
        "grant_token",
        v
    ));
    field!(token.expiry_time, expiry_time, parse_expiry);
    field!(token.redirect_url, redirect_url, |v| parse_text(
        "redirect_url",
        v,
        2048
    ));
    field!(token.api_domain, api_domain, |v| parse_text(
        "api_domain",
        v,
        255
    ));
    let has_credential = |c: Column| raw.0[c as usize].is_some();
    if !has_credential(Column::RefreshToken)
        && !has_credential(Column::AccessToken)
        && !has_credential(Column::GrantToken)
    {
        problems.push("no refresh_token, access_token or grant_token".into());
    }
    if problems.is_empty() {
        Ok(token)
    } else {
        Err(problems.join("; "))
    }
}

/// `expiry_time`: ms since the epoch, written as text by the SDKs.
fn parse_expiry(value: String) -> Result<i64, String> {
    let v = value.trim();
    match v.parse::<i64>() {
        Ok(ms) if ms >= 0 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(ms),
        _ => Err("expiry_time: not a whole number of milliseconds since the Unix epoch".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, options, parse};
    use super::*;

    #[test]
    fn user_name_wins_over_user_mail_and_user_mail_fills_in() {
        let rows =
            parse("user_name,user_mail,refresh_token\r\nnew@x,old@x,r\r\n,old@x,r\r\n,,r\r\n");
        assert_eq!(ok(&rows[0]).user_name.as_ref().unwrap().as_str(), "new@x");
        assert_eq!(ok(&rows[1]).user_name.as_ref().unwrap().as_str(), "old@x");
        // No user at all is allowed (the SDKs match such tokens by id or by token).
        assert!(ok(&rows[2]).user_name.is_none());
    }

    #[test]
    fn null_and_empty_database_values_are_absent() {
        let mut raw = RawFields::default();
        raw.set(Column::UserName, Some(b""));
        raw.set(Column::RefreshToken, Some(b"r"));
        raw.set(Column::ClientId, None);
        let t = to_partial(&raw, &options()).unwrap();
        assert!(t.user_name.is_none() && t.client_id.is_none());
    }
}
