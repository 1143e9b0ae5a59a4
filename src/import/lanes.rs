//! Saving the parsed rows: rows that could touch the same token share a lane and are saved in
//! source order, lanes run side by side; one row's refusal is reported, anything else stops the
//! import, and the `ImportReport` says what became of every row. Rows that share no key with any
//! other row are first offered to `TokenService::insert_new_for_import` in batches (multi-row
//! INSERTs: the ones that can only be new tokens); every other row goes through
//! `TokenService::get` (the id guard) and `save_import`.

use std::collections::HashMap;

use super::fields::{ImportOptions, ParsedRow};
use crate::domain::PartialToken;
use crate::error::Error;
use crate::store::StoreError;
use crate::tokens::{Saved, Tenancy, TokenService};

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

/// Rows offered to the batch insert at once (one transaction each).
const BATCH: usize = 500;

/// What became of one row.
enum Outcome {
    Saved(Saved),
    Rejected(String),
}

/// Saves the rows, several at a time: rows that could touch the same token (sharing an id, a
/// user_name or a credential) share a lane and are saved one after another in file order, so
/// the result is the same as saving the whole file in order.
pub(super) async fn save_rows(
    tokens: &TokenService,
    rows: Vec<ParsedRow>,
    options: &ImportOptions,
) -> anyhow::Result<ImportReport> {
    let group_of = groups_by_shared_key(&rows);
    let mut group_size: HashMap<usize, usize> = HashMap::new();
    for g in &group_of {
        *group_size.entry(*g).or_default() += 1;
    }
    // Rows alone in their group cannot be affected by another row of the file: the ones that
    // match nothing stored are inserted in batches.
    let alone: Vec<usize> = (0..rows.len())
        .filter(|&i| group_size[&group_of[i]] == 1 && rows[i].token.is_ok())
        .collect();
    let mut outcomes = Vec::new();
    let mut inserted = vec![false; rows.len()];
    for chunk in alone.chunks(BATCH) {
        let partials: Vec<PartialToken> = chunk
            .iter()
            .filter_map(|&i| rows[i].token.as_ref().ok().cloned())
            .collect();
        let done = tokens
            .insert_new_for_import(options.tenant.as_ref(), &partials)
            .await
            .map_err(|e| {
                anyhow::Error::new(e)
                    .context("import stopped (importing is idempotent, so run it again)".to_owned())
            })?;
        for (&i, new) in chunk.iter().zip(done) {
            inserted[i] = new;
        }
    }
    let mut lanes: Vec<Vec<(usize, ParsedRow)>> = (0..LANES).map(|_| Vec::new()).collect();
    for (i, row) in rows.into_iter().enumerate() {
        if inserted[i] {
            outcomes.push((i, row.at, Outcome::Saved(Saved::Created)));
        } else {
            lanes[group_of[i] % LANES].push((i, row));
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let results = futures::future::join_all(
        lanes
            .into_iter()
            .map(|lane| save_lane(tokens, lane, options, &stop)),
    )
    .await;

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

/// The group of each row: rows linked by any shared key (id, user_name, or a credential, any of
/// which the save may match on) are in one group, and so in one lane (`group % LANES`).
fn groups_by_shared_key(rows: &[ParsedRow]) -> Vec<usize> {
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
    (0..rows.len()).map(|i| root(&mut parent, i)).collect()
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
    use super::super::testing::{parse, HEADER};
    use super::*;

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
        let lane: Vec<usize> = groups_by_shared_key(&rows)
            .into_iter()
            .map(|g| g % LANES)
            .collect();
        assert_eq!(lane[0], lane[3], "same id");
        assert_eq!(lane[1], lane[4], "same user_name");
        assert_eq!(lane[2], lane[5], "same refresh token");
        assert_ne!(lane[0], lane[1], "unrelated rows run side by side");
    }
}
