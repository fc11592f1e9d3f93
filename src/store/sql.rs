//! A statement and its arguments, built once for either backend: the list queries, whose
//! text depends on the filter. Written here rather than with sqlx's `QueryBuilder`
//! because the SQLite store reads through rusqlite (see `sqlite::readers`), and a
//! `QueryBuilder` keeps its arguments inside sqlx.

use std::fmt::Write;

use serde::Serialize;

/// A bound list of rows, as JSON: statements read it with `json_each` (SQLite) or
/// `json_to_recordset` (PostgreSQL), so that one statement, prepared once whatever the
/// list's length, handles a whole batch.
pub(super) fn json<T: Serialize + ?Sized>(rows: &T) -> String {
    serde_json::to_string(rows).expect("rows serialize")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_string())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub(crate) dialect: Dialect,
    pub(crate) text: String,
    pub(crate) args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(dialect: Dialect, text: impl Into<String>) -> Sql {
        Sql { dialect, text: text.into(), args: Vec::new() }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder (`?` or `$n`) for `arg`.
    pub(crate) fn bind(&mut self, arg: impl Into<Arg>) -> &mut Sql {
        self.args.push(arg.into());
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => write!(self.text, "${}", self.args.len()).expect("writing to a String"),
        }
        self
    }

    /// ` LIMIT n` and, past the first page, ` OFFSET ?`. The page size is in the text, not
    /// bound: PostgreSQL plans each statement once (generic plans), and a LIMIT it cannot
    /// see it takes for a tenth of the rows, a plan many times slower (bench/RESULTS.md).
    /// Sizes are few; offsets would be many statements.
    pub(crate) fn push_page(&mut self, size: u32, offset: i64) {
        self.push(&format!(" LIMIT {size}"));
        if offset > 0 {
            self.push(" OFFSET ").bind(offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_dialect_and_arguments_keep_their_order() {
        for (dialect, text) in
            [(Dialect::Sqlite, "a = ? AND b = ?"), (Dialect::Postgres, "a = $1 AND b = $2")]
        {
            let mut q = Sql::new(dialect, "a = ");
            q.bind(7).push(" AND b = ").bind("x");
            assert_eq!(q.text, text);
            assert_eq!(q.args, [Arg::Int(7), Arg::Text("x".into())]);
        }
    }
}
