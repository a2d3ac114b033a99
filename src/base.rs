//! `Core`: what every domain module needs (configuration, database,
//! clock, log, the instance key, the outbox's wake-up, the default
//! language, the server's UTC offset and the metrics), built once and lent by
//! reference. Domain code takes `&Core`; only the composition root above
//! it (`app`) adds the runtime state of tracking and of the HTTP service.

use crate::clock::Clock;
use crate::config::{self, Config};
use crate::db::Db;
use crate::error::Error;
use crate::i18n::Lang;
use crate::keys;
use crate::log::Log;
use crate::metrics::Metrics;
use crate::outbox::Wake;

pub struct Core {
    pub config: Config,
    pub db: Db,
    pub clock: Clock,
    pub log: Log,
    /// Signs verification links and keys stored codes; kept in the database.
    pub signing_key: [u8; 32],
    pub outbox_wake: Wake,
    pub default_lang: Lang,
    /// `server.utc_offset` in seconds east of UTC: where "today" starts.
    pub utc_offset: i32,
    /// What `GET /metrics` reports.
    pub metrics: Metrics,
}

impl Core {
    /// Validates the configuration and opens (creating or upgrading) the database.
    pub fn open(config: Config) -> Result<Core, Error> {
        config.validate().map_err(|e| Error::Config(e.to_string()))?;
        let db = Db::open(&config.database)?;
        let default_lang = Lang::parse(&config.server.default_language).unwrap_or(Lang::Id);
        let signing_key = keys::load_or_create(&db, "signing")?;
        let utc_offset = config::parse_utc_offset(&config.server.utc_offset).unwrap_or(0);
        Ok(Core {
            config,
            db,
            clock: Clock::default(),
            log: Log::default(),
            signing_key,
            outbox_wake: Wake::default(),
            default_lang,
            utc_offset,
            metrics: Metrics::default(),
        })
    }

    /// The language of messages to a user who chose `code`, else the default.
    pub fn lang_of(&self, code: &str) -> Lang {
        Lang::parse(code).unwrap_or(self.default_lang)
    }
}
