//! `App`: everything a request handler, a worker thread or a CLI command
//! needs, built once from the configuration and shared by reference.

use crate::clock::Clock;
use crate::config::{self, Config};
use crate::db::Db;
use crate::error::Error;
use crate::i18n::Lang;
use std::net::IpAddr;

pub struct App {
    pub config: Config,
    pub db: Db,
    pub clock: Clock,
    pub default_lang: Lang,
    /// `server.trusted_proxies`, parsed once.
    pub trusted_proxies: Vec<(IpAddr, u8)>,
}

impl App {
    /// Validates the configuration and opens (creating or upgrading) the database.
    pub fn open(config: Config) -> Result<App, Error> {
        config.validate().map_err(Error::internal)?;
        let db = Db::open(&config.database)?;
        let default_lang = Lang::parse(&config.server.default_language).unwrap_or(Lang::Id);
        let trusted_proxies = config.server.trusted_proxies.iter().filter_map(|p| config::parse_cidr(p)).collect();
        Ok(App { config, db, clock: Clock::default(), default_lang, trusted_proxies })
    }
}
