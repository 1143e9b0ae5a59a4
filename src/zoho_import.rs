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
//! leaves the stored access token, expiry, refresh and grant token as they are. Zoho ids are small numbers that are unique
//! only within one store, while the broker's ids are global: a row whose `id` already belongs to a
//! token of another tenant or another user is rejected instead of overwriting that token. A save
//! the token store refuses (e.g. a conflict) rejects that row; an unreachable database stops the
//! import with an error (what was saved stays saved; run it again). With `new_ids` (`--new-ids`)
//! the source's ids are ignored: rows match stored tokens by user_name and provider, and new
//! tokens get generated ids, so a second SDK store with overlapping ids imports cleanly.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Row};

use crate::domain::{
    parse_text, PartialToken, ProviderKey, Secret, TenantName, TokenId, TokenStatus, UserName,
};
use crate::error::Error;
use crate::store::StoreError;
use crate::tokens::{Saved, Tenancy, TokenService};

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

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// "line 7" for CSV, "row id 42" for the database table.
    pub at: String,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub rejected: Vec<Rejected>,
}

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

// ---------------------------------------------------------------------------------------------
// Columns and rows, shared by both sources

/// A column of the SDK stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
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

const COLUMNS: usize = 11;

const EXPECTED_COLUMNS: &str = "id, user_name or user_mail, client_id, client_secret, \
    refresh_token, access_token, grant_token, expiry_time, redirect_uri or redirect_url, api_domain";

impl Column {
    fn from_name(name: &str) -> Option<Self> {
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

    fn name(self) -> &'static str {
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
fn check_columns(present: &HashSet<Column>) -> Result<(), String> {
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
struct RawFields([Option<Vec<u8>>; COLUMNS]);

impl RawFields {
    fn set(&mut self, column: Column, value: Option<&[u8]>) {
        self.0[column as usize] = value.filter(|v| !v.is_empty()).map(<[u8]>::to_vec);
    }

    /// The field as text; `Ok(None)` when absent.
    fn text(&self, column: Column) -> Result<Option<String>, String> {
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
struct ParsedRow {
    at: String,
    token: Result<PartialToken, String>,
}

/// Turns a row into the token to save. Every problem is reported (joined with "; "), each by
/// field name only.
fn to_partial(raw: &RawFields, options: &ImportOptions) -> Result<PartialToken, String> {
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

// ---------------------------------------------------------------------------------------------
// The FileStore CSV

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses a whole FileStore file: the header (errors stop the import) and every record.
fn parse_csv(bytes: &[u8], options: &ImportOptions) -> anyhow::Result<Vec<ParsedRow>> {
    let mut lines = LineCounter::new(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => bail!("the file is empty: expected a Zoho FileStore header on line 1"),
        Some(Err(_)) => bail!("the header could not be read"),
        Some(Ok(h)) => h,
    };
    let header_line = lines.line_of(header.position().map_or(0, |p| p.byte()));
    let columns = parse_header(&header)
        .map_err(|e| anyhow!("line {header_line}: not a Zoho FileStore header: {e}"))?;

    let mut rows = Vec::new();
    for record in records {
        match record {
            Ok(record) => {
                let line = lines.line_of(record.position().map_or(0, |p| p.byte()));
                let at = format!("line {line}");
                if record.len() != columns.len() {
                    rows.push(ParsedRow {
                        at,
                        token: Err(format!(
                            "{} field(s) where the header has {}",
                            record.len(),
                            columns.len()
                        )),
                    });
                    continue;
                }
                let mut raw = RawFields::default();
                for (column, value) in columns.iter().zip(record.iter()) {
                    raw.set(*column, Some(value));
                }
                rows.push(ParsedRow {
                    at,
                    token: to_partial(&raw, options),
                });
            }
            Err(e) => match e.position() {
                Some(p) => rows.push(ParsedRow {
                    at: format!("line {}", lines.line_of(p.byte())),
                    token: Err("unreadable CSV record".into()),
                }),
                None => bail!("the file could not be read as CSV"),
            },
        }
    }
    Ok(rows)
}

/// The columns of the header, in order. Errors name positions, never the text.
fn parse_header(header: &csv::ByteRecord) -> Result<Vec<Column>, String> {
    let mut columns = Vec::with_capacity(header.len());
    let mut seen = HashSet::new();
    for (i, field) in header.iter().enumerate() {
        let field = if i == 0 {
            field.strip_prefix(BOM).unwrap_or(field)
        } else {
            field
        };
        let column = std::str::from_utf8(field)
            .ok()
            .and_then(Column::from_name)
            .ok_or_else(|| {
                format!(
                    "column {} is not one the Zoho SDKs write (expected {EXPECTED_COLUMNS})",
                    i + 1
                )
            })?;
        if !seen.insert(column) {
            return Err(format!("column {} repeats {}", i + 1, column.name()));
        }
        columns.push(column);
    }
    check_columns(&seen)?;
    Ok(columns)
}

/// Physical line numbers of byte offsets (which only grow), counting LF, CRLF and a lone CR as
/// one line break each. A record's offset may point at the line breaks and blank lines before it
/// (the CSV reader skips them), so those are skipped first.
struct LineCounter<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, offset: u64) -> u64 {
        let mut start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        while self.pos < start {
            match self.bytes[self.pos] {
                b'\n' => self.line += 1,
                b'\r' if self.bytes.get(self.pos + 1) != Some(&b'\n') => self.line += 1,
                _ => {}
            }
            self.pos += 1;
        }
        self.line
    }
}

// ---------------------------------------------------------------------------------------------
// The DBStore table

/// Table names are spliced into SQL, so only plain identifiers are accepted.
fn check_table_name(table: &str) -> anyhow::Result<()> {
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

async fn read_mysql(
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

// ---------------------------------------------------------------------------------------------
// Saving

/// Errors of one save that concern that row only; anything else (the database is unreachable,
/// a key is missing) stops the import.
fn is_row_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Conflict(_)
            | Error::InvalidField(_)
            | Error::BadRequest { .. }
            | Error::Forbidden(_)
            | Error::NotFound
            | Error::Store(StoreError::Conflict)
    )
}

/// How many rows are saved at once.
const LANES: usize = 8;

/// What became of one row.
enum Outcome {
    Saved(Saved),
    Rejected(String),
}

/// Saves the rows, several at a time: rows that could touch the same token (sharing an id, a
/// user_name or a credential) share a lane and are saved one after another in file order, so
/// the result is the same as saving the whole file in order.
async fn save_rows(
    tokens: &TokenService,
    rows: Vec<ParsedRow>,
    options: &ImportOptions,
) -> anyhow::Result<ImportReport> {
    let lane_of = lanes_by_shared_key(&rows);
    let mut lanes: Vec<Vec<(usize, ParsedRow)>> = (0..LANES).map(|_| Vec::new()).collect();
    for (i, row) in rows.into_iter().enumerate() {
        lanes[lane_of[i]].push((i, row));
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let results = futures::future::join_all(
        lanes
            .into_iter()
            .map(|lane| save_lane(tokens, lane, options, &stop)),
    )
    .await;

    let mut outcomes = Vec::new();
    let mut failure = None;
    for (done, failed) in results {
        outcomes.extend(done);
        failure = failure.or(failed);
    }
    outcomes.sort_by_key(|(i, _, _)| *i);
    let mut report = ImportReport::default();
    for (_, at, outcome) in outcomes {
        match outcome {
            Outcome::Saved(Saved::Created) => report.created += 1,
            Outcome::Saved(Saved::Updated) => report.updated += 1,
            Outcome::Rejected(reason) => report.rejected.push(Rejected { at, reason }),
        }
    }
    match failure {
        None => Ok(report),
        Some((at, e)) => Err(anyhow::Error::new(e).context(format!(
            "import stopped at {at} ({} created, {} updated, {} rejected so far; \
             importing is idempotent, so run it again)",
            report.created,
            report.updated,
            report.rejected.len()
        ))),
    }
}

/// One lane's rows in order; stops at the first error that is not the row's own (and makes
/// the other lanes stop).
async fn save_lane(
    tokens: &TokenService,
    rows: Vec<(usize, ParsedRow)>,
    options: &ImportOptions,
    stop: &std::sync::atomic::AtomicBool,
) -> (Vec<(usize, String, Outcome)>, Option<(String, Error)>) {
    use std::sync::atomic::Ordering;
    let mut done = Vec::with_capacity(rows.len());
    for (i, row) in rows {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let partial = match row.token {
            Ok(p) => p,
            Err(reason) => {
                done.push((i, row.at, Outcome::Rejected(reason)));
                continue;
            }
        };
        match save_one(tokens, partial, options).await {
            Ok(Ok(saved)) => done.push((i, row.at, Outcome::Saved(saved))),
            Ok(Err(reason)) => done.push((i, row.at, Outcome::Rejected(reason))),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return (done, Some((row.at, e)));
            }
        }
    }
    (done, None)
}

/// The lane of each row: rows linked by any shared key (id, user_name, or a credential, any of
/// which the save may match on) end up in one lane.
fn lanes_by_shared_key(rows: &[ParsedRow]) -> Vec<usize> {
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut parent: Vec<usize> = (0..rows.len()).collect();
    // Keys are kept as hashes (no copies of secrets); a collision only joins two lanes.
    let hash = |kind: u8, key: &str| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (kind, key).hash(&mut h);
        h.finish()
    };
    let mut first_with: HashMap<u64, usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let Ok(p) = &row.token else { continue };
        let keys = [
            p.id.as_ref().map(|v| hash(0, v.as_str())),
            p.user_name.as_ref().map(|v| hash(1, v.as_str())),
            p.refresh_token.as_ref().map(|v| hash(2, v.expose())),
            p.access_token.as_ref().map(|v| hash(3, v.expose())),
            p.grant_token.as_ref().map(|v| hash(4, v.expose())),
        ];
        for key in keys.into_iter().flatten() {
            match first_with.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let (a, b) = (root(&mut parent, *e.get()), root(&mut parent, i));
                    parent[b.max(a)] = a.min(b);
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                }
            }
        }
    }
    (0..rows.len())
        .map(|i| root(&mut parent, i) % LANES)
        .collect()
}

/// Saves one token: `Ok(Err(reason))` when this row is refused, `Err` when the import must stop.
async fn save_one(
    tokens: &TokenService,
    partial: PartialToken,
    options: &ImportOptions,
) -> Result<Result<Saved, String>, Error> {
    if let Some(id) = &partial.id {
        match tokens.get(&Tenancy::Unrestricted, id).await {
            Ok(existing) => {
                if existing.tenant != options.tenant {
                    return Ok(Err(
                        "id: already used by a token of another tenant (ids are unique across tenants)"
                            .into(),
                    ));
                }
                if let (Some(theirs), Some(ours)) = (&existing.user_name, &partial.user_name) {
                    if theirs != ours {
                        return Ok(Err(
                            "id: already used by a token of another user_name".into()
                        ));
                    }
                }
            }
            Err(Error::NotFound) => {}
            Err(e) if is_row_error(&e) => return Ok(Err(format!("not saved: {e}"))),
            Err(e) => return Err(e),
        }
    }
    match tokens.save_import(&Tenancy::Unrestricted, partial).await {
        Ok((_, saved)) => Ok(Ok(saved)),
        Err(e) if is_row_error(&e) => Ok(Err(format!("not saved: {e}"))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ImportOptions {
        ImportOptions {
            provider: ProviderKey::parse("zoho-eu").unwrap(),
            tenant: Some(TenantName::parse("acme").unwrap()),
            new_ids: false,
        }
    }

    fn parse(text: &str) -> Vec<ParsedRow> {
        parse_csv(text.as_bytes(), &options()).unwrap()
    }

    fn header_error(text: &str) -> String {
        parse_csv(text.as_bytes(), &options())
            .unwrap_err()
            .to_string()
    }

    fn ok(row: &ParsedRow) -> &PartialToken {
        row.token
            .as_ref()
            .unwrap_or_else(|e| panic!("{} rejected: {e}", row.at))
    }

    fn reason(row: &ParsedRow) -> &str {
        row.token.as_ref().err().map(String::as_str).unwrap_or("")
    }

    const HEADER: &str = "id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri,api_domain\r\n";

    #[test]
    fn rows_that_could_touch_one_token_are_saved_in_one_lane() {
        let rows = parse(&format!(
            "{HEADER}\
             1,a@x.com,c,s,rt-a,,,,,\r\n\
             2,b@x.com,c,s,rt-b,,,,,\r\n\
             3,c@x.com,c,s,rt-c,,,,,\r\n\
             1,d@x.com,c,s,rt-d,,,,,\r\n\
             5,b@x.com,c,s,rt-e,,,,,\r\n\
             6,e@x.com,c,s,rt-c,,,,,\r\n"
        ));
        let lane = lanes_by_shared_key(&rows);
        assert_eq!(lane[0], lane[3], "same id");
        assert_eq!(lane[1], lane[4], "same user_name");
        assert_eq!(lane[2], lane[5], "same refresh token");
        assert_ne!(lane[0], lane[1], "unrelated rows run side by side");
    }

    #[test]
    fn the_current_sdk_file_with_crlf_and_quoted_fields() {
        let text = format!(
            "{HEADER}\
             1,alice@example.com,1000.CID,\"sec,ret\",1000.r.a,1000.a.a,,1795371021953,https://app.example.com/cb,https://www.zohoapis.eu\r\n\
             2,\"Doe, \"\"Bob\"\"\",1000.CID,\"multi\r\nline\nsecret\",1000.r.b,,,,,\r\n"
        );
        let rows = parse(&text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].at, "line 2");
        assert_eq!(rows[1].at, "line 3");
        let a = ok(&rows[0]);
        assert_eq!(a.id.as_ref().unwrap().as_str(), "1");
        assert_eq!(a.user_name.as_ref().unwrap().as_str(), "alice@example.com");
        assert_eq!(a.client_secret.as_ref().unwrap().expose(), "sec,ret");
        assert_eq!(a.refresh_token.as_ref().unwrap().expose(), "1000.r.a");
        assert_eq!(a.access_token.as_ref().unwrap().expose(), "1000.a.a");
        assert!(a.grant_token.is_none());
        assert_eq!(a.expiry_time, Some(1_795_371_021_953));
        assert_eq!(
            a.redirect_url.as_deref(),
            Some("https://app.example.com/cb")
        );
        assert_eq!(a.api_domain.as_deref(), Some("https://www.zohoapis.eu"));
        assert_eq!(a.provider.as_ref().unwrap().as_str(), "zoho-eu");
        assert_eq!(a.tenant.as_ref().unwrap().as_str(), "acme");
        assert_eq!(a.status, Some(TokenStatus::Active));
        let b = ok(&rows[1]);
        assert_eq!(b.user_name.as_ref().unwrap().as_str(), "Doe, \"Bob\"");
        assert_eq!(
            b.client_secret.as_ref().unwrap().expose(),
            "multi\r\nline\nsecret"
        );
        assert!(b.expiry_time.is_none() && b.redirect_url.is_none() && b.api_domain.is_none());
    }

    #[test]
    fn line_numbers_count_physical_lines_of_multi_line_records_and_blank_lines() {
        let text = format!(
            "{HEADER}\
             1,a@x,c,\"one\r\ntwo\r\nthree\",r1,,,,,\r\n\
             \r\n\
             2,b@x,c,,r2,,,,,\r\n\
             3,c@x,c,,,,,,,\r\n\
             4,d@x,\"c\nc\",,r4,,,,,\n\
             5,e@x,c,,r5,,,,,"
        );
        let rows = parse(&text);
        let at: Vec<&str> = rows.iter().map(|r| r.at.as_str()).collect();
        assert_eq!(at, ["line 2", "line 6", "line 7", "line 8", "line 10"]);
        assert_eq!(
            reason(&rows[2]),
            "no refresh_token, access_token or grant_token"
        );
        assert_eq!(
            reason(&rows[3]),
            "client_id: must not contain control characters"
        );
        assert!(rows[4].token.is_ok());
    }

    #[test]
    fn older_headers_are_accepted_by_name() {
        // Python SDK 2.x: no id, no client_secret, user_mail.
        let rows = parse(
            "user_mail,client_id,refresh_token,access_token,grant_token,expiry_time\r\n\
             old@example.com,1000.X,1000.r,1000.a,,1600000000000\r\n",
        );
        let t = ok(&rows[0]);
        assert_eq!(t.user_name.as_ref().unwrap().as_str(), "old@example.com");
        assert!(t.id.is_none());
        assert_eq!(t.expiry_time, Some(1_600_000_000_000));

        // Nine columns (no api_domain), user_mail and redirect_url, any case, blanks, a BOM.
        let rows = parse(
            "\u{feff}ID, User_Mail ,CLIENT_ID,client_secret,refresh_token,access_token,grant_token,expiry_time,Redirect_URL\n\
             7,nine@example.com,1000.X,s,r,a,,,https://cb.example.com\n",
        );
        let t = ok(&rows[0]);
        assert_eq!(t.id.as_ref().unwrap().as_str(), "7");
        assert_eq!(t.user_name.as_ref().unwrap().as_str(), "nine@example.com");
        assert_eq!(t.redirect_url.as_deref(), Some("https://cb.example.com"));
        assert!(t.api_domain.is_none());
    }

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
    fn bad_headers_stop_the_import_without_printing_the_line() {
        let e = header_error("1,alice@example.com,1000.CID,s3cr3t,1000.r.SECRET,,,,,\r\n");
        assert!(
            e.starts_with("line 1: not a Zoho FileStore header: column 1 "),
            "{e}"
        );
        assert!(
            !e.contains("SECRET") && !e.contains("s3cr3t") && !e.contains("alice"),
            "{e}"
        );

        let e = header_error("user_name,refresh_token,colour\r\n");
        assert!(e.contains("column 3 is not one the Zoho SDKs write"), "{e}");
        assert!(!e.contains("colour"), "{e}");

        let e = header_error("user_name,refresh_token,redirect_uri,redirect_url\r\n");
        assert!(e.contains("column 4 repeats redirect_url"), "{e}");

        let e = header_error("id,client_id,refresh_token\r\n");
        assert!(e.contains("no user_name (or user_mail) column"), "{e}");

        let e = header_error("user_name,client_id\r\n");
        assert!(
            e.contains("no refresh_token, access_token or grant_token column"),
            "{e}"
        );

        assert!(header_error("").contains("empty"));
        assert!(parse(HEADER).is_empty());
    }

    #[test]
    fn malformed_rows_are_rejected_by_field_never_by_value() {
        let mut text = HEADER.as_bytes().to_vec();
        text.extend_from_slice(b"1,a@x,c,,SECRET-r1,,,17x,,\r\n"); // line 2: expiry
        text.extend_from_slice(b"2,b@x,c,,SECRET-r2,,\r\n"); // line 3: too few fields
        text.extend_from_slice(b"3,c@x,c,,SECRET-r3,,,,,,extra\r\n"); // line 4: too many
        text.extend_from_slice(b"bad id,d@x,c,,SECRET-r4,,,,,\r\n"); // line 5: id
        text.extend_from_slice(b"5,e@x,c,,SECRET-\xff\xfe,,,,,\r\n"); // line 6: UTF-8
        text.extend_from_slice(b"6,\"f\n@x\",c,SECRET-cs,,,,,,\r\n"); // line 7: user_name, no token
        text.extend_from_slice(b"7,g@x,c,,SECRET-r7,,,-5,,\r\n"); // line 9: negative expiry
        text.extend_from_slice(b"8,h@x,c,,SECRET-r8,,, 1700000000000 ,,\r\n"); // line 10: ok
        let rows = parse_csv(&text, &options()).unwrap();
        let got: Vec<(&str, &str)> = rows.iter().map(|r| (r.at.as_str(), reason(r))).collect();
        assert_eq!(
            got,
            [
                (
                    "line 2",
                    "expiry_time: not a whole number of milliseconds since the Unix epoch"
                ),
                ("line 3", "7 field(s) where the header has 10"),
                ("line 4", "11 field(s) where the header has 10"),
                (
                    "line 5",
                    "id: may only contain letters, digits, '-', '_' and '.'"
                ),
                ("line 6", "refresh_token: not valid UTF-8"),
                (
                    "line 7",
                    "user_name: must not contain control characters; \
                     no refresh_token, access_token or grant_token"
                ),
                (
                    "line 9",
                    "expiry_time: not a whole number of milliseconds since the Unix epoch"
                ),
                ("line 10", ""),
            ]
        );
        assert_eq!(ok(&rows[7]).expiry_time, Some(1_700_000_000_000));
        for r in &rows {
            assert!(!reason(r).contains("SECRET"), "{r:?}");
        }
    }

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
