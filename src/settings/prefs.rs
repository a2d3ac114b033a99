//! Language, currency, and the email code for sensitive actions.

use super::{ok, otp};
use crate::error::{Error, FieldErrors};
use crate::http::Ctx;
use crate::i18n::{Lang, Msg};
use crate::ratelimit::{self, Limit};
use crate::{clock, mail, outbox};
use rouille::Response;
use serde_json::json;

/// `PATCH /api/users/language {language}`: `id` or `en`; messages and
/// mails are in it from then on (this answer already is).
pub fn language(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let code = input.string("language", &mut errors);
    let lang = code.as_deref().and_then(Lang::parse);
    if code.is_some() && lang.is_none() {
        errors.add("language", Msg::new("validation.in").arg("attribute", "language").arg("values", "id, en"));
    }
    errors.into_result()?;
    let Some(lang) = lang else { return Err(Error::internal("validated language missing")) };
    let user = ctx.session()?.user.id;
    ctx.app.db.write(|tx| {
        Ok(tx.execute("UPDATE users SET language = ?2 WHERE id = ?1", rusqlite::params![user, lang.code()])?)
    })?;
    ctx.lang.set(lang);
    Ok(ok(ctx, "api.language_updated_successfully", json!({"language": lang.code()})))
}

/// Active ISO 4217 currency codes.
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN \
    BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD \
    HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD \
    MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON \
    RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX \
    USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// `PATCH /api/users/currency {currency}`: an ISO 4217 code, stored uppercase.
pub fn currency(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let code = input.string("currency", &mut errors).map(|c| c.to_ascii_uppercase());
    if code.as_ref().is_some_and(|c| !ISO_4217.split(' ').any(|known| known == c)) {
        errors.add("currency", Msg::new("validation.currency").arg("attribute", "currency"));
    }
    errors.into_result()?;
    let code = code.unwrap_or_default();
    let user = ctx.session()?.user.id;
    ctx.app
        .db
        .write(|tx| Ok(tx.execute("UPDATE users SET currency = ?2 WHERE id = ?1", rusqlite::params![user, code])?))?;
    Ok(ok(ctx, "api.currency_updated_successfully", json!({"currency": code})))
}

/// `POST /api/users/email-otp`: mails a code for a sensitive action (such
/// as creating an API key), at most once a minute.
pub fn email_otp(ctx: &Ctx) -> Result<Response, Error> {
    let user = &ctx.session()?.user;
    let app = ctx.app;
    let now = app.clock.now();
    // One code a minute and ten a day: guessing stays hopeless.
    let limits = [
        (format!("email-otp:{}", user.id), Limit { max: 1, window: clock::MINUTE }),
        (format!("email-otp-day:{}", user.id), Limit { max: 10, window: clock::DAY }),
    ];
    app.db.write(|tx| {
        for (key, limit) in &limits {
            if let Some(retry_after) = ratelimit::blocked(tx, key, *limit, now)? {
                let message = Msg::new("api.too_many_requests").arg("seconds", retry_after);
                return Err(Error::TooManyRequests { message, retry_after });
            }
        }
        let code = otp::issue(app, tx, user.id, "email", &user.email, now)?;
        let lang = Lang::parse(&user.language).unwrap_or(app.default_lang);
        let mail = mail::otp(lang, &user.email, &user.name, &code, app.config.security.code_ttl_minutes);
        outbox::enqueue(tx, &mail, now)?;
        for (key, limit) in &limits {
            ratelimit::hit(tx, key, *limit, now)?;
        }
        Ok(())
    })?;
    app.outbox_wake.notify();
    Ok(ok(ctx, "api.email_otp_sent", json!({"email": user.email})))
}
