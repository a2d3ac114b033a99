//! The SQLite file: a pool of read-only connections plus one writer, WAL,
//! foreign keys and a busy timeout on every connection, and the schema
//! brought up to date on open.

pub mod group;
pub mod migrate;
pub mod wal;

use crate::config;
use crate::error::Error;
use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Most rows one prune transaction deletes.
pub const PRUNE_BATCH: usize = 5000;

pub struct Db {
    readers: Pool<SqliteConnectionManager>,
    /// One connection: writers queue here instead of spinning on SQLITE_BUSY.
    writer: Pool<SqliteConnectionManager>,
    /// Copies the WAL into the main file, off the writer's path.
    checkpointer: Mutex<Connection>,
    /// Lets the WAL start over while long reads run.
    wal: wal::Wal,
    path: PathBuf,
}

/// WAL pages after which the writer checkpoints by itself, inside a
/// commit (SQLite's default is 1000): a WAL of at most 64 MiB with 4 KiB
/// pages. In the server, background passive checkpoints
/// ([`Db::checkpoint_passive`]) have copied most of them by then, and
/// [`wal::Wal`] has the writer checkpoint earlier, once reads are out of
/// the way; this is the backstop (commands without the server, a reader
/// outside it). A checkpoint in the writer's own thread is what lets the
/// WAL start over, which a checkpoint racing a stream of commits never
/// does. Its fsyncs stall the commit
/// they follow: in interleaved runs of the builds (`bench/click.sh`'s
/// settings), 2000 pages cost 12 % of the keep-alive click rate against
/// 8000, and 8000 about 3 % against 20 000.
const WRITER_AUTOCHECKPOINT: u32 = 16_000;

/// Size the WAL file is cut back to whenever it starts over (64 MiB).
/// Without it SQLite keeps the file at the largest size it ever reached,
/// which a replicator holding readers open (Litestream) can make large.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

impl Db {
    /// Opens (creating if needed) and upgrades the database file.
    pub fn open(cfg: &config::Database) -> Result<Db, Error> {
        let timeout = Duration::from_millis(cfg.busy_timeout_ms);
        let mut conn = Connection::open(&cfg.path)
            .map_err(|e| Error::internal(format!("cannot open {}: {e}", cfg.path.display())))?;
        conn.busy_timeout(timeout)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::internal(format!("{} cannot use WAL mode (got {mode})", cfg.path.display())));
        }
        migrate::upgrade(&mut conn, migrate::SCHEMA)?;
        drop(conn);

        let pool = |size: u32, read_only: bool| {
            let manager = SqliteConnectionManager::file(&cfg.path).with_init(move |c| {
                c.busy_timeout(timeout)?;
                c.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
                if read_only {
                    // Readers mostly walk rollups and the newest rows: 1 MiB each.
                    c.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -1024;")?;
                } else {
                    // The writer touches the hot ends of the big indexes on
                    // every click: give it room to keep them (4 MiB).
                    c.execute_batch("PRAGMA cache_size = -4096;")?;
                    c.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT)?;
                    c.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
                }
                Ok(())
            });
            Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                .connection_timeout(timeout)
                .test_on_check_out(false)
                .build(manager)
                .map_err(|e| Error::internal(format!("database pool: {e}")))
        };
        let checkpointer = Connection::open(&cfg.path)?;
        checkpointer.busy_timeout(timeout)?;
        checkpointer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        Ok(Db {
            readers: pool(cfg.pool_size, true)?,
            writer: pool(1, false)?,
            checkpointer: Mutex::new(checkpointer),
            wal: wal::Wal::default(),
            path: cfg.path.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read-only connection (after waiting, if the WAL is
    /// being started over, for that to be done: [`wal`]).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        let _pass = self.wal.enter();
        let conn = self.readers.get()?;
        f(&conn)
    }

    /// Runs `f` in a write transaction (BEGIN IMMEDIATE) that commits when
    /// `f` returns Ok and rolls back otherwise.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T, Error>) -> Result<T, Error> {
        let mut conn = self.writer.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        if let Some(round) = self.wal.checkpoint_wanted() {
            // Between two commits of this one writer: once everything is
            // copied, its next transaction starts the WAL over. The write
            // has committed: a failed checkpoint must not fail it.
            self.wal.checkpointed(round, wal_checkpoint(&conn).ok().flatten());
        }
        Ok(out)
    }

    /// Runs `f` in a write transaction and commits what it wrote even when
    /// its outcome is a refusal: "commit this, then refuse" (a wrong code
    /// is counted, and the count must stick, though the request fails).
    pub fn write_then_refuse<T>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<Result<T, Error>, Error>,
    ) -> Result<T, Error> {
        self.write(f)?
    }

    /// Deletes in batches through `batch` (one write transaction each,
    /// at most [`PRUNE_BATCH`] rows) until a batch comes back short, so a
    /// prune never holds the writer for long. Returns the rows deleted.
    pub fn prune(&self, batch: impl Fn(&Connection, i64) -> rusqlite::Result<usize>) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let n = self.write(|tx| Ok(batch(tx, PRUNE_BATCH as i64)?))?;
            total += n;
            if n < PRUNE_BATCH {
                return Ok(total);
            }
            // Let the click writer in between batches.
            std::thread::yield_now();
        }
    }

    /// Moves the WAL's content into the main file and truncates it; done at
    /// shutdown so the file alone is complete.
    pub fn checkpoint(&self) -> Result<(), Error> {
        let conn = self.writer.get()?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }

    /// Copies what the WAL holds into the main file, from a connection of
    /// its own, without blocking readers or the writer (a passive
    /// checkpoint); then, if the WAL has grown long, has it started over
    /// ([`wal::Wal::restart`]). The server runs this in the background
    /// several times a second.
    pub fn checkpoint_passive(&self) -> Result<wal::Restart, Error> {
        let done = {
            let conn = self.checkpointer.lock().unwrap_or_else(|e| e.into_inner());
            wal_checkpoint(&conn)?
        };
        // Another process's checkpoint was running: look again next time.
        Ok(done.map_or(wal::Restart::NotNeeded, |(frames, _)| self.wal.restart(frames)))
    }

    /// The schema version the file is at.
    pub fn schema_version(&self) -> Result<u32, Error> {
        self.read(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
    }
}

/// A passive checkpoint: (frames in the WAL, frames copied to the main
/// file), or None when another connection's checkpoint was running (SQLite
/// then answers busy, -1, -1).
fn wal_checkpoint(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    let (busy, frames, copied): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok((busy == 0 && frames >= 0).then_some((frames, copied)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_wal_starts_over_while_commits_keep_coming() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config::Database { path: dir.path().join("w.db"), ..Default::default() };
        let db = std::sync::Arc::new(Db::open(&cfg).unwrap());
        db.write(|tx| Ok(tx.execute_batch("CREATE TABLE w (b BLOB)")?)).unwrap();
        db.write(|tx| {
            for _ in 0..wal::RESTART_FRAMES + 500 {
                tx.execute("INSERT INTO w VALUES (zeroblob(4000))", [])?;
            }
            Ok(())
        })
        .unwrap();
        let restarter = {
            let db = std::sync::Arc::clone(&db);
            std::thread::spawn(move || db.checkpoint_passive().unwrap())
        };
        // Clicks keep committing meanwhile; none of them waits.
        while !restarter.is_finished() {
            db.write(|tx| Ok(tx.execute("INSERT INTO w VALUES (x'00')", [])?)).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(restarter.join().unwrap(), wal::Restart::Done);
        db.write(|tx| Ok(tx.execute("INSERT INTO w VALUES (x'00')", [])?)).unwrap();
        let (frames, _) = wal_checkpoint(&db.checkpointer.lock().unwrap()).unwrap().unwrap();
        assert!(frames < 10, "the WAL did not start over: {frames} frames");
        let rows = db.read(|c| Ok(c.query_row("SELECT count(*) FROM w", [], |r| r.get::<_, i64>(0))?)).unwrap();
        assert!(rows > wal::RESTART_FRAMES, "{rows}");
    }

    #[test]
    fn a_prune_deletes_in_batches_of_its_own_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config::Database { path: dir.path().join("p.db"), ..Default::default() };
        let db = Db::open(&cfg).unwrap();
        db.write(|tx| {
            for i in 0..12_001 {
                crate::ratelimit::hit(tx, &format!("k{i}"), crate::ratelimit::Limit { max: 1, window: 1 }, 0)?;
            }
            Ok(())
        })
        .unwrap();
        let batches = std::cell::RefCell::new(Vec::new());
        let deleted = db
            .prune(|tx, limit| {
                let n = crate::ratelimit::prune(tx, 10 * crate::clock::DAY, limit)?;
                batches.borrow_mut().push(n);
                Ok(n)
            })
            .unwrap();
        assert_eq!(deleted, 12_001);
        assert_eq!(*batches.borrow(), [5000, 5000, 2001]);
    }
}
