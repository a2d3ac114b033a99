// The UI's words in Indonesian (default) and English. The API's own
// messages come already localized in the user's language.
const TEXT = {
  id: {
    dashboard: "Dasbor", links: "Link", settings: "Pengaturan", logout: "Keluar",
    login: "Masuk", register: "Daftar", email: "Email", password: "Kata sandi", name: "Nama",
    password_confirmation: "Konfirmasi kata sandi", no_account: "Belum punya akun?", have_account: "Sudah punya akun?",
    otp_code: "Kode 2FA (atau kode pemulihan)", otp_needed: "Masukkan kode dari aplikasi autentikator Anda.",
    verify_title: "Verifikasi email", verify_help: "Masukkan kode 6 digit yang kami kirim ke email Anda, atau buka link di email tersebut.",
    code: "Kode", verify: "Verifikasi", resend: "Kirim ulang kode", resend_in: "Kirim ulang dalam {s} detik",
    bad_link: "Link verifikasi tidak valid atau sudah kedaluwarsa.", bad_link_help: "Masuk lalu minta link atau kode baru.",
    live_clicks: "Klik 30 detik terakhir", clicks_today: "Klik hari ini", total_leads: "Total lead", total_payout: "Total payout",
    per_day: "Klik dan lead per hari (30 hari)", clicks: "Klik", leads: "Lead", approved: "Disetujui", payout: "Payout",
    cr: "CR %", sub_report: "Laporan per sub_id", recent_clicks: "Klik terbaru", recent_leads: "Lead terbaru", geoip_by: "Geolokasi IP oleh",
    country: "Negara", device: "Perangkat", time: "Waktu", status: "Status",
    empty_title: "Belum ada data.", empty_links: "Buat link pelacakan pertama Anda, lalu pasang URL-nya di kampanye.",
    empty_postback: "Tempel URL postback ini di jaringan afiliasi Anda:", create_link: "Buat link",
    link_name: "Nama", destination: "URL tujuan", default_payout: "Payout bawaan", save: "Simpan", cancel: "Batal",
    edit: "Ubah", pause: "Jeda", resume: "Aktifkan", delete: "Hapus", copy: "Salin", copied: "Tersalin",
    tracking_url: "URL pelacakan", confirm_delete: "Hapus link ini? Statistiknya tetap tersimpan.",
    macros_help: "Makro di URL tujuan diisi saat klik: {clickid}, {sub_id}, {sub2}..{sub5}, {ext_id}, {country_code}, {device_type}.",
    source_postback: "Postback ke sumber trafik (opsional)", active: "aktif", paused: "dijeda", no_links: "Belum ada link.",
    profile: "Profil", language: "Bahasa", currency: "Mata uang", phone: "Nomor telepon", dial_code: "Kode negara (mis. +62)",
    country_code: "Kode negara ISO (mis. ID)", send_code: "Kirim kode", bind: "Hubungkan", phone_bound: "Terhubung: {p}",
    twofa: "Autentikasi dua langkah (2FA)", twofa_on: "2FA aktif.", twofa_off: "2FA belum aktif. Pindai kode QR dengan aplikasi autentikator, lalu masukkan kodenya.",
    secret: "Kunci rahasia", enable: "Aktifkan", disable: "Nonaktifkan", recovery_codes: "Kode pemulihan (simpan, hanya ditampilkan sekali):",
    api_keys: "API key", api_name: "Nama key", permissions: "Izin", email_code: "Kode dari email", phone_code: "Kode SMS",
    request_email_code: "Kirim kode ke email", create_key: "Buat API key", secret_once: "Simpan secret ini sekarang; tidak akan ditampilkan lagi.",
    regenerate: "Buat ulang", no_keys: "Belum ada API key.", postback: "URL postback", rotate: "Ganti secret",
    confirm_rotate: "Ganti secret? URL lama berhenti berfungsi.", saved: "Tersimpan", wait_s: "Coba lagi dalam {s} detik.",
    error: "Terjadi kesalahan.", created: "Dibuat", never: "belum pernah", last_used: "Terakhir dipakai",
    routing: "Rute", all_links: "Semua link", routing_of: "Rute: {name}", destinations: "Tujuan", kind: "Jenis",
    offer: "Penawaran", lander: "Lander", dest_url: "URL", weight: "Bobot", share: "Porsi trafik di antara tujuan aktif",
    payout_optional: "Payout", daily_cap: "Batas harian", remove: "Hapus", move_up: "Naikkan", move_down: "Turunkan",
    add_destination: "Tambah tujuan", lander_hint: "Tombol di lander harus mengarah ke {click_url} agar klik lanjutannya tercatat.",
    routing_macros: "Makro di URL: {clickid} {sub_id} {sub2}..{sub5} {ext_id} {country_code} {device_type} {os} {destination} {rule} {click_url}.",
    no_destinations: "Belum ada tujuan.", rules: "Aturan", rule: "Aturan", rule_name: "Nama aturan", add_rule: "Tambah aturan",
    rules_help: "Aturan pertama yang semua syaratnya terpenuhi menentukan tujuan; syarat yang kosong diabaikan. Kunjungan yang tidak cocok dengan aturan mana pun dibagi ke semua tujuan aktif. Negara: kode ISO dua huruf dipisah koma (ID, MY); bahasa: kode seperti id, en; jam: waktu server, dari–sampai (boleh melewati tengah malam).",
    countries: "Negara", languages: "Bahasa", hours: "Jam",
    hour_from: "dari", hour_to: "sampai", unique_visitor: "Pengunjung unik", any: "Semua", yes: "Ya", no: "Tidak",
    devices: "Perangkat", device_mobile: "Ponsel", device_tablet: "Tablet", device_desktop: "Desktop", device_bot: "Bot",
    oses: "Sistem operasi", os_other: "Lainnya", params: "Parameter klik", params_help: "Satu per baris: sub2=tiktok,tt (sub_id, sub1..sub5, ext_id).",
    send_to: "Kirim ke", mode: "Mode", mode_weighted: "Menurut bobot", mode_optimize: "Optimasi",
    mode_help: "Optimasi memindahkan trafik ke penawaran dengan konversi terbaik setelah setiap penawaran mendapat 100 klik, dengan tetap menyisakan 5 % untuk masing-masing.",
    fallback_url: "URL cadangan (opsional)", fallback_help: "Dipakai saat semua tujuan dijeda atau mencapai batas harian.",
    stats_title: "Statistik per tujuan", date_from: "Dari tanggal", date_to: "Sampai tanggal", clicks_views: "Klik / tayangan", unique: "Unik",
    lander_clicks: "Klik lander", ctr: "CTR %", conversions: "Konversi", revenue: "Pendapatan", epc: "EPC", p_best: "Peluang terbaik",
    verdict_winner: "{name} mengalahkan yang lain dengan probabilitas {p} %.", verdict_none: "Belum cukup data untuk menentukan pemenang.", no_cap: "tanpa batas", cap_help: "Batas harian: konversi per hari; setelah itu penawaran dilewati sampai besok.",
    optional: "opsional", weight_help: "Bobot 0–1000: porsinya di antara tujuan aktif tampil di sebelahnya.",
  },
  en: {
    dashboard: "Dashboard", links: "Links", settings: "Settings", logout: "Log out",
    login: "Log in", register: "Sign up", email: "Email", password: "Password", name: "Name",
    password_confirmation: "Confirm password", no_account: "No account yet?", have_account: "Already have an account?",
    otp_code: "2FA code (or a recovery code)", otp_needed: "Enter the code from your authenticator app.",
    verify_title: "Verify your email", verify_help: "Enter the 6-digit code we emailed you, or open the link in that email.",
    code: "Code", verify: "Verify", resend: "Send a new code", resend_in: "Send again in {s} s",
    bad_link: "The verification link is invalid or has expired.", bad_link_help: "Log in and ask for a new link or code.",
    live_clicks: "Clicks, last 30 s", clicks_today: "Clicks today", total_leads: "Total leads", total_payout: "Total payout",
    per_day: "Clicks and leads per day (30 days)", clicks: "Clicks", leads: "Leads", approved: "Approved", payout: "Payout",
    cr: "CR %", sub_report: "Report by sub_id", recent_clicks: "Recent clicks", recent_leads: "Recent leads", geoip_by: "IP geolocation by",
    country: "Country", device: "Device", time: "Time", status: "Status",
    empty_title: "No data yet.", empty_links: "Create your first tracking link, then put its URL in a campaign.",
    empty_postback: "Paste this postback URL into your affiliate network:", create_link: "Create link",
    link_name: "Name", destination: "Destination URL", default_payout: "Default payout", save: "Save", cancel: "Cancel",
    edit: "Edit", pause: "Pause", resume: "Resume", delete: "Delete", copy: "Copy", copied: "Copied",
    tracking_url: "Tracking URL", confirm_delete: "Delete this link? Its statistics stay.",
    macros_help: "Macros in the destination are filled on each click: {clickid}, {sub_id}, {sub2}..{sub5}, {ext_id}, {country_code}, {device_type}.",
    source_postback: "Postback to the traffic source (optional)", active: "active", paused: "paused", no_links: "No links yet.",
    profile: "Profile", language: "Language", currency: "Currency", phone: "Phone number", dial_code: "Dial code (e.g. +62)",
    country_code: "ISO country code (e.g. ID)", send_code: "Send code", bind: "Bind", phone_bound: "Bound: {p}",
    twofa: "Two-factor authentication (2FA)", twofa_on: "2FA is on.", twofa_off: "2FA is off. Scan the QR code with an authenticator app, then enter its code.",
    secret: "Secret key", enable: "Turn on", disable: "Turn off", recovery_codes: "Recovery codes (keep them; shown only once):",
    api_keys: "API keys", api_name: "Key name", permissions: "Permissions", email_code: "Code from the email", phone_code: "SMS code",
    request_email_code: "Email me a code", create_key: "Create API key", secret_once: "Save this secret now; it will not be shown again.",
    regenerate: "Regenerate", no_keys: "No API keys yet.", postback: "Postback URL", rotate: "Rotate secret",
    confirm_rotate: "Rotate the secret? The old URL stops working.", saved: "Saved", wait_s: "Try again in {s} s.",
    error: "Something went wrong.", created: "Created", never: "never", last_used: "Last used",
    routing: "Routing", all_links: "All links", routing_of: "Routing: {name}", destinations: "Destinations", kind: "Type",
    offer: "Offer", lander: "Lander", dest_url: "URL", weight: "Weight", share: "Share of the traffic among active destinations",
    payout_optional: "Payout", daily_cap: "Daily cap", remove: "Remove", move_up: "Move up", move_down: "Move down",
    add_destination: "Add destination", lander_hint: "A lander's button must lead to {click_url} for its click-through to count.",
    routing_macros: "Macros in URLs: {clickid} {sub_id} {sub2}..{sub5} {ext_id} {country_code} {device_type} {os} {destination} {rule} {click_url}.",
    no_destinations: "No destinations yet.", rules: "Rules", rule: "Rule", rule_name: "Rule name", add_rule: "Add rule",
    rules_help: "The first rule whose conditions all hold decides; empty conditions are ignored. Visits no rule matches are split among all active destinations. Countries: two-letter ISO codes, comma-separated (ID, MY); languages: codes like id, en; hours: server time, from–to (may wrap past midnight).",
    countries: "Countries", languages: "Languages", hours: "Hours",
    hour_from: "from", hour_to: "to", unique_visitor: "Unique visitor", any: "Any", yes: "Yes", no: "No",
    devices: "Devices", device_mobile: "Mobile", device_tablet: "Tablet", device_desktop: "Desktop", device_bot: "Bot",
    oses: "Operating systems", os_other: "Other", params: "Click parameters", params_help: "One per line: sub2=tiktok,tt (sub_id, sub1..sub5, ext_id).",
    send_to: "Send to", mode: "Mode", mode_weighted: "Weighted", mode_optimize: "Optimize",
    mode_help: "Optimize moves traffic to the offer converting best once every offer has 100 clicks, keeping 5 % for each.",
    fallback_url: "Fallback URL (optional)", fallback_help: "Used when every destination is paused or has reached its daily cap.",
    stats_title: "Stats per destination", date_from: "From", date_to: "To", clicks_views: "Clicks / views", unique: "Unique",
    lander_clicks: "Lander clicks", ctr: "CTR %", conversions: "Conversions", revenue: "Revenue", epc: "EPC", p_best: "Chance of best",
    verdict_winner: "{name} beats the others with {p} % probability.", verdict_none: "Not enough data yet to name a winner.", no_cap: "no cap", cap_help: "Daily cap: conversions per day; after that the offer is skipped until tomorrow.",
    optional: "optional", weight_help: "Weight 0–1000: its share among the active destinations shows beside it.",
  },
};

let current = "id";

export function setLang(lang) {
  current = TEXT[lang] ? lang : "id";
  document.documentElement.lang = current;
}

export function lang() {
  return current;
}

/** The UI text of `key`, with `{name}` filled from `vars`. */
export function t(key, vars = {}) {
  const text = TEXT[current][key] ?? TEXT.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}
