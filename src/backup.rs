//! Consistent copies of the live database through SQLite's online backup
//! API, safe while the server is writing.

use crate::db::Db;
use crate::error::Error;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;
use std::path::Path;

/// Copies the database into `dest`, which must not exist yet. The copy is
/// taken in a single step under one read transaction, so it is a snapshot of
/// one moment; writers carry on meanwhile (WAL). It is written beside
/// `dest` first and renamed into place, so `dest` is never half a file.
pub fn run(db: &Db, dest: &Path) -> Result<u64, Error> {
    if dest.exists() {
        return Err(Error::internal(format!("{} already exists; choose a new file name", dest.display())));
    }
    let partial = dest.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let result = db.read(|src| copy(src, &partial)).and_then(|()| {
        std::fs::rename(&partial, dest).map_err(|e| Error::internal(format!("cannot write {}: {e}", dest.display())))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
    std::fs::metadata(dest).map(|m| m.len()).map_err(Error::internal)
}

fn copy(src: &Connection, to: &Path) -> Result<(), Error> {
    let mut dst = Connection::open(to).map_err(|e| Error::internal(format!("cannot create {}: {e}", to.display())))?;
    {
        let backup = Backup::new(src, &mut dst)?;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                // Locked or busy: another connection holds the destination
                // or the source's schema lock; wait a moment and go on.
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }
    // A copy is a plain file: no WAL beside it to lose.
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}
