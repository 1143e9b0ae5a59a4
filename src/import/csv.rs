//! The FileStore CSV reader: the header (columns by name; errors stop the import), every
//! record as a `ParsedRow`, and the physical line number each record starts on (the CSV reader
//! only knows byte offsets, and quoted fields may span lines).

use std::collections::HashSet;

use anyhow::{anyhow, bail};

use super::fields::{
    check_columns, to_partial, Column, ImportOptions, ParsedRow, RawFields, EXPECTED_COLUMNS,
};

// `::csv` below is the csv crate, which this module is named after.

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses a whole FileStore file: the header (errors stop the import) and every record.
pub(super) fn parse_csv(bytes: &[u8], options: &ImportOptions) -> anyhow::Result<Vec<ParsedRow>> {
    let mut lines = LineCounter::new(bytes);
    let mut reader = ::csv::ReaderBuilder::new()
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
fn parse_header(header: &::csv::ByteRecord) -> Result<Vec<Column>, String> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, options, parse, reason, HEADER};
    use super::*;
    use crate::domain::TokenStatus;

    fn header_error(text: &str) -> String {
        parse_csv(text.as_bytes(), &options())
            .unwrap_err()
            .to_string()
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
}
