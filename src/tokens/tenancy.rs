//! Tenancy, the one owner: which tenants a caller may act on, and a token's tenant in its column
//! form (`''` for "no tenant": NULLs never collide in unique indexes). Every conversion between
//! the two forms happens here; a column value that is not a valid tenant name is an error, never
//! "no tenant" (which would make a background job act unrestricted).

use crate::domain::TenantName;
use crate::error::{Error, Result};
use crate::store::TenantFilter;

/// Which tenant a caller is confined to (from the JWT's tenant claim, which every JWT must carry:
/// see `auth::Verifier`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenancy {
    /// The caller's JWT grants every tenant (`"tenant": "*"`); also the background jobs and the
    /// ops commands, which act for the whole broker.
    Unrestricted,
    /// The caller sees and changes only this tenant's tokens.
    Only(TenantName),
}

impl Tenancy {
    /// The tenancy of a job acting for a token of `tenant` (the background refresher, a login
    /// callback): exactly that token's tenant, or unrestricted for a token of no tenant.
    pub fn of_token(tenant: Option<&TenantName>) -> Self {
        tenant.map_or(Self::Unrestricted, |t| Self::Only(t.clone()))
    }

    /// The rows this caller may see.
    pub fn filter(&self) -> TenantFilter {
        match self {
            Self::Unrestricted => TenantFilter::Any,
            Self::Only(t) => TenantFilter::Only(t.as_str().to_owned()),
        }
    }

    /// The tenant this caller's own writes land in (a login it starts, for one): its own, or none.
    pub fn own_tenant(&self) -> Option<&TenantName> {
        match self {
            Self::Unrestricted => None,
            Self::Only(t) => Some(t),
        }
    }

    /// Whether this caller may see a token of `tenant`.
    pub fn sees(&self, tenant: Option<&TenantName>) -> bool {
        match self {
            Self::Unrestricted => true,
            Self::Only(own) => tenant == Some(own),
        }
    }

    /// The one tenant a find or save acts in: the caller's own, or (unrestricted callers) the
    /// one the request names, else none.
    pub fn resolve(&self, requested: Option<&TenantName>) -> Result<Option<TenantName>> {
        match (self, requested) {
            (Self::Unrestricted, r) => Ok(r.cloned()),
            (Self::Only(own), None) => Ok(Some(own.clone())),
            (Self::Only(own), Some(r)) if r == own => Ok(Some(own.clone())),
            (Self::Only(_), Some(_)) => Err(Error::Forbidden(
                "tenant: a caller may only act on its own tenant".into(),
            )),
        }
    }
}

/// A token's tenant in its column form: `''` for none.
pub(crate) fn to_column(tenant: Option<&TenantName>) -> &str {
    tenant.map_or("", TenantName::as_str)
}

/// A tenant column back in domain form. `what` names the row kind in the error ("token",
/// "login") so a corrupt row can be found.
pub(crate) fn from_column(column: &str, what: &str) -> Result<Option<TenantName>> {
    match column {
        "" => Ok(None),
        t => TenantName::parse(t).map(Some).map_err(|_| {
            Error::Internal(anyhow::anyhow!("a stored {what} row has an invalid tenant"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_form_round_trips_and_refuses_garbage() {
        let acme = TenantName::parse("acme").unwrap();
        assert_eq!(to_column(Some(&acme)), "acme");
        assert_eq!(to_column(None), "");
        assert_eq!(from_column("acme", "token").unwrap(), Some(acme.clone()));
        assert_eq!(from_column("", "token").unwrap(), None);
        assert!(from_column("not a tenant\u{0}", "token").is_err());
        assert_eq!(Tenancy::of_token(Some(&acme)), Tenancy::Only(acme));
        assert_eq!(Tenancy::of_token(None), Tenancy::Unrestricted);
    }
}
