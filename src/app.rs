//! `App`, the composition root: the [`Core`] every domain module takes,
//! plus the runtime state of the click path and of the HTTP service,
//! built once from the configuration and shared by every handler, worker
//! thread and CLI command. It dereferences to its `Core`, so `&app` is
//! what a domain function wants.

use crate::base::Core;
use crate::config::Config;
use crate::error::Error;
use crate::net;
use crate::ratelimit::SeenOnce;
use crate::tracking;
use std::net::IpAddr;
use std::ops::Deref;

pub struct App {
    pub core: Core,
    /// Caches and the group-commit writer of the click path.
    pub tracking: tracking::Runtime,
    /// Signed API requests already seen (replays are refused).
    pub api_replays: SeenOnce,
    /// `server.trusted_proxies`, parsed once.
    pub trusted_proxies: Vec<(IpAddr, u8)>,
}

impl App {
    /// Validates the configuration and opens (creating or upgrading) the database.
    pub fn open(config: Config) -> Result<App, Error> {
        let core = Core::open(config)?;
        let tracking = tracking::Runtime::open(&core.config, &core.config.database.path)?;
        tracking.visitors.load(&core.db, core.clock.now())?;
        let trusted_proxies = core.config.server.trusted_proxies.iter().filter_map(|p| net::parse_cidr(p)).collect();
        Ok(App { core, tracking, api_replays: SeenOnce::default(), trusted_proxies })
    }
}

impl Deref for App {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}
