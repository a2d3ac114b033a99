//! Consistent copies of the live database through SQLite's online backup
//! API, safe while the server is writing.

use crate::db::Db;
use crate::error::Error;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;
use std::path::{Path, PathBuf};

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

/// A scheduled snapshot: `<dir>/apextrack-YYYYMMDD-HHMMSS.db`, then only
/// the newest `keep` snapshots are kept.
pub fn snapshot(db: &Db, cfg: &crate::config::Backup, clock: &crate::clock::Clock) -> Result<PathBuf, Error> {
    let dir = Path::new(&cfg.dir);
    std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
    let stamp = crate::clock::format(clock.now());
    // 2024-08-17T08:05:00.000000Z -> 20240817-080500
    let name: String =
        stamp[..19].chars().filter(|c| c.is_ascii_digit() || *c == 'T').collect::<String>().replace('T', "-");
    let path = dir.join(format!("apextrack-{name}.db"));
    run(db, &path)?;
    prune_snapshots(dir, cfg.keep as usize)?;
    Ok(path)
}

/// Deletes all but the newest `keep` snapshots in `dir` (by name, which
/// sorts by time); other files are left alone.
pub fn prune_snapshots(dir: &Path, keep: usize) -> Result<usize, Error> {
    let mut snapshots: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::internal)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("apextrack-") && n.ends_with(".db"))
        })
        .collect();
    snapshots.sort();
    let excess = snapshots.len().saturating_sub(keep);
    for old in &snapshots[..excess] {
        std::fs::remove_file(old).map_err(|e| Error::internal(format!("cannot delete {}: {e}", old.display())))?;
    }
    Ok(excess)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{App, Config};

    #[test]
    fn snapshots_are_consistent_and_only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.path = dir.path().join("live.db");
        config.backup.dir = dir.path().join("snaps").display().to_string();
        config.backup.keep = 2;
        let app = App::open(config).unwrap();
        std::fs::create_dir_all(dir.path().join("snaps")).unwrap();
        std::fs::write(dir.path().join("snaps/notes.txt"), "mine").unwrap();
        let mut made = Vec::new();
        for _ in 0..3 {
            made.push(snapshot(&app.db, &app.config.backup, &app.clock).unwrap());
            app.clock.shift(3600 * crate::clock::SECOND);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("snaps")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(left.len(), 3, "two snapshots and the unrelated file: {left:?}");
        assert!(!made[0].exists() && made[1].exists() && made[2].exists());
        let copy = rusqlite::Connection::open(&made[2]).unwrap();
        let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }
}
