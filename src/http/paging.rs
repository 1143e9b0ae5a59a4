//! What the listing endpoints of the trail and the outbox share: the page size asked for, and
//! which tenant's rows a caller may list.

use crate::domain::{InvalidField, TenantName};
use crate::error::Result;
use crate::tokens::Tenancy;

/// The page size: `asked`, or `default`; refused (422) outside 1..=`max`.
pub fn limit(asked: Option<u32>, default: u32, max: u32) -> Result<u32> {
    let limit = asked.unwrap_or(default);
    if limit == 0 || limit > max {
        return Err(InvalidField::new("limit", format!("must be between 1 and {max}")).into());
    }
    Ok(limit)
}

/// The tenant whose rows a caller lists: its own when it is confined to one, else the one it
/// asked for (`None`: every tenant).
pub fn tenant(tenancy: &Tenancy, asked: Option<String>) -> Result<Option<String>> {
    Ok(match tenancy {
        Tenancy::Only(t) => Some(t.as_str().to_owned()),
        Tenancy::Unrestricted => asked
            .map(TenantName::parse)
            .transpose()?
            .map(|t| t.to_string()),
    })
}
