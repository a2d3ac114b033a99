//! SMS delivery through the configured provider: `log`, `http` (JSON
//! `{"from", "to", "text"}` with a Bearer key) or `twilio` (its Messages
//! API, form-encoded, Basic auth). Only the outbox worker sends.

use crate::config;
use crate::crypto;
use crate::log::Log;

/// Sends one text now; Ok with the provider's answer, Err with a reason.
pub fn send(cfg: &config::Sms, log: &Log, to: &str, text: &str, key: &str) -> Result<String, String> {
    let agent = crate::http_client::http_agent();
    let response = match cfg.provider.as_str() {
        "http" => {
            let body = serde_json::json!({"from": cfg.from, "to": to, "text": text}).to_string();
            let mut req =
                agent.post(&cfg.endpoint).header("Content-Type", "application/json").header("Idempotency-Key", key);
            if !cfg.api_key.is_empty() {
                req = req.header("Authorization", &format!("Bearer {}", cfg.api_key));
            }
            req.send(body.as_bytes())
        }
        "twilio" => {
            let base =
                if cfg.endpoint.is_empty() { "https://api.twilio.com" } else { cfg.endpoint.trim_end_matches('/') };
            let url = format!("{base}/2010-04-01/Accounts/{}/Messages.json", cfg.account_sid);
            let auth =
                format!("Basic {}", crypto::base64(format!("{}:{}", cfg.account_sid, cfg.auth_token).as_bytes()));
            agent.post(&url).header("Authorization", &auth).header("Idempotency-Key", key).send_form([
                ("To", to),
                ("From", cfg.from.as_str()),
                ("Body", text),
            ])
        }
        _ => {
            log.line(format!("sms (log provider) to {to}: {text}"));
            return Ok("logged".into());
        }
    };
    let response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body: String = response.into_body().read_to_string().unwrap_or_default().chars().take(300).collect();
    if (200..300).contains(&status) {
        Ok(format!("{status} {body}"))
    } else {
        Err(format!("HTTP {status}: {body}"))
    }
}
