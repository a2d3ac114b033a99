//! Language, currency, and the email code for sensitive actions.

use crate::accounts::otp;
use crate::accounts::{store, User};
use crate::base::Core;
use crate::error::Error;
use crate::i18n::{Lang, Msg};
use crate::ratelimit::{self, Limit};
use crate::{clock, mail, outbox};

pub fn set_language(app: &Core, user_id: i64, lang: Lang) -> Result<(), Error> {
    app.db.write(|tx| Ok(store::set_language(tx, user_id, lang.code())?))
}

/// Active ISO 4217 currency codes.
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN \
    BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD \
    HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD \
    MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON \
    RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX \
    USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// The ISO 4217 code `text` names (any case), uppercase; None if unknown.
pub fn parse_currency(text: &str) -> Option<String> {
    let code = text.trim().to_ascii_uppercase();
    ISO_4217.split(' ').any(|known| known == code).then_some(code)
}

pub fn set_currency(app: &Core, user_id: i64, code: &str) -> Result<(), Error> {
    app.db.write(|tx| Ok(store::set_currency(tx, user_id, code)?))
}

/// Mails a code for a sensitive action (such as creating an API key):
/// one a minute and ten a day, so guessing stays hopeless.
pub fn send_email_otp(app: &Core, user: &User) -> Result<(), Error> {
    let now = app.clock.now();
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
        let mail = mail::otp(
            app.lang_of(&user.language),
            &user.email,
            &user.name,
            &code,
            app.config.security.code_ttl_minutes,
        );
        outbox::enqueue(tx, &mail, now)?;
        for (key, limit) in &limits {
            ratelimit::hit(tx, key, *limit, now)?;
        }
        Ok(())
    })?;
    app.outbox_wake.notify();
    Ok(())
}
