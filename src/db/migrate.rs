//! Applies `schema.sql` (embedded at compile time) step by step through
//! `rusqlite_migration`, recording the applied version in `PRAGMA
//! user_version`. Upgrades in place, never downgrades. `schema.sql` stays
//! the one schema: its `-- version: N` sections are the steps.

use crate::error::Error;
use rusqlite::{Connection, TransactionBehavior};
use rusqlite_migration::{HookError, Migrations, M};

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
/// The steps run through `rusqlite_migration`, one transaction each, taken
/// IMMEDIATE so the write lock is held from the start. rusqlite_migration
/// reads the version before that transaction, so two processes starting at
/// once could both decide to apply a step: a hook inside the transaction
/// checks the version again and rolls the step back if another process
/// applied it meanwhile, which is then not an error.
pub fn upgrade(conn: &mut Connection, schema: &str) -> Result<u32, Error> {
    let steps = steps(schema);
    let latest = steps.last().map_or(0, |(v, _)| *v);
    let migrations = Migrations::new(
        steps
            .iter()
            .map(|(version, sql)| {
                let before = version - 1;
                M::up_with_hook(sql, move |tx: &rusqlite::Transaction| {
                    let now: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
                    if now == before {
                        Ok(())
                    } else {
                        Err(HookError::Hook(format!("already at version {now}: applied by another process")))
                    }
                })
            })
            .collect(),
    );
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

    #[test]
    fn processes_upgrading_at_once_apply_each_step_once() {
        // A step that would not fail if run twice: only the version check
        // inside its transaction keeps it from counting twice.
        let schema = "-- version: 1\nCREATE TABLE t (a INTEGER);\n-- version: 2\nINSERT INTO t VALUES (1);\n";
        for round in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("m{round}.db"));
            let mut conn = Connection::open(&path).unwrap();
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(())).unwrap();
            upgrade(&mut conn, "-- version: 1\nCREATE TABLE t (a INTEGER);\n").unwrap();
            drop(conn);
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, start) = (path.clone(), std::sync::Arc::clone(&start));
                    std::thread::spawn(move || {
                        let mut conn = Connection::open(&path).unwrap();
                        conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                        start.wait();
                        upgrade(&mut conn, schema).unwrap()
                    })
                })
                .collect();
            for w in workers {
                assert_eq!(w.join().unwrap(), 2);
            }
            let conn = Connection::open(&path).unwrap();
            let rows: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
            assert_eq!(rows, 1, "round {round}: step 2 ran {rows} times");
        }
    }
}
