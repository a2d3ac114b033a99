//! apextrack: a self-hosted affiliate click and conversion tracker, one
//! binary and one SQLite file. `main.rs` only parses the command line; the
//! server, the CLI and the tests all use this library.

pub mod accounts;
pub mod app;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod http;
pub mod i18n;
pub mod jobs;
pub mod keys;
pub mod mail;
pub mod outbox;
pub mod ratelimit;
pub mod settings;
pub mod sms;
pub mod tracking;
pub mod verification;

pub use app::App;
pub use config::Config;
pub use error::Error;
