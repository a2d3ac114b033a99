//! Account settings of seed 004, as domain functions with their SQL:
//! phone binding by SMS code, language and currency, email codes for
//! sensitive actions (through `accounts::otp`), and API keys. `http::routes::settings` answers them
//! in the seed's envelope; 2FA lives with the login it guards, in
//! `accounts::twofa`.

pub mod api_keys;
pub mod phone;
pub mod prefs;
