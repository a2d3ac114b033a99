//! apextrack: a self-hosted affiliate click and conversion tracker, one
//! binary and one SQLite file. `main.rs` only parses the command line; the
//! server, the CLI and the tests all use this library.
//!
//! Layers, bottom to top; a module imports only from its own layer or
//! below (`tests/layers.rs` holds the code to this):
//!
//! ```text
//! L0  clock  crypto  i18n  error  text  net
//! L1  config  log  metrics  db  keys  ratelimit  http_client  backup
//! L2  mail  sms  outbox            base (Core: config, db, clock, log, key, outbox wake, language, offset, metrics)
//! L3  accounts  verification  settings  tracking      (each takes &Core, plus its own runtime state)
//! L4  app        (composition root: Core + tracking::Runtime + API-key replay guard + trusted proxies)
//! L5  http  jobs  cli
//! ```

pub mod accounts;
pub mod app;
pub mod backup;
pub mod base;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod http;
pub mod http_client;
pub mod i18n;
pub mod jobs;
pub mod keys;
pub mod log;
pub mod mail;
pub mod metrics;
pub mod net;
pub mod outbox;
pub mod ratelimit;
pub mod settings;
pub mod sms;
pub mod text;
pub mod tracking;
pub mod verification;

pub use app::App;
pub use base::Core;
pub use config::Config;
pub use error::Error;
