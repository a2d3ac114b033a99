//! `APEXTRACK_<SECTION>_<KEY>` variables over the file's values.

use super::{err, Config, ConfigError};

const ENV_PREFIX: &str = "APEXTRACK_";
/// Environment variables of ours that are not config keys.
const ENV_NOT_KEYS: &[&str] = &["APEXTRACK_CONFIG"];

/// Overlays `APEXTRACK_<SECTION>_<KEY>` variables on the file's table. Each
/// value is read as the type the key has, so `APEXTRACK_SERVER_THREADS=x`
/// is refused here with the variable's name.
pub(super) fn apply_env(
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
