// The web UI in real headless Chromium against the real server binary, a
// real SQLite file, and a local HTTP server standing in for the mail
// provider (and for the offer a tracking link sends visitors to).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import { mkdtempSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const ROOT = resolve(import.meta.dirname, "../..");
const SHOTS = join(ROOT, "target", "ui-screenshots");
const BINARY = process.env.APEXTRACK_BIN || join(ROOT, "target", "debug", "apextrack");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
let server, recorder, browser, page, base, landing, hook, dbPath;
const received = []; // requests the recorder got: {method, path, url, body, raw, headers}
// Bot tokens the recorder, standing in for Telegram's Bot API under /tg, takes and refuses.
const TG_GOOD = `123456789:AA${"g".repeat(33)}`;
const TG_BAD = `987654321:AA${"b".repeat(33)}`;

function freePort() {
  return new Promise((ok) => {
    const s = createServer().listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}

async function waitFor(what, check, timeout = 15000) {
  const until = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The newest mail to `to` whose text has a 6-digit code: that code. */
async function mailedCode(to, after = 0) {
  return waitFor(`a mail to ${to}`, () => {
    const mails = received.filter((r) => r.path === "/mail" && r.body.to === to).slice(after);
    const text = mails.at(-1)?.body.text || "";
    return text.match(/\b\d{6}\b/)?.[0];
  });
}

function mailsTo(to) {
  return received.filter((r) => r.path === "/mail" && r.body.to === to).length;
}

function base32Decode(s) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0, value = 0;
  const out = [];
  for (const c of s) { value = (value << 5) | alphabet.indexOf(c); bits += 5; if (bits >= 8) { out.push((value >>> (bits - 8)) & 255); bits -= 8; } }
  return Buffer.from(out);
}

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s), `offset` steps from now. */
function totp(secret, offset = 0) {
  const step = Math.floor(Date.now() / 1000 / 30) + offset;
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const hash = createHmac("sha1", base32Decode(secret)).update(msg).digest();
  const o = hash[19] & 15;
  return String((hash.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, "0");
}

async function shot(name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  const recorderPort = await freePort();
  recorder = createServer((req, res) => {
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => {
      let body = data;
      try { body = JSON.parse(data); } catch {}
      const path = req.url.split("?")[0];
      received.push({ method: req.method, path, url: req.url, body, raw: data, headers: req.headers });
      if (path === "/dead") { res.writeHead(503, { "Content-Type": "text/plain" }); res.end("down"); return; }
      const bot = path.match(/^\/tg\/bot([^/]+)\/sendMessage$/);
      if (bot) {
        const good = decodeURIComponent(bot[1]) === TG_GOOD;
        res.writeHead(good ? 200 : 401, { "Content-Type": "application/json" });
        res.end(JSON.stringify(good ? { ok: true, result: { message_id: 1 } } : { ok: false, error_code: 401, description: "Unauthorized" }));
        return;
      }
      res.writeHead(200, { "Content-Type": req.url.startsWith("/landing") ? "text/html" : "application/json" });
      res.end(req.url.startsWith("/landing") ? "<!doctype html><title>Offer</title><h1>The offer</h1>" : path === "/hook" ? '{"recorded":true}' : "{}");
    });
  }).listen(recorderPort, "127.0.0.1");
  landing = `http://127.0.0.1:${recorderPort}/landing`;
  hook = `http://127.0.0.1:${recorderPort}/hook`;

  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), "apextrack-ui-"));
  dbPath = join(dir, "ui.db");
  server = spawn(BINARY, ["serve"], {
    cwd: dir,
    env: {
      ...process.env,
      APEXTRACK_SERVER_BIND: `127.0.0.1:${port}`,
      APEXTRACK_SERVER_APP_URL: base,
      APEXTRACK_DATABASE_PATH: dbPath,
      APEXTRACK_MAIL_PROVIDER: "http",
      APEXTRACK_MAIL_ENDPOINT: `http://127.0.0.1:${recorderPort}/mail`,
      // A tiny country database of DB-IP's type: the dashboard credits it.
      APEXTRACK_TRACKING_GEOIP_DB: join(ROOT, "tests", "fixtures", "dbip-country-lite.mmdb"),
      // Telegram's Bot API is the recorder's /tg; the webhook test posts to the recorder on 127.0.0.1.
      APEXTRACK_NOTIFY_TELEGRAM_API: `http://127.0.0.1:${recorderPort}/tg`,
      APEXTRACK_TRACKING_ALLOW_PRIVATE_TARGETS: "true",
      // The links page's test fills an account to the cap on links (1000 by default) with 123.
      APEXTRACK_TRACKING_MAX_LINKS_PER_USER: "123",
      // Every sign-up of these tests comes from 127.0.0.1, beyond the 5 an
      // address may make in an hour by default (tests/abuse.rs covers that).
      APEXTRACK_SECURITY_REGISTRATIONS_PER_IP_HOUR: "20",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  server.stderr.on("data", () => {});
  await waitFor("the server", () => fetch(`${base}/api/health`).then((r) => r.ok).catch(() => false));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 }, locale: "id-ID" });
  page.on("dialog", (d) => d.accept());
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  recorder?.close();
});

const EMAIL = "ui-user@example.com";
const PASSWORD = "password123";

test("a new user registers, verifies by the mailed code and sees what to do next", async () => {
  await page.goto(`${base}/register`);
  await page.fill("#f-name", "UI User");
  await page.fill("#f-email", EMAIL);
  await page.fill("#f-password", "short");
  await page.fill("#f-password_confirmation", "short");
  await page.click("button[type=submit]");
  // The API's error sits next to its field.
  await page.waitForSelector("#e-password:has-text('at least 8 characters')");
  await page.fill("#f-password", PASSWORD);
  await page.fill("#f-password_confirmation", PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/verify`);
  const code = await mailedCode(EMAIL);
  await page.fill("#f-code", code);
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/dashboard`);
  const notice = await page.textContent(".notice");
  assert.match(notice, /Belum ada data/);
  assert.match(notice, /\/api\/postback\/conversion\?clickid=/);
  const token = await page.evaluate(() => localStorage.getItem("apextrack.token"));
  assert.ok(token && !(await page.content()).includes(token), "the token is kept, never shown");
  await shot("1-dashboard-empty");
});

test("a link is created, followed, converted, and the dashboard updates without reloading", async () => {
  await page.goto(`${base}/links`);
  await page.fill("#f-name", "Summer offer");
  await page.fill("#f-url", `${landing}?c={clickid}&s={sub_id}`);
  await page.fill("#f-payout", "2.50");
  await page.click("button[type=submit]");
  const trackingUrl = (await page.waitForSelector(".tracking-url")).textContent();
  const url = await trackingUrl;
  assert.ok(url.startsWith(`${base}/go/`), url);
  await shot("2-links");

  await page.goto(`${base}/dashboard`);
  await page.evaluate(() => (window.stillHere = true));
  // A visitor follows the tracking link in a browser of their own.
  const visitor = await browser.newPage({ userAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148" });
  await visitor.goto(`${url}?sub_id=fb-ads`);
  assert.equal(await visitor.textContent("h1"), "The offer");
  const clickid = new URL(visitor.url()).searchParams.get("c");
  assert.equal(new URL(visitor.url()).searchParams.get("s"), "fb-ads");
  await visitor.close();

  const token = await page.evaluate(() => localStorage.getItem("apextrack.token"));
  const me = await (await fetch(`${base}/api/user`, { headers: { Authorization: `Bearer ${token}` } })).json();
  const secret = new URL(me.postback_url).searchParams.get("secret");
  const pb = await fetch(`${base}/api/postback/conversion?clickid=${clickid}&payout=2.50&status=approved&secret=${secret}`);
  assert.equal(pb.status, 200);

  await page.waitForSelector("#total-leads:text-is('1')", { timeout: 10000 });
  await page.waitForSelector("#recent-leads td:has-text('fb-ads')");
  await page.waitForSelector("#recent-clicks td:has-text('fb-ads')");
  assert.equal(await page.textContent("#clicks-today"), "1");
  assert.match(await page.textContent("#total-payout"), /2[.,]50/);
  assert.equal(await page.evaluate(() => window.stillHere), true, "no reload happened");
  // DB-IP's licence (CC BY 4.0) asks for a credit while its database is in use.
  const credit = await page.waitForSelector("#geoip-credit a[href='https://db-ip.com']");
  assert.equal(await credit.textContent(), "DB-IP");
  await shot("3-dashboard-live");
});

test("a smart link's routing is edited in the UI, its errors shown by field, and its stats name the winning offer", async () => {
  // The UI is still in Indonesian here (the language test comes later).
  const token = await page.evaluate(() => localStorage.getItem("apextrack.token"));
  const auth = { Authorization: `Bearer ${token}`, "Content-Type": "application/json", Accept: "application/json" };
  const offerUrl = `${landing}?c={clickid}&d={destination}`;
  const created = await fetch(`${base}/api/links`, { method: "POST", headers: auth, body: JSON.stringify({ name: "Smart link", url: offerUrl }) });
  assert.equal(created.status, 201);
  const link = (await created.json()).data;

  await page.goto(`${base}/links`);
  await page.click(`[data-slug='${link.slug}'] button:text-is('Rute')`);
  await page.waitForURL(`${base}/links?id=${link.id}`);
  assert.equal(await page.inputValue("#d-0-name"), "Offer 1");
  assert.equal(await page.inputValue("#d-0-url"), offerUrl);

  // Offer B at weight 50 with a daily cap, and lander L1 at the default 100.
  await page.click("#add-destination");
  await page.fill("#d-1-name", "Offer B");
  await page.fill("#d-1-url", offerUrl);
  await page.fill("#d-1-weight", "50");
  await page.fill("#d-1-cap", "100");
  await page.click("#add-destination");
  await page.selectOption("#d-2-kind", "lander");
  await page.fill("#d-2-name", "L1");
  await page.fill("#d-2-url", `${landing}?next={click_url}`);
  assert.equal(await page.inputValue("#d-2-weight"), "100");
  // Shares of 100 + 50 + 100, shown live.
  assert.equal(await page.textContent("#d-0-share"), "40 %");
  assert.equal(await page.textContent("#d-1-share"), "20 %");
  assert.equal(await page.textContent("#d-2-share"), "40 %");
  await page.selectOption("#d-2-status", "paused");
  assert.equal(await page.textContent("#d-1-share"), `${Math.round((50 / 150) * 1000) / 10}`.replace(".", ",") + " %");
  assert.equal(await page.textContent("#d-2-share"), "0 %");
  await page.selectOption("#d-2-status", "active");
  assert.equal(await page.textContent("#d-0-share"), "40 %");

  // A rule with a bad country first, then the TikTok rule to the lander.
  await page.click("#add-rule");
  await page.fill("#r-0-name", "Indonesia");
  await page.fill("#r-0-country", "IDN");
  await page.check("#r-0-to-0");
  await page.click("#add-rule");
  await page.fill("#r-1-name", "tiktok");
  await page.fill("#r-1-params", "sub2=tiktok");
  await page.check("#r-1-to-2");
  assert.equal(await page.textContent("label:has(#r-1-to-2)"), "L1");
  await page.click("#save-routing");
  const countryError = await page.waitForSelector("#rule-0 #e-rules-0-if-country:not(:empty)");
  assert.match(await countryError.textContent(), /country|negara/i);
  assert.equal(await page.textContent("#e-rules-1-if-param"), "", "only the bad field is marked");
  await shot("routing-error");
  await page.fill("#r-0-country", "ID");
  await page.click("#save-routing");
  await page.waitForSelector("#toast:text-is('Tersimpan')");
  assert.equal(await page.textContent("#e-rules-0-if-country"), "");
  // Shown again from the API's answer: as saved.
  assert.equal(await page.inputValue("#d-1-cap"), "100");
  assert.equal(await page.inputValue("#r-0-country"), "ID");
  assert.equal(await page.inputValue("#r-1-params"), "sub2=tiktok");
  assert.equal(await page.isChecked("#r-1-to-2"), true);
  const saved = (await (await fetch(`${base}/api/links/${link.id}/routing`, { headers: auth })).json()).data;
  assert.deepEqual(saved.destinations.map((d) => [d.name, d.kind, d.weight, d.daily_cap]),
    [["Offer 1", "offer", 100, null], ["Offer B", "offer", 50, 100], ["L1", "lander", 100, null]]);
  assert.deepEqual(saved.rules, [{ name: "Indonesia", if: { country: ["ID"] }, to: ["Offer 1"] },
    { name: "tiktok", if: { param: { sub2: ["tiktok"] } }, to: ["L1"] }]);
  assert.equal(saved.fallback_url, null);

  // Traffic: distinct visitors, each sent by weight; Offer B converts, Offer 1 does not.
  const visit = async (n, query = "") => {
    const res = await fetch(`${base}/go/${link.slug}${query}`, { redirect: "manual",
      headers: { "User-Agent": `Mozilla/5.0 (Windows NT 10.0; Win64; x64) Visitor/${n}` } });
    assert.equal(res.status, 302);
    return new URL(res.headers.get("location"));
  };
  const sent = { "Offer 1": [], "Offer B": [], L1: 0 };
  for (let n = 0; n < 400 && (sent["Offer 1"].length < 30 || sent["Offer B"].length < 30); n++) {
    const to = await visit(n);
    if (to.searchParams.has("next")) sent.L1 += 1;
    else sent[to.searchParams.get("d")].push(to.searchParams.get("c"));
  }
  assert.ok(sent["Offer 1"].length >= 30 && sent["Offer B"].length >= 30, JSON.stringify(sent));
  // sub2=tiktok: the rule sends the visitor to the lander, whose button leads on to an offer.
  const lander = await visit("tiktok", "?sub2=tiktok");
  assert.equal(lander.origin + lander.pathname, landing);
  const clickUrl = lander.searchParams.get("next");
  assert.ok(clickUrl.startsWith(`${base}/click/`), clickUrl);
  const onward = await fetch(clickUrl, { redirect: "manual" });
  assert.equal(onward.status, 302);
  assert.ok(["Offer 1", "Offer B"].includes(new URL(onward.headers.get("location")).searchParams.get("d")));
  const me = await (await fetch(`${base}/api/user`, { headers: auth })).json();
  const secret = new URL(me.postback_url).searchParams.get("secret");
  for (const clickid of sent["Offer B"].slice(0, 15)) {
    const pb = await fetch(`${base}/api/postback/conversion?clickid=${clickid}&status=approved&payout=3&secret=${secret}`);
    assert.equal(pb.status, 200);
  }

  await page.reload();
  const verdict = await (await page.waitForSelector("#verdict:has-text('mengalahkan')")).textContent();
  const [, winner, percent] = verdict.match(/^(.+) mengalahkan yang lain dengan probabilitas (\d+) %/) || [];
  assert.equal(winner, "Offer B", verdict);
  assert.ok(Number(percent) >= 95, verdict);
  const cell = (name, column) => page.textContent(`#routing-stats tr:has(td:text-is('${name}')) td:nth-child(${column})`);
  assert.equal(await cell("L1", 5), "1", "the lander's click-through");
  assert.equal(await cell("L1", 3), String(sent.L1 + 1), "the lander's views");
  assert.equal(await cell("Offer B", 8), "15", "Offer B's approved conversions");
  assert.equal(await cell("Offer 1", 8), "0");
  await shot("routing-editor");

  await page.setViewportSize({ width: 375, height: 800 });
  try {
    await page.waitForFunction(() => window.innerWidth === 375);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375 + 1, `the routing page is ${width}px wide on a 375px phone`);
    await shot("routing-phone");
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
});

/** An amount as the UI shows it in Indonesian ("US$1.234,50", "-Rp 3"): a number. */
function amount(text) {
  const n = Number(text.replace(/\u2212/g, "-").replace(/[^\d,.-]/g, "").replace(/\./g, "").replace(",", "."));
  assert.ok(Number.isFinite(n), `not an amount: ${text}`);
  return n;
}

test("a link's cost per click shows on the dashboard as cost, revenue and profit today, and its cost model is edited with errors by field", async () => {
  // Still in Indonesian; earlier tests already brought revenue today, so differences are compared.
  const token = await page.evaluate(() => localStorage.getItem("apextrack.token"));
  const auth = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  const me = await (await fetch(`${base}/api/user`, { headers: auth })).json();
  const summary = async () => (await (await fetch(`${base}/api/dashboard-data`, { headers: auth })).json()).summary;

  await page.goto(`${base}/links`);
  await page.fill("#f-name", "Paid traffic");
  await page.fill("#f-url", `${landing}?c={clickid}&s={sub_id}`);
  assert.equal(await page.isVisible("#f-cost_value"), false, "no cost per click without the cpc model");
  await page.selectOption("#f-cost_model", "cpc");
  await page.fill("#f-cost_value", "0,25");
  await page.click("form:has(#f-cost_model) button[type=submit]");
  const row = page.locator("#links-table tr.link:has(strong:text-is('Paid traffic'))");
  await row.waitFor();
  assert.equal(await row.locator(".cost-model").textContent(), "· CPC US$0,25");
  assert.equal(await page.inputValue("#f-cost_model"), "none", "the form is reset");
  assert.equal(await page.isVisible("#f-cost_value"), false);
  const slug = await row.getAttribute("data-slug");
  const link = (await (await fetch(`${base}/api/links`, { headers: auth })).json()).data.find((l) => l.slug === slug);
  assert.equal(link.cost_model, "cpc");
  assert.equal(link.cost_value, 0.25);

  await page.goto(`${base}/dashboard`);
  await page.waitForSelector("#profit-today");
  const shown = async () => Object.fromEntries(await Promise.all(["cost", "revenue", "profit"].map(async (k) => [k, amount(await page.textContent(`#${k}-today`))])));
  const before = await shown();
  const api0 = await summary();
  assert.deepEqual(before, { cost: api0.costToday, revenue: api0.revenueToday, profit: api0.profitToday });

  // Four visitors (two desktop, two phones), one of whom converts for 3.
  const agents = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Paid/1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15 Paid/2",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Paid/3",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36 Paid/4"];
  const clickids = [];
  for (const ua of agents) {
    const res = await fetch(`${base}/go/${slug}?sub_id=paid-ads`, { redirect: "manual", headers: { "User-Agent": ua } });
    assert.equal(res.status, 302);
    clickids.push(new URL(res.headers.get("location")).searchParams.get("c"));
  }
  const secret = new URL(me.postback_url).searchParams.get("secret");
  const pb = await fetch(`${base}/api/postback/conversion?clickid=${clickids[2]}&payout=3&status=approved&secret=${secret}`);
  assert.equal(pb.status, 200);

  // The dashboard refreshes itself: cost +1.00, revenue +3.00, profit +2.00.
  const cents = (n) => Math.round(n * 100);
  await waitFor("the money of the paid clicks on the dashboard", async () => {
    const now = await shown();
    return cents(now.cost - before.cost) === 100 && cents(now.revenue - before.revenue) === 300 && cents(now.profit - before.profit) === 200;
  });
  // Exactly the API's summary, in the user's currency as the page formats it.
  const s = await summary();
  const format = (v) => page.evaluate(([v, c]) => new Intl.NumberFormat("id-ID", { style: "currency", currency: c }).format(v), [v, me.currency]);
  assert.equal(await page.textContent("#cost-today"), await format(s.costToday));
  assert.equal(await page.textContent("#revenue-today"), await format(s.revenueToday));
  assert.equal(await page.textContent("#profit-today"), await format(s.profitToday));
  assert.equal(await page.textContent("#cost-today >> xpath=preceding-sibling::div"), "Biaya hari ini");
  assert.equal(await page.textContent("#revenue-today >> xpath=preceding-sibling::div"), "Pendapatan hari ini");
  assert.equal(await page.textContent("#profit-today >> xpath=preceding-sibling::div"), "Laba hari ini");
  assert.equal(await page.getAttribute("#profit-today", "class"), "value", "a profit is not red");
  // The sub_id report: cost, profit, ROI % and EPC of the four clicks.
  const cell = (column) => page.textContent(`#sub-report tr:has(td:text-is('paid-ads')) td:nth-child(${column})`);
  const headers = await page.$$eval("#sub-report th", (ths) => ths.map((th) => th.textContent));
  const col = (label) => headers.indexOf(label) + 1;
  assert.equal(await cell(col("Klik")), "4");
  assert.equal(await cell(col("Biaya")), "US$1,00");
  assert.equal(await cell(col("Laba")), "US$2,00");
  assert.equal(await cell(col("ROI %")), "200.00");
  assert.equal(await cell(col("EPC")), "US$0,75");
  await shot("money-dashboard");

  // The link's routing page: its stats carry cost, profit and ROI % too.
  await page.goto(`${base}/links?id=${link.id}`);
  await page.waitForSelector("#routing-stats tbody tr td:not(.empty)");
  const statsHeaders = await page.$$eval("#routing-stats th", (ths) => ths.map((th) => th.textContent));
  for (const label of ["Biaya", "Laba", "ROI %"]) assert.ok(statsHeaders.includes(label), statsHeaders.join(", "));
  const stat = (label) => page.textContent(`#routing-stats tbody tr:first-child td:nth-child(${statsHeaders.indexOf(label) + 1})`);
  assert.equal(await stat("Biaya"), "US$1,00");
  assert.equal(await stat("Laba"), "US$2,00");
  assert.equal(await stat("ROI %"), "200.00");

  // Edited to take the cost from the click: the help on &cost= shows, the cost per click hides.
  await page.goto(`${base}/links`);
  const edit = page.locator(`[data-slug='${slug}']`);
  await edit.locator("button:text-is('Ubah')").click();
  assert.equal(await edit.locator("#f-cost_model").inputValue(), "cpc");
  assert.equal(await edit.locator("#f-cost_value").inputValue(), "0.25");
  assert.equal(await edit.locator(".cost-help").isVisible(), false);
  await edit.locator("#f-cost_model").selectOption("param");
  assert.match(await edit.locator(".cost-help").textContent(), /&cost=\{/);
  assert.equal(await edit.locator(".cost-help").isVisible(), true);
  assert.equal(await edit.locator("#f-cost_value").isVisible(), false);
  await edit.locator("button[type=submit]").click();
  await page.waitForSelector(`[data-slug='${slug}'] .cost-model:text-is('· biaya dari URL')`);

  // A source that paid more than all of today's profit: the profit turns red.
  const loss = Math.ceil((await summary()).profitToday) + 1;
  assert.ok(loss <= 1000, `a click costs at most 1000, not ${loss}`);
  const paid = await fetch(`${base}/go/${slug}?cost=${loss}`, { redirect: "manual", headers: { "User-Agent": `${agents[0]} Loss` } });
  assert.equal(paid.status, 302);
  await page.goto(`${base}/dashboard`);
  await page.waitForSelector("#profit-today.negative");
  assert.ok((await summary()).profitToday < 0);
  assert.match(await page.textContent("#profit-today"), /^[-\u2212]/);
  assert.equal(await page.evaluate(() => getComputedStyle(document.getElementById("profit-today")).color), "rgb(198, 40, 40)");

  // A bad cost per click is named by its field.
  await page.goto(`${base}/links`);
  await edit.locator("button:text-is('Ubah')").click();
  await edit.locator("#f-cost_model").selectOption("cpc");
  assert.equal(await edit.locator("#f-cost_value").isVisible(), true);
  await edit.locator("#f-cost_value").fill("-1");
  await edit.locator("button[type=submit]").click();
  await edit.locator("#e-cost_value:not(:empty)").waitFor();
  assert.match(await edit.locator("#e-cost_value").textContent(), /1000/);
  assert.equal(await edit.locator("#e-url").textContent(), "", "only the bad field is marked");
  await shot("money-link-error");

  // On a phone the wider tables scroll inside their cards; the page does not.
  await page.setViewportSize({ width: 375, height: 800 });
  try {
    await page.goto(`${base}/dashboard`);
    await page.waitForSelector("#sub-report td");
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375 + 1, `the dashboard is ${width}px wide on a 375px phone`);
    await shot("money-phone");
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
});

test("the costs and imports page: a conversion import's dry run saves nothing, costs are set and deleted by form, a bad CSV is named by line, and refused postbacks show in the log", async () => {
  // Still in Indonesian.
  const token = await page.evaluate(() => localStorage.getItem("apextrack.token"));
  const auth = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  const created = await fetch(`${base}/api/links`, { method: "POST", headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "Network import", url: `${landing}?c={clickid}` }) });
  assert.equal(created.status, 201);
  const link = (await created.json()).data;
  const clickids = [];
  for (let n = 1; n <= 3; n++) {
    const res = await fetch(`${base}/go/${link.slug}`, { redirect: "manual",
      headers: { "User-Agent": `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Importer/${n}` } });
    assert.equal(res.status, 302);
    clickids.push(new URL(res.headers.get("location")).searchParams.get("c"));
  }
  assert.equal(new Set(clickids).size, 3, clickids.join(", "));
  const summary = async () => (await (await fetch(`${base}/api/dashboard-data`, { headers: auth })).json()).summary;
  const before = await summary();

  // Reached from the menu, and again by its address (a reload).
  await page.goto(`${base}/dashboard`);
  await page.click("nav a[href='/money']:text-is('Biaya & impor')");
  await page.waitForURL(`${base}/money`);
  await page.waitForSelector("nav a[href='/money'].active");
  await page.reload();
  await page.waitForSelector("nav a[href='/money'].active");
  await page.waitForSelector("#postback-log table");
  assert.equal(await page.getAttribute("#import-csv", "placeholder"), "clickid,status,payout,txid");
  assert.equal(await page.isDisabled("#import-run"), true, "no import before a dry run");

  // Two known clicks approved, one clickid nobody has, one bad status.
  const csv = ["clickid,status,payout,txid", `${clickids[0]},approved,2.50,net-1`, `${clickids[1]},approved,1,net-2`,
    "no-such-click,approved,5,net-3", `${clickids[2]},paid,3,net-4`].join("\n");
  await page.fill("#import-csv", csv);
  await page.click("#import-dry-run");
  await page.waitForSelector("#import-mode[data-dry-run='true']");
  assert.match(await page.textContent("#import-mode"), /^Hasil uji coba: belum ada yang disimpan/);
  const counts = async () => Object.fromEntries(await Promise.all(["created", "updated", "unchanged", "unknown_clickid", "invalid"]
    .map(async (k) => [k, await page.textContent(`#count-${k}`)])));
  assert.deepEqual(await counts(), { created: "2", updated: "0", unchanged: "0", unknown_clickid: "1", invalid: "1" });
  const failed = await page.$$eval("#import-rows tbody tr", (trs) => trs.map((tr) => [...tr.children].slice(0, 3).map((td) => td.textContent)));
  assert.deepEqual(failed, [["4", "no-such-click", "clickid tidak dikenal"], ["5", clickids[2], "Tidak valid"]]);
  assert.equal((await summary()).totalLeads, before.totalLeads, "a dry run saves no lead");
  await shot("import-dry-run");

  // The import is for the text the dry run checked: an edit asks for a new dry run.
  assert.equal(await page.isDisabled("#import-run"), false);
  await page.fill("#import-csv", `${csv}\n${clickids[2]},approved,3,net-5`);
  assert.equal(await page.isDisabled("#import-run"), true, "an edited text needs its own dry run");
  await page.fill("#import-csv", csv);
  assert.equal(await page.isDisabled("#import-run"), false);
  await page.click("#import-run");
  await page.waitForSelector("#import-mode[data-dry-run='false']");
  assert.match(await page.textContent("#import-mode"), /^Diimpor:/);
  assert.deepEqual(await counts(), { created: "2", updated: "0", unchanged: "0", unknown_clickid: "1", invalid: "1" });
  assert.equal(await page.isDisabled("#import-run"), true, "imported once: the next import needs a dry run again");
  const after = await waitFor("the 2 imported leads on the dashboard", async () => {
    const s = await summary();
    return s.totalLeads === before.totalLeads + 2 ? s : null;
  });
  assert.equal(Math.round((after.totalPayout - before.totalPayout) * 100), 350);

  // A cost entry for yesterday (costs are set for days that are over) by the
  // form: in the list, and the link's cost in the report.
  const today = (await (await fetch(`${base}/api/reports?group_by=day`, { headers: auth })).json()).today;
  const yesterday = new Date(Date.parse(`${today}T00:00:00Z`) - 86400000).toISOString().slice(0, 10);
  assert.equal(await page.inputValue("#f-day"), yesterday, "the day is yesterday unless changed");
  const linkCost = async () => (await (await fetch(`${base}/api/reports?group_by=link&from=${yesterday}&to=${yesterday}`, { headers: auth })).json())
    .data.find((r) => r.link === link.id)?.cost ?? 0;
  assert.equal(await linkCost(), 0);
  await page.selectOption("#f-link_id", String(link.id));
  await page.fill("#f-amount", "4");
  await page.click("#cost-form button[type=submit]");
  const entry = page.locator("#costs-list tbody tr:has(td:text-is('Network import'))");
  await entry.waitFor();
  assert.deepEqual(await entry.locator("td").allTextContents(), [yesterday, "Network import", "seluruh link", "US$4,00", "Hapus"]);
  await waitFor("the cost of 4 in the report by link", async () => (await linkCost()) === 4);
  await entry.locator("button[data-cost]").click();
  await entry.waitFor({ state: "detached" });
  assert.equal(await page.locator("#costs-list tbody tr:has(td:text-is('Network import'))").count(), 0);
  await waitFor("the cost gone from the report", async () => (await linkCost()) === 0);

  // A bad amount on the form is named by its field.
  await page.fill("#f-amount", "lots");
  await page.click("#cost-form button[type=submit]");
  await page.waitForSelector("#e-amount:not(:empty)");
  assert.equal(await page.textContent("#e-day"), "", "only the bad field is marked");

  // A CSV file with a bad third line: nothing is imported, and the line is named.
  const file = ["day,link_id,sub_id,amount", `${yesterday},${link.id},,1.50`, `${yesterday},${link.id},tiktok,lots`].join("\n");
  await page.setInputFiles("#costs-file", { name: "costs.csv", mimeType: "text/csv", buffer: Buffer.from(file) });
  await page.click("#costs-upload");
  const lineError = await (await page.waitForSelector("#costs-upload-errors li")).textContent();
  assert.match(lineError, /^Baris 3: /);
  const listed = (await (await fetch(`${base}/api/costs?from=${yesterday}&to=${yesterday}`, { headers: auth })).json()).data;
  assert.equal(listed.filter((c) => c.link_id === link.id).length, 0, "the whole file or nothing");
  // Fixed, it is imported whole.
  await page.setInputFiles("#costs-file", { name: "costs.csv", mimeType: "text/csv",
    buffer: Buffer.from(file.replace("tiktok,lots", "tiktok,0.75")) });
  await page.click("#costs-upload");
  assert.equal(await (await page.waitForSelector("#costs-imported")).textContent(), "2 entri diimpor");
  await page.waitForSelector("#costs-list tbody tr:has(td:text-is('tiktok'))");

  // A postback with a wrong secret: refused, and shown in the log as such.
  const refused = await fetch(`${base}/api/postback/conversion?clickid=${clickids[2]}&status=approved&secret=1-wrong`);
  assert.equal(refused.status, 403);
  await page.click("#postbacks-refresh");
  const newest = page.locator("#postback-log tbody tr:first-child");
  await page.waitForSelector("#postback-log tbody tr:first-child .outcome-bad:text-is('bad_secret')");
  const [time, outcome, status, params, ip] = await newest.locator("td").allTextContents();
  assert.ok(time, "a time");
  assert.equal(outcome, "bad_secret");
  assert.equal(status, "403");
  assert.equal(params, `clickid=${clickids[2]}`, "a refusal keeps only the clickid");
  assert.equal(ip, "127.0.0.1");
  assert.equal(await page.isHidden("#postbacks-more"), true, "fewer than 50: nothing more to load");

  await page.setViewportSize({ width: 375, height: 800 });
  try {
    await page.waitForFunction(() => window.innerWidth === 375);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375 + 1, `the costs and imports page is ${width}px wide on a 375px phone`);
    await shot("money-page-phone");
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
});

test("the reports page: grouped by link, drilled down by clicking to destination, sub_id and country with the filters as chips, sorted by a column, kept in the address, and downloaded as the CSV of the rows shown", async () => {
  // Still in Indonesian.
  const token = await page.evaluate(() => localStorage.getItem("apextrack.token"));
  const auth = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  const created = await fetch(`${base}/api/links`, { method: "POST", headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "Report drill", url: `${landing}?c={clickid}&s={sub_id}`, payout: "2", cost_model: "cpc", cost_value: 0.1 }) });
  assert.equal(created.status, 201);
  const link = (await created.json()).data;
  const destination = (await (await fetch(`${base}/api/links/${link.id}/routing`, { headers: auth })).json()).data.destinations[0];
  // Three phones with sub_id alpha, two desktops with beta; one of the phones converts for 2.
  const phone = (n) => `Mozilla/5.0 (Linux; Android 14; Pixel ${n}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36 Drill/${n}`;
  const desktop = (n) => `Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Drill/${n}`;
  const visit = async (subId, ua) => {
    const res = await fetch(`${base}/go/${link.slug}?sub_id=${subId}`, { redirect: "manual", headers: { "User-Agent": ua } });
    assert.equal(res.status, 302);
    return new URL(res.headers.get("location")).searchParams.get("c");
  };
  const alpha = [];
  for (const n of [1, 2, 3]) alpha.push(await visit("alpha", phone(n)));
  for (const n of [4, 5]) await visit("beta", desktop(n));
  const me = await (await fetch(`${base}/api/user`, { headers: auth })).json();
  const secret = new URL(me.postback_url).searchParams.get("secret");
  const pb = await fetch(`${base}/api/postback/conversion?clickid=${alpha[0]}&payout=2&status=approved&secret=${secret}`);
  assert.equal(pb.status, 200);
  const report = async (query) => (await fetch(`${base}/api/reports?${query}`, { headers: auth })).json();
  const today = (await report("group_by=day")).today;
  const weekAgo = new Date(Date.parse(`${today}T00:00:00Z`) - 6 * 86400000).toISOString().slice(0, 10);
  await waitFor("the link's clicks and lead in the reports", async () => {
    const byLink = (await report(`group_by=link&from=${today}&to=${today}`)).data.find((r) => r.link === link.id);
    const bySub = (await report(`group_by=sub_id&link_id=${link.id}`)).data;
    return byLink?.clicks === 5 && byLink.approved_leads === 1 && bySub.find((r) => r.sub_id === "alpha")?.clicks === 3;
  });

  /** The report table as shown: header labels, rows and the totals row, each row keyed by its column's label. */
  const shown = async (group) => {
    await page.waitForSelector(`#report-table[data-group='${group}'] table`);
    return page.$eval("#report-table table", (table) => {
      const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
      const read = (tr) => Object.fromEntries([...tr.children].map((td, i) => [heads[i], td.textContent]));
      return { heads, rows: [...table.querySelectorAll("tbody tr")].map(read), total: [...table.querySelectorAll("tfoot tr")].map(read)[0] };
    });
  };
  const query = () => Object.fromEntries(new URL(page.url()).searchParams);
  const chips = () => page.$$eval("#report-filters .chip", (cs) => cs.map((c) => [c.dataset.filter, c.querySelector(".chip-text").textContent]));
  const format = (v) => page.evaluate(([v, c]) => new Intl.NumberFormat("id-ID", { style: "currency", currency: c }).format(v), [v, me.currency]);

  // From the menu: the last 7 days by day, written into the address.
  await page.goto(`${base}/dashboard`);
  await page.click("nav a[href='/reports']:text-is('Laporan')");
  await page.waitForURL(`${base}/reports?group_by=day&from=${weekAgo}&to=${today}`);
  await page.waitForSelector("nav a[href='/reports'].active");
  assert.equal(await page.inputValue("#report-from"), weekAgo);
  assert.equal(await page.inputValue("#report-to"), today);
  const byDay = await shown("day");
  assert.deepEqual(byDay.heads, ["Tanggal", "Klik", "Unik", "Konversi", "Disetujui", "CR %", "Pendapatan", "Biaya", "Laba", "ROI %", "EPC", "CPC"]);
  assert.ok(byDay.rows.some((r) => r.Tanggal === today), JSON.stringify(byDay.rows));
  assert.deepEqual(await page.$$eval("#report-group option", (os) => os.map((o) => o.textContent)),
    ["Tanggal", "Link", "Tujuan", "sub_id", "Negara", "Perangkat", "Sistem operasi", "Jam"]);

  // By link; a reload keeps it.
  await page.selectOption("#report-group", "link");
  await page.waitForURL(`${base}/reports?group_by=link&from=${weekAgo}&to=${today}`);
  await shown("link");
  await page.reload();
  assert.equal(await page.inputValue("#report-group"), "link");
  assert.equal(await page.inputValue("#report-from"), weekAgo);
  const byLink = await shown("link");
  const mine = byLink.rows.find((r) => r.Link === "Report drill");
  assert.ok(mine, JSON.stringify(byLink.rows));
  assert.equal(mine.Klik, "5");
  assert.equal(mine.Biaya, await format(0.5));
  assert.match(mine.Biaya, /0,50/);
  assert.deepEqual([mine.Konversi, mine.Disetujui, mine["CR %"], mine.Pendapatan, mine.Laba, mine["ROI %"], mine.EPC, mine.CPC],
    ["1", "1", "20.00", await format(2), await format(1.5), "300.00", await format(0.4), await format(0.1)]);
  // The totals: sums of the rows.
  assert.equal(byLink.total.Link, "Total");
  assert.equal(Number(byLink.total.Klik), byLink.rows.reduce((a, r) => a + Number(r.Klik), 0));

  // Drill-down: the link → by destination, narrowed to the link.
  await page.click("#report-table a.drill:text-is('Report drill')");
  await page.waitForURL((url) => url.searchParams.get("group_by") === "destination");
  assert.deepEqual(query(), { group_by: "destination", from: weekAgo, to: today, link_id: String(link.id) });
  const byDestination = await shown("destination");
  assert.deepEqual(await chips(), [["link_id", "Link: Report drill"]]);
  assert.deepEqual(byDestination.rows.map((r) => [r.Tujuan, r.Klik]), [[destination.name, "5"]]);
  // The destination → by sub_id.
  await page.click(`#report-table a.drill:text-is('${destination.name}')`);
  await page.waitForURL((url) => url.searchParams.get("group_by") === "sub_id");
  const bySub = await shown("sub_id");
  assert.deepEqual(query(), { group_by: "sub_id", from: weekAgo, to: today, link_id: String(link.id), destination_id: String(destination.id) });
  assert.deepEqual(bySub.rows.map((r) => [r.sub_id, r.Klik]), [["alpha", "3"], ["beta", "2"]]);
  assert.deepEqual([bySub.total.Klik, bySub.total.Konversi, bySub.total.Biaya], ["5", "1", await format(0.5)]);
  assert.equal(bySub.total["ROI %"], "300.00", "recomputed from the sums");

  // Sorting by a header: ascending, then back to descending.
  const order = () => page.$$eval("#report-table tbody tr td:first-child", (tds) => tds.map((td) => td.textContent));
  await page.click("#report-table th[data-key='clicks']");
  assert.deepEqual(await order(), ["beta", "alpha"]);
  assert.equal(await page.getAttribute("#report-table th[data-key='clicks']", "aria-sort"), "ascending");
  await page.click("#report-table th[data-key='clicks']");
  assert.deepEqual(await order(), ["alpha", "beta"]);
  assert.equal(await page.getAttribute("#report-table th[data-key='clicks']", "aria-sort"), "descending");

  // The CSV: the same query, so exactly the rows shown.
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#report-csv")]);
  assert.equal(download.suggestedFilename(), `apextrack-sub_id-${weekAgo}-${today}.csv`);
  const lines = readFileSync(await download.path(), "utf8").trim().split("\n");
  assert.match(lines[0], /^sub_id,clicks,/);
  const csvRows = lines.slice(1).map((line) => line.split(","));
  assert.deepEqual(csvRows.map((cells) => [cells[0], cells[1]]), bySub.rows.map((r) => [r.sub_id, r.Klik]));
  const cost = lines[0].split(",").indexOf("cost");
  assert.deepEqual(csvRows.map((cells) => cells[cost]), ["0.30", "0.20"]);

  // alpha → by country, narrowed to the link, its destination and alpha.
  await page.click("#report-table a.drill:text-is('alpha')");
  await page.waitForURL((url) => url.searchParams.get("group_by") === "country");
  const byCountry = await shown("country");
  assert.deepEqual(await chips(), [["link_id", "Link: Report drill"], ["destination_id", `Tujuan: ${destination.name}`], ["sub_id", "sub_id: alpha"]]);
  assert.equal(byCountry.total.Klik, "3");
  assert.equal(byCountry.rows.reduce((a, r) => a + Number(r.Klik), 0), 3);
  await shot("reports-drilldown");
  // Back: the sub_id view again; forward: the country view.
  await page.goBack();
  await shown("sub_id");
  assert.equal((await chips()).length, 2);
  await page.goForward();
  await shown("country");
  assert.equal((await chips()).length, 3);

  // The sub_id chip removed: the link's 5 clicks again, still by country.
  await page.click("#report-filters .chip[data-filter='sub_id'] .chip-remove");
  await page.waitForURL((url) => !url.searchParams.has("sub_id"));
  const withoutSub = await shown("country");
  assert.equal(query().group_by, "country");
  assert.deepEqual((await chips()).map(([f]) => f), ["link_id", "destination_id"]);
  assert.equal(withoutSub.total.Klik, "5");

  // On a phone the table scrolls inside its card; the page does not.
  await page.setViewportSize({ width: 375, height: 800 });
  try {
    await page.waitForFunction(() => window.innerWidth === 375);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375 + 1, `the reports page is ${width}px wide on a 375px phone`);
    const box = await page.$eval("#report-table", (el) => [el.scrollWidth, el.clientWidth]);
    assert.ok(box[0] > box[1], `the table scrolls inside its card: ${box}`);
    await shot("reports-phone");
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
});

test("2FA is bound with a code from the shown secret, and login then asks for it", async () => {
  await page.goto(`${base}/settings`);
  const secret = (await page.textContent("#twofa-secret")).trim();
  assert.match(secret, /^[A-Z2-7]{32}$/);
  await page.fill("#twofa #f-otpCode", totp(secret));
  await page.click("#twofa button[type=submit]");
  await page.waitForSelector("#recovery-codes li");
  assert.equal(await page.locator("#recovery-codes li").count(), 8);
  await shot("4-twofa-bound");

  await page.click("#logout");
  await page.waitForURL(`${base}/login`);
  assert.equal(await page.evaluate(() => localStorage.getItem("apextrack.token")), null, "logout clears the token");
  await page.fill("#f-email", EMAIL);
  await page.fill("#f-password", PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForSelector("#f-otp_code:visible");
  // The next time step: the code used to bind cannot be replayed.
  await page.fill("#f-otp_code", totp(secret, 1));
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/dashboard`);
  await shot("5-logged-in-with-2fa");
});

test("switching the language switches the whole UI", async () => {
  await page.goto(`${base}/settings`);
  assert.equal(await page.textContent("nav a[href='/settings']"), "Pengaturan");
  await page.selectOption("#f-language", "en");
  await page.click("form:has(#f-language) button[type=submit]");
  await page.waitForSelector("nav a[href='/settings']:text-is('Settings')");
  await page.goto(`${base}/dashboard`);
  await page.waitForSelector("text=Clicks today");
  await shot("6-english");
});

test("an API key is created with the mailed code and its secret shown once", async () => {
  await page.goto(`${base}/settings`);
  const before = mailsTo(EMAIL);
  await page.click("#email-code");
  const code = await mailedCode(EMAIL, before);
  await page.fill("#f-apiName", "Reporting");
  await page.fill("#f-emailOtpCode", code);
  await page.click("form:has(#f-apiName) button[type=submit]");
  const secret = await (await page.waitForSelector("#secret-key")).textContent();
  assert.match(secret, /^[0-9a-f]{64}$/);
  await page.waitForSelector("td:has-text('Reporting')");
  await shot("7-api-key");
});

test("the pages carry strict security headers and work on a phone-sized screen", async () => {
  const res = await fetch(`${base}/dashboard`);
  const csp = res.headers.get("content-security-policy");
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(res.headers.get("x-frame-options"), "DENY");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  await page.setViewportSize({ width: 375, height: 800 });
  await page.goto(`${base}/dashboard`);
  await page.waitForSelector("#live-clicks");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  await shot("8-phone");
});

/** A new user signed up and verified through the UI, then logged in on `page` (whoever was logged in is logged out): their token. */
async function signUp(name, email) {
  await page.goto(`${base}/login`);
  await page.evaluate(() => localStorage.clear());
  await page.goto(`${base}/register`);
  await page.fill("#f-name", name);
  await page.fill("#f-email", email);
  await page.fill("#f-password", PASSWORD);
  await page.fill("#f-password_confirmation", PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/verify`);
  await page.fill("#f-code", await mailedCode(email));
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/dashboard`);
  return page.evaluate(() => localStorage.getItem("apextrack.token"));
}

test("notifications: Telegram and a webhook are set up in the settings with errors by field, a test shows Telegram's 401 and a signed webhook, a failed delivery shows, and the token is never shown again", async () => {
  await page.setViewportSize({ width: 1280, height: 900 });
  const token = await signUp("Notify User", "notify-user@example.com");
  const auth = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  const stored = async () => (await fetch(`${base}/api/notifications`, { headers: auth })).json();
  const isPut = (r) => r.method() === "PUT" && new URL(r.url()).pathname === "/api/notifications";
  /** Saves the form: the body the page sent. */
  const save = async () => {
    const [request] = await Promise.all([page.waitForRequest(isPut), page.waitForResponse((r) => isPut(r.request())), page.click("#notify-save")]);
    await page.waitForSelector("#notify-save:enabled"); // the answer is shown
    return request.postDataJSON();
  };
  /** Ticks exactly `names` among a channel's events. */
  const tick = async (channel, names) => {
    for (const box of await page.$$(`input[id^='f-${channel}-events-']`)) await box.setChecked(names.includes(await box.getAttribute("value")));
  };
  /** Presses "send test": each channel's result as shown, and what the recorder got meanwhile. */
  const sendTest = async (channels = ["telegram", "webhook"]) => {
    const from = received.length;
    await page.click("#notify-test");
    for (const c of channels) await page.waitForSelector(`#notify-test-results li[data-channel='${c}']`);
    const shown = await page.$$eval("#notify-test-results li", (lis) => lis.map((li) => [li.dataset.channel,
      { ok: li.dataset.ok, text: li.textContent, color: getComputedStyle(li).color }]));
    return { shown: Object.fromEntries(shown), got: received.slice(from) };
  };
  const sentTo = (got, bot) => got.filter((r) => r.method === "POST" && decodeURIComponent(r.path) === `/tg/bot${bot}/sendMessage`);
  /** The webhook's POST, checked against its X-Apextrack-Signature with `secret`. */
  const signed = (r, secret) => {
    const [, ts, v1] = String(r.headers["x-apextrack-signature"]).match(/^t=(\d+),v1=([0-9a-f]{64})$/) || [];
    assert.ok(ts, `a signature header: ${r.headers["x-apextrack-signature"]}`);
    assert.equal(createHmac("sha256", secret).update(`${ts}.${r.raw}`).digest("hex"), v1, "the signature verifies with the shown secret");
    return r.body;
  };

  await page.goto(`${base}/settings`);
  await page.waitForSelector("#notifications #notify-form");
  assert.equal(await page.textContent("#notifications h2"), "Notifikasi");
  const howto = await page.textContent("#telegram-howto");
  for (const words of ["@BotFather", "/newbot", "https://api.telegram.org/bot<token>/getUpdates", '"chat":{"id":']) assert.ok(howto.includes(words), howto);
  assert.equal(await page.textContent("label:has(#f-telegram-events-conversion)"), "Konversi");
  assert.equal(await page.textContent("label:has(#f-webhook-events-destination_down)"), "Tujuan mati");
  assert.equal(await page.locator("#f-digest_hour option").count(), 24);
  assert.equal(await page.$("#telegram-off"), null, "nothing to turn off yet");

  // A token that is no token and a webhook URL that is not http(s): each named by its field, nothing saved.
  await page.fill("#f-telegram-bot_token", "abc");
  await page.fill("#f-telegram-chat_id", "-100123456");
  await page.fill("#f-webhook-url", "ftp://x");
  await save();
  assert.notEqual(await page.textContent("#e-telegram-bot_token"), "");
  assert.notEqual(await page.textContent("#e-webhook-url"), "");
  assert.equal(await page.textContent("#e-telegram-chat_id"), "", "only the bad fields are marked");
  let now = await stored();
  assert.deepEqual([now.telegram, now.webhook], [null, null], "nothing is saved");
  await shot("notifications-errors");

  // The bad token, the recorder's webhook, events per channel; the stop-loss event without an amount is refused by the amount.
  await page.fill("#f-telegram-bot_token", TG_BAD);
  await page.fill("#f-webhook-url", hook);
  await tick("telegram", ["conversion", "daily_digest", "stop_loss"]);
  await tick("webhook", ["conversion", "postback_rejected"]);
  await page.selectOption("#f-digest_hour", "9");
  await save();
  assert.notEqual(await page.textContent("#e-stop_loss_amount"), "");
  assert.equal(await page.textContent("#e-telegram-bot_token"), "", "errors of an earlier try are gone");
  assert.equal(await page.textContent("#e-webhook-url"), "");
  await page.fill("#f-stop_loss_amount", "12,50");
  const body = await save();
  assert.deepEqual(body, { digest_hour: 9, stop_loss_amount: "12.50",
    telegram: { bot_token: TG_BAD, chat_id: "-100123456", events: ["conversion", "daily_digest", "stop_loss"] },
    webhook: { url: hook, events: ["conversion", "postback_rejected"] } });
  // The webhook's secret, shown this once.
  const secret = await (await page.waitForSelector("#new-webhook-secret #webhook-secret")).textContent();
  assert.match(secret, /^whsec_[^…]+$/);
  assert.match(await page.textContent("#new-webhook-secret"), /tidak akan ditampilkan lagi/);
  assert.equal(await page.textContent("#e-stop_loss_amount"), "");
  now = await stored();
  assert.equal(now.telegram.chat_id, "-100123456");
  assert.deepEqual([...now.telegram.events].sort(), ["conversion", "daily_digest", "stop_loss"]);
  assert.deepEqual([now.webhook.url, [...now.webhook.events].sort()], [hook, ["conversion", "postback_rejected"]]);
  assert.deepEqual([now.digest_hour, now.stop_loss_amount], [9, 12.5]);
  assert.ok(now.telegram.bot_token.includes("…") && !now.telegram.bot_token.includes(TG_BAD.split(":")[1]), now.telegram.bot_token);
  assert.equal(await page.inputValue("#f-telegram-bot_token"), "", "the token does not stay in its field");
  assert.equal(await page.getAttribute("#f-telegram-bot_token", "placeholder"), now.telegram.bot_token);
  assert.equal(await page.inputValue("#f-stop_loss_amount"), "12.5");

  // The test: Telegram refuses the bad token (401, shown as a failure); the webhook takes a signed "test".
  let { shown, got } = await sendTest();
  assert.equal(shown.telegram.ok, "false");
  assert.match(shown.telegram.text, /^Telegram: gagal · 401/);
  assert.equal(shown.telegram.color, "rgb(198, 40, 40)", "a failure is red");
  assert.equal(shown.webhook.ok, "true");
  assert.match(shown.webhook.text, /^Webhook: berhasil · 200/);
  const [asked] = sentTo(got, TG_BAD);
  assert.ok(asked, JSON.stringify(got.map((r) => r.path)));
  assert.equal(String(asked.body.chat_id), "-100123456");
  assert.ok(asked.body.text, "a message");
  const hooked = got.filter((r) => r.method === "POST" && r.path === "/hook");
  assert.equal(hooked.length, 1);
  assert.equal(signed(hooked[0], secret).event, "test");

  // A real conversion: the webhook gets it signed; Telegram's refusal becomes the channel's last error, shown on the page.
  const created = await fetch(`${base}/api/links`, { method: "POST", headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "Notified", url: `${landing}?c={clickid}` }) });
  assert.equal(created.status, 201);
  const visit = await fetch(`${base}/go/${(await created.json()).data.slug}`, { redirect: "manual",
    headers: { "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Notify/1" } });
  const clickid = new URL(visit.headers.get("location")).searchParams.get("c");
  const me = await (await fetch(`${base}/api/user`, { headers: auth })).json();
  const pb = await fetch(`${base}/api/postback/conversion?clickid=${clickid}&payout=1&status=approved&secret=${new URL(me.postback_url).searchParams.get("secret")}`);
  assert.equal(pb.status, 200);
  const conversion = await waitFor("the conversion on the webhook", () => received.find((r) => r.path === "/hook" && r.body?.event === "conversion"), 30000);
  signed(conversion, secret);
  const failure = await waitFor("Telegram's refusal as its last error", async () => (await stored()).telegram.last_error, 30000);
  assert.match(failure.message, /401/);
  await page.reload();
  const last = await (await page.waitForSelector("#telegram-last-error .notice")).textContent();
  assert.ok(last.startsWith(`Pengiriman terakhir gagal: ${failure.message}`), last);
  assert.equal(await page.textContent("#webhook-last-error"), "");
  // Once only: after a reload the secret is masked.
  assert.equal(await page.$("#new-webhook-secret"), null);
  assert.equal(await page.textContent("#webhook-secret-masked"), (await stored()).webhook.secret);

  // The good token: both ok.
  await page.fill("#f-telegram-bot_token", TG_GOOD);
  assert.equal((await save()).telegram.bot_token, TG_GOOD);
  await page.waitForFunction(() => document.getElementById("f-telegram-bot_token").placeholder.startsWith("123456789:"));
  ({ shown, got } = await sendTest());
  assert.deepEqual([shown.telegram.ok, shown.webhook.ok], ["true", "true"]);
  assert.match(shown.telegram.text, /^Telegram: berhasil · 200/);
  assert.equal(String(sentTo(got, TG_GOOD)[0]?.body.chat_id), "-100123456");
  assert.equal(signed(got.find((r) => r.path === "/hook"), secret).event, "test");
  // Saved again with the token field empty: the stored token is kept, never sent back masked.
  assert.equal("bot_token" in (await save()).telegram, false);
  assert.ok((await stored()).telegram.bot_token.startsWith("123456789:"));

  // A new webhook secret, shown once again.
  await page.click("#webhook-rotate");
  const rotated = await (await page.waitForSelector(`#webhook-secret:not(:text-is('${secret}'))`)).textContent();
  assert.match(rotated, /^whsec_[^…]+$/);

  // Reloaded: the token field empty with the masked token as its placeholder, no whole token or secret in the page.
  await page.reload();
  await page.waitForSelector("#notify-form");
  now = await stored();
  assert.equal(await page.inputValue("#f-telegram-bot_token"), "");
  assert.equal(await page.getAttribute("#f-telegram-bot_token", "placeholder"), now.telegram.bot_token);
  const html = await page.content();
  for (const whole of [TG_GOOD, TG_BAD, TG_GOOD.split(":")[1], TG_BAD.split(":")[1], secret, rotated]) assert.ok(!html.includes(whole), `${whole} is not in the page`);
  await shot("notifications");

  // On a phone, nothing sticks out of the page.
  await page.setViewportSize({ width: 375, height: 800 });
  try {
    await page.waitForFunction(() => window.innerWidth === 375);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375 + 1, `the settings page is ${width}px wide on a 375px phone`);
    await page.locator("#notifications").screenshot({ path: join(SHOTS, "notifications-phone.png") });
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }

  // In English; the webhook turned off leaves Telegram alone.
  const en = await fetch(`${base}/api/users/language`, { method: "PATCH", headers: { ...auth, "Content-Type": "application/json" }, body: JSON.stringify({ language: "en" }) });
  assert.equal(en.status, 200);
  await page.reload();
  await page.waitForSelector("#notifications h2:text-is('Notifications')");
  assert.equal(await page.textContent("label:has(#f-telegram-events-conversion)"), "Conversions");
  assert.equal(await page.textContent("label[for='f-telegram-bot_token']"), "Bot token");
  assert.ok((await page.textContent("#telegram-howto")).includes("talk to @BotFather"));
  await page.click("#webhook-off");
  await page.waitForSelector("#webhook-state:text-is('Not set up.')");
  assert.equal(await page.inputValue("#f-webhook-url"), "");
  now = await stored();
  assert.equal(now.webhook, null);
  assert.ok(now.telegram, "Telegram stays");
  ({ shown } = await sendTest(["telegram"]));
  assert.deepEqual(Object.keys(shown), ["telegram"]);
  assert.match(shown.telegram.text, /^Telegram: ok · 200/);
});

test("the links page: 50 links a page with a counter, a search by name and sorting done by the server, its state kept in the address, the clicks column, and the cap on links shown by the form", async () => {
  await page.setViewportSize({ width: 1280, height: 900 });
  const token = await signUp("Links User", "links-user@example.com");
  const auth = { Authorization: `Bearer ${token}`, Accept: "application/json", "Content-Type": "application/json" };
  const create = (name) => fetch(`${base}/api/links`, { method: "POST", headers: auth, body: JSON.stringify({ name, url: `${landing}?c={clickid}` }) });
  // 120 campaigns and 3 summer links, 10 at a time.
  const names = [...Array(120)].map((_, i) => `Campaign ${String(i + 1).padStart(3, "0")}`).concat(["Summer sale", "Summer promo", "Summer deal"]);
  const made = {};
  for (let i = 0; i < names.length; i += 10) {
    await Promise.all(names.slice(i, i + 10).map(async (name) => {
      const res = await create(name);
      assert.equal(res.status, 201, name);
      made[name] = (await res.json()).data;
    }));
  }
  // Two visitors for Campaign 007.
  for (const n of [1, 2]) {
    const res = await fetch(`${base}/go/${made["Campaign 007"].slug}`, { redirect: "manual",
      headers: { "User-Agent": `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Paged/${n}` } });
    assert.equal(res.status, 302);
  }
  await waitFor("the clicks of Campaign 007", async () =>
    (await (await fetch(`${base}/api/links?sortBy=clicks&sort=desc&limit=1`, { headers: auth })).json()).data[0]?.clicks === 2);

  const shown = () => page.$$eval("#links-table tbody tr.link strong", (els) => els.map((el) => el.textContent));
  const range = (text) => page.waitForSelector(`#links-range:text-is('${text}')`);
  const query = () => Object.fromEntries(new URL(page.url()).searchParams);

  // The first page: the newest 50, the counter, no "previous".
  await page.goto(`${base}/links`);
  await range("1–50 dari 123");
  assert.equal((await shown()).length, 50);
  assert.equal(await page.isDisabled("#links-prev"), true);
  assert.deepEqual(await page.$$eval("#links-table thead th", (ths) => ths.map((th) => th.textContent)), ["Nama", "Dibuat", "Klik", ""]);
  await shot("links-paged");
  await page.click("#links-next");
  await range("51–100 dari 123");
  assert.equal((await shown()).length, 50);
  assert.deepEqual(query(), { page: "2" });
  await page.click("#links-next");
  await range("101–123 dari 123");
  assert.equal((await shown()).length, 23);
  assert.equal(await page.isDisabled("#links-next"), true);

  // A search on the server, typed: back to the first page, one request for the word rather than one a key.
  const searches = [];
  const seen = (r) => { const q = new URL(r.url()); if (q.pathname === "/api/links" && q.searchParams.has("search")) searches.push(q.searchParams.get("search")); };
  page.on("request", seen);
  await page.type("#links-search", "summer", { delay: 20 });
  await range("1–3 dari 3");
  page.off("request", seen);
  assert.deepEqual((await shown()).sort(), ["Summer deal", "Summer promo", "Summer sale"]);
  assert.ok(searches.length < 6 && searches.at(-1) === "summer", searches.join(", "));
  assert.deepEqual(query(), { search: "summer" });
  assert.equal(await page.isVisible("#links-next"), false, "one page: no pager");
  await page.fill("#links-search", "nothing like it");
  assert.equal(await (await page.waitForSelector("#links-table td.empty")).textContent(), "Tidak ada link yang namanya memuat “nothing like it”.");
  assert.equal(await page.textContent("#links-range"), "");
  await page.fill("#links-search", "");
  await range("1–50 dari 123");

  // Sorted by the server: by name ascending on the first click, descending on the second; by clicks, the most first.
  await page.click("#links-table th[data-key='name']");
  await page.waitForSelector("#links-table tbody tr.link:first-child strong:text-is('Campaign 001')");
  assert.equal(await page.getAttribute("#links-table th[data-key='name']", "aria-sort"), "ascending");
  assert.deepEqual(query(), { sortBy: "name", sort: "asc" });
  await page.click("#links-table th[data-key='name']");
  await page.waitForSelector("#links-table tbody tr.link:first-child strong:text-is('Summer sale')");
  assert.deepEqual((await shown()).slice(0, 4), ["Summer sale", "Summer promo", "Summer deal", "Campaign 120"]);
  await page.click("#links-next");
  await range("51–100 dari 123");
  assert.equal((await shown())[0], "Campaign 073");

  // A reload keeps page, sort and search.
  await page.reload();
  await range("51–100 dari 123");
  assert.equal((await shown())[0], "Campaign 073");
  assert.equal(await page.getAttribute("#links-table th[data-key='name']", "aria-sort"), "descending");
  await page.fill("#links-search", "SUMMER");
  await range("1–3 dari 3");
  assert.deepEqual(query(), { search: "SUMMER", sortBy: "name", sort: "desc" });
  await page.reload();
  await range("1–3 dari 3");
  assert.equal(await page.inputValue("#links-search"), "SUMMER");
  assert.deepEqual(await shown(), ["Summer sale", "Summer promo", "Summer deal"]);
  await page.goto(`${base}/links`);
  await range("1–50 dari 123");
  await page.click("#links-table th[data-key='clicks']");
  await page.waitForSelector("#links-table tbody tr.link:first-child strong:text-is('Campaign 007')");
  assert.equal(await page.textContent("#links-table tbody tr.link:first-child td.num"), "2");
  assert.equal(await page.getAttribute("#links-table th[data-key='clicks']", "aria-sort"), "descending");

  // At the cap (123 here): the form says so in its general error, in the API's words.
  const refused = await create("One too many");
  assert.equal(refused.status, 422);
  const [message] = (await refused.json()).errors.links;
  await page.fill("#f-name", "One too many");
  await page.fill("#f-url", landing);
  await page.click("#link-form button[type=submit]");
  assert.equal(await (await page.waitForSelector("#link-form > .error:not(:empty)")).textContent(), message);

  // In English, and on a phone nothing sticks out of the page.
  const en = await fetch(`${base}/api/users/language`, { method: "PATCH", headers: auth, body: JSON.stringify({ language: "en" }) });
  assert.equal(en.status, 200);
  await page.goto(`${base}/links?page=3`);
  await range("101–123 of 123");
  assert.equal(await page.getAttribute("#links-search", "placeholder"), "Search link names");
  await page.setViewportSize({ width: 375, height: 800 });
  try {
    await page.waitForFunction(() => window.innerWidth === 375);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375 + 1, `the links page is ${width}px wide on a 375px phone`);
    await shot("links-paged-phone");
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
});

test("an offer that monitoring found down carries a badge in the routing editor, and goes when it is up again", async () => {
  const token = await signUp("Monitor User", "monitor-user@example.com");
  const auth = { Authorization: `Bearer ${token}`, "Content-Type": "application/json", Accept: "application/json" };
  const dead = landing.replace("/landing", "/dead");
  const link = (await (await fetch(`${base}/api/links`, { method: "POST", headers: auth,
    body: JSON.stringify({ name: "Watched", url: `${landing}?c={clickid}` }) })).json()).data;
  const put = await fetch(`${base}/api/links/${link.id}/routing`, { method: "PUT", headers: auth, body: JSON.stringify({
    destinations: [{ name: "Live", url: `${landing}?c={clickid}` }, { name: "Dead", url: `${dead}?c={clickid}` }] }) });
  assert.equal(put.status, 200);
  // `apextrack monitor run-once` on the server's database (not spawnSync: the
  // pages it checks are served by this very process): two failures in a row make an offer down.
  const runOnce = () => new Promise((ok, fail) => {
    const child = spawn(BINARY, ["monitor", "run-once"], { stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, APEXTRACK_DATABASE_PATH: dbPath, APEXTRACK_MONITOR_ALLOW_PRIVATE: "true" } });
    let out = "", err = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (err += c));
    child.on("close", (code) => (code === 0 ? ok(JSON.parse(out)) : fail(new Error(`monitor run-once exited ${code}: ${err}`))));
  });
  await runOnce();
  const second = await runOnce();
  assert.ok(second.down.some((d) => d.destination.name === "Dead"), JSON.stringify(second));

  await page.goto(`${base}/links?id=${link.id}`);
  await page.waitForSelector("#d-1-monitor");
  assert.equal(await page.$("#d-0-monitor"), null, "the live offer has no badge");
  assert.match(await page.textContent("#d-1-monitor"), /mati|down/i);
  assert.match(await page.getAttribute("#d-1-monitor", "title"), /HTTP 503/);
  await page.screenshot({ path: join(SHOTS, "routing-down-badge.png") });

  // Its new URL answers: one run and the badge is gone.
  await page.fill("#d-1-url", `${landing}?c={clickid}&v=2`);
  await page.click("#save-routing");
  await page.waitForFunction(() => !document.querySelector("#d-1-monitor"));
  const third = await runOnce();
  assert.equal(third.down.length, 0, JSON.stringify(third));
  await page.reload();
  await page.waitForSelector("#d-1-url");
  assert.equal(await page.$("#d-1-monitor"), null);
});
