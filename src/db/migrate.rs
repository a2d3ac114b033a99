//! Applies `schema.sql` (embedded at compile time) step by step through
//! `rusqlite_migration`, recording the applied version in `PRAGMA
//! user_version`. Upgrades in place, never downgrades. `schema.sql` stays
//! the one schema: its `-- version: N` sections are the steps.

use crate::error::Error;
use rusqlite::{Connection, TransactionBehavior};
use rusqlite_migration::{Migrations, M};

pub const SCHEMA: &str = include_str!("../../schema.sql");

/// The schema version this binary writes.
pub fn latest_version() -> u32 {
    steps(SCHEMA).last().map_or(0, |(v, _)| *v)
}

/// Splits a schema text into its `-- version: N` sections. The versions must
/// run 1, 2, 3…; a test holds `schema.sql` to that.
pub fn steps(schema: &str) -> Vec<(u32, String)> {
    let mut steps: Vec<(u32, String)> = Vec::new();
    for line in schema.lines() {
        if let Some(v) = line.strip_prefix("-- version:") {
            steps.push((v.trim().parse().unwrap_or(0), String::new()));
        } else if let Some((_, sql)) = steps.last_mut() {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    steps
}

/// Brings the database up to the newest version of `schema` and returns it.
/// The steps run through `rusqlite_migration`, one transaction each (taken
/// IMMEDIATE, so the write lock is held from the start); a step that fails
/// because another process applied it meanwhile is not an error.
pub fn upgrade(conn: &mut Connection, schema: &str) -> Result<u32, Error> {
    let steps = steps(schema);
    let latest = steps.last().map_or(0, |(v, _)| *v);
    let migrations = Migrations::new(steps.iter().map(|(_, sql)| M::up(sql)).collect());
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    let current = version(conn)?;
    if current > latest {
        return Err(Error::internal(format!(
            "the database is at schema version {current}, newer than this binary's {latest}: run a newer apextrack"
        )));
    }
    for step in current + 1..=latest {
        if let Err(e) = migrations.to_version(conn, step as usize) {
            if version(conn)? < step {
                return Err(Error::internal(format!("schema step {step}: {e}")));
            }
        }
    }
    conn.set_transaction_behavior(TransactionBehavior::Deferred);
    Ok(latest)
}

fn version(conn: &Connection) -> Result<u32, Error> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_sql_versions_run_one_two_three() {
        let versions: Vec<u32> = steps(SCHEMA).iter().map(|(v, _)| *v).collect();
        assert!(!versions.is_empty());
        assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn upgrade_keeps_rows_and_is_idempotent() {
        let v1 = "-- version: 1\nCREATE TABLE t (a INTEGER);\n";
        let v2 = format!("{v1}-- version: 2\nALTER TABLE t ADD COLUMN b TEXT DEFAULT 'x';\n");
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(upgrade(&mut conn, v1).unwrap(), 1);
        conn.execute("INSERT INTO t (a) VALUES (7)", []).unwrap();
        assert_eq!(upgrade(&mut conn, &v2).unwrap(), 2);
        assert_eq!(upgrade(&mut conn, &v2).unwrap(), 2);
        let row: (i64, String) = conn.query_row("SELECT a, b FROM t", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!(row, (7, "x".to_string()));
    }

    #[test]
    fn refuses_to_downgrade_and_rolls_back_a_bad_step() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 9).unwrap();
        let e = upgrade(&mut conn, "-- version: 1\nCREATE TABLE t (a);\n").unwrap_err();
        assert!(e.to_string().contains("newer"), "{e}");

        let mut conn = Connection::open_in_memory().unwrap();
        let bad = "-- version: 1\nCREATE TABLE t (a);\n-- version: 2\nCREATE TABLE u (a);\nNOT SQL;\n";
        assert!(upgrade(&mut conn, bad).is_err());
        let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, 1, "step 2 must roll back whole");
        let u_exists: bool =
            conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'u'", [], |r| r.get(0)).unwrap();
        assert!(!u_exists);
    }
}
