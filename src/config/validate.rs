//! The checks a value's type alone does not make, each naming its key.

use super::{err, parse_utc_offset, Config, ConfigError, MAIL_PROVIDERS, SMS_PROVIDERS};
use std::net::SocketAddr;
use std::path::Path;

impl Config {
    /// Checks every value that its type alone does not constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.bind.parse::<SocketAddr>().is_err() {
            return bad("server.bind", &s.bind, "must be an IP address and port, like 127.0.0.1:8080");
        }
        check_range("server.threads", s.threads.into(), 1, 512)?;
        check_range("server.max_connections", s.max_connections.into(), 16, 65_536)?;
        check_range("server.max_connections_per_ip", s.max_connections_per_ip.into(), 1, 65_536)?;
        check_range("server.keep_alive_secs", s.keep_alive_secs, 1, 3600)?;
        if !(s.app_url.starts_with("http://") || s.app_url.starts_with("https://")) {
            return bad("server.app_url", &s.app_url, "must start with http:// or https://");
        }
        for proxy in &s.trusted_proxies {
            if crate::net::parse_cidr(proxy).is_none() {
                return bad("server.trusted_proxies", proxy, "must be an IP address or a CIDR range like 10.0.0.0/8");
            }
        }
        check_range("server.max_body_bytes", s.max_body_bytes, 1024, 1 << 30)?;
        check_range("server.max_body_memory_bytes", s.max_body_memory_bytes, 1024, 1 << 40)?;
        if s.max_body_memory_bytes < s.max_body_bytes {
            let value = s.max_body_memory_bytes.to_string();
            return bad("server.max_body_memory_bytes", &value, "must be at least server.max_body_bytes");
        }
        if crate::i18n::Lang::parse(&s.default_language).is_none() {
            return bad("server.default_language", &s.default_language, "must be \"id\" or \"en\"");
        }
        if parse_utc_offset(&s.utc_offset).is_none() {
            return bad("server.utc_offset", &s.utc_offset, "must look like +07:00 or -05:30");
        }
        if !s.metrics_token.is_empty()
            && (s.metrics_token.len() < 16 || !s.metrics_token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return err("server.metrics_token must be at least 16 visible characters (or \"\" for no /metrics)".into());
        }
        if !s.static_dir.is_empty() && !Path::new(&s.static_dir).join("index.html").is_file() {
            return bad("server.static_dir", &s.static_dir, "must be a folder with an index.html (like static/)");
        }
        let d = &self.database;
        if d.path.as_os_str().is_empty() {
            return bad("database.path", "", "must not be empty");
        }
        check_range("database.pool_size", d.pool_size.into(), 1, 64)?;
        check_range("database.busy_timeout_ms", d.busy_timeout_ms, 1, 600_000)?;
        if !MAIL_PROVIDERS.contains(&self.mail.provider.as_str()) {
            return bad("mail.provider", &self.mail.provider, &format!("must be one of {}", MAIL_PROVIDERS.join(", ")));
        }
        let m = &self.mail;
        let needs = |key: &str, value: &str| -> Result<(), ConfigError> {
            if value.is_empty() {
                return err(format!("{key} must be set when mail.provider = {:?}", m.provider));
            }
            Ok(())
        };
        match m.provider.as_str() {
            "http" => needs("mail.endpoint", &m.endpoint)?,
            "mailgun" => {
                needs("mail.api_key", &m.api_key)?;
                needs("mail.domain", &m.domain)?;
            }
            "log" => {}
            _ => needs("mail.api_key", &m.api_key)?,
        }
        if !(m.endpoint.is_empty() || m.endpoint.starts_with("http://") || m.endpoint.starts_with("https://")) {
            return bad("mail.endpoint", &m.endpoint, "must start with http:// or https://");
        }
        if !crate::text::is_email(crate::text::split_address(&m.from).1) {
            return bad("mail.from", &m.from, "must be an address like \"apextrack <noreply@example.com>\"");
        }
        let sms = &self.sms;
        match sms.provider.as_str() {
            "http" if sms.endpoint.is_empty() => {
                return err("sms.endpoint must be set when sms.provider = \"http\"".into())
            }
            "twilio" if sms.account_sid.is_empty() || sms.auth_token.is_empty() || sms.from.is_empty() => {
                return err(
                    "sms.account_sid, sms.auth_token and sms.from must be set when sms.provider = \"twilio\"".into()
                )
            }
            _ => {}
        }
        if !SMS_PROVIDERS.contains(&self.sms.provider.as_str()) {
            return bad("sms.provider", &self.sms.provider, &format!("must be one of {}", SMS_PROVIDERS.join(", ")));
        }
        check_range("security.token_ttl_days", self.security.token_ttl_days.into(), 0, 36_500)?;
        check_range("security.login_max_attempts", self.security.login_max_attempts.into(), 1, 1000)?;
        check_range("security.code_ttl_minutes", self.security.code_ttl_minutes.into(), 1, 10_080)?;
        check_range(
            "security.registrations_per_ip_hour",
            self.security.registrations_per_ip_hour.into(),
            1,
            1_000_000,
        )?;
        let per_ip = self.security.verification_mails_per_ip_hour;
        check_range("security.verification_mails_per_ip_hour", per_ip.into(), 1, 1_000_000)?;
        check_range(
            "security.verification_mails_per_hour",
            self.security.verification_mails_per_hour.into(),
            1,
            1_000_000,
        )?;
        check_range("tracking.max_links_per_user", self.tracking.max_links_per_user.into(), 1, 1_000_000)?;
        check_range("tracking.raw_click_days", self.tracking.raw_click_days.into(), 0, 36_500)?;
        check_range("tracking.geoip_update_days", self.tracking.geoip_update_days.into(), 0, 365)?;
        let url = &self.tracking.geoip_update_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return bad("tracking.geoip_update_url", url, "must start with https:// or http://");
        }
        let api = &self.notify.telegram_api;
        if !(api.starts_with("https://") || api.starts_with("http://")) {
            return bad("notify.telegram_api", api, "must start with https:// or http://");
        }
        check_range("monitor.interval_minutes", self.monitor.interval_minutes.into(), 0, 10_080)?;
        check_range("backup.keep", self.backup.keep.into(), 1, 10_000)?;
        check_range("backup.interval_hours", self.backup.interval_hours.into(), 0, 8760)?;
        if self.backup.interval_hours > 0 && self.backup.dir.is_empty() {
            return err("backup.dir must be set when backup.interval_hours > 0".into());
        }
        Ok(())
    }
}

fn bad<T>(key: &str, value: &str, why: &str) -> Result<T, ConfigError> {
    err(format!("{key} = {value:?}: {why}"))
}

fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        err(format!("{key} = {value}: must be between {min} and {max}"))
    }
}
