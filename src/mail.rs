//! Mail: localized templates from `static/mail/` (embedded), and delivery
//! through the configured HTTP mail API. Only the outbox worker and
//! `apextrack mail test` call [`send`]; requests queue mail in the outbox.

use crate::config;
use crate::crypto;
use crate::i18n::{Lang, Msg};
use crate::log::Log;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn template(name: &str, lang: Lang, html: bool) -> &'static str {
    match (name, lang, html) {
        ("verification", Lang::Id, false) => include_str!("../static/mail/verification.id.txt"),
        ("verification", Lang::Id, true) => include_str!("../static/mail/verification.id.html"),
        ("verification", Lang::En, false) => include_str!("../static/mail/verification.en.txt"),
        ("verification", Lang::En, true) => include_str!("../static/mail/verification.en.html"),
        ("otp", Lang::Id, false) => include_str!("../static/mail/otp.id.txt"),
        ("otp", Lang::Id, true) => include_str!("../static/mail/otp.id.html"),
        ("otp", Lang::En, false) => include_str!("../static/mail/otp.en.txt"),
        ("otp", Lang::En, true) => include_str!("../static/mail/otp.en.html"),
        ("test", Lang::Id, false) => include_str!("../static/mail/test.id.txt"),
        ("test", Lang::Id, true) => include_str!("../static/mail/test.id.html"),
        ("test", Lang::En, false) => include_str!("../static/mail/test.en.txt"),
        ("test", Lang::En, true) => include_str!("../static/mail/test.en.html"),
        _ => "",
    }
}

/// Fills `{{name}}` placeholders in one pass over the template, so a value
/// that itself contains `{{code}}` (a name typed at registration) is never
/// expanded; values are HTML-escaped in HTML templates. Unknown
/// placeholders stay as they are.
fn render(text: &str, vars: &[(&str, &str)], html: bool) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let value = after.find("}}").and_then(|close| {
            let name = &after[..close];
            vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (close, *v))
        });
        match value {
            Some((close, value)) => {
                out.push_str(&if html { escape_html(value) } else { value.to_string() });
                rest = &after[close + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn compose(name: &str, subject_key: &'static str, lang: Lang, to: &str, vars: &[(&str, &str)]) -> Mail {
    let subject = Msg::new(subject_key).render(lang);
    let mut vars = vars.to_vec();
    vars.push(("subject", &subject));
    Mail {
        to: to.to_string(),
        text: render(template(name, lang, false), &vars, false),
        html: render(template(name, lang, true), &vars, true),
        subject: subject.clone(),
    }
}

/// The mail sent on registration and on every resend: code and link.
pub fn verification(lang: Lang, to: &str, name: &str, code: &str, url: &str, minutes: u32) -> Mail {
    let minutes = minutes.to_string();
    let vars = [("name", name), ("code", code), ("url", url), ("minutes", minutes.as_str())];
    compose("verification", "mail.verification.subject", lang, to, &vars)
}

/// A one-time code for a sensitive action (creating an API key).
pub fn otp(lang: Lang, to: &str, name: &str, code: &str, minutes: u32) -> Mail {
    let minutes = minutes.to_string();
    compose("otp", "mail.otp.subject", lang, to, &[("name", name), ("code", code), ("minutes", minutes.as_str())])
}

/// The mail of `apextrack mail test`.
pub fn test(lang: Lang, to: &str, app_url: &str) -> Mail {
    compose("test", "mail.test.subject", lang, to, &[("app_url", app_url)])
}

/// An HTTP request to a mail API, built without sending it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Payload,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(Value),
    Form(Vec<(String, String)>),
}

/// `endpoint`, when set, replaces a vendor's base URL (an EU region, a
/// test server); the vendor's documented path is kept.
fn base<'a>(cfg: &'a config::Mail, vendor: &'a str) -> &'a str {
    if cfg.endpoint.is_empty() {
        vendor
    } else {
        cfg.endpoint.trim_end_matches('/')
    }
}

/// The request each provider documents; None for `log`.
pub fn request(cfg: &config::Mail, mail: &Mail) -> Option<Outgoing> {
    let (from_name, from_email) = crate::text::split_address(&cfg.from);
    let bearer = || ("Authorization".to_string(), format!("Bearer {}", cfg.api_key));
    let header = |k: &str, v: &str| (k.to_string(), v.to_string());
    let (url, headers, body) = match cfg.provider.as_str() {
        "http" => {
            let headers = if cfg.api_key.is_empty() { vec![] } else { vec![bearer()] };
            let body =
                json!({"from": cfg.from, "to": mail.to, "subject": mail.subject, "text": mail.text, "html": mail.html});
            (cfg.endpoint.clone(), headers, Payload::Json(body))
        }
        "postmark" => (
            format!("{}/email", base(cfg, "https://api.postmarkapp.com")),
            vec![header("X-Postmark-Server-Token", &cfg.api_key), header("Accept", "application/json")],
            Payload::Json(json!({
                "From": cfg.from, "To": mail.to, "Subject": mail.subject,
                "TextBody": mail.text, "HtmlBody": mail.html, "MessageStream": "outbound",
            })),
        ),
        "sendgrid" => {
            let mut from = json!({"email": from_email});
            if let Some(name) = from_name {
                from["name"] = json!(name);
            }
            (
                format!("{}/v3/mail/send", base(cfg, "https://api.sendgrid.com")),
                vec![bearer()],
                Payload::Json(json!({
                    "personalizations": [{"to": [{"email": mail.to}]}],
                    "from": from,
                    "subject": mail.subject,
                    "content": [{"type": "text/plain", "value": mail.text}, {"type": "text/html", "value": mail.html}],
                })),
            )
        }
        "mailgun" => (
            format!("{}/v3/{}/messages", base(cfg, "https://api.mailgun.net"), cfg.domain),
            vec![header(
                "Authorization",
                &format!("Basic {}", crypto::base64(format!("api:{}", cfg.api_key).as_bytes())),
            )],
            Payload::Form(vec![
                ("from".into(), cfg.from.clone()),
                ("to".into(), mail.to.clone()),
                ("subject".into(), mail.subject.clone()),
                ("text".into(), mail.text.clone()),
                ("html".into(), mail.html.clone()),
            ]),
        ),
        "resend" => (
            format!("{}/emails", base(cfg, "https://api.resend.com")),
            vec![bearer()],
            Payload::Json(
                json!({"from": cfg.from, "to": [mail.to], "subject": mail.subject, "text": mail.text, "html": mail.html}),
            ),
        ),
        "brevo" => {
            let mut sender = json!({"email": from_email});
            if let Some(name) = from_name {
                sender["name"] = json!(name);
            }
            (
                format!("{}/v3/smtp/email", base(cfg, "https://api.brevo.com")),
                vec![header("api-key", &cfg.api_key), header("Accept", "application/json")],
                Payload::Json(json!({
                    "sender": sender, "to": [{"email": mail.to}], "subject": mail.subject,
                    "textContent": mail.text, "htmlContent": mail.html,
                })),
            )
        }
        _ => return None,
    };
    Some(Outgoing { url, headers, body })
}

/// What the provider answered to a delivered mail.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub status: u16,
    pub response: String,
}

/// Sends one mail now. `key` goes out as `Idempotency-Key`, so a provider
/// that honours it drops a repeat after a crash between send and record.
/// Err carries a one-line reason (transport error or non-2xx answer).
pub fn send(cfg: &config::Mail, log: &Log, mail: &Mail, key: &str) -> Result<Delivery, String> {
    let Some(out) = request(cfg, mail) else {
        log.line(format!("mail (log provider) to {}: {}\n{}", mail.to, mail.subject, mail.text));
        return Ok(Delivery { status: 200, response: "logged".into() });
    };
    let mut req = crate::http_client::http_agent().post(&out.url).header("Idempotency-Key", key);
    for (k, v) in &out.headers {
        req = req.header(k, v);
    }
    let result = match &out.body {
        Payload::Json(value) => req.header("Content-Type", "application/json").send(value.to_string().as_bytes()),
        Payload::Form(fields) => req.send_form(fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    };
    let response = result.map_err(|e| format!("{}: {e}", out.url))?;
    let status = response.status().as_u16();
    let body = response.into_body().read_to_string().unwrap_or_default();
    let body: String = body.chars().take(500).collect();
    if (200..300).contains(&status) {
        Ok(Delivery { status, response: body })
    } else {
        Err(format!("HTTP {status}: {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(provider: &str) -> config::Mail {
        config::Mail {
            provider: provider.into(),
            api_key: "k3y".into(),
            domain: "mg.example.com".into(),
            from: "Apex Track <noreply@example.com>".into(),
            ..config::Mail::default()
        }
    }

    #[test]
    fn vendors_get_their_documented_urls() {
        let mail = test(Lang::En, "to@example.com", "http://x");
        let url = |p: &str| request(&cfg(p), &mail).unwrap().url;
        assert_eq!(url("postmark"), "https://api.postmarkapp.com/email");
        assert_eq!(url("sendgrid"), "https://api.sendgrid.com/v3/mail/send");
        assert_eq!(url("mailgun"), "https://api.mailgun.net/v3/mg.example.com/messages");
        assert_eq!(url("resend"), "https://api.resend.com/emails");
        assert_eq!(url("brevo"), "https://api.brevo.com/v3/smtp/email");
        assert!(request(&cfg("log"), &mail).is_none());
        let eu = config::Mail { endpoint: "https://api.eu.mailgun.net/".into(), ..cfg("mailgun") };
        assert_eq!(request(&eu, &mail).unwrap().url, "https://api.eu.mailgun.net/v3/mg.example.com/messages");
    }

    #[test]
    fn templates_are_filled_and_escaped() {
        let mail = verification(Lang::Id, "a@b.co", "<Ann & Co>", "012345", "http://h/v?a=1&b=2", 60);
        assert_eq!(mail.subject, "Verifikasi alamat email Anda");
        assert!(mail.text.contains("Halo <Ann & Co>,") && mail.text.contains("012345"));
        assert!(mail.text.contains("http://h/v?a=1&b=2"));
        assert!(mail.html.contains("Halo &lt;Ann &amp; Co&gt;,"), "{}", mail.html);
        assert!(mail.html.contains("href=\"http://h/v?a=1&amp;b=2\""));
        assert!(!mail.html.contains("{{") && !mail.text.contains("{{"));
        let en = verification(Lang::En, "a@b.co", "Ann", "1", "u", 60);
        assert_eq!(en.subject, "Verify your email address");
        assert!(en.text.contains("Hello Ann,"));
    }

    #[test]
    fn a_value_holding_a_placeholder_is_not_expanded() {
        let text = "Hi {{name}}, your code is {{code}} ({{unknown}})";
        let out = render(text, &[("name", "{{code}} {{url}}"), ("code", "123456"), ("url", "http://x")], false);
        assert_eq!(out, "Hi {{code}} {{url}}, your code is 123456 ({{unknown}})");
        let mail = verification(Lang::En, "a@b.co", "{{url}}{{code}}", "654321", "http://h/v", 60);
        assert!(mail.text.contains("Hello {{url}}{{code}},"), "{}", mail.text);
        assert!(mail.html.contains("{{url}}{{code}}"), "{}", mail.html);
        assert_eq!(mail.text.matches("654321").count(), 1, "{}", mail.text);
    }
}
