//! The DBStore reader: one MySQL/MariaDB connection to the SDK's table, its columns found through
//! `information_schema`, every value read as text, each row turned into a `ParsedRow`.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Row};

use super::fields::{check_columns, to_partial, Column, ImportOptions, ParsedRow, RawFields};
use crate::domain::TokenId;

/// Table names are spliced into SQL, so only plain identifiers are accepted.
pub(super) fn check_table_name(table: &str) -> anyhow::Result<()> {
    let ok = !table.is_empty()
        && table.len() <= 64
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    if !ok {
        bail!("--table: must be 1 to 64 letters, digits, '_' or '$'");
    }
    Ok(())
}

fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn read_mysql(
    url: &str,
    table: &str,
    options: &ImportOptions,
) -> anyhow::Result<Vec<ParsedRow>> {
    let url = if let Some(rest) = url.strip_prefix("mariadb://") {
        format!("mysql://{rest}")
    } else if url.starts_with("mysql://") {
        url.to_owned()
    } else {
        bail!("the source database URL must start with mysql:// or mariadb://");
    };
    // Errors here never include the URL: it may hold a password.
    let connect_options = MySqlConnectOptions::from_str(&url)
        .map_err(|_| anyhow!("the source database URL is not a valid MySQL URL"))?;
    let mut conn = tokio::time::timeout(
        CONNECT_TIMEOUT,
        MySqlConnection::connect_with(&connect_options),
    )
    .await
    .map_err(|_| anyhow!("cannot connect to the source database: no answer within 30 s"))?
    .context("cannot connect to the source database")?;
    let result = read_table(&mut conn, table, options).await;
    let _ = conn.close().await;
    result
}

async fn read_table(
    conn: &mut MySqlConnection,
    table: &str,
    options: &ImportOptions,
) -> anyhow::Result<Vec<ParsedRow>> {
    let has_database: Option<Vec<u8>> = sqlx::query_scalar("SELECT CAST(DATABASE() AS CHAR)")
        .fetch_one(&mut *conn)
        .await
        .context("the source database does not answer")?;
    if has_database.is_none() {
        bail!("the source database URL names no database (mysql://user@host:3306/DATABASE)");
    }
    let names: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .context("cannot read the columns of the source table")?;
    if names.is_empty() {
        bail!("table `{table}` not found in the source database");
    }
    let mut columns: Vec<(Column, String)> = Vec::new();
    for name in names {
        let name = String::from_utf8_lossy(&name).into_owned();
        if let Some(column) = Column::from_name(&name) {
            if !columns.iter().any(|(c, _)| *c == column) {
                columns.push((column, name));
            }
        }
    }
    let present = columns.iter().map(|(c, _)| *c).collect::<HashSet<_>>();
    check_columns(&present)
        .map_err(|e| anyhow!("table `{table}` is not a Zoho DBStore table: {e}"))?;

    let select = columns
        .iter()
        .map(|(_, name)| format!("CAST({} AS CHAR)", quote_identifier(name)))
        .collect::<Vec<_>>()
        .join(", ");
    let order = columns
        .iter()
        .find(|(c, _)| *c == Column::Id)
        .map(|(_, name)| format!(" ORDER BY {}", quote_identifier(name)))
        .unwrap_or_default();
    let sql = format!("SELECT {select} FROM {}{order}", quote_identifier(table));
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await
        .with_context(|| format!("cannot read table `{table}`"))?;

    let mut parsed = Vec::with_capacity(rows.len());
    for (n, row) in rows.iter().enumerate() {
        let mut raw = RawFields::default();
        for (i, (column, _)) in columns.iter().enumerate() {
            let value: Option<Vec<u8>> = row.try_get(i).with_context(|| {
                format!("cannot read column {} of table `{table}`", column.name())
            })?;
            // Some SDKs stored the text "null" for a missing value.
            raw.set(*column, value.as_deref().filter(|v| *v != b"null"));
        }
        let token = to_partial(&raw, options);
        let valid_id = raw
            .text(Column::Id)
            .ok()
            .flatten()
            .filter(|id| TokenId::parse(id.as_str()).is_ok());
        let at = match valid_id {
            Some(id) => format!("row id {id}"),
            None => format!("row {}", n + 1),
        };
        parsed.push(ParsedRow { at, token });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(check_table_name("oauthtoken").is_ok());
        assert!(check_table_name("zoho_tokens$2").is_ok());
        for bad in [
            "",
            "a b",
            "t;DROP TABLE x",
            "db.t",
            "t`",
            "t'",
            &"x".repeat(65),
        ] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
        assert_eq!(quote_identifier("a`b"), "`a``b`");
    }
}
