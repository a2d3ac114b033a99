//! The GeoIP country database: loaded from `tracking.geoip_db` (or, when
//! that is unset, `geoip.mmdb` beside the database file), swapped for a
//! newer file while the server runs, and fetched by `apextrack geoip
//! update`: the free DB-IP Lite country database (CC BY 4.0, no key), or
//! MaxMind's GeoLite2 with a licence key, or any URL of an MMDB file (plain,
//! gzip or a tar.gz holding one).

use crate::config;
use crate::error::Error;
use maxminddb::Reader;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// Largest file accepted from a download (DB-IP's country file is ~10 MB).
const MAX_DOWNLOAD: u64 = 256 << 20;

/// Where the country database is read from: `tracking.geoip_db`, else
/// `geoip.mmdb` in the database file's folder.
pub fn path(cfg: &config::Tracking, db_path: &Path) -> PathBuf {
    if cfg.geoip_db.is_empty() {
        db_path.parent().unwrap_or(Path::new(".")).join("geoip.mmdb")
    } else {
        PathBuf::from(&cfg.geoip_db)
    }
}

/// The loaded database, if any, and the file it came from.
pub struct Geo {
    path: PathBuf,
    reader: RwLock<Option<Arc<Reader<Vec<u8>>>>>,
    /// The modification time of the file last loaded (or found unusable).
    seen: Mutex<Option<SystemTime>>,
}

impl Geo {
    /// Loads the database. A file named in `tracking.geoip_db` must open; the
    /// default file may be missing (countries then come from the header).
    pub fn open(cfg: &config::Tracking, db_path: &Path) -> Result<Geo, Error> {
        let path = path(cfg, db_path);
        let geo = Geo { path, reader: RwLock::new(None), seen: Mutex::new(None) };
        if cfg.geoip_db.is_empty() && !geo.path.exists() {
            return Ok(geo);
        }
        geo.reload().map_err(|e| Error::Config(format!("tracking.geoip_db ({}): {e}", geo.path.display())))?;
        Ok(geo)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ISO country code of `ip`, if the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let reader = self.reader.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        let found = reader.lookup(ip).ok()?;
        found.decode_path::<String>(&maxminddb::path!["country", "iso_code"]).ok().flatten()
    }

    /// The database type and build date of what is loaded.
    pub fn loaded(&self) -> Option<(String, u64)> {
        let reader = self.reader.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some((reader.metadata().database_type.clone(), reader.metadata().build_epoch))
    }

    /// Loads the file again if it changed since it was last looked at;
    /// true when a new database is in use. A file that does not open keeps
    /// the one in use (and is not tried again until it changes).
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified.is_none() || modified == *self.seen.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(false);
        }
        self.reload()
    }

    fn reload(&self) -> Result<bool, String> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = modified;
        let bytes = std::fs::read(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let reader = check(bytes)?;
        *self.reader.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(reader));
        Ok(true)
    }
}

/// Opens an MMDB file's bytes and asks it a question, as a server would.
fn check(bytes: Vec<u8>) -> Result<Reader<Vec<u8>>, String> {
    let reader = Reader::from_source(bytes).map_err(|e| format!("not a MaxMind DB: {e}"))?;
    for ip in ["8.8.8.8", "2001:4860:4860::8888"] {
        let ip: IpAddr = ip.parse().map_err(|e: std::net::AddrParseError| e.to_string())?;
        if reader.metadata().ip_version == 4 && ip.is_ipv6() {
            continue;
        }
        reader.lookup(ip).map_err(|e| format!("the database does not answer a lookup: {e}"))?;
    }
    Ok(reader)
}

/// DB-IP's free country database of a month (`2026-11`).
pub fn dbip_url(year: i64, month: u32) -> String {
    format!("https://download.db-ip.com/free/dbip-country-lite-{year:04}-{month:02}.mmdb.gz")
}

/// MaxMind's GeoLite2 Country, with a licence key.
pub fn maxmind_url(key: &str) -> String {
    format!(
        "https://download.maxmind.com/app/geoip_download?edition_id=GeoLite2-Country&license_key={}&suffix=tar.gz",
        crate::net::percent_encode(key)
    )
}

/// This month's and last month's DB-IP files (a new month's appears a day
/// or two into it).
pub fn dbip_urls(now: crate::clock::Micros) -> Vec<String> {
    let today = crate::clock::local_date(now, 0);
    let (year, month): (i64, u32) = (today[0..4].parse().unwrap_or(1970), today[5..7].parse().unwrap_or(1));
    let (last_year, last_month) = if month == 1 { (year - 1, 12) } else { (year, month - 1) };
    vec![dbip_url(year, month), dbip_url(last_year, last_month)]
}

/// What an update wrote.
pub struct Updated {
    pub url: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub database_type: String,
    pub build_epoch: u64,
}

/// Downloads the first of `urls` that answers 200, unpacks it, checks that
/// it opens and answers, and puts it at `dest` atomically (a new file
/// beside it, then a rename): a server reading `dest` sees the old file or
/// the new one, never half of either. `progress` gets (bytes so far, total
/// if known). A URL answering 404 is skipped for the next; any other
/// failure stops with nothing replaced.
pub fn update(urls: &[String], dest: &Path, mut progress: impl FnMut(u64, Option<u64>)) -> Result<Updated, String> {
    let mut last = String::from("no URL to try");
    for url in urls {
        let (status, body) = download(url, &mut progress)?;
        if status == 404 {
            last = format!("{}: not found (404)", loggable(url));
            continue;
        }
        if !(200..300).contains(&status) {
            return Err(format!("{}: HTTP {status}", loggable(url)));
        }
        let mmdb = unpack(body)?;
        let reader = check(mmdb.clone())?;
        write_atomically(dest, &mmdb)?;
        return Ok(Updated {
            url: loggable(url),
            path: dest.to_path_buf(),
            bytes: mmdb.len() as u64,
            database_type: reader.metadata().database_type.clone(),
            build_epoch: reader.metadata().build_epoch,
        });
    }
    Err(last)
}

/// A URL as it may be printed: a licence key is left out.
fn loggable(url: &str) -> String {
    match url.split_once("license_key=") {
        Some((head, tail)) => format!("{head}license_key=…{}", tail.find('&').map_or("", |i| &tail[i..])),
        None => url.to_string(),
    }
}

fn download(url: &str, progress: &mut impl FnMut(u64, Option<u64>)) -> Result<(u16, Vec<u8>), String> {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    let agent = AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(600)))
            .timeout_connect(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .user_agent(concat!("apextrack/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    });
    let response = agent.get(url).call().map_err(|e| format!("{}: {e}", loggable(url)))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Ok((status, Vec::new()));
    }
    let total = response.headers().get("Content-Length").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if total.is_some_and(|t| t > MAX_DOWNLOAD) {
        return Err(format!("{}: {} bytes is more than a country database", loggable(url), total.unwrap_or(0)));
    }
    let mut reader = response.into_body().into_reader().take(MAX_DOWNLOAD + 1);
    let mut body = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut next_report = 0;
    loop {
        let n = reader.read(&mut chunk).map_err(|e| format!("{}: {e}", loggable(url)))?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
        if body.len() as u64 > MAX_DOWNLOAD {
            return Err(format!("{}: more than {MAX_DOWNLOAD} bytes", loggable(url)));
        }
        if body.len() >= next_report {
            progress(body.len() as u64, total);
            next_report = body.len() + (1 << 20);
        }
    }
    progress(body.len() as u64, total);
    Ok((status, body))
}

/// The MMDB inside a download: as it is, gunzipped, or the `.mmdb` member
/// of a gzipped tar (MaxMind's packaging).
fn unpack(body: Vec<u8>) -> Result<Vec<u8>, String> {
    if !body.starts_with(&[0x1f, 0x8b]) {
        return Ok(body);
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .take(MAX_DOWNLOAD * 4)
        .read_to_end(&mut plain)
        .map_err(|e| format!("not a gzip file: {e}"))?;
    // A tar archive says "ustar" at offset 257 of its first header.
    if plain.get(257..262) != Some(b"ustar") {
        return Ok(plain);
    }
    let mut archive = tar::Archive::new(&plain[..]);
    for entry in archive.entries().map_err(|e| format!("not a tar archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("not a tar archive: {e}"))?;
        let is_mmdb = entry.path().ok().is_some_and(|p| p.extension().is_some_and(|x| x == "mmdb"));
        if is_mmdb {
            let mut mmdb = Vec::new();
            entry.read_to_end(&mut mmdb).map_err(|e| e.to_string())?;
            return Ok(mmdb);
        }
    }
    Err("the archive holds no .mmdb file".to_string())
}

fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // A name of its own: two updates at once (the server's and the CLI's) never share one.
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("geoip");
    let temp = dir.join(format!(".{name}.{}.tmp", crate::crypto::random_alphanumeric(12)));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, dest)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(format!("cannot write {}: {e}", dest.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_the_month_and_the_last() {
        let nov = crate::clock::local_midnight("2026-11-27", 0).unwrap();
        assert_eq!(
            dbip_urls(nov),
            [
                "https://download.db-ip.com/free/dbip-country-lite-2026-11.mmdb.gz",
                "https://download.db-ip.com/free/dbip-country-lite-2026-10.mmdb.gz"
            ]
        );
        let jan = crate::clock::local_midnight("2027-01-02", 0).unwrap();
        assert!(dbip_urls(jan)[1].ends_with("2026-12.mmdb.gz"));
        let url = maxmind_url("se&cret");
        assert!(url.contains("license_key=se%26cret&suffix=tar.gz"), "{url}");
        assert!(!loggable(&url).contains("cret"), "{}", loggable(&url));
    }

    #[test]
    fn garbage_is_not_a_database() {
        assert!(check(b"not a database".to_vec()).is_err());
        assert!(unpack(vec![0x1f, 0x8b, 1, 2, 3]).is_err());
    }
}
