//! The token broker's vocabulary: validated identifiers, secret values and the token record itself.
//!
//! Everything here is built through constructors that check their input ("parse, don't validate"),
//! so code further in never re-checks a `TokenId` or a `ProviderKey`.

use std::borrow::Cow;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Why a value was refused; carries the field name so the HTTP layer can name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: Cow<'static, str>,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn check_identifier(field: &'static str, value: &str, max: usize) -> Result<(), InvalidField> {
    if value.is_empty() || value.len() > max {
        return Err(InvalidField::new(
            field,
            format!("must be 1 to {max} characters long"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(InvalidField::new(
            field,
            "may only contain letters, digits, '-', '_' and '.'",
        ));
    }
    // `.` and `..` are path segments, not names: in a URL they would address another resource.
    if value.bytes().all(|b| b == b'.') {
        return Err(InvalidField::new(
            field,
            "must not be made of dots alone ('.' and '..' are path segments)",
        ));
    }
    Ok(())
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), InvalidField> {
    if value.is_empty() || value.chars().count() > max {
        return Err(InvalidField::new(
            field,
            format!("must be 1 to {max} characters long"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidField::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidField> {
                let value = value.into();
                check_identifier($field, &value, $max)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The id of a stored token: generated (UUIDv7) or chosen by the caller on first save.
    TokenId,
    "id",
    64
);
identifier!(
    /// The key of a configured OAuth provider, such as `zoho-us`.
    ProviderKey,
    "provider",
    64
);
identifier!(
    /// A tenant name from a caller's JWT or a token record.
    TenantName,
    "tenant",
    128
);

impl TokenId {
    /// A fresh, time-ordered id (so cursors follow insertion order).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

/// The user a token belongs to, as the Zoho SDK's `UserSignature` names it (usually an e-mail).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserName(String);

impl UserName {
    pub const MAX_LEN: usize = 255;

    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidField> {
        let value = value.into();
        check_text("user_name", &value, Self::MAX_LEN)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A plain, non-secret text field (client_id, redirect_url, api_domain) with a length bound.
pub fn parse_text(field: &'static str, value: String, max: usize) -> Result<String, InvalidField> {
    check_text(field, &value, max)?;
    Ok(value)
}

/// A credential: client secret, refresh, access or grant token. Its `Debug` prints `[REDACTED]`
/// and it zeroizes on drop, so it cannot reach a log line by accident.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub const MAX_LEN: usize = 8192;

    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    pub fn parse(field: &'static str, value: String) -> Result<Self, InvalidField> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(InvalidField::new(
                field,
                format!("must be 1 to {} bytes long", Self::MAX_LEN),
            ));
        }
        Ok(Self::new(value))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl PartialEq for Secret {
    /// Constant-time (`subtle`), so equality checks on secrets don't leak through timing. Slices
    /// of different lengths compare unequal at once: only the length can be learnt.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

/// Where a token stands with its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// Usable: refreshes are attempted when needed.
    Active,
    /// The provider rejected the refresh token; a person must log in again.
    NeedsReauth,
    /// Revoked at the provider.
    Revoked,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        match value {
            "active" => Ok(Self::Active),
            "needs_reauth" => Ok(Self::NeedsReauth),
            "revoked" => Ok(Self::Revoked),
            _ => Err(InvalidField::new(
                "status",
                "must be one of active, needs_reauth, revoked",
            )),
        }
    }
}

/// Who logged in at the provider, as the provider vouched for it: a verified OpenID Connect
/// id_token, or the provider's user-info answer to the new access token (Zoho).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's stable identifier of the account (`sub`, Zoho's `ZUID`).
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

impl Identity {
    /// Whether this identity is the account `user_name` names: its subject exactly, or its email
    /// ignoring ASCII case (email domains are case-insensitive, and providers vary the local part's
    /// case between sign-ups and id_tokens far more often than two mailboxes differ by it).
    pub fn is(&self, user_name: &UserName) -> bool {
        let wanted = user_name.as_str();
        self.subject == wanted
            || self
                .email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(wanted))
    }

    /// How a person would recognise the account: email, else name, else subject.
    pub fn label(&self) -> &str {
        self.email
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or(&self.subject)
    }
}

/// A stored OAuth token: the Zoho SDK's `OAuthToken` plus what a broker needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: TokenId,
    /// `None` for tokens outside any tenant.
    pub tenant: Option<TenantName>,
    pub provider: ProviderKey,
    pub user_name: Option<UserName>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub access_token: Option<Secret>,
    pub grant_token: Option<Secret>,
    /// Absolute expiry of the access token, ms since the Unix epoch.
    pub expiry_time: Option<i64>,
    /// How long the provider's last grant lasted (ms), when the broker got it itself.
    pub granted_lifetime_ms: Option<i64>,
    pub redirect_url: Option<String>,
    pub api_domain: Option<String>,
    pub status: TokenStatus,
    /// Who logged in, when the broker made the grant itself and the provider said.
    pub identity: Option<Identity>,
    /// The scopes granted, when the broker made the grant itself.
    pub scopes: Option<Vec<String>>,
    /// ms since the Unix epoch.
    pub created_at: i64,
    /// ms since the Unix epoch.
    pub updated_at: i64,
}

/// A token as a caller sent it to find or save: every field optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialToken {
    pub id: Option<TokenId>,
    pub tenant: Option<TenantName>,
    pub provider: Option<ProviderKey>,
    pub user_name: Option<UserName>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub access_token: Option<Secret>,
    pub grant_token: Option<Secret>,
    pub expiry_time: Option<i64>,
    /// Set by the broker for grants it obtained; never from callers.
    pub granted_lifetime_ms: Option<i64>,
    pub redirect_url: Option<String>,
    pub api_domain: Option<String>,
    pub status: Option<TokenStatus>,
    /// Set by the broker from a login or an exchange; never from callers.
    pub identity: Option<Identity>,
    /// Set by the broker from a login or an exchange; never from callers.
    pub scopes: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("1000.abcdef");
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        let t = PartialToken {
            refresh_token: Some(s),
            ..Default::default()
        };
        assert!(!format!("{t:?}").contains("abcdef"));
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(TokenId::parse("abc-123_x.y").is_ok());
        assert!(TokenId::parse("").is_err());
        assert!(TokenId::parse("a/b").is_err());
        assert!(TokenId::parse("x".repeat(65)).is_err());
        assert_eq!(ProviderKey::parse("zoho us").unwrap_err().field, "provider");
        assert!(UserName::parse("alice@example.com").is_ok());
        assert!(UserName::parse("bad\nname").is_err());
    }

    #[test]
    fn generated_ids_are_time_ordered_and_valid() {
        let a = TokenId::generate();
        let b = TokenId::generate();
        assert!(a < b);
        assert!(TokenId::parse(a.as_str()).is_ok());
    }
}
