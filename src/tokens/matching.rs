//! The TokenStore matching rules, as plain functions: which stored token a partial token names.
//!
//! First rule that applies: `user_name`; else `access_token` when neither client_id nor
//! client_secret is given; else `grant_token`, else `refresh_token` — each together with the same
//! client_id when one is given. (`id` comes first for save; see `TokenService::save`.)

use crate::domain::{PartialToken, ProviderKey, Secret, UserName};
use crate::store::HashColumn;

/// How a partial token is matched against stored ones.
#[derive(Debug, PartialEq)]
pub enum MatchRule<'a> {
    User {
        user_name: &'a UserName,
        provider: Option<&'a ProviderKey>,
    },
    Secret {
        column: HashColumn,
        value: &'a Secret,
        client_id: Option<&'a str>,
    },
}

/// The rule that applies to `token`, or `None` when it names nothing to match on.
pub fn match_rule(token: &PartialToken) -> Option<MatchRule<'_>> {
    if let Some(user_name) = &token.user_name {
        return Some(MatchRule::User {
            user_name,
            provider: token.provider.as_ref(),
        });
    }
    let client_id = token.client_id.as_deref();
    if let Some(access) = &token.access_token {
        if client_id.is_none() && token.client_secret.is_none() {
            return Some(MatchRule::Secret {
                column: HashColumn::AccessToken,
                value: access,
                client_id: None,
            });
        }
    }
    if let Some(grant) = &token.grant_token {
        return Some(MatchRule::Secret {
            column: HashColumn::GrantToken,
            value: grant,
            client_id,
        });
    }
    token
        .refresh_token
        .as_ref()
        .map(|refresh| MatchRule::Secret {
            column: HashColumn::RefreshToken,
            value: refresh,
            client_id,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Option<Secret> {
        Some(Secret::new(s))
    }

    #[test]
    fn user_name_wins_over_everything() {
        let t = PartialToken {
            user_name: Some(UserName::parse("a@b.c").unwrap()),
            access_token: secret("at"),
            refresh_token: secret("rt"),
            ..Default::default()
        };
        assert!(matches!(match_rule(&t), Some(MatchRule::User { .. })));
    }

    #[test]
    fn access_token_only_without_client_credentials() {
        let mut t = PartialToken {
            access_token: secret("at"),
            refresh_token: secret("rt"),
            ..Default::default()
        };
        assert!(matches!(
            match_rule(&t),
            Some(MatchRule::Secret {
                column: HashColumn::AccessToken,
                client_id: None,
                ..
            })
        ));
        t.client_secret = secret("cs");
        assert!(matches!(
            match_rule(&t),
            Some(MatchRule::Secret {
                column: HashColumn::RefreshToken,
                ..
            })
        ));
    }

    #[test]
    fn grant_before_refresh_with_client_id() {
        let t = PartialToken {
            client_id: Some("cid".into()),
            grant_token: secret("gt"),
            refresh_token: secret("rt"),
            access_token: secret("at"),
            ..Default::default()
        };
        assert_eq!(
            match_rule(&t),
            Some(MatchRule::Secret {
                column: HashColumn::GrantToken,
                value: t.grant_token.as_ref().unwrap(),
                client_id: Some("cid"),
            })
        );
    }

    #[test]
    fn nothing_to_match() {
        let t = PartialToken {
            client_id: Some("cid".into()),
            ..Default::default()
        };
        assert_eq!(match_rule(&t), None);
    }
}
