//! Device type from the User-Agent, by a small tested table: `bot`,
//! `tablet`, `mobile` or `desktop`. Bots are checked first, tablets before
//! phones (an iPad or an Android tablet also says "mobile" sometimes).

const BOTS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "java/",
    "okhttp",
    "headlesschrome",
    "phantomjs",
    "facebookexternalhit",
    "facebookcatalog",
    "preview",
    "scrapy",
    "httpclient",
    "libwww",
    "axios/",
    "node-fetch",
    "lighthouse",
    "pingdom",
    "uptime",
    "monitor",
];
const TABLETS: &[&str] = &["ipad", "tablet", "kindle", "silk/", "playbook", "nexus 7", "nexus 10", "sm-t", "tab "];
const PHONES: &[&str] =
    &["mobi", "iphone", "ipod", "android", "windows phone", "blackberry", "bb10", "opera mini", "iemobile", "kaios"];

pub fn detect(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.trim().is_empty() || BOTS.iter().any(|b| ua.contains(b)) {
        return "bot";
    }
    // Android without "mobile" is a tablet by Google's own convention.
    if TABLETS.iter().any(|t| ua.contains(t)) || (ua.contains("android") && !ua.contains("mobile")) {
        return "tablet";
    }
    if PHONES.iter().any(|p| ua.contains(p)) {
        return "mobile";
    }
    "desktop"
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn user_agents_map_to_devices() {
        let cases = [
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1", "mobile"),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36", "mobile"),
            ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", "tablet"),
            ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1", "tablet"),
            ("Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/534.30 (KHTML, like Gecko) Silk/3.4 Mobile Safari/534.30", "tablet"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", "desktop"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15", "desktop"),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "desktop"),
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot"),
            ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bot"),
            ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "bot"),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36", "bot"),
            ("curl/8.5.0", "bot"),
            ("python-requests/2.31.0", "bot"),
            ("Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54", "mobile"),
            ("", "bot"),
        ];
        for (ua, device) in cases {
            assert_eq!(detect(ua), device, "{ua}");
        }
    }
}
