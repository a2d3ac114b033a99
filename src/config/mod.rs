//! Configuration: typed sections with defaults, read from `apextrack.toml`,
//! then overridden by `APEXTRACK_<SECTION>_<KEY>` environment variables, then
//! validated with an error that names the key and the value.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod env;
mod validate;
use env::apply_env;

/// The commented example configuration; `apextrack init` writes it.
pub const EXAMPLE: &str = include_str!("../../apextrack.toml");

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
    pub notify: Notify,
    pub monitor: Monitor,
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
    /// Bearer token of `GET /metrics`; "" turns the endpoint off (404).
    pub metrics_token: String,
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
            metrics_token: String::new(),
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
    /// Accounts one address may create in any hour (sliding).
    pub registrations_per_ip_hour: u32,
    /// Verification mails (sign-ups and resends) one address may cause in any hour.
    pub verification_mails_per_ip_hour: u32,
    /// Verification mails of the whole server in any hour.
    pub verification_mails_per_hour: u32,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            token_ttl_days: 0,
            login_max_attempts: 5,
            code_ttl_minutes: 60,
            registrations_per_ip_hour: 5,
            verification_mails_per_ip_hour: 10,
            verification_mails_per_hour: 300,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Tracking {
    pub require_postback_secret: bool,
    pub geoip_db: String,
    pub country_header: String,
    pub allow_private_targets: bool,
    /// Raw clicks older than this many days are deleted; 0 keeps them.
    pub raw_click_days: u32,
    /// The server downloads the GeoIP database again when it is older than
    /// this many days; 0 = never (use `apextrack geoip update`).
    pub geoip_update_days: u32,
    /// Where those downloads come from; "" = DB-IP Lite's monthly file.
    pub geoip_update_url: String,
    /// Links one user may have (deleted ones do not count).
    pub max_links_per_user: u32,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            require_postback_secret: true,
            geoip_db: String::new(),
            country_header: String::new(),
            allow_private_targets: false,
            raw_click_days: 0,
            geoip_update_days: 0,
            geoip_update_url: String::new(),
            max_links_per_user: 1000,
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Notify {
    /// Telegram's Bot API; messages go to `<telegram_api>/bot<token>/sendMessage`.
    pub telegram_api: String,
}

impl Default for Notify {
    fn default() -> Self {
        Notify { telegram_api: "https://api.telegram.org".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Monitor {
    /// Minutes between checks of every active offer's URL; 0 = off.
    pub interval_minutes: u32,
    /// A down offer leaves the rotation until it answers again.
    pub auto_pause: bool,
    /// Let checks reach loopback and private addresses (for tests).
    pub allow_private: bool,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor { interval_minutes: 10, auto_pause: false, allow_private: false }
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

    /// `app_url` without a trailing slash, ready to have paths appended.
    pub fn app_url(&self) -> &str {
        self.server.app_url.trim_end_matches('/')
    }
}

/// Reads the typed configuration from a TOML table; an error names the
/// dotted key it is about (`server.threads`), tracked by
/// `serde_path_to_error` while deserializing.
fn deserialize(table: &toml::Table, source: &str) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        let key = e.path().to_string();
        let message = e.inner().to_string().trim().replace('\n', " ");
        ConfigError(if key.is_empty() || key == "." {
            format!("{source}: {message}")
        } else {
            format!("{source}: {key}: {message}")
        })
    })
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
    }
}
