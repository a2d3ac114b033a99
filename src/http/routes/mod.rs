//! HTTP handlers, one file per area: each reads the request, calls the
//! domain with typed values, and renders the answer. They import the
//! domains; no domain imports them.

pub mod accounts;
pub mod metrics;
pub mod notify;
pub mod settings;
pub mod tracking;
pub mod verification;
