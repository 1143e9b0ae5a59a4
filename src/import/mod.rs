//! Importing the Zoho SDKs' own token stores: the FileStore CSV and the DBStore MySQL table.
//! Imports are idempotent (tokens are upserted by id, then by the TokenStore matching rules) and
//! report what they did; malformed rows are rejected with their line number (or row id), never
//! with their values.
//!
//! # The FileStore CSV
//!
//! The first record is the header; columns are found by name (case-insensitive, surrounding
//! blanks and a UTF-8 byte order mark ignored), so every SDK generation is accepted:
//!
//! | column                          | becomes                                   |
//! |---------------------------------|-------------------------------------------|
//! | `id`                            | `id` (kept, so `find_token_by_id` still works) |
//! | `user_name` or `user_mail`      | `user_name` (`user_name` wins when both are filled) |
//! | `client_id`, `client_secret`    | the same                                  |
//! | `refresh_token`, `access_token`, `grant_token` | the same                   |
//! | `expiry_time`                   | `expiry_time` (ms since the epoch, as text) |
//! | `redirect_uri` or `redirect_url`| `redirect_url`                            |
//! | `api_domain`                    | the same                                  |
//!
//! The header must have a `user_name` or `user_mail` column and at least one of the three token
//! columns; `id`, `client_secret`, `redirect_*`, `api_domain` (missing in older SDKs) and the
//! others are optional. A column the SDKs never wrote, or one named twice, stops the import
//! before anything is saved (the message names its position, not its text: a file without a
//! header would otherwise print a token). Records are RFC 4180 (quoted fields may hold commas,
//! quotes and line breaks; CRLF or LF line ends); blank lines are skipped.
//!
//! # The DBStore table
//!
//! The columns are the same (`redirect_url`; `user_mail` and no `api_domain` in older SDKs) and
//! are found through `information_schema`, so extra columns are ignored; `user_name`/`user_mail`
//! and one token column are required. Every column is read as `CAST(… AS CHAR)`, so `int` ids or a
//! binary collation do not matter. Rows are read in `id` order. Besides SQL `NULL`, the text
//! `null` counts as absent (some SDKs wrote it).
//!
//! # Rows
//!
//! Empty fields are absent. A row is rejected — with `at: "line N"` (the line the record starts
//! on; the header is line 1), or `"row id X"` / `"row N"` for the table — when it has the wrong
//! number of fields, a field that is not UTF-8, an `id`, `user_name` or other field the HTTP API
//! would refuse, an `expiry_time` that is not a whole, non-negative number of milliseconds, or no
//! refresh, access or grant token. Reasons name the field, never its value.
//!
//! Good rows are saved like `PUT /v1/tokens` (status `active`, the given provider and tenant):
//! by `id` first, else `user_name` + provider, else the token matching rules. So importing the
//! same source twice creates nothing the second time, and never rolls a token back: a row whose
//! access token expires before the stored one's (the broker refreshed since the file was written)
//! leaves the stored access token, expiry, refresh and grant token as they are. Zoho ids are
//! small numbers that are unique only within one store, while the broker's ids are global: a row
//! whose `id` already belongs to a token of another tenant or another user is rejected instead of
//! overwriting that token. A save
//! the token store refuses (e.g. a conflict) rejects that row; an unreachable database stops the
//! import with an error (what was saved stays saved; run it again). With `new_ids` (`--new-ids`)
//! the source's ids are ignored: rows match stored tokens by user_name and provider, and new
//! tokens get generated ids, so a second SDK store with overlapping ids imports cleanly.
//!
//! # Where each part lives
//!
//! `fields` (the SDK columns, the `ImportOptions`, turning one row into a token), `csv` (the
//! FileStore reader and its physical line numbers), `dbstore` (the DBStore table reader) and
//! `lanes` (saving the rows several at a time, in an order that gives the same result as saving
//! them one by one, into the `ImportReport`). This file holds what the CLI calls; the parts
//! never reach back up into it.

mod csv;
mod dbstore;
mod fields;
mod lanes;

use std::path::Path;

use anyhow::Context;

use self::csv::parse_csv;
use self::dbstore::{check_table_name, read_mysql};
use self::lanes::save_rows;
use crate::tokens::TokenService;

// Defined in the part that uses them, so that no part imports this file.
pub use self::fields::ImportOptions;
pub use self::lanes::{ImportReport, Rejected};

/// Imports a Zoho FileStore CSV file.
pub async fn import_csv(
    tokens: &TokenService,
    path: &Path,
    options: &ImportOptions,
) -> anyhow::Result<ImportReport> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let rows = parse_csv(&bytes, options)?;
    save_rows(tokens, rows, options).await
}

/// Imports a Zoho DBStore MySQL table (default `oauthtoken`) from `url`.
pub async fn import_mysql(
    tokens: &TokenService,
    url: &str,
    table: &str,
    options: &ImportOptions,
) -> anyhow::Result<ImportReport> {
    check_table_name(table)?;
    let rows = read_mysql(url, table, options).await?;
    save_rows(tokens, rows, options).await
}

/// What the tests of every part share: the options, a CSV parse and looks at a parsed row.
#[cfg(test)]
mod testing {
    use super::fields::{ImportOptions, ParsedRow};
    use crate::domain::{PartialToken, ProviderKey, TenantName};

    pub fn options() -> ImportOptions {
        ImportOptions {
            provider: ProviderKey::parse("zoho-eu").unwrap(),
            tenant: Some(TenantName::parse("acme").unwrap()),
            new_ids: false,
        }
    }

    pub fn parse(text: &str) -> Vec<ParsedRow> {
        super::csv::parse_csv(text.as_bytes(), &options()).unwrap()
    }

    pub fn ok(row: &ParsedRow) -> &PartialToken {
        row.token
            .as_ref()
            .unwrap_or_else(|e| panic!("{} rejected: {e}", row.at))
    }

    pub fn reason(row: &ParsedRow) -> &str {
        row.token.as_ref().err().map(String::as_str).unwrap_or("")
    }

    pub const HEADER: &str = "id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri,api_domain\r\n";
}
