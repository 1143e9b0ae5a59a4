//! The column tables every generated statement comes from: [`table!`] declares a row type and its
//! table in one place (each field a column, with the statements that write it), and [`Build`] turns
//! that table into SELECT lists (MySQL CASTs included), INSERT and UPDATE statements and their bind
//! order. Adding a column is one field here plus one migration line per backend; no SQL string
//! or argument vector is edited by hand.

use std::marker::PhantomData;

use super::sql::{Arg, Sql};
use super::Backend;

/// Which statements write a column: a set of these bits.
pub(crate) type Writes = u8;
/// The column is in the INSERT of the row.
pub(crate) const INSERT: Writes = 1;
/// The column is in the SET list of the full update (`update_token`).
pub(crate) const UPDATE: Writes = 1 << 1;
/// The column is in the SET list of a refresh commit (`commit_refresh`).
pub(crate) const COMMIT: Writes = 1 << 2;
/// The column is in the SET list of a re-encryption (`reencrypt_token`).
pub(crate) const REENCRYPT: Writes = 1 << 3;
/// The column identifies the row: the WHERE of the updates.
pub(crate) const KEY: Writes = 1 << 4;

/// How a column is stored, as far as the SQL we generate cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Read as `CAST(c AS CHAR) AS c` on MySQL: its binary (case-sensitive) collations mark text
    /// columns BINARY, which sqlx will not decode as `String`; a CAST gives them a text collation.
    Text,
    Blob,
    Int,
}

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub writes: Writes,
}

impl Column {
    fn has(&self, flag: Writes) -> bool {
        self.writes & flag != 0
    }
}

/// The Rust types a column can have, and how each is stored.
pub(crate) trait ColumnType: Into<Arg> {
    const KIND: Kind;
}
impl ColumnType for String {
    const KIND: Kind = Kind::Text;
}
impl ColumnType for Option<String> {
    const KIND: Kind = Kind::Text;
}
impl ColumnType for Option<Vec<u8>> {
    const KIND: Kind = Kind::Blob;
}
impl ColumnType for i64 {
    const KIND: Kind = Kind::Int;
}
impl ColumnType for Option<i64> {
    const KIND: Kind = Kind::Int;
}

/// A row type declared with [`table!`]: its table, its columns, and its values in column order.
pub(crate) trait Table: Sized {
    const TABLE: &'static str;
    const COLUMNS: &'static [Column];
    /// The row's values, one per entry of `COLUMNS`, in that order.
    fn into_values(self) -> Vec<Arg>;
}

/// Declares a row struct (decoded with `sqlx::FromRow`) and its column table together:
///
/// ```text
/// table! {
///     /// One pending thing.
///     #[derive(Clone)]
///     pub struct ThingRow in "things" {
///         pub id: String [INSERT, KEY],
///         pub note: Option<String> [INSERT, UPDATE],
///     }
/// }
/// ```
///
/// Each field is a column of the same name; the brackets name the statements that write it
/// (the constants of this module). A field's type decides its [`Kind`].
macro_rules! table {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident in $table:literal {
            $(
                $(#[$field_meta:meta])*
                $field_vis:vis $field:ident : $ty:ty [$($flag:ident),*]
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(sqlx::FromRow)]
        $vis struct $name {
            $( $(#[$field_meta])* $field_vis $field: $ty, )*
        }

        impl $crate::store::columns::Table for $name {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [$crate::store::columns::Column] = &[$(
                $crate::store::columns::Column {
                    name: stringify!($field),
                    kind: <$ty as $crate::store::columns::ColumnType>::KIND,
                    writes: 0 $(| $crate::store::columns::$flag)*,
                },
            )*];
            fn into_values(self) -> Vec<$crate::store::Arg> {
                vec![$($crate::store::Arg::from(self.$field)),*]
            }
        }
    };
}
pub(crate) use table;

/// `SELECT <every column of T> FROM <T's table>`, with `?` placeholders to come.
pub(crate) fn select<T: Table>(backend: Backend) -> String {
    let columns: Vec<String> = T::COLUMNS
        .iter()
        .map(|c| match (backend, c.kind) {
            (Backend::MySql, Kind::Text) => format!("CAST({0} AS CHAR) AS {0}", c.name),
            _ => c.name.to_owned(),
        })
        .collect();
    format!("SELECT {} FROM {}", columns.join(", "), T::TABLE)
}

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bind {
    /// The row's column of this index in `COLUMNS`.
    Column(usize),
    /// The caller's next parameter (a `?` of hand-written text).
    Param,
}

/// A write statement generated from `T`'s table, in its backend's placeholder style, with the
/// order in which the row's columns and the caller's parameters are bound.
pub(crate) struct Statement<T> {
    sql: Sql,
    binds: Vec<Bind>,
    /// How many rows a multi-row INSERT takes; `binds` are those of one row.
    rows: usize,
    row: PhantomData<fn(T)>,
}

impl<T: Table> Statement<T> {
    pub fn sql(&self) -> &Sql {
        &self.sql
    }

    /// The arguments in placeholder order: `row`'s columns the statement writes and `params` in
    /// the order of the hand-written `?`s.
    pub fn args<const N: usize>(&self, row: T, params: [Arg; N]) -> Vec<Arg> {
        debug_assert_eq!(self.params(), N, "parameters of {}", self.sql.as_str());
        let mut args = Vec::with_capacity(self.binds.len());
        self.push_args(row, params, &mut args);
        args
    }

    /// The arguments of a multi-row INSERT: each row's columns, row after row.
    pub fn args_rows(&self, rows: impl IntoIterator<Item = T>) -> Vec<Arg> {
        let mut args = Vec::with_capacity(self.binds.len() * self.rows);
        for row in rows {
            self.push_args(row, [], &mut args);
        }
        args
    }

    fn push_args<const N: usize>(&self, row: T, params: [Arg; N], out: &mut Vec<Arg>) {
        // Each column is bound at most once (the builder adds a column once per statement), so
        // its value can be moved out; a miscount would show as a bind-count error, not a panic.
        let mut values: Vec<Option<Arg>> = row.into_values().into_iter().map(Some).collect();
        let mut params = params.into_iter();
        out.extend(self.binds.iter().filter_map(|bind| match *bind {
            Bind::Column(i) => values.get_mut(i).and_then(Option::take),
            Bind::Param => params.next(),
        }));
    }

    fn params(&self) -> usize {
        self.binds.iter().filter(|b| **b == Bind::Param).count()
    }
}

/// Builds a [`Statement`] from generated parts and hand-written text, left to right.
pub(crate) struct Build<T> {
    backend: Backend,
    sql: String,
    binds: Vec<Bind>,
    rows: usize,
    row: PhantomData<fn(T)>,
}

impl<T: Table> Build<T> {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            sql: String::new(),
            binds: Vec::new(),
            rows: 1,
            row: PhantomData,
        }
    }

    /// Hand-written SQL; each `?` in it is a parameter the caller passes to [`Statement::args`].
    pub fn text(mut self, sql: &str) -> Self {
        self.binds.extend(sql.matches('?').map(|_| Bind::Param));
        self.sql.push_str(sql);
        self
    }

    /// ` INTO <table> (<columns with flag>) VALUES (?, …)`, `rows` tuples of them; follows the
    /// verb (`INSERT`, or MySQL's `INSERT IGNORE`).
    pub fn into_values(mut self, flag: Writes, rows: usize) -> Self {
        let columns = self.columns(flag);
        let names: Vec<&str> = columns.iter().map(|&i| T::COLUMNS[i].name).collect();
        let tuple = format!("({})", vec!["?"; columns.len()].join(", "));
        self.sql.push_str(&format!(
            " INTO {} ({}) VALUES {}",
            T::TABLE,
            names.join(", "),
            vec![tuple; rows].join(", ")
        ));
        self.binds.extend(columns.into_iter().map(Bind::Column));
        self.rows = rows;
        self
    }

    /// `UPDATE <table> SET a = ?, b = ?` of the columns with `flag`.
    pub fn update(mut self, flag: Writes) -> Self {
        let columns = self.columns(flag);
        let set: Vec<String> = columns
            .iter()
            .map(|&i| format!("{} = ?", T::COLUMNS[i].name))
            .collect();
        self.sql
            .push_str(&format!("UPDATE {} SET {}", T::TABLE, set.join(", ")));
        self.binds.extend(columns.into_iter().map(Bind::Column));
        self
    }

    /// ` WHERE k = ? AND …` of the key columns.
    pub fn where_key(mut self) -> Self {
        let columns = self.columns(KEY);
        let conditions: Vec<String> = columns
            .iter()
            .map(|&i| format!("{} = ?", T::COLUMNS[i].name))
            .collect();
        self.sql
            .push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        self.binds.extend(columns.into_iter().map(Bind::Column));
        self
    }

    /// The statement, placeholders rewritten for the backend once, here.
    pub fn finish(self) -> Statement<T> {
        Statement {
            sql: Sql::new(self.backend, &self.sql),
            binds: self.binds,
            rows: self.rows,
            row: PhantomData,
        }
    }

    /// Indices of the columns with `flag`, in table order.
    fn columns(&self, flag: Writes) -> Vec<usize> {
        (0..T::COLUMNS.len())
            .filter(|&i| T::COLUMNS[i].has(flag))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Checks the generated statements can be held to: every entity's tests call these.

    use super::*;

    pub const BACKENDS: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::MySql];

    /// How many placeholders a statement has, in its backend's style.
    pub fn placeholders(backend: Backend, sql: &str) -> usize {
        match backend {
            Backend::Postgres => {
                assert!(!sql.contains('?'), "unrewritten placeholder in {sql}");
                let mut n = 0;
                while sql.contains(&format!("${}", n + 1)) {
                    n += 1;
                }
                assert!(
                    sql.matches('$').count() == n,
                    "placeholders out of order in {sql}"
                );
                n
            }
            _ => sql.matches('?').count(),
        }
    }

    /// The statement binds exactly as many values as it has placeholders, and names no column
    /// twice in its column list or SET list.
    pub fn check<T: Table>(backend: Backend, st: &Statement<T>, params: usize) {
        let sql = st.sql().as_str();
        assert_eq!(st.params(), params, "parameters of {sql}");
        assert_eq!(
            placeholders(backend, sql),
            st.binds.len() * st.rows,
            "placeholders of {sql}"
        );
        let mut columns: Vec<usize> = st
            .binds
            .iter()
            .filter_map(|b| match b {
                Bind::Column(i) => Some(*i),
                Bind::Param => None,
            })
            .collect();
        let bound = columns.len();
        columns.sort_unstable();
        columns.dedup();
        assert_eq!(columns.len(), bound, "a column bound twice in {sql}");
    }

    /// The columns of `T` that `flag` writes, in table order.
    pub fn written<T: Table>(flag: Writes) -> Vec<&'static str> {
        T::COLUMNS
            .iter()
            .filter(|c| c.has(flag))
            .map(|c| c.name)
            .collect()
    }

    /// The SELECT of `T` names every column exactly once (CAST on MySQL for text).
    pub fn check_select<T: Table>() {
        for backend in BACKENDS {
            let sql = select::<T>(backend);
            for c in T::COLUMNS {
                let expected = match (backend, c.kind) {
                    (Backend::MySql, Kind::Text) => format!("CAST({0} AS CHAR) AS {0}", c.name),
                    _ => c.name.to_owned(),
                };
                let list = sql
                    .strip_prefix("SELECT ")
                    .and_then(|s| s.split(" FROM ").next())
                    .unwrap_or_default();
                let hits = list.split(", ").filter(|item| *item == expected).count();
                assert_eq!(hits, 1, "{} in {sql}", c.name);
            }
            assert!(sql.ends_with(&format!(" FROM {}", T::TABLE)), "{sql}");
            assert_eq!(placeholders(backend, &sql), 0);
        }
    }

    table! {
        struct Probe in "probes" {
            id: String [INSERT, KEY],
            note: Option<String> [INSERT, UPDATE],
            data: Option<Vec<u8>> [UPDATE],
            n: i64 [INSERT],
        }
    }

    fn probe() -> Probe {
        Probe {
            id: "p1".into(),
            note: Some("n".into()),
            data: Some(vec![1]),
            n: 7,
        }
    }

    fn describe(args: &[Arg]) -> Vec<String> {
        args.iter()
            .map(|a| match a {
                Arg::Text(v) => format!("t:{}", v.as_deref().unwrap_or("-")),
                Arg::Bytes(v) => format!("b:{}", v.as_ref().map_or(0, Vec::len)),
                Arg::Int(v) => format!("i:{}", v.unwrap_or(-1)),
            })
            .collect()
    }

    #[test]
    fn kinds_follow_the_field_types() {
        let kinds: Vec<Kind> = Probe::COLUMNS.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [Kind::Text, Kind::Text, Kind::Blob, Kind::Int]);
        check_select::<Probe>();
        assert_eq!(
            select::<Probe>(Backend::MySql),
            "SELECT CAST(id AS CHAR) AS id, CAST(note AS CHAR) AS note, data, n FROM probes"
        );
    }

    #[test]
    fn update_binds_the_set_list_then_parameters_then_the_key() {
        for backend in BACKENDS {
            let st = Build::<Probe>::new(backend)
                .update(UPDATE)
                .text(", n = n + ?")
                .where_key()
                .text(" AND n < ?")
                .finish();
            check(backend, &st, 2);
            let args = st.args(probe(), [Arg::from(1), Arg::from(9)]);
            assert_eq!(describe(&args), ["t:n", "b:1", "i:1", "t:p1", "i:9"]);
        }
        let st = Build::<Probe>::new(Backend::Postgres)
            .update(UPDATE)
            .where_key()
            .finish();
        assert_eq!(
            st.sql().as_str(),
            "UPDATE probes SET note = $1, data = $2 WHERE id = $3"
        );
    }

    #[test]
    fn multi_row_insert_binds_row_after_row() {
        let st = Build::<Probe>::new(Backend::Postgres)
            .text("INSERT")
            .into_values(INSERT, 2)
            .finish();
        check(Backend::Postgres, &st, 0);
        assert_eq!(
            st.sql().as_str(),
            "INSERT INTO probes (id, note, n) VALUES ($1, $2, $3), ($4, $5, $6)"
        );
        let args = st.args_rows([probe(), probe()]);
        assert_eq!(
            describe(&args),
            ["t:p1", "t:n", "i:7", "t:p1", "t:n", "i:7"]
        );
    }
}
