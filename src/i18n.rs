//! The message catalogue (`id`, the seed texts verbatim, and `en`) and the
//! choice of language for a request: the user's, else `Accept-Language`,
//! else the configured default.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Id,
    En,
}

impl Lang {
    pub fn parse(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "id" => Some(Lang::Id),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    /// Picks the first supported language of an `Accept-Language` header,
    /// honouring q-values (`en-US;q=0.8, id;q=0.9` → `id`).
    pub fn negotiate(accept_language: Option<&str>, default: Lang) -> Lang {
        let Some(header) = accept_language else {
            return default;
        };
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim();
            let primary = tag.split('-').next().unwrap_or("");
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
            if let Some(lang) = Lang::parse(primary) {
                if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, lang));
                }
            }
        }
        best.map_or(default, |(_, lang)| lang)
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// (key, id, en). Placeholders are `:name`, filled by [`Msg::arg`].
/// Validation texts follow Laravel's, as the seed shows them, in both languages.
const CATALOGUE: &[(&str, &str, &str)] = &[
    (
        "register.success",
        "Pendaftaran berhasil, silakan verifikasi email Anda.",
        "Registration successful, please verify your email.",
    ),
    ("logout.success", "Berhasil logout.", "Logged out successfully."),
    ("auth.failed", "The provided credentials are incorrect.", "The provided credentials are incorrect."),
    (
        "auth.throttle",
        "Terlalu banyak percobaan login. Silakan coba lagi dalam :seconds detik.",
        "Too many login attempts. Please try again in :seconds seconds.",
    ),
    (
        "auth.suspended",
        "Akun Anda ditangguhkan. Hubungi administrator.",
        "Your account has been suspended. Contact the administrator.",
    ),
    ("verify.code_success", "Email Anda berhasil diverifikasi!", "Your email address has been verified!"),
    (
        "verify.code_invalid",
        "Kode verifikasi tidak valid atau sudah kadaluarsa.",
        "The verification code is invalid or has expired.",
    ),
    (
        "verify.code_resent",
        "Kode verifikasi baru telah dikirim ke email Anda.",
        "A new verification code has been sent to your email.",
    ),
    (
        "verify.resend_wait",
        "Harap tunggu 1 menit sebelum mencoba mengirim ulang kode.",
        "Please wait 1 minute before requesting another code.",
    ),
    (
        "verify.daily_limit",
        "Batas email verifikasi hari ini tercapai. Coba lagi dalam :seconds detik.",
        "Today's limit of verification emails is reached. Try again in :seconds seconds.",
    ),
    (
        "verify.too_many_tries",
        "Terlalu banyak kode yang salah. Coba lagi dalam :seconds detik.",
        "Too many wrong codes. Try again in :seconds seconds.",
    ),
    ("verify.already", "Email sudah terverifikasi.", "Email is already verified."),
    ("verify.link_sent", "Link verifikasi email telah dikirim.", "The email verification link has been sent."),
    (
        "verify.link_resent",
        "Link verifikasi email telah dikirim ulang.",
        "The email verification link has been sent again.",
    ),
    ("verify.link_success", "Email berhasil diverifikasi.", "Your email address has been verified."),
    ("verify.link_invalid", "Invalid/Expired url provided.", "Invalid/Expired url provided."),
    ("verify.user_not_found", "User not found.", "User not found."),
    ("mail.verification.subject", "Verifikasi alamat email Anda", "Verify your email address"),
    ("mail.test.subject", "Email uji coba apextrack", "apextrack test email"),
    ("api.mobile_verified", "Nomor telepon berhasil diverifikasi.", "Your phone number has been verified."),
    (
        "api.otp_verification_code_invalid",
        "Kode verifikasi OTP tidak valid atau sudah kedaluwarsa.",
        "The OTP verification code is invalid or has expired.",
    ),
    ("api.phone_number_blacklisted", "Nomor telepon ini diblokir.", "This phone number is blocked."),
    (
        "api.phone_number_taken",
        "Nomor telepon sudah digunakan oleh akun lain.",
        "This phone number is already used by another account.",
    ),
    ("api.otp_sent", "Kode OTP telah dikirim.", "The OTP code has been sent."),
    ("api.twofa_status", "Status autentikasi dua langkah.", "Two-factor authentication status."),
    (
        "api.twofa_binded_successfully",
        "Google Authenticator berhasil diaktifkan.",
        "Two-factor authentication has been turned on.",
    ),
    (
        "api.twofa_unbinded",
        "Google Authenticator berhasil dinonaktifkan.",
        "Two-factor authentication has been turned off.",
    ),
    ("api.twofa_already_bound", "Google Authenticator sudah aktif.", "Two-factor authentication is already on."),
    ("api.twofa_not_bound", "Google Authenticator belum aktif.", "Two-factor authentication is not on."),
    ("api.recovery_codes_regenerated", "Kode pemulihan baru telah dibuat.", "New recovery codes have been made."),
    ("auth.otp_failed", "Kode OTP salah.", "The OTP code is incorrect."),
    ("api.language_updated_successfully", "Bahasa berhasil diperbarui.", "Language updated."),
    ("api.currency_updated_successfully", "Mata uang berhasil diperbarui.", "Currency updated."),
    ("api.email_otp_sent", "Kode OTP telah dikirim ke email Anda.", "An OTP code has been sent to your email."),
    (
        "api.email_otp_error",
        "Kode OTP email tidak valid atau sudah kedaluwarsa.",
        "The email OTP code is invalid or has expired.",
    ),
    ("api.generate_key_successful", "API key berhasil dibuat.", "The API key has been created."),
    ("api.edit_api_key_successful", "API key berhasil diperbarui.", "The API key has been regenerated."),
    ("api.delete_api_key_successful", "API key berhasil dihapus.", "The API key has been deleted."),
    ("api.list_api_key_successful", "Daftar API key.", "API keys."),
    ("api.user_api_key_not_found", "API key tidak ditemukan.", "API key not found."),
    ("api.too_many_api_keys", "Jumlah API key sudah maksimal (50).", "You have the maximum number of API keys (50)."),
    (
        "api.permission_denied",
        "API key ini tidak memiliki izin :permission.",
        "This API key does not have the :permission permission.",
    ),
    (
        "api.too_many_requests",
        "Terlalu banyak permintaan. Coba lagi dalam :seconds detik.",
        "Too many requests. Try again in :seconds seconds.",
    ),
    (
        "sms.otp",
        "Kode apextrack Anda: :code. Berlaku :minutes menit. Jangan berikan kepada siapa pun.",
        "Your apextrack code: :code. Valid for :minutes minutes. Never share it.",
    ),
    ("mail.otp.subject", "Kode OTP apextrack Anda", "Your apextrack one-time code"),
    ("validation.phone", "The :attribute is not a valid phone number.", "The :attribute is not a valid phone number."),
    ("http.unauthenticated", "Unauthenticated.", "Unauthenticated."),
    ("http.unverified", "Your email address is not verified.", "Your email address is not verified."),
    ("http.not_found", "Not Found.", "Not Found."),
    (
        "http.method_not_allowed",
        "The :method method is not supported for this route. Supported methods: :allowed.",
        "The :method method is not supported for this route. Supported methods: :allowed.",
    ),
    (
        "http.payload_too_large",
        "The request body is larger than the limit of :limit bytes.",
        "The request body is larger than the limit of :limit bytes.",
    ),
    ("http.bad_json", "The request body is not valid JSON: :detail", "The request body is not valid JSON: :detail"),
    ("http.not_object", "The request body must be a JSON object.", "The request body must be a JSON object."),
    ("http.invalid", "The given data was invalid.", "The given data was invalid."),
    ("http.server_error", "Server Error.", "Server Error."),
    ("http.bad_request", "Permintaan HTTP tidak valid: :detail", "The request is not valid HTTP: :detail"),
    ("http.busy", "Service Unavailable.", "Service Unavailable."),
    ("validation.required", "The :attribute field is required.", "The :attribute field is required."),
    ("validation.string", "The :attribute must be a string.", "The :attribute must be a string."),
    ("validation.array", "The :attribute must be a list.", "The :attribute must be a list."),
    ("validation.object", "The :attribute must be an object.", "The :attribute must be an object."),
    ("validation.boolean", "The :attribute must be true or false.", "The :attribute must be true or false."),
    (
        "validation.country",
        "The :attribute must hold two-letter country codes.",
        "The :attribute must hold two-letter country codes.",
    ),
    (
        "validation.destination",
        "The :attribute must name a destination of this link.",
        "The :attribute must name a destination of this link.",
    ),
    (
        "validation.offer_required",
        "The :attribute must hold at least one offer.",
        "The :attribute must hold at least one offer.",
    ),
    (
        "validation.email",
        "The :attribute must be a valid email address.",
        "The :attribute must be a valid email address.",
    ),
    (
        "validation.max",
        "The :attribute must not be greater than :max characters.",
        "The :attribute must not be greater than :max characters.",
    ),
    (
        "validation.min",
        "The :attribute must be at least :min characters.",
        "The :attribute must be at least :min characters.",
    ),
    ("validation.unique", "The :attribute has already been taken.", "The :attribute has already been taken."),
    ("validation.url", "The :attribute format is invalid.", "The :attribute format is invalid."),
    (
        "validation.money",
        "The :attribute must be a positive amount with at most two decimals.",
        "The :attribute must be a positive amount with at most two decimals.",
    ),
    (
        "validation.in",
        "The selected :attribute is invalid. Use one of: :values.",
        "The selected :attribute is invalid. Use one of: :values.",
    ),
    (
        "validation.slug",
        "The :attribute may only contain letters, numbers, dashes and underscores (3 to 64 characters).",
        "The :attribute may only contain letters, numbers, dashes and underscores (3 to 64 characters).",
    ),
    (
        "validation.date",
        "The :attribute is not a valid date (YYYY-MM-DD).",
        "The :attribute is not a valid date (YYYY-MM-DD).",
    ),
    (
        "validation.between",
        "The :attribute must be between :min and :max.",
        "The :attribute must be between :min and :max.",
    ),
    ("validation.integer", "The :attribute must be an integer.", "The :attribute must be an integer."),
    (
        "validation.currency",
        "The :attribute must be a 3-letter ISO 4217 code.",
        "The :attribute must be a 3-letter ISO 4217 code.",
    ),
    (
        "validation.allowlist",
        "The :attribute must be a list of IP addresses or CIDR ranges (at most 100).",
        "The :attribute must be a list of IP addresses or CIDR ranges (at most 100).",
    ),
    ("links.deleted", "Link berhasil dihapus.", "The link has been deleted."),
    ("costs.deleted", "Biaya dihapus.", "The cost entry has been deleted."),
    ("costs.unknown_link", "Tidak ada link Anda dengan id ini.", "No link of yours has this id."),
    (
        "costs.future_day",
        "Biaya diatur untuk hari yang sudah lewat (hari ini belum selesai).",
        "Costs are set for days that are over (today is not yet).",
    ),
    (
        "costs.purged_day",
        "Klik mentah tanggal :day sudah dihapus (tracking.raw_click_days); biaya hanya bisa diatur untuk hari yang kliknya masih disimpan.",
        "The raw clicks of :day were deleted (tracking.raw_click_days); costs can be set only for days whose clicks are kept.",
    ),
    ("import.bad_file", "Berkas tidak dapat dibaca: :reason.", "The file cannot be read: :reason."),
    (
        "import.too_many_rows",
        "Paling banyak :max baris per impor; bagi berkasnya.",
        "At most :max rows per import; split the file.",
    ),
    (
        "validation.private_url",
        "The :attribute points into a private network (tracking.allow_private_targets).",
        "The :attribute points into a private network (tracking.allow_private_targets).",
    ),
    (
        "validation.bot_token",
        "The :attribute must look like 123456789:AAH... as @BotFather gives it.",
        "The :attribute must look like 123456789:AAH... as @BotFather gives it.",
    ),
    (
        "validation.chat_id",
        "The :attribute must be a number (like -1001234567890) or a channel's @name.",
        "The :attribute must be a number (like -1001234567890) or a channel's @name.",
    ),
    (
        "validation.stop_loss_needed",
        "The :attribute is required when the stop_loss event is chosen.",
        "The :attribute is required when the stop_loss event is chosen.",
    ),
    (
        "notify.too_many_tests",
        "Terlalu banyak pesan uji. Silakan coba lagi dalam :seconds detik.",
        "Too many test messages. Please try again in :seconds seconds.",
    ),
    (
        "notify.too_many_saves",
        "Terlalu sering menyimpan pengaturan notifikasi. Silakan coba lagi dalam :seconds detik.",
        "Notification settings saved too often. Please try again in :seconds seconds.",
    ),
    (
        "notify.no_channel",
        "Belum ada saluran: isi Telegram atau webhook lalu simpan.",
        "No channel yet: set up Telegram or a webhook and save.",
    ),
    (
        "notify.test",
        "Pesan uji dari apextrack: notifikasi berfungsi.",
        "Test message from apextrack: notifications work.",
    ),
    (
        "notify.conversion",
        "Konversi baru (:status): :payout :currency\nLink: :link\nSub ID: :sub_id\nNegara: :country\nTxid: :txid",
        "New conversion (:status): :payout :currency\nLink: :link\nSub ID: :sub_id\nCountry: :country\nTxid: :txid",
    ),
    (
        "notify.conversion_changed",
        "Konversi berubah menjadi :status: :payout :currency\nLink: :link\nSub ID: :sub_id\nNegara: :country\nTxid: :txid",
        "Conversion now :status: :payout :currency\nLink: :link\nSub ID: :sub_id\nCountry: :country\nTxid: :txid",
    ),
    (
        "notify.digest",
        "Ringkasan :day\nKlik: :clicks\nKonversi: :conversions (disetujui :approved)\nPendapatan: :revenue :currency\nBiaya: :cost :currency\nLaba: :profit :currency\nSub ID teratas (klik / disetujui / laba): :top",
        "Digest of :day\nClicks: :clicks\nConversions: :conversions (:approved approved)\nRevenue: :revenue :currency\nCost: :cost :currency\nProfit: :profit :currency\nTop sub IDs (clicks / approved / profit): :top",
    ),
    (
        "notify.postback_rejected",
        ":count postback ditolak dalam 10 menit terakhir (secret salah atau clickid tidak dikenal). Periksa URL postback di jaringan Anda dan log postback.",
        ":count postbacks were refused in the last 10 minutes (a wrong secret or an unknown clickid). Check the postback URL at your network and the postback log.",
    ),
    (
        "notify.destination_down",
        "Offer \":name\" (link \":link\") tidak bisa dibuka: :error",
        "Offer \":name\" (link \":link\") is down: :error",
    ),
    (
        "notify.destination_down_paused",
        "Offer \":name\" (link \":link\") tidak bisa dibuka: :error. Offer ini dikeluarkan dari rotasi sampai bisa dibuka lagi.",
        "Offer \":name\" (link \":link\") is down: :error. It is out of the rotation until it answers again.",
    ),
    (
        "notify.destination_up",
        "Offer \":name\" (link \":link\") bisa dibuka lagi.",
        "Offer \":name\" (link \":link\") is up again.",
    ),
    (
        "notify.stop_loss",
        "Stop-loss :amount :currency tercapai hari ini tanpa konversi yang disetujui:\n:list",
        "Stop-loss of :amount :currency reached today with no approved conversion:\n:list",
    ),
    (
        "register.too_many",
        "Terlalu banyak pendaftaran dari alamat ini. Silakan coba lagi dalam :seconds detik.",
        "Too many sign-ups from this address. Please try again in :seconds seconds.",
    ),
    (
        "verify.mail_budget",
        "Terlalu banyak email verifikasi dikirim saat ini. Silakan coba lagi dalam :seconds detik.",
        "Too many verification mails are being sent right now. Please try again in :seconds seconds.",
    ),
    (
        "links.too_many",
        "Anda sudah punya :max link, batas satu akun; hapus satu dulu.",
        "You have :max links, the most an account may have; delete one first.",
    ),
    ("payment.bad_signature", "Invalid signature.", "Invalid signature."),
    (
        "postback.too_many_refused",
        "Terlalu banyak postback yang ditolak. Silakan coba lagi dalam :seconds detik.",
        "Too many refused postbacks. Please try again in :seconds seconds.",
    ),
    (
        "payment.reference_taken",
        "This reference belongs to a payment of another email address.",
        "This reference belongs to a payment of another email address.",
    ),
    (
        "validation.confirmed",
        "The :attribute confirmation does not match.",
        "The :attribute confirmation does not match.",
    ),
];

/// A message not yet put into words: a catalogue key plus its arguments.
/// Rendering waits until the language of the answer is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub key: &'static str,
    args: Vec<(&'static str, String)>,
}

impl Msg {
    pub fn new(key: &'static str) -> Msg {
        Msg { key, args: Vec::new() }
    }

    pub fn arg(mut self, name: &'static str, value: impl ToString) -> Msg {
        self.args.push((name, value.to_string()));
        self
    }

    pub fn render(&self, lang: Lang) -> String {
        let mut text = text(self.key, lang).to_string();
        for (name, value) in &self.args {
            text = text.replace(&format!(":{name}"), value);
        }
        text
    }
}

/// The raw catalogue text of `key`; an unknown key renders as itself, so a
/// missing entry shows up in a test instead of panicking a request.
pub fn text(key: &str, lang: Lang) -> &str {
    CATALOGUE.iter().find(|(k, _, _)| *k == key).map_or(key, |(_, id, en)| match lang {
        Lang::Id => id,
        Lang::En => en,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_quality_then_default() {
        assert_eq!(Lang::negotiate(None, Lang::Id), Lang::Id);
        assert_eq!(Lang::negotiate(Some("en-US,en;q=0.9"), Lang::Id), Lang::En);
        assert_eq!(Lang::negotiate(Some("en;q=0.5, id-ID;q=0.8"), Lang::En), Lang::Id);
        assert_eq!(Lang::negotiate(Some("fr, de"), Lang::En), Lang::En);
        assert_eq!(Lang::negotiate(Some("en;q=0"), Lang::Id), Lang::Id);
    }

    #[test]
    fn messages_render_with_arguments() {
        let msg = Msg::new("auth.throttle").arg("seconds", 42);
        assert_eq!(msg.render(Lang::Id), "Terlalu banyak percobaan login. Silakan coba lagi dalam 42 detik.");
        assert_eq!(msg.render(Lang::En), "Too many login attempts. Please try again in 42 seconds.");
    }

    #[test]
    fn catalogue_keys_are_unique_and_complete() {
        for (i, (key, id, en)) in CATALOGUE.iter().enumerate() {
            assert!(!id.is_empty() && !en.is_empty(), "{key} lacks a text");
            assert!(CATALOGUE[i + 1..].iter().all(|(k, _, _)| k != key), "{key} appears twice");
        }
    }
}
