//! Configuration: typed sections with defaults, read from `apextrack.toml`,
//! then overridden by `APEXTRACK_<SECTION>_<KEY>` environment variables, then
//! validated with an error that names the key and the value.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The commented example configuration; `apextrack init` writes it.
pub const EXAMPLE: &str = include_str!("../apextrack.toml");

const ENV_PREFIX: &str = "APEXTRACK_";
/// Environment variables of ours that are not config keys.
const ENV_NOT_KEYS: &[&str] = &["APEXTRACK_CONFIG"];

pub const MAIL_PROVIDERS: &[&str] = &["log", "http", "postmark", "sendgrid", "mailgun", "resend", "brevo"];
pub const SMS_PROVIDERS: &[&str] = &["log", "http", "twilio"];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub database: Database,
    pub mail: Mail,
    pub sms: Sms,
    pub security: Security,
    pub tracking: Tracking,
    pub payment: Payment,
    pub backup: Backup,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    pub bind: String,
    pub threads: u32,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    pub keep_alive_secs: u64,
    pub app_url: String,
    pub trusted_proxies: Vec<String>,
    pub max_body_bytes: u64,
    pub max_body_memory_bytes: u64,
    pub default_language: String,
    pub utc_offset: String,
    pub static_dir: String,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            bind: "127.0.0.1:8080".into(),
            threads: 8,
            max_connections: 1024,
            max_connections_per_ip: 64,
            keep_alive_secs: 15,
            app_url: "http://localhost:8080".into(),
            trusted_proxies: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_body_memory_bytes: 4 * 1024 * 1024,
            default_language: "id".into(),
            utc_offset: "+00:00".into(),
            static_dir: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    pub path: PathBuf,
    pub pool_size: u32,
    pub busy_timeout_ms: u64,
}

impl Default for Database {
    fn default() -> Self {
        Database { path: "apextrack.db".into(), pool_size: 8, busy_timeout_ms: 5000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Mail {
    pub provider: String,
    pub endpoint: String,
    pub api_key: String,
    pub domain: String,
    pub from: String,
}

impl Default for Mail {
    fn default() -> Self {
        Mail {
            provider: "log".into(),
            endpoint: String::new(),
            api_key: String::new(),
            domain: String::new(),
            from: "apextrack <noreply@apextrack.localhost>".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Sms {
    pub provider: String,
    pub endpoint: String,
    pub api_key: String,
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
}

impl Default for Sms {
    fn default() -> Self {
        Sms {
            provider: "log".into(),
            endpoint: String::new(),
            api_key: String::new(),
            account_sid: String::new(),
            auth_token: String::new(),
            from: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    pub token_ttl_days: u32,
    pub login_max_attempts: u32,
    pub code_ttl_minutes: u32,
}

impl Default for Security {
    fn default() -> Self {
        Security { token_ttl_days: 0, login_max_attempts: 5, code_ttl_minutes: 60 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Tracking {
    pub require_postback_secret: bool,
    pub geoip_db: String,
    pub country_header: String,
    pub allow_private_targets: bool,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            require_postback_secret: true,
            geoip_db: String::new(),
            country_header: String::new(),
            allow_private_targets: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Payment {
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Backup {
    pub dir: String,
    pub interval_hours: u32,
    pub keep: u32,
}

impl Default for Backup {
    fn default() -> Self {
        Backup { dir: String::new(), interval_hours: 0, keep: 7 }
    }
}

/// Why the configuration could not be used; the text names the key.
#[derive(Debug, PartialEq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(text: String) -> Result<T, ConfigError> {
    Err(ConfigError(text))
}

impl Config {
    /// Loads the configuration: defaults, then the file, then the environment.
    /// `path` None means `./apextrack.toml` if it exists, else defaults alone;
    /// an explicit path must exist.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => text,
                Err(e) => return err(format!("cannot read config file {}: {e}", p.display())),
            },
            None => std::fs::read_to_string("apextrack.toml").unwrap_or_default(),
        };
        let name = path.map_or("apextrack.toml".into(), |p| p.display().to_string());
        let mut table: toml::Table = match toml::from_str(&text) {
            Ok(table) => table,
            Err(e) => {
                let line = e.span().map_or(0, |span| text[..span.start.min(text.len())].lines().count().max(1));
                return err(format!("{name}: line {line}: {}", e.message().trim()));
            }
        };
        let file_config = deserialize(&table, &name)?;
        apply_env(&mut table, &file_config, env)?;
        let config = deserialize(&table, "the environment")?;
        config.validate()?;
        Ok(config)
    }

    /// Loads from the process environment; what `main` calls.
    pub fn from_process(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load(path, std::env::vars())
    }

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
            if parse_cidr(proxy).is_none() {
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
        if !crate::accounts::is_email(crate::mail::split_address(&m.from).1) {
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
        check_range("backup.keep", self.backup.keep.into(), 1, 10_000)?;
        check_range("backup.interval_hours", self.backup.interval_hours.into(), 0, 8760)?;
        if self.backup.interval_hours > 0 && self.backup.dir.is_empty() {
            return err("backup.dir must be set when backup.interval_hours > 0".into());
        }
        Ok(())
    }

    /// `app_url` without a trailing slash, ready to have paths appended.
    pub fn app_url(&self) -> &str {
        self.server.app_url.trim_end_matches('/')
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

fn deserialize(table: &toml::Table, source: &str) -> Result<Config, ConfigError> {
    let text = toml::to_string(table).map_err(|e| ConfigError(format!("{source}: {e}")))?;
    toml::from_str(&text).map_err(|e| {
        let key = e.span().and_then(|span| key_at(&text, span.start));
        let message = e.message().trim().replace('\n', " ");
        ConfigError(match key {
            Some(key) => format!("{source}: {key}: {message}"),
            None => format!("{source}: {message}"),
        })
    })
}

/// The dotted key (`server.threads`) whose line holds byte `offset` of a
/// document that `toml::to_string` wrote: `[section]` headers, `key = value` lines.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"'));
    let section =
        before[..line_start].lines().rev().find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')));
    match (section, key) {
        (Some(section), Some(key)) => Some(format!("{section}.{key}")),
        (None, Some(key)) => Some(key.to_string()),
        _ => None,
    }
}

/// Overlays `APEXTRACK_<SECTION>_<KEY>` variables on the file's table. Each
/// value is read as the type the key has, so `APEXTRACK_SERVER_THREADS=x`
/// is refused here with the variable's name.
fn apply_env(
    table: &mut toml::Table,
    current: &Config,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let typed = toml::Table::try_from(current).map_err(|e| ConfigError(e.to_string()))?;
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if ENV_NOT_KEYS.contains(&name.as_str()) {
            continue;
        }
        let rest = rest.to_ascii_lowercase();
        let found = typed.iter().find_map(|(section, keys)| {
            let key = rest.strip_prefix(section.as_str())?.strip_prefix('_')?;
            let example = keys.as_table()?.get(key)?;
            Some((section.clone(), key.to_string(), example.clone()))
        });
        let Some((section, key, example)) = found else {
            return err(format!("{name}: no such configuration key"));
        };
        let value = env_value(&raw, &example)
            .ok_or_else(|| ConfigError(format!("{name} = {raw:?}: expected {}", example.type_str())))?;
        let entry = table.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry.as_table_mut() {
            Some(section_table) => {
                section_table.insert(key, value);
            }
            None => return err(format!("{name}: the file sets this section to a non-table value")),
        }
    }
    Ok(())
}

fn env_value(raw: &str, example: &toml::Value) -> Option<toml::Value> {
    use toml::Value;
    match example {
        Value::String(_) => Some(Value::String(raw.to_string())),
        Value::Integer(_) => raw.trim().parse::<i64>().ok().map(Value::Integer),
        Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Some(Value::Boolean(false)),
            _ => None,
        },
        // Lists: a TOML array, or comma-separated strings.
        Value::Array(_) => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                let doc: toml::Table = toml::from_str(&format!("v = {trimmed}")).ok()?;
                doc.get("v").cloned()
            } else {
                let items = trimmed.split(',').map(str::trim).filter(|s| !s.is_empty());
                Some(Value::Array(items.map(|s| Value::String(s.to_string())).collect()))
            }
        }
        _ => None,
    }
}

/// `10.0.0.0/8`, `::1`, `192.168.1.7` → (network, prefix length).
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip.trim().parse::<IpAddr>().ok()?, len.trim().parse::<u8>().ok()?),
        None => {
            let ip = text.trim().parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// `+07:00` → seconds east of UTC.
pub fn parse_utc_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(Some(file.path()), env)
    }

    #[test]
    fn the_example_file_parses_to_the_defaults() {
        assert_eq!(load_text(EXAMPLE, &[]).unwrap(), Config::default());
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = load_text(
            "[server]\nthreads = 4\nbind = \"127.0.0.1:1\"\n",
            &[
                ("APEXTRACK_SERVER_BIND", "127.0.0.1:9000"),
                ("APEXTRACK_SERVER_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
                ("APEXTRACK_TRACKING_REQUIRE_POSTBACK_SECRET", "false"),
                ("APEXTRACK_DATABASE_POOL_SIZE", "3"),
                ("APEXTRACK_CONFIG", "ignored.toml"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.bind, "127.0.0.1:9000");
        assert_eq!(config.server.threads, 4);
        assert_eq!(config.server.trusted_proxies, vec!["10.0.0.0/8", "127.0.0.1"]);
        assert!(!config.tracking.require_postback_secret);
        assert_eq!(config.database.pool_size, 3);
    }

    #[test]
    fn errors_name_the_key_and_value() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("[server]\nthreads = 0\n", &[], "server.threads = 0"),
            ("[server]\nthreads = \"many\"\n", &[], "server.threads: invalid type"),
            ("[server]\nbindd = \"x\"\n", &[], "bindd"),
            ("[serverr]\n", &[], "serverr"),
            ("", &[("APEXTRACK_SERVER_THREADS", "lots")], "APEXTRACK_SERVER_THREADS = \"lots\""),
            ("", &[("APEXTRACK_SERVER_BINDD", "x")], "APEXTRACK_SERVER_BINDD"),
            ("", &[("APEXTRACK_SERVER_BIND", "nowhere")], "server.bind = \"nowhere\""),
            ("", &[("APEXTRACK_SERVER_UTC_OFFSET", "7")], "server.utc_offset"),
            ("", &[("APEXTRACK_SERVER_MAX_CONNECTIONS_PER_IP", "0")], "server.max_connections_per_ip = 0"),
            (
                "",
                &[("APEXTRACK_SERVER_MAX_BODY_MEMORY_BYTES", "65536")],
                "server.max_body_memory_bytes = \"65536\": must be at least server.max_body_bytes",
            ),
            ("", &[("APEXTRACK_MAIL_PROVIDER", "pigeon")], "mail.provider = \"pigeon\""),
            ("", &[("APEXTRACK_SERVER_TRUSTED_PROXIES", "10.0.0.0/99")], "server.trusted_proxies"),
            ("", &[("APEXTRACK_MAIL_PROVIDER", "http")], "mail.endpoint must be set when mail.provider = \"http\""),
            ("", &[("APEXTRACK_MAIL_PROVIDER", "mailgun"), ("APEXTRACK_MAIL_API_KEY", "k")], "mail.domain must be set"),
            ("", &[("APEXTRACK_MAIL_PROVIDER", "postmark")], "mail.api_key must be set"),
            ("", &[("APEXTRACK_MAIL_FROM", "nobody")], "mail.from = \"nobody\""),
            ("", &[("APEXTRACK_SECURITY_TOKEN_TTL_DAYS", "99999999")], "security.token_ttl_days = 99999999"),
            ("", &[("APEXTRACK_BACKUP_INTERVAL_HOURS", "24")], "backup.dir must be set"),
            ("[server\n", &[], "line 1: unclosed table"),
        ];
        for (text, env, needle) in cases {
            let e = load_text(text, env).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?} {env:?}: {e:?} lacks {needle:?}");
        }
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/apextrack.toml")), Vec::new()).unwrap_err();
        assert!(e.0.contains("/nonexistent/apextrack.toml"), "{e}");
    }

    #[test]
    fn offsets_and_cidrs() {
        assert_eq!(parse_utc_offset("+07:00"), Some(25_200));
        assert_eq!(parse_utc_offset("-05:30"), Some(-19_800));
        assert_eq!(parse_utc_offset("07:00"), None);
        assert_eq!(parse_utc_offset("+15:00"), None);
        assert_eq!(parse_cidr("10.0.0.0/8"), Some(("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(parse_cidr("::1"), Some(("::1".parse().unwrap(), 128)));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
    }
}
