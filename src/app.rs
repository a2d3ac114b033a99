//! `App`: everything a request handler, a worker thread or a CLI command
//! needs, built once from the configuration and shared by reference.

use crate::clock::Clock;
use crate::config::{self, Config};
use crate::db::Db;
use crate::error::Error;
use crate::i18n::Lang;
use crate::keys;
use crate::outbox::Wake;
use std::net::IpAddr;
use std::sync::Mutex;

pub struct App {
    pub config: Config,
    pub db: Db,
    pub clock: Clock,
    pub default_lang: Lang,
    /// `server.trusted_proxies`, parsed once.
    pub trusted_proxies: Vec<(IpAddr, u8)>,
    pub log: Log,
    /// Signs verification links and keys stored codes; kept in the database.
    pub signing_key: [u8; 32],
    pub outbox_wake: Wake,
    /// `tracking.geoip_db`, loaded once.
    pub geoip: Option<maxminddb::Reader<Vec<u8>>>,
    /// `server.utc_offset` in seconds east of UTC: where "today" starts.
    pub utc_offset: i32,
    /// Active links by slug, for the click path.
    pub slugs: crate::tracking::links::SlugCache,
    /// Group commit of clicks.
    pub click_writer: crate::db::group::GroupCommit<crate::tracking::clicks::NewClick>,
    /// Signed API requests already seen (replays are refused).
    pub seen_signatures: crate::settings::api_keys::SeenSignatures,
}

impl App {
    /// Validates the configuration and opens (creating or upgrading) the database.
    pub fn open(config: Config) -> Result<App, Error> {
        config.validate().map_err(Error::internal)?;
        let db = Db::open(&config.database)?;
        let default_lang = Lang::parse(&config.server.default_language).unwrap_or(Lang::Id);
        let trusted_proxies = config.server.trusted_proxies.iter().filter_map(|p| config::parse_cidr(p)).collect();
        let signing_key = keys::load_or_create(&db, "signing")?;
        let geoip =
            match config.tracking.geoip_db.as_str() {
                "" => None,
                path => Some(maxminddb::Reader::open_readfile(path).map_err(|e| {
                    Error::internal(format!("invalid configuration: tracking.geoip_db = {path:?}: {e}"))
                })?),
            };
        let utc_offset = config::parse_utc_offset(&config.server.utc_offset).unwrap_or(0);
        Ok(App {
            config,
            db,
            clock: Clock::default(),
            default_lang,
            trusted_proxies,
            log: Log::default(),
            signing_key,
            outbox_wake: Wake::default(),
            geoip,
            utc_offset,
            slugs: Default::default(),
            click_writer: Default::default(),
            seen_signatures: Default::default(),
        })
    }
}

/// Where the access log and warnings go: standard error, or, in tests, a
/// buffer that can be searched for secrets that must never appear.
///
/// Access lines are gathered and written together ([`Log::flush`], which
/// the background jobs call ten times a second) instead of one write per
/// request; any other line goes out at once, after those gathered before it.
#[derive(Debug, Default)]
pub struct Log {
    captured: Option<Mutex<Vec<String>>>,
    pending: Mutex<Vec<u8>>,
}

/// Gathered access lines are written once they reach this size.
const LOG_BUFFER: usize = 32 * 1024;

impl Log {
    pub fn capturing() -> Log {
        Log { captured: Some(Mutex::new(Vec::new())), pending: Mutex::default() }
    }

    /// A warning or an event: written now.
    pub fn line(&self, text: impl Into<String>) {
        self.append(text.into(), true);
    }

    /// One access-log line: written with the next flush.
    pub fn access(&self, text: String) {
        self.append(text, false);
    }

    fn append(&self, text: String, now: bool) {
        match &self.captured {
            Some(lines) => lines.lock().unwrap_or_else(|e| e.into_inner()).push(text),
            None => {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.extend_from_slice(text.as_bytes());
                pending.push(b'\n');
                if now || pending.len() >= LOG_BUFFER {
                    write_out(&mut pending);
                }
            }
        }
    }

    /// Writes the gathered access lines.
    pub fn flush(&self) {
        write_out(&mut self.pending.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The captured lines (empty unless capturing).
    pub fn lines(&self) -> Vec<String> {
        self.captured.as_ref().map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default()
    }
}

fn write_out(pending: &mut Vec<u8>) {
    if !pending.is_empty() {
        use std::io::Write;
        let _ = std::io::stderr().lock().write_all(pending);
        pending.clear();
    }
}
