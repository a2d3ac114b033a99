//! The one error type. Domain code, the HTTP layer and the CLI all return
//! it, naming what went wrong, never a status code or a response shape:
//! `http::respond::error` alone turns it into a status and a body, in the
//! shape the route table gives the route.

use crate::i18n::Msg;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// 400: the body is not JSON, or not the JSON object a route expects.
    BadRequest(Msg),
    /// 401 `Unauthenticated.`
    Unauthenticated,
    /// 403 on a `verified` route for an unverified email.
    Unverified,
    /// 403 with a message (a suspended account, a wrong secret, a
    /// blacklisted number).
    Forbidden(Msg),
    /// 403 at login: the account has 2FA and no (or a wrong) `otp_code` came.
    TwoFactorRequired,
    /// 404 `Not Found.`
    NotFound,
    /// 404 for a thing the request named, with a message of its own (an
    /// API key of seed 004).
    Missing(Msg),
    /// 405: the path exists, the method does not; lists the methods it takes.
    MethodNotAllowed { method: String, allowed: String },
    /// 413: the body is over `server.max_body_bytes`.
    PayloadTooLarge { limit: u64 },
    /// 422 with a message only (a wrong code, a refused change, as the seeds show).
    Unprocessable(Msg),
    /// 422 with Laravel's `errors` object.
    Validation(FieldErrors),
    /// 429 with `retry_after` seconds.
    TooManyRequests { message: Msg, retry_after: u64 },
    /// 503: the database stayed locked or unavailable past its timeout.
    Busy,
    /// A configuration that cannot work (a GeoIP file that does not open):
    /// a start-up error naming the key; 500 if it ever reached a request.
    Config(String),
    /// 500: a bug or an I/O failure; the detail is logged, never shown.
    Internal(String),
}

impl Error {
    pub fn internal(detail: impl fmt::Display) -> Error {
        Error::Internal(detail.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        use crate::i18n::Lang;
        match self {
            Error::BadRequest(m) | Error::Forbidden(m) | Error::Unprocessable(m) | Error::Missing(m) => {
                f.write_str(&m.render(Lang::En))
            }
            Error::TwoFactorRequired => f.write_str("two-factor code required"),
            Error::TooManyRequests { message, .. } => f.write_str(&message.render(Lang::En)),
            Error::Unauthenticated => f.write_str("unauthenticated"),
            Error::Unverified => f.write_str("email address is not verified"),
            Error::NotFound => f.write_str("not found"),
            Error::MethodNotAllowed { method, .. } => write!(f, "method {method} not allowed"),
            Error::PayloadTooLarge { limit } => write!(f, "body over {limit} bytes"),
            Error::Validation(errors) => {
                let mut first = true;
                for (field, msgs) in &errors.0 {
                    for msg in msgs {
                        if !first {
                            f.write_str("; ")?;
                        }
                        first = false;
                        write!(f, "{field}: {}", msg.render(Lang::En))?;
                    }
                }
                Ok(())
            }
            Error::Busy => f.write_str("the database is busy"),
            Error::Config(detail) => write!(f, "invalid configuration: {detail}"),
            Error::Internal(detail) => write!(f, "internal error: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, DiskFull};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked | DiskFull) => Error::Busy,
            _ => Error::internal(format!("database: {e}")),
        }
    }
}

impl From<r2d2::Error> for Error {
    fn from(_: r2d2::Error) -> Error {
        // r2d2 fails only when no connection frees up within the timeout.
        Error::Busy
    }
}

/// Validation problems per field, collected before answering so a user sees
/// all of them at once (Laravel's `errors` shape).
#[derive(Debug, Default)]
pub struct FieldErrors(pub BTreeMap<String, Vec<Msg>>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, msg: Msg) {
        self.0.entry(field.to_string()).or_default().push(msg);
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// `Ok(())` when nothing was added, else the 422 error.
    pub fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self))
        }
    }

    /// The form when every field was read and nothing is wrong, else the
    /// 422 with every problem. `form` is None only when a field is missing,
    /// and a missing field is always among the errors.
    pub fn finish<T>(self, form: Option<T>) -> Result<T, Error> {
        match form {
            Some(form) if self.0.is_empty() => Ok(form),
            _ => Err(Error::Validation(self)),
        }
    }

    /// A one-field 422, e.g. wrong login credentials under `email`.
    pub fn single(field: &str, msg: Msg) -> Error {
        let mut errors = FieldErrors::default();
        errors.add(field, msg);
        Error::Validation(errors)
    }
}
