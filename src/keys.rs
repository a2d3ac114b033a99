//! Secrets of this instance, generated once on first start and kept in the
//! database (`instance_keys`), so every process that opens the file (the
//! server, the CLI, a restored backup) signs and checks with the same key.

use crate::crypto;
use crate::db::Db;
use crate::error::Error;
use rusqlite::OptionalExtension;

/// Returns the 32-byte key `name`, creating it if this database has none.
pub fn load_or_create(db: &Db, name: &str) -> Result<[u8; 32], Error> {
    db.write(|tx| {
        let existing: Option<Vec<u8>> =
            tx.query_row("SELECT value FROM instance_keys WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        if let Some(bytes) = existing {
            return bytes.try_into().map_err(|_| Error::internal(format!("instance key {name} is not 32 bytes")));
        }
        let key = crypto::random_bytes::<32>();
        tx.execute("INSERT INTO instance_keys (name, value) VALUES (?1, ?2)", rusqlite::params![name, &key[..]])?;
        Ok(key)
    })
}
