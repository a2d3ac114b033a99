// apextrack's web UI: a small client-side app over the JSON API.
import { t, setLang, lang } from "/assets/i18n.js";
import { lineChart } from "/assets/chart.js";

const TOKEN = "apextrack.token";
const app = document.getElementById("app");
let me = null;          // GET /api/user
let timers = [];        // cleared on every page change

// ---- helpers --------------------------------------------------------------

/** Builds an element: h("p", {class: "x", onclick}, "text", child...). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "value") node.value = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
  return node;
}

function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.hidden = true), 2500);
}

async function copy(text) {
  try { await navigator.clipboard.writeText(text); toast(t("copied")); }
  catch { toast(text); }
}

class ApiError extends Error {
  constructor(status, body) { super(body?.message || t("error")); this.status = status; this.body = body || {}; }
}

/** Calls the API with the stored token; throws ApiError for non-2xx. A `type` sends `body` as that text (e.g. "text/csv"). */
async function api(method, path, body, type) {
  const headers = { Accept: "application/json" };
  const token = localStorage.getItem(TOKEN);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = type || "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : type ? body : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401 && path !== "/api/login") {
    localStorage.removeItem(TOKEN);
    me = null;
    go("/login");
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** A form whose fields show the API's errors next to them (errors.*). */
function form(fields, submitLabel, onSubmit, extra = []) {
  const inputs = {};
  const errors = {};
  const general = h("div", { class: "error", role: "alert" });
  const rows = fields.map((f) => {
    const input = f.options
      ? h("select", { id: `f-${f.name}`, name: f.name }, f.options.map(([v, label]) => h("option", { value: v, selected: v === f.value }, label)))
      : h("input", { id: `f-${f.name}`, name: f.name, type: f.type || "text", value: f.value ?? "", autocomplete: f.autocomplete || "off",
          inputmode: f.inputmode, placeholder: f.placeholder, required: f.required });
    inputs[f.name] = input;
    errors[f.name] = h("div", { class: "error", id: `e-${f.name}` });
    return h("div", { class: "field" }, h("label", { for: `f-${f.name}` }, f.label), input, f.help ? h("div", { class: "muted" }, f.help) : null, errors[f.name]);
  });
  const button = h("button", { type: "submit" }, submitLabel);
  const node = h("form", { novalidate: true }, rows, extra, general, button);
  node.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    Object.values(errors).forEach((e) => (e.textContent = ""));
    general.textContent = "";
    const values = Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value]));
    button.disabled = true;
    try { await onSubmit(values); }
    catch (e) { showError(e, errors, general); }
    finally { button.disabled = false; }
  });
  return { node, inputs, general };
}

/** Puts an API error where it belongs: next to its field, else in `general`; 429 counts down. */
function showError(e, errors, general) {
  if (!(e instanceof ApiError)) { general.textContent = t("error"); return; }
  const fieldErrors = e.body.errors || {};
  let placed = false;
  const unplaced = [];  // errors naming no field of the form (errors.links: the cap on links) go to `general`
  for (const [field, messages] of Object.entries(fieldErrors)) {
    if (errors[field]) { errors[field].textContent = messages.join(" "); placed = true; }
    else unplaced.push(...messages);
  }
  if (e.status === 429 && e.body.retry_after) {
    let left = e.body.retry_after;
    const tick = () => { general.textContent = `${e.body.message} ${t("wait_s", { s: left })}`; left -= 1; if (left < 0) { clearInterval(id); general.textContent = ""; } };
    const id = setInterval(tick, 1000);
    timers.push(id);
    tick();
  } else if (unplaced.length || !placed) {
    general.textContent = unplaced.length ? unplaced.join(" ") : e.body.message || t("error");
  }
}

/**
 * Each of a 422's errors next to the field it names: `errors` maps a field's name (`destinations.1.weight`) to the element
 * showing its errors, and the longest name that is the error's or a prefix of it wins (`telegram.events.1` → `telegram.events`);
 * the rest go to `general`. Other errors as `showError` shows them.
 */
function placeErrors(e, errors, general) {
  if (!(e instanceof ApiError) || e.status !== 422) { showError(e, {}, general); return; }
  const left = [];
  for (const [name, messages] of Object.entries(e.body.errors || {})) {
    const key = Object.keys(errors).filter((k) => name === k || name.startsWith(`${k}.`)).sort((a, b) => b.length - a.length)[0];
    if (key) errors[key].textContent = [errors[key].textContent, ...messages].filter(Boolean).join(" ");
    else left.push(...messages);
  }
  general.textContent = left.length ? left.join(" ") : e.body.message || t("error");
  Object.values(errors).find((el) => el.textContent)?.scrollIntoView({ block: "center" });
}

function money(value) {
  try { return new Intl.NumberFormat(lang() === "id" ? "id-ID" : "en-US", { style: "currency", currency: me?.currency || "USD" }).format(value); }
  catch { return value.toFixed(2); }
}

/** "—" for a value the API gives as null (ROI without cost, a rate without clicks). */
const dash = (v, show) => (v === null || v === undefined ? "—" : show(v));

/** A profit, red below zero. */
const profitOf = (v) => h("span", { class: v < 0 ? "negative" : "" }, money(v));

/** The columns cost, profit and ROI % of report rows (§12). */
function moneyColumns() {
  return [
    { key: "cost", label: t("cost"), num: true, show: (r) => money(r.cost) },
    { key: "profit", label: t("profit"), num: true, show: (r) => profitOf(r.profit) },
    { key: "roi", label: t("roi"), num: true, show: (r) => dash(r.roi, (v) => v.toFixed(2)) },
  ];
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(lang() === "id" ? "id-ID" : "en-US") : "";
}

/**
 * A table of `rows`. With `sortable` (true, or the keys of the columns that are), a click on a header sorts by that column
 * (descending first, ascending for a column with `asc`), then the other way round:
 * by `c.sort(row)` when given, else `row[c.key]` (numbers as numbers, text as words, nulls last either way);
 * `sorted: {key, desc}` names the order the rows already come in. With `onSort(key, desc)` the rows are not sorted here:
 * the caller fetches them in that order. `foot`: the cells of a last row (totals); `row(r)`: the attributes of a row's `tr`.
 */
function table(columns, rows, { sortable = false, empty = "", sorted = null, foot = null, onSort = null, row = () => ({}) } = {}) {
  let sortKey = sorted?.key ?? null, desc = sorted?.desc ?? true;
  const canSort = (c) => sortable === true || (Array.isArray(sortable) && sortable.includes(c.key));
  const body = h("tbody");
  const valueOf = (c, r) => (c.sort ? c.sort(r) : r[c.key]);
  const compare = (x, y) => (typeof x === "string" && typeof y === "string" ? x.localeCompare(y, undefined, { numeric: true })
    : x > y ? 1 : x < y ? -1 : 0);
  const heads = columns.map((c) => h("th", {
    class: [c.num ? "num" : "", canSort(c) ? "sortable" : ""].join(" ").trim(), "data-key": c.key, tabindex: canSort(c) ? 0 : undefined,
    onclick: canSort(c) ? () => sortBy(c) : undefined,
    onkeydown: canSort(c) ? (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(c); } } : undefined,
  }, c.label));
  const render = () => {
    const ordered = [...rows];
    const column = columns.find((c) => c.key === sortKey);
    if (column && !onSort) {
      ordered.sort((a, b) => {
        const [x, y] = [valueOf(column, a), valueOf(column, b)];
        const missing = (x === null || x === undefined) - (y === null || y === undefined);
        return missing || compare(x, y) * (desc ? -1 : 1);
      });
    }
    heads.forEach((th, i) => {
      if (canSort(columns[i]) && columns[i].key === sortKey) th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
    body.replaceChildren(...(ordered.length ? ordered.map((r) => h("tr", row(r), columns.map((c) => h("td", { class: c.num ? "num" : "", "data-label": c.label || undefined }, c.show ? c.show(r) : r[c.key])))) :
      [h("tr", {}, h("td", { class: "empty", colspan: columns.length }, empty))]));
  };
  const sortBy = (c) => { desc = sortKey === c.key ? !desc : !c.asc; sortKey = c.key; render(); onSort?.(sortKey, desc); };
  render();
  return h("table", {}, h("thead", {}, h("tr", {}, heads)), body,
    foot && rows.length ? h("tfoot", {}, h("tr", {}, foot.map((cell, i) => h("td", { class: columns[i]?.num ? "num" : "" }, cell)))) : null);
}

// ---- routing --------------------------------------------------------------

const PAGES = { "/login": login, "/register": register, "/verify": verify, "/dashboard": dashboard, "/links": links,
  "/reports": reports, "/money": moneyPage, "/settings": settings, "/email-verification-error": badLink };

/** Shows `path` (it may carry a query: `/links?id=7`). */
function go(path) {
  if (location.pathname + location.search !== path) history.pushState({}, "", path);
  render();
}

/** The link whose routing page this is: `/links?id=7` (or `/links/7`), else null. */
function routingPageId(path) {
  const id = path === "/links" ? new URLSearchParams(location.search).get("id") : path.match(/^\/links\/(\d+)$/)?.[1];
  return id && /^\d+$/.test(id) ? id : null;
}

async function render() {
  timers.forEach((id) => clearInterval(id));
  timers = [];
  const path = location.pathname === "/" ? "/dashboard" : location.pathname;
  const token = localStorage.getItem(TOKEN);
  const open = ["/login", "/register", "/email-verification-error"].includes(path);
  if (!token && !open) return go("/login");
  if (token && !me) {
    try { me = await api("GET", "/api/user"); setLang(me.language); } catch { return; }
  }
  if (token && open && path !== "/email-verification-error") return go(me?.email_verified_at ? "/dashboard" : "/verify");
  if (me && !me.email_verified_at && !open && path !== "/verify") return go("/verify");
  nav(path.startsWith("/links/") ? "/links" : path);
  app.replaceChildren();
  const linkId = routingPageId(path);
  await (linkId ? routing(linkId) : (PAGES[path] || dashboard)());
}

function nav(path) {
  const top = document.getElementById("top");
  top.hidden = !me;
  if (!me) return;
  const link = (to, label) => h("a", { href: to, "data-link": true, class: path === to ? "active" : "" }, label);
  const logout = h("button", { class: "secondary", id: "logout", onclick: async () => {
    try { await api("POST", "/api/logout"); } catch {}
    localStorage.removeItem(TOKEN); me = null; go("/login");
  } }, t("logout"));
  document.getElementById("nav").replaceChildren(
    ...(me.email_verified_at ? [link("/dashboard", t("dashboard")), link("/links", t("links")), link("/reports", t("reports")),
      link("/money", t("money_nav")), link("/settings", t("settings"))] : []), logout);
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[data-link]");
  if (a && a.origin === location.origin) { ev.preventDefault(); go(a.pathname + a.search); }
});
window.addEventListener("popstate", render);

// ---- pages ----------------------------------------------------------------

function login() {
  const otpField = h("div", { class: "field", hidden: true },
    h("label", { for: "f-otp_code" }, t("otp_code")), h("input", { id: "f-otp_code", inputmode: "numeric", autocomplete: "one-time-code" }),
    h("div", { class: "muted" }, t("otp_needed")));
  const f = form([
    { name: "email", label: t("email"), type: "email", autocomplete: "username" },
    { name: "password", label: t("password"), type: "password", autocomplete: "current-password" },
  ], t("login"), async (v) => {
    const body = { email: v.email, password: v.password, device_name: "web" };
    const otp = otpField.querySelector("input").value.trim();
    if (!otpField.hidden && otp) body.otp_code = otp;
    try {
      const res = await api("POST", "/api/login", body);
      localStorage.setItem(TOKEN, res.token);
      me = null;
      go("/dashboard");
    } catch (e) {
      if (e instanceof ApiError && e.body.two_factor_required) {
        otpField.hidden = false;
        otpField.querySelector("input").focus();
      }
      throw e;
    }
  }, [otpField]);
  app.append(h("div", { class: "card narrow" }, h("h1", {}, t("login")), f.node,
    h("p", { class: "muted" }, t("no_account"), " ", h("a", { href: "/register", "data-link": true }, t("register")))));
}

function register() {
  const f = form([
    { name: "name", label: t("name"), autocomplete: "name" },
    { name: "email", label: t("email"), type: "email", autocomplete: "email" },
    { name: "password", label: t("password"), type: "password", autocomplete: "new-password" },
    { name: "password_confirmation", label: t("password_confirmation"), type: "password", autocomplete: "new-password" },
  ], t("register"), async (v) => {
    await api("POST", "/api/register", v);
    const res = await api("POST", "/api/login", { email: v.email, password: v.password, device_name: "web" });
    localStorage.setItem(TOKEN, res.token);
    me = null;
    go("/verify");
  });
  app.append(h("div", { class: "card narrow" }, h("h1", {}, t("register")), f.node,
    h("p", { class: "muted" }, t("have_account"), " ", h("a", { href: "/login", "data-link": true }, t("login")))));
}

function verify() {
  const f = form([{ name: "code", label: t("code"), inputmode: "numeric", autocomplete: "one-time-code" }], t("verify"), async (v) => {
    const res = await api("POST", "/api/email/verify", { code: v.code.trim() });
    me = null;
    go(res.redirect || "/dashboard");
  });
  const resend = h("button", { class: "secondary", type: "button", id: "resend" }, t("resend"));
  const countdown = (seconds) => {
    let left = seconds;
    resend.disabled = true;
    const tick = () => { resend.textContent = t("resend_in", { s: left }); if (--left < 0) { clearInterval(id); resend.disabled = false; resend.textContent = t("resend"); } };
    const id = setInterval(tick, 1000);
    timers.push(id);
    tick();
  };
  resend.addEventListener("click", async () => {
    try { const res = await api("POST", "/api/email/resend"); toast(res.message); countdown(60); }
    catch (e) { if (e.status === 429) countdown(e.body.retry_after || 60); else f.general.textContent = e.message; }
  });
  app.append(h("div", { class: "card narrow" }, h("h1", {}, t("verify_title")), h("p", { class: "muted" }, t("verify_help"), " ", me?.email || ""),
    f.node, h("p", {}, resend)));
}

function badLink() {
  app.append(h("div", { class: "card narrow" }, h("h1", {}, t("bad_link")), h("p", {}, t("bad_link_help")),
    h("p", {}, h("a", { href: "/login", "data-link": true }, t("login")))));
}

function isoDay(d) { return d.toISOString().slice(0, 10); }

async function dashboard() {
  const cards = h("div", { class: "cards" });
  const chart = h("div", { class: "card chart" });
  const report = h("div", { class: "card", id: "sub-report" });
  const recent = h("div", { class: "grid2" });
  const empty = h("div");
  const credit = h("p", { class: "muted", id: "geoip-credit" });
  app.append(h("h1", {}, t("dashboard")), empty, cards, chart, report, recent, credit);
  // DB-IP's free database is CC BY 4.0: say whose it is while it is in use.
  fetch("/api/health").then((r) => r.json()).then((health) => {
    if (health.geoip && /^dbip/i.test(health.geoip.database)) {
      credit.replaceChildren(t("geoip_by"), " ", h("a", { href: "https://db-ip.com", rel: "noopener" }, "DB-IP"), " (CC BY 4.0)");
    }
  }).catch(() => {});
  const stat = (id, label, value, cls = "") => h("div", { class: "stat" }, h("div", { class: "label" }, label),
    h("div", { class: `value ${cls}`.trim(), id }, value));
  const load = async () => {
    const d = await api("GET", "/api/dashboard-data?limit=100");
    const s = d.summary;
    cards.replaceChildren(stat("live-clicks", t("live_clicks"), s.liveClicksLast30Seconds), stat("clicks-today", t("clicks_today"), s.clicksToday),
      stat("total-leads", t("total_leads"), s.totalLeads), stat("total-payout", t("total_payout"), money(s.totalPayout)),
      stat("cost-today", t("cost_today"), money(s.costToday)), stat("revenue-today", t("revenue_today"), money(s.revenueToday)),
      stat("profit-today", t("profit_today"), money(s.profitToday), s.profitToday < 0 ? "negative" : ""));
    report.replaceChildren(h("h2", {}, t("sub_report")), table([
      { key: "sub_id", label: "sub_id" }, { key: "clicks", label: t("clicks"), num: true }, { key: "leads", label: t("leads"), num: true },
      { key: "approved_leads", label: t("approved"), num: true }, { key: "total_payout", label: t("payout"), num: true, show: (r) => money(r.total_payout) },
      ...moneyColumns(), { key: "cr", label: t("cr"), num: true, show: (r) => r.cr.toFixed(2) },
      { key: "epc", label: t("epc"), num: true, show: (r) => money(r.epc) }], d.report, { sortable: true, empty: t("empty_title") }));
    recent.replaceChildren(
      h("div", { class: "card", id: "recent-clicks" }, h("h2", {}, t("recent_clicks")), table([
        { key: "created_at", label: t("time"), show: (r) => when(r.created_at) }, { key: "sub_id", label: "sub_id" },
        { key: "country_code", label: t("country") }, { key: "device_type", label: t("device") }], d.recent_clicks, { empty: t("empty_title") })),
      h("div", { class: "card", id: "recent-leads" }, h("h2", {}, t("recent_leads")), table([
        { key: "created_at", label: t("time"), show: (r) => when(r.created_at) }, { key: "sub_id", label: "sub_id" },
        { key: "status", label: t("status") }, { key: "payout", label: t("payout"), num: true, show: (r) => money(r.payout) }], d.recent_leads, { empty: t("empty_title") })));
    const nothing = !d.recent_clicks.length && !d.recent_leads.length && s.totalLeads === 0;
    empty.replaceChildren(...(nothing ? [h("div", { class: "notice" }, h("strong", {}, t("empty_title")), " ", t("empty_links"), " ",
      h("a", { href: "/links", "data-link": true }, t("create_link")), h("br"), t("empty_postback"), " ", h("code", {}, me.postback_url))] : []));
  };
  let today = null; // the server's local date (server.utc_offset), learned from the first report
  const loadChart = async () => {
    const end = today ? new Date(`${today}T00:00:00Z`) : new Date();
    const days = [...Array(30)].map((_, i) => isoDay(new Date(end.getTime() - (29 - i) * 86400000)));
    const r = await api("GET", `/api/reports?group_by=day&from=${days[0]}&to=${days[29]}`);
    if (r.today !== today) { today = r.today; return loadChart(); }
    const byDay = Object.fromEntries(r.data.map((row) => [row.day, row]));
    chart.replaceChildren(h("h2", {}, t("per_day")), lineChart(days, [
      { values: days.map((d) => byDay[d]?.clicks || 0), color: "#2456d6" },
      { values: days.map((d) => byDay[d]?.leads || 0), color: "#e07b00" }]),
      h("div", { class: "legend" }, h("span", { class: "clicks" }, t("clicks")), h("span", { class: "leads" }, t("leads"))));
  };
  await Promise.all([load(), loadChart()]);
  // Live numbers without reloading the page (both read rollups: cheap).
  timers.push(setInterval(() => Promise.all([load(), loadChart()]).catch(() => {}), 3000));
}

// ---- a link's cost model (§12) ---------------------------------------------

const COST_MODELS = [["none", "cost_none"], ["cpc", "cost_cpc"], ["param", "cost_param"]];

/** The form fields of a link's cost: the model, and the cost per click (shown for `cpc` only). */
function costFields(link = { cost_model: "none", cost_value: 0 }) {
  return [
    { name: "cost_model", label: t("cost_model"), value: link.cost_model, options: COST_MODELS.map(([v, key]) => [v, t(key)]),
      help: h("span", { class: "cost-help" }, t("cost_param_help")) },
    { name: "cost_value", label: t("cost_value"), inputmode: "decimal", placeholder: "0.05",
      value: link.cost_model === "cpc" ? String(link.cost_value) : "" },
  ];
}

/** Shows the cost per click only for `cpc`, the help on the `cost` parameter only for `param`. */
function wireCost(f) {
  const model = f.inputs.cost_model;
  const valueField = f.inputs.cost_value.closest(".field");
  const help = f.node.querySelector(".cost-help");
  const show = () => {
    valueField.hidden = model.value !== "cpc";
    help.parentElement.hidden = model.value !== "param";
  };
  model.addEventListener("change", show);
  f.node.addEventListener("reset", () => setTimeout(show));
  show();
}

/** The cost of the form's values as the API takes it: the value only with `cpc`, a decimal comma read as a point. */
function costBody(v) {
  const body = { cost_model: v.cost_model };
  if (v.cost_model === "cpc") body.cost_value = v.cost_value.trim().replace(",", ".");
  return body;
}

/** "CPC US$0,25", "cost from the URL", or nothing without a cost model. */
function costLabel(l) {
  if (l.cost_model === "cpc") return t("cpc_of", { v: money(l.cost_value) });
  if (l.cost_model === "param") return t("cost_from_url");
  return null;
}

const LINK_PAGE = 50;
/** The columns the links' list sorts by on the server (GET /api/links?sortBy=); `id` (newest first) unless one is chosen. */
const LINK_SORTS = ["name", "createdAt", "clicks"];

/** The links page's state from its address: `page` (from 1), `search`, `sortBy` and `sort`. */
function linkState(search) {
  const q = new URLSearchParams(search);
  const page = /^\d{1,6}$/.test(q.get("page") || "") ? Math.max(1, Number(q.get("page"))) : 1;
  const sortBy = LINK_SORTS.includes(q.get("sortBy")) ? q.get("sortBy") : "id";
  return { page, search: (q.get("search") || "").trim().slice(0, 100), sortBy, sort: q.get("sort") === "asc" ? "asc" : "desc" };
}

/** The query of a state: the page's address (defaults left out), or with `forApi` the API's (`limit`, `offset`). */
function linkQuery(s, forApi = false) {
  const q = new URLSearchParams();
  if (forApi) { q.set("limit", LINK_PAGE); q.set("offset", (s.page - 1) * LINK_PAGE); }
  else if (s.page > 1) q.set("page", s.page);
  if (s.search) q.set("search", s.search);
  if (forApi || s.sortBy !== "id" || s.sort !== "desc") { q.set("sortBy", s.sortBy); q.set("sort", s.sort); }
  return q.toString();
}

/** Every link of the user, 200 a request (GET /api/links is paged), newest first. */
async function allLinks() {
  const all = [];
  for (let offset = 0, total = 1; offset < total; offset += 200) {
    const r = await api("GET", `/api/links?limit=200&offset=${offset}`);
    all.push(...r.data);
    total = r.total;
  }
  return all;
}

async function links() {
  const s = linkState(location.search);
  const f = form([
    { name: "name", label: t("link_name") },
    { name: "url", label: t("destination"), type: "url", placeholder: "https://offer.example/?click={clickid}&s={sub_id}", help: t("macros_help") },
    { name: "payout", label: t("default_payout"), inputmode: "decimal", placeholder: "0.00" },
    { name: "source_postback_url", label: t("source_postback"), type: "url", placeholder: "https://source.example/pb?id={ext_id}&p={payout}" },
    ...costFields(),
  ], t("create_link"), async (v) => {
    const body = { name: v.name, url: v.url, ...costBody(v) };
    if (v.payout.trim()) body.payout = v.payout.trim();
    if (v.source_postback_url.trim()) body.source_postback_url = v.source_postback_url.trim();
    await api("POST", "/api/links", body);
    f.node.reset();
    toast(t("saved"));
    await load();
  });
  f.node.id = "link-form";
  wireCost(f);

  // The list: 50 a page, searched and sorted by the server, its state in the address.
  const list = h("div", { class: "table-wrap", id: "links-table" }, h("p", { class: "muted" }, t("loading")));
  const listError = h("div", { class: "error", role: "alert", id: "links-error" });
  const range = h("span", { class: "range", id: "links-range", "aria-live": "polite" });
  const prev = h("button", { type: "button", class: "secondary", id: "links-prev", disabled: true, "aria-label": t("previous"),
    onclick: () => show({ page: s.page - 1 }) }, "← ", h("span", { class: "word" }, t("previous")));
  const next = h("button", { type: "button", class: "secondary", id: "links-next", disabled: true, "aria-label": t("next"),
    onclick: () => show({ page: s.page + 1 }) }, h("span", { class: "word" }, t("next")), " →");
  const search = h("input", { type: "search", id: "links-search", value: s.search, maxlength: 100, autocomplete: "off",
    placeholder: t("search_links"), "aria-label": t("search_links") });
  let typing;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => show({ search: search.value.trim().slice(0, 100), page: 1 }, true), 300);
    timers.push(typing);
  });
  /** Changes the state: into the address (typing replaces it, paging and sorting add to the history), then the list again. */
  const show = (change, replace = false) => {
    Object.assign(s, change);
    const url = `/links${linkQuery(s) ? `?${linkQuery(s)}` : ""}`;
    if (location.pathname + location.search !== url) history[replace ? "replaceState" : "pushState"]({}, "", url);
    return load();
  };
  let asked = 0;        // the newest request: an older answer arriving later is dropped
  const load = async () => {
    const mine = ++asked;
    let r;
    try { r = await api("GET", `/api/links?${linkQuery(s, true)}`); }
    catch (e) { if (mine === asked) { listError.textContent = ""; showError(e, {}, listError); } return; }
    if (mine !== asked || !list.isConnected) return;
    // Past the last page (a link deleted, an old address): the last page.
    if (!r.data.length && r.total > 0 && s.page > 1) return show({ page: Math.ceil(r.total / LINK_PAGE) }, true);
    listError.textContent = "";
    const last = r.offset + r.data.length;
    range.textContent = r.total ? t("range_of", { from: number(r.offset + 1, 0), to: number(last, 0), total: number(r.total, 0) }) : "";
    prev.disabled = s.page <= 1;
    next.disabled = last >= r.total;
    prev.hidden = next.hidden = prev.disabled && next.disabled;
    list.replaceChildren(table(columns, r.data, { sortable: LINK_SORTS, sorted: s.sortBy === "id" ? null : { key: s.sortBy, desc: s.sort === "desc" },
      onSort: (key, desc) => show({ sortBy: key, sort: desc ? "desc" : "asc", page: 1 }),
      empty: s.search ? t("no_links_match", { q: s.search }) : t("no_links"), row: (l) => ({ class: "link", "data-slug": l.slug }) }));
  };
  const columns = [
    { key: "name", label: t("name"), asc: true, show: (l) => {
      const cost = costLabel(l);
      return [h("div", { class: "row" }, h("strong", {}, l.name), h("span", { class: "muted" }, `· ${t(l.status)} · ${money(l.payout)}`),
        cost ? h("span", { class: "muted cost-model" }, `· ${cost}`) : null),
      h("div", { class: "mono muted" }, l.url),
      h("div", { class: "row" }, h("code", { class: "tracking-url" }, l.tracking_url),
        h("button", { class: "secondary", type: "button", onclick: () => copy(l.tracking_url) }, t("copy")))];
    } },
    { key: "createdAt", label: t("created"), show: (l) => when(l.created_at) },
    { key: "clicks", label: t("clicks"), num: true, show: (l) => number(l.clicks, 0) },
    { key: "actions", label: "", show: (l) => h("div", { class: "row link-actions" },
      h("button", { class: "secondary", type: "button", onclick: (ev) => editRow(ev.currentTarget.closest("tr"), l) }, t("edit")),
      h("button", { class: "secondary routing", type: "button", onclick: () => go(`/links?id=${l.id}`) }, t("routing")),
      h("button", { class: "secondary", type: "button", onclick: async () => { await api("PUT", `/api/links/${l.id}`, { status: l.status === "active" ? "paused" : "active" }); load(); } },
        l.status === "active" ? t("pause") : t("resume")),
      h("button", { class: "danger", type: "button", onclick: async () => { if (confirm(t("confirm_delete"))) { await api("DELETE", `/api/links/${l.id}`); load(); } } }, t("delete"))) },
  ];
  const editRow = (row, l) => {
    const e = form([
      { name: "name", label: t("link_name"), value: l.name },
      { name: "url", label: t("destination"), type: "url", value: l.url, help: t("macros_help") },
      { name: "payout", label: t("default_payout"), value: String(l.payout) },
      ...costFields(l),
    ], t("save"), async (v) => {
      await api("PUT", `/api/links/${l.id}`, { name: v.name, url: v.url, payout: v.payout, ...costBody(v) });
      load();
    },
    [h("button", { type: "button", class: "secondary", onclick: () => load() }, t("cancel"))]);
    wireCost(e);
    row.replaceChildren(h("td", { colspan: columns.length, class: "link-edit" }, e.node));
  };
  app.append(h("h1", {}, t("links")), h("div", { class: "card" }, h("h2", {}, t("create_link")), f.node),
    h("div", { class: "card", id: "links-list" },
      h("div", { class: "list-head" }, h("h2", {}, t("links")), h("div", { class: "list-tools" }, search, h("div", { class: "pager" }, prev, range, next))),
      listError, list));
  await load();
}

// ---- a link's routing (smart link) and its stats per destination ----------

const DEVICES = ["mobile", "tablet", "desktop", "bot"];
const OSES = [["android", "Android"], ["ios", "iOS"], ["windows", "Windows"], ["macos", "macOS"], ["linux", "Linux"], ["other", null]];
const DEFAULT_WEIGHT = 100;

/** Codes typed with commas or spaces between them: "ID, my" → ["ID", "my"]. */
const listOf = (text) => text.split(/[\s,]+/).filter(Boolean);
/** A whole number as a number; other text as typed, for the API to name it. */
const intOrText = (text) => (/^-?\d+$/.test(text.trim()) ? Number(text.trim()) : text.trim());

function number(value, digits = 1) {
  return new Intl.NumberFormat(lang() === "id" ? "id-ID" : "en-US", { maximumFractionDigits: digits }).format(value);
}

/** The API's routing as the editor's state: text as typed, rules' targets as destination objects. */
function editableRouting(r) {
  const destinations = r.destinations.map((d) => ({ kind: d.kind, name: d.name, url: d.url, weight: String(d.weight),
    payout: d.payout === null || d.payout === undefined ? "" : String(d.payout),
    daily_cap: d.daily_cap === null || d.daily_cap === undefined ? "" : String(d.daily_cap), status: d.status, monitor: d.monitor || null }));
  const byName = new Map(destinations.map((d) => [d.name, d]));
  const rules = r.rules.map((rule) => {
    const c = rule.if || {};
    return { name: rule.name, country: (c.country || []).join(", "), device: c.device || [], os: c.os || [],
      language: (c.language || []).join(", "), hourFrom: c.hour ? String(c.hour.from) : "", hourTo: c.hour ? String(c.hour.to) : "",
      param: Object.entries(c.param || {}).map(([k, v]) => `${k}=${v.join(",")}`).join("\n"),
      unique: typeof c.unique === "boolean" ? String(c.unique) : "", to: rule.to.map((n) => byName.get(n)).filter(Boolean) };
  });
  return { destinations, rules, mode: r.mode, fallback: r.fallback_url || "" };
}

/** The editor's state as the body of PUT /api/links/{id}/routing; empty conditions left out. */
function routingBody(state) {
  const destinations = state.destinations.map((d) => {
    const o = { kind: d.kind, name: d.name.trim(), url: d.url.trim(), weight: d.weight.trim() === "" ? null : intOrText(d.weight), status: d.status };
    if (d.payout.trim()) o.payout = d.payout.trim().replace(",", ".");
    if (d.daily_cap.trim()) o.daily_cap = intOrText(d.daily_cap);
    return o;
  });
  const rules = state.rules.map((r) => {
    const c = {};
    const country = listOf(r.country).map((x) => x.toUpperCase());
    if (country.length) c.country = country;
    if (r.device.length) c.device = DEVICES.filter((d) => r.device.includes(d));
    if (r.os.length) c.os = OSES.map(([o]) => o).filter((o) => r.os.includes(o));
    const language = listOf(r.language).map((x) => x.toLowerCase());
    if (language.length) c.language = language;
    if (r.hourFrom.trim() || r.hourTo.trim()) c.hour = { from: intOrText(r.hourFrom), to: intOrText(r.hourTo) };
    const param = {};
    for (const line of r.param.split("\n")) {
      if (!line.trim()) continue;
      const [key, ...rest] = line.split("=");
      param[key.trim()] = [...(param[key.trim()] || []), ...rest.join("=").split(",").map((v) => v.trim()).filter(Boolean)];
    }
    if (Object.keys(param).length) c.param = param;
    if (r.unique) c.unique = r.unique === "true";
    return { name: r.name.trim(), if: c, to: state.destinations.filter((d) => r.to.includes(d)).map((d) => d.name.trim()) };
  });
  return { destinations, rules, mode: state.mode, fallback_url: state.fallback.trim() || null };
}

/** "Offer B beats the others with 97 % probability" once an offer's p_best reaches 0.95, else a neutral sentence. */
function verdictOf(rows) {
  const offers = rows.filter((r) => r.kind === "offer" && typeof r.p_best === "number");
  const best = offers.reduce((a, b) => (!a || b.p_best > a.p_best ? b : a), null);
  return offers.length >= 2 && best.p_best >= 0.95
    ? t("verdict_winner", { name: best.name, p: Math.round(best.p_best * 100) }) : t("verdict_none");
}

async function routing(id) {
  let link, current;
  try {
    [link, current] = await Promise.all([api("GET", `/api/links/${id}`), api("GET", `/api/links/${id}/routing`)]);
  } catch (e) {
    app.append(h("div", { class: "notice bad" }, e.message, " ", h("a", { href: "/links", "data-link": true }, t("all_links"))));
    return;
  }
  let state = editableRouting(current.data);
  let errors = {};      // the API's field name (destinations.1.weight) → the element showing its errors
  let shares = [];      // each destination's share element
  let targets = [];     // each rule's "send to" checkboxes
  const editor = h("form", { class: "card", id: "routing-editor", novalidate: true });
  const stats = h("div", { class: "card", id: "routing-stats" });
  app.append(h("p", {}, h("a", { href: "/links", "data-link": true, id: "back-to-links" }, `← ${t("all_links")}`)),
    h("h1", {}, t("routing_of", { name: link.data.name })), h("p", {}, h("code", { class: "tracking-url" }, link.data.tracking_url)), editor, stats);

  const errorBox = (key) => (errors[key] = h("div", { class: "error", id: `e-${key.replaceAll(".", "-")}` }));
  const field = (label, input, key, { wide = false, after = null, help = null } = {}) => h("div", { class: wide ? "field wide" : "field" },
    h("label", { for: input.id }, label), after ? h("div", { class: "with-after" }, input, after) : input,
    help, errorBox(key));
  const text = (id, value, set, attrs = {}) => h("input", { id, value, autocomplete: "off", ...attrs, oninput: (ev) => set(ev.target.value) });
  const select = (id, value, options, set) => h("select", { id, onchange: (ev) => set(ev.target.value) },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
  /** Checkboxes for the values of list `key` of `item`. */
  const checks = (legend, id, values, item, key) => h("fieldset", { class: "field" }, h("legend", {}, legend),
    h("div", { class: "checks" }, values.map(([v, label]) => h("label", { class: "check" },
      h("input", { type: "checkbox", id: `${id}-${v}`, value: v, checked: item[key].includes(v),
        onchange: (ev) => (item[key] = ev.target.checked ? [...item[key], v] : item[key].filter((x) => x !== v)) }), label))));
  const itemButtons = (list, i, onRemove = () => {}) => h("div", { class: "row item-actions" },
    h("button", { type: "button", class: "secondary", title: t("move_up"), "aria-label": t("move_up"), disabled: i === 0,
      onclick: () => { list.splice(i - 1, 0, ...list.splice(i, 1)); draw(); } }, "↑"),
    h("button", { type: "button", class: "secondary", title: t("move_down"), "aria-label": t("move_down"), disabled: i === list.length - 1,
      onclick: () => { list.splice(i + 1, 0, ...list.splice(i, 1)); draw(); } }, "↓"),
    h("button", { type: "button", class: "danger", onclick: () => { onRemove(list.splice(i, 1)[0]); draw(); } }, t("remove")));

  /** Each destination's share of the traffic: its weight over the weights of all active destinations. */
  const updateShares = () => {
    const weight = (d) => { const w = d.weight.trim() === "" ? DEFAULT_WEIGHT : Number(d.weight); return d.status === "active" && Number.isFinite(w) && w > 0 ? w : 0; };
    const total = state.destinations.reduce((sum, d) => sum + weight(d), 0);
    state.destinations.forEach((d, i) => (shares[i].textContent = `${number(total ? (weight(d) / total) * 100 : 0)} %`));
  };
  /** The rules' "send to" checkboxes, one per destination as named now. */
  const drawTargets = () => state.rules.forEach((r, i) => targets[i].replaceChildren(...(state.destinations.length
    ? state.destinations.map((d, j) => h("label", { class: "check" },
      h("input", { type: "checkbox", id: `r-${i}-to-${j}`, checked: r.to.includes(d),
        onchange: (ev) => { r.to = ev.target.checked ? [...r.to, d] : r.to.filter((x) => x !== d); } }), d.name.trim() || `#${j + 1}`))
    : [h("span", { class: "muted" }, t("no_destinations"))])));

  const destination = (d, i) => {
    const at = `destinations.${i}`;
    const share = h("span", { class: "share", id: `d-${i}-share`, title: t("share") });
    shares[i] = share;
    const hint = h("div", { class: "muted", id: `d-${i}-hint` }, t("lander_hint"));
    const title = h("strong", {});
    const checkLander = () => {
      hint.hidden = !(d.kind === "lander" && !d.url.includes("{click_url}"));
      title.textContent = `${i + 1}. ${d.name.trim() || t(d.kind)}`;
    };
    checkLander();
    // The server's uptime monitor (read-only; PUT ignores it): "down" with what went wrong as its title.
    const down = d.monitor?.state === "down"
      ? h("span", { class: "badge down", id: `d-${i}-monitor`, title: d.monitor.error || undefined }, t("monitor_down")) : null;
    return h("div", { class: "item", id: `dest-${i}` },
      h("div", { class: "item-head" }, h("span", { class: "item-title" }, title, down),
        itemButtons(state.destinations, i, (gone) => state.rules.forEach((r) => (r.to = r.to.filter((x) => x !== gone))))),
      errorBox(at),
      h("div", { class: "fields" },
        field(t("name"), text(`d-${i}-name`, d.name, (v) => { d.name = v; checkLander(); drawTargets(); }, { maxlength: 100 }), `${at}.name`),
        field(t("kind"), select(`d-${i}-kind`, d.kind, [["offer", t("offer")], ["lander", t("lander")]], (v) => { d.kind = v; checkLander(); }), `${at}.kind`),
        field(t("weight"), text(`d-${i}-weight`, d.weight, (v) => { d.weight = v; updateShares(); },
          { type: "number", min: 0, max: 1000, step: 1, inputmode: "numeric", placeholder: String(DEFAULT_WEIGHT) }), `${at}.weight`, { after: share }),
        field(t("status"), select(`d-${i}-status`, d.status, [["active", t("active")], ["paused", t("paused")]], (v) => { d.status = v; updateShares(); }), `${at}.status`),
        field(t("payout_optional"), text(`d-${i}-payout`, d.payout, (v) => (d.payout = v), { inputmode: "decimal", placeholder: t("optional") }), `${at}.payout`),
        field(t("daily_cap"), text(`d-${i}-cap`, d.daily_cap, (v) => (d.daily_cap = v), { type: "number", min: 1, step: 1, inputmode: "numeric", placeholder: t("no_cap") }), `${at}.daily_cap`),
        field(t("dest_url"), text(`d-${i}-url`, d.url, (v) => { d.url = v; checkLander(); }, { type: "url", placeholder: "https://…?click={clickid}" }),
          `${at}.url`, { wide: true, help: hint })));
  };

  const rule = (r, i) => {
    const at = `rules.${i}`;
    targets[i] = h("div", { class: "checks", id: `r-${i}-to` });
    const title = h("strong", {}, `${i + 1}. ${r.name.trim() || t("rule")}`);
    const hour = (key, label, example) => text(`r-${i}-hour-${key}`, r[key], (v) => (r[key] = v),
      { type: "number", min: 0, max: 23, step: 1, inputmode: "numeric", placeholder: example, "aria-label": label });
    return h("div", { class: "item", id: `rule-${i}` },
      h("div", { class: "item-head" }, title, itemButtons(state.rules, i)),
      errorBox(at), errorBox(`${at}.if`),
      h("div", { class: "fields" },
        field(t("rule_name"), text(`r-${i}-name`, r.name, (v) => { r.name = v; title.textContent = `${i + 1}. ${v.trim() || t("rule")}`; }, { maxlength: 100 }), `${at}.name`),
        field(t("countries"), text(`r-${i}-country`, r.country, (v) => (r.country = v), { placeholder: "ID, MY", autocapitalize: "characters" }), `${at}.if.country`),
        field(t("languages"), text(`r-${i}-language`, r.language, (v) => (r.language = v), { placeholder: "id, en" }), `${at}.if.language`),
        h("div", { class: "field" }, h("label", { for: `r-${i}-hour-hourFrom` }, t("hours")),
          h("div", { class: "hours" }, hour("hourFrom", t("hour_from"), "0"), h("span", {}, "–"), hour("hourTo", t("hour_to"), "23")), errorBox(`${at}.if.hour`)),
        field(t("unique_visitor"), select(`r-${i}-unique`, r.unique, [["", t("any")], ["true", t("yes")], ["false", t("no")]], (v) => (r.unique = v)), `${at}.if.unique`),
        h("div", { class: "wide" }, checks(t("devices"), `r-${i}-device`, DEVICES.map((d) => [d, t(`device_${d}`)]), r, "device"), errorBox(`${at}.if.device`)),
        h("div", { class: "wide" }, checks(t("oses"), `r-${i}-os`, OSES.map(([o, label]) => [o, label || t("os_other")]), r, "os"), errorBox(`${at}.if.os`)),
        field(t("params"), h("textarea", { id: `r-${i}-params`, rows: 2, placeholder: "sub2=tiktok,tt", value: r.param, oninput: (ev) => (r.param = ev.target.value) }),
          `${at}.if.param`, { wide: true, help: h("div", { class: "muted" }, t("params_help")) }),
        h("fieldset", { class: "field wide" }, h("legend", {}, t("send_to")), targets[i], errorBox(`${at}.to`))));
  };

  const general = h("div", { class: "error", role: "alert", id: "routing-error" });
  const draw = () => {
    errors = {};
    shares = [];
    targets = [];
    editor.replaceChildren(
      h("h2", {}, t("destinations")), h("p", { class: "muted" }, t("weight_help"), " ", t("cap_help"), h("br"), t("routing_macros")),
      errorBox("destinations"),
      h("div", { id: "destinations" }, state.destinations.map(destination)),
      h("p", {}, h("button", { type: "button", class: "secondary", id: "add-destination", onclick: () => {
        state.destinations.push({ kind: "offer", name: "", url: "", weight: String(DEFAULT_WEIGHT), payout: "", daily_cap: "", status: "active" });
        draw();
        document.getElementById(`d-${state.destinations.length - 1}-name`).focus();
      } }, t("add_destination"))),
      h("h2", {}, t("rules")), h("p", { class: "muted" }, t("rules_help")), errorBox("rules"),
      h("div", { id: "rules" }, state.rules.map(rule)),
      h("p", {}, h("button", { type: "button", class: "secondary", id: "add-rule", onclick: () => {
        state.rules.push({ name: "", country: "", device: [], os: [], language: "", hourFrom: "", hourTo: "", param: "", unique: "", to: [] });
        draw();
        document.getElementById(`r-${state.rules.length - 1}-name`).focus();
      } }, t("add_rule"))),
      h("div", { class: "fields roomy" },
        field(t("mode"), select("routing-mode", state.mode, [["weighted", t("mode_weighted")], ["optimize", t("mode_optimize")]], (v) => (state.mode = v)),
          "mode", { help: h("div", { class: "muted" }, t("mode_help")) }),
        field(t("fallback_url"), text("fallback-url", state.fallback, (v) => (state.fallback = v), { type: "url", placeholder: "https://…" }),
          "fallback_url", { help: h("div", { class: "muted" }, t("fallback_help")) })),
      general, h("button", { type: "submit", id: "save-routing" }, t("save")));
    updateShares();
    drawTargets();
  };

  editor.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    Object.values(errors).forEach((el) => (el.textContent = ""));
    general.textContent = "";
    const button = editor.querySelector("#save-routing");
    button.disabled = true;
    try {
      const res = await api("PUT", `/api/links/${id}/routing`, routingBody(state));
      state = editableRouting(res.data);
      draw();
      toast(t("saved"));
      await loadStats();
    } catch (e) { placeErrors(e, errors, general); }
    finally { button.disabled = false; }
  });

  // Stats per destination, with the verdict on the offers.
  const from = h("input", { type: "date", id: "stats-from", onchange: () => loadStats() });
  const to = h("input", { type: "date", id: "stats-to", onchange: () => loadStats() });
  const verdict = h("p", { class: "verdict", id: "verdict", role: "status" });
  const statsError = h("div", { class: "error", role: "alert" });
  const statsTable = h("div", { class: "table-wrap" });
  stats.append(h("h2", {}, t("stats_title")),
    h("div", { class: "fields dates" }, h("div", { class: "field" }, h("label", { for: "stats-from" }, t("date_from")), from),
      h("div", { class: "field" }, h("label", { for: "stats-to" }, t("date_to")), to)),
    statsError, verdict, statsTable);
  const loadStats = async () => {
    const q = new URLSearchParams();
    if (from.value) q.set("from", from.value);
    if (to.value) q.set("to", to.value);
    statsError.textContent = "";
    let res;
    try { res = await api("GET", `/api/links/${id}/stats${q.toString() ? `?${q}` : ""}`); }
    catch (e) { showError(e, {}, statsError); return; }
    verdict.textContent = verdictOf(res.data);
    statsTable.replaceChildren(table([
      { key: "name", label: t("name"), show: (r) => (r.status === "active" ? r.name : `${r.name} · ${t(r.status)}`) },
      { key: "kind", label: t("kind"), show: (r) => t(r.kind) },
      { key: "clicks", label: t("clicks_views"), num: true },
      { key: "unique", label: t("unique"), num: true },
      { key: "lander_clicks", label: t("lander_clicks"), num: true },
      { key: "ctr", label: t("ctr"), num: true, show: (r) => dash(r.ctr, (v) => v.toFixed(2)) },
      { key: "conversions", label: t("conversions"), num: true },
      { key: "approved", label: t("approved"), num: true },
      { key: "revenue", label: t("revenue"), num: true, show: (r) => money(r.revenue) },
      ...moneyColumns(),
      { key: "cr", label: t("cr"), num: true, show: (r) => r.cr.toFixed(2) },
      { key: "epc", label: t("epc"), num: true, show: (r) => money(r.epc) },
      { key: "p_best", label: t("p_best"), num: true, show: (r) => dash(r.p_best, (v) => `${Math.round(v * 100)} %`) },
    ], res.data, { empty: t("empty_title") }));
  };
  draw();
  await loadStats();
}

// ---- costs, conversion import, received postbacks (§12) --------------------

/** A day ("YYYY-MM-DD") moved by `n` days. */
const addDays = (day, n) => isoDay(new Date(new Date(`${day}T00:00:00Z`).getTime() + n * 86400000));

/** The server's local date (server.utc_offset), which the API's days are in; the browser's UTC date if it cannot say. */
async function serverToday() {
  const guess = isoDay(new Date());
  try { return (await api("GET", `/api/reports?group_by=day&from=${guess}&to=${guess}`)).today || guess; }
  catch { return guess; }
}

/** The errors of a refused import as sentences: the file's own first, then "Line 3: …" for `lines.3.amount`. */
function importErrors(e) {
  return Object.entries(e.body.errors || {}).map(([key, messages]) => {
    const line = key.match(/^lines\.(\d+)(\.|$)/)?.[1];
    return [line ? Number(line) : 0, line ? t("line_error", { n: line, message: messages.join(" ") }) : messages.join(" ")];
  }).sort((a, b) => a[0] - b[0]).map(([, text]) => text);
}

/** A received postback's parameters as text: "clickid=… status=approved payout=2.50". */
function paramsSummary(params) {
  const entries = Object.entries(params && typeof params === "object" ? params : {});
  entries.sort(([a], [b]) => (b === "clickid") - (a === "clickid"));
  return entries.map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
}

const LANDED = ["created", "updated", "unchanged"];
const LOG_PAGE = 50;

async function moneyPage() {
  const [linkList, today] = await Promise.all([allLinks(), serverToday()]);
  const names = new Map(linkList.map((l) => [l.id, l.name]));
  const section = (id, title, ...body) => h("div", { class: "card", id }, h("h2", {}, title), ...body);

  // 1. Costs: one entry a link (or sub_id) and day, by hand or from a CSV file.
  const list = h("div", { class: "table-wrap", id: "costs-list" });
  const listError = h("div", { class: "error", role: "alert" });
  const costForm = form([
    { name: "link_id", label: t("link"), options: linkList.map((l) => [String(l.id), l.name]) },
    { name: "day", label: t("day"), type: "date", value: addDays(today, -1) },
    { name: "sub_id", label: t("sub_id_optional"), placeholder: t("whole_link") },
    { name: "amount", label: t("amount"), inputmode: "decimal", placeholder: "0.00" },
  ], t("save_cost"), async (v) => {
    const body = { link_id: /^\d+$/.test(v.link_id) ? Number(v.link_id) : v.link_id, day: v.day, amount: v.amount.trim().replace(",", ".") };
    if (v.sub_id.trim()) body.sub_id = v.sub_id.trim();
    await api("POST", "/api/costs", body);
    costForm.inputs.sub_id.value = "";
    costForm.inputs.amount.value = "";
    toast(t("saved"));
    await loadCosts();
  });
  costForm.node.id = "cost-form";
  costForm.node.classList.add("cost-form");
  costForm.inputs.day.max = today;
  const loadCosts = async () => {
    listError.textContent = "";
    let r;
    try { r = await api("GET", `/api/costs?from=${addDays(today, -30)}&to=${today}`); }
    catch (e) { showError(e, {}, listError); return; }
    const rows = [...r.data].sort((a, b) => b.day.localeCompare(a.day));
    list.replaceChildren(table([
      { key: "day", label: t("day") },
      { key: "link_id", label: t("link"), show: (c) => names.get(c.link_id) ?? `#${c.link_id}` },
      { key: "sub_id", label: "sub_id", show: (c) => c.sub_id ?? h("span", { class: "muted" }, t("whole_link")) },
      { key: "amount", label: t("amount"), num: true, show: (c) => money(c.amount) },
      { key: "id", label: "", show: (c) => h("button", { class: "danger", type: "button", "data-cost": c.id, onclick: async (ev) => {
        ev.currentTarget.disabled = true;
        try { const res = await api("DELETE", `/api/costs/${c.id}`); toast(res.message || t("saved")); }
        catch (e) { showError(e, {}, listError); }
        await loadCosts();
      } }, t("delete")) },
    ], rows, { empty: t("no_costs") }));
  };
  const file = h("input", { type: "file", id: "costs-file", accept: ".csv,text/csv", "aria-label": t("costs_file") });
  const uploaded = h("div", { id: "costs-upload-result", "aria-live": "polite" });
  const upload = h("button", { type: "button", class: "secondary", id: "costs-upload", onclick: async () => {
    uploaded.replaceChildren();
    const chosen = file.files[0];
    if (!chosen) { uploaded.replaceChildren(h("div", { class: "error" }, t("choose_file"))); return; }
    upload.disabled = true;
    try {
      const r = await api("POST", "/api/costs/import", await chosen.text(), "text/csv");
      uploaded.replaceChildren(h("div", { class: "notice", id: "costs-imported" }, t(r.count === 1 ? "costs_imported_one" : "costs_imported", { n: r.count })));
      file.value = "";
      await loadCosts();
    } catch (e) {
      if (e instanceof ApiError && e.status === 422 && e.body.errors) {
        uploaded.replaceChildren(h("div", { class: "error", role: "alert" }, t("nothing_imported")),
          h("ul", { class: "error lines", id: "costs-upload-errors" }, importErrors(e).map((text) => h("li", {}, text))));
      } else {
        const box = h("div", { class: "error", role: "alert" });
        uploaded.replaceChildren(box);
        showError(e, {}, box);
      }
    } finally { upload.disabled = false; }
  } }, t("upload_csv"));
  const costs = section("costs", t("costs_title"), h("p", { class: "muted" }, t("costs_help")),
    linkList.length ? costForm.node : h("p", { class: "notice" }, t("need_link"), " ", h("a", { href: "/links", "data-link": true }, t("create_link"))),
    h("h3", {}, t("costs_recent")), listError, list,
    h("h3", {}, t("costs_csv")), h("p", { class: "muted" }, t("costs_csv_help"), " ", h("code", {}, "day,link_id,sub_id,amount")),
    h("div", { class: "upload" }, file, upload), uploaded);

  // 2. Conversion import: a dry run first, then the same text for real.
  const csv = h("textarea", { id: "import-csv", class: "mono", rows: 6, placeholder: "clickid,status,payout,txid", spellcheck: "false",
    autocomplete: "off", "aria-label": t("conv_csv") });
  let checked = null; // the text whose dry run succeeded
  const dryRun = h("button", { type: "button", class: "secondary", id: "import-dry-run" }, t("dry_run"));
  const run = h("button", { type: "button", id: "import-run", disabled: true }, t("run_import"));
  const importError = h("div", { class: "error", role: "alert", id: "import-error" });
  const result = h("div", { id: "import-result", "aria-live": "polite" });
  const allowRun = () => { run.disabled = checked === null || csv.value !== checked; };
  csv.addEventListener("input", allowRun);
  const showResult = (r) => {
    const stat = (key) => h("div", { class: "stat" }, h("div", { class: "label" }, t(`count_${key}`)),
      h("div", { class: "value", id: `count-${key}` }, String(r.counts?.[key] ?? 0)));
    result.replaceChildren(
      h("div", { class: r.dry_run ? "notice" : "notice ok", id: "import-mode", "data-dry-run": String(!!r.dry_run) },
        h("strong", {}, r.dry_run ? t("dry_run_title") : t("import_title")), " ", r.dry_run ? t("dry_run_note") : t("import_note")),
      h("div", { class: "cards counts" }, [...LANDED, "unknown_clickid", "invalid"].map(stat)),
      ...(r.rows?.length ? [h("h3", {}, t("not_landed")), h("div", { class: "table-wrap", id: "import-rows" }, table([
        { key: "line", label: t("line"), num: true },
        { key: "clickid", label: "clickid", show: (row) => (row.clickid ? h("span", { class: "mono" }, row.clickid) : "—") },
        { key: "outcome", label: t("outcome"), show: (row) => h("span", { class: "outcome-bad", title: row.outcome }, t(`count_${row.outcome}`)) },
        { key: "reason", label: t("reason"), show: (row) => h("span", { class: "wrap" }, row.reason || "") },
      ], r.rows))] : [h("p", { class: "muted" }, t("all_landed"))]));
  };
  const send = async (dry) => {
    const text = csv.value;
    importError.textContent = "";
    dryRun.disabled = run.disabled = true;
    try {
      const r = await api("POST", `/api/conversions/import${dry ? "?dry_run=1" : ""}`, text, "text/csv");
      checked = dry ? text : null;
      showResult(r);
    } catch (e) {
      checked = null;
      result.replaceChildren();
      if (e instanceof ApiError && e.status === 422 && e.body.errors) importError.textContent = Object.values(e.body.errors).flat().join(" ");
      else showError(e, {}, importError);
    } finally {
      dryRun.disabled = false;
      allowRun();
    }
  };
  dryRun.addEventListener("click", () => send(true));
  run.addEventListener("click", () => send(false));
  const imports = section("conversion-import", t("conv_import"), h("p", { class: "muted" }, t("conv_import_help")),
    h("div", { class: "field" }, csv), h("div", { class: "row" }, dryRun, run), h("p", { class: "muted" }, t("import_needs_dry_run")),
    importError, result);

  // 3. Received postbacks, newest first, 50 at a time.
  let shown = [];
  const log = h("div", { class: "table-wrap", id: "postback-log" });
  const logError = h("div", { class: "error", role: "alert" });
  const more = h("button", { type: "button", class: "secondary", id: "postbacks-more", hidden: true }, t("load_more"));
  const refresh = h("button", { type: "button", class: "secondary", id: "postbacks-refresh" }, t("refresh"));
  const loadLog = async (offset) => {
    logError.textContent = "";
    more.disabled = refresh.disabled = true;
    try {
      const r = await api("GET", `/api/postbacks?limit=${LOG_PAGE}&offset=${offset}`);
      const seen = new Set(offset ? shown.map((p) => p.id) : []);
      shown = [...(offset ? shown : []), ...r.data.filter((p) => !seen.has(p.id))];
      more.hidden = r.data.length < LOG_PAGE;
      log.replaceChildren(table([
        { key: "received_at", label: t("time"), show: (p) => when(p.received_at) },
        { key: "outcome", label: t("outcome"), show: (p) => h("span", { class: LANDED.includes(p.outcome) ? "outcome-ok" : "outcome-bad",
          title: t(`outcome_${p.outcome}`) }, p.outcome) },
        { key: "status", label: t("http_status"), num: true },
        { key: "params", label: t("params_col"), show: (p) => h("span", { class: "mono params-summary" }, paramsSummary(p.params)) },
        { key: "ip", label: "IP", show: (p) => h("span", { class: "mono" }, p.ip) },
      ], shown, { empty: t("no_postbacks") }));
    } catch (e) { showError(e, {}, logError); }
    finally { more.disabled = refresh.disabled = false; }
  };
  more.addEventListener("click", () => loadLog(shown.length));
  refresh.addEventListener("click", () => loadLog(0));
  const postbacks = section("postbacks", t("postback_log"),
    h("p", { class: "muted" }, t("postback_log_help"), " ", h("code", { id: "money-postback-url" }, me.postback_url)),
    logError, log, h("div", { class: "row log-actions" }, more, refresh));

  app.append(h("h1", {}, t("money_nav")), costs, imports, postbacks);
  await Promise.all([loadCosts(), loadLog(0)]);
}

// ---- reports (§12): grouped, narrowed by filters, drilled down, downloaded --

const REPORT_GROUPS = ["day", "link", "destination", "sub_id", "country", "device", "os", "hour"];
/** The order a drill-down walks: a row's value becomes a filter, and the report groups by the next dimension not yet narrowed. */
const DRILL_ORDER = ["link", "destination", "sub_id", "country", "device", "os", "hour", "day"];
/** The filter a grouping's value sets; `os` and `hour` have none (the API cannot narrow by them), `day` narrows the dates. */
const FILTER_OF = { link: "link_id", destination: "destination_id", sub_id: "sub_id", country: "country", device: "device" };
const GROUP_OF = Object.fromEntries(Object.entries(FILTER_OF).map(([g, f]) => [f, g]));
const REPORT_FILTERS = Object.values(FILTER_OF);
const REPORT_LIMIT = 1000;
const isDate = (text) => /^\d{4}-\d{2}-\d{2}$/.test(text || "");
/** Names of links and destinations seen in reports and lists ("link:7" → "Summer offer"), for the filters' chips. */
const reportNames = new Map();

/** The reports page's state from its address: grouping, dates and filters. */
function reportState(search) {
  const q = new URLSearchParams(search);
  const filters = {};
  for (const f of REPORT_FILTERS) if (q.get(f)) filters[f] = q.get(f);
  return { group: REPORT_GROUPS.includes(q.get("group_by")) ? q.get("group_by") : "day",
    from: isDate(q.get("from")) ? q.get("from") : null, to: isDate(q.get("to")) ? q.get("to") : null, filters };
}

/** The query of a state (the page's address and the API's): `group_by=…&from=…&to=…&sub_id=…`, then `extra`. */
function reportQuery(s, extra = {}) {
  const q = new URLSearchParams({ group_by: s.group });
  if (s.from) q.set("from", s.from);
  if (s.to) q.set("to", s.to);
  for (const f of REPORT_FILTERS) if (s.filters[f] !== undefined) q.set(f, s.filters[f]);
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q.toString();
}

const reportUrl = (s) => `/reports?${reportQuery(s)}`;

/** The grouping after `group` in the drill-down order that `s` has not narrowed yet (wrapping round). */
function nextGroup(group, s) {
  const narrowed = (g) => g === group || (FILTER_OF[g] && s.filters[FILTER_OF[g]] !== undefined) || (g === "day" && s.from && s.from === s.to);
  const at = DRILL_ORDER.indexOf(group);
  return [...DRILL_ORDER.slice(at + 1), ...DRILL_ORDER.slice(0, at)].find((g) => !narrowed(g)) || group;
}

/** The value of a row the API can narrow to, as its filter takes it; null when it cannot (os, hour, no sub_id, a bot). */
function drillValue(group, row) {
  const v = row[group];
  switch (group) {
    case "link": case "destination": return Number.isInteger(v) && v > 0 ? String(v) : null;
    case "sub_id": return typeof v === "string" && v !== "" ? v : null;
    case "country": return /^[A-Z]{2}$/.test(v || "") ? v : null;
    case "device": return ["mobile", "tablet", "desktop"].includes(v) ? v : null;
    case "day": return isDate(v) ? v : null;
    default: return null;
  }
}

/** The state a click on a row's value leads to: that value as a filter (a day: the dates), grouped by the next dimension. */
function drillState(s, group, value) {
  const next = { ...s, filters: { ...s.filters } };
  if (group === "day") next.from = next.to = value;
  else next.filters[FILTER_OF[group]] = value;
  next.group = nextGroup(group, next);
  return next;
}

/** A group's value as the page shows it: a link or destination by name, a device or OS by its word, an hour as 14:00. */
function groupLabel(group, v, name) {
  if (v === "" || v === null || v === undefined) return t("rep_none");
  switch (group) {
    case "link": case "destination": return name ?? reportNames.get(`${group}:${v}`) ?? `#${v}`;
    case "device": return DEVICES.includes(v) ? t(`device_${v}`) : String(v);
    case "os": return OSES.find(([o]) => o === v)?.[1] || (v === "other" ? t("os_other") : String(v));
    case "hour": return `${String(v).padStart(2, "0")}:00`;
    default: return String(v);
  }
}

/** Learns the names the filters' chips show: links from the list, destinations from their link's routing. */
async function learnNames(s) {
  const link = s.filters.link_id, destination = s.filters.destination_id;
  const jobs = [];
  if (link && !reportNames.has(`link:${link}`)) {
    jobs.push(allLinks().then((all) => all.forEach((l) => reportNames.set(`link:${l.id}`, l.name))));
  }
  if (destination && link && !reportNames.has(`destination:${destination}`)) {
    jobs.push(api("GET", `/api/links/${link}/routing`).then((r) => r.data.destinations.forEach((d) => reportNames.set(`destination:${d.id}`, d.name))));
  }
  await Promise.all(jobs.map((job) => job.catch(() => {})));
}

/** Totals of report rows: sums, with CR, ROI, EPC and CPC worked out again from the sums (ROI none without cost). */
function reportTotals(rows) {
  const sum = (k) => rows.reduce((a, r) => a + (r[k] || 0), 0);
  const cents = (k) => rows.reduce((a, r) => a + Math.round((r[k] || 0) * 100), 0);
  const clicks = sum("clicks"), approved = sum("approved_leads");
  const revenue = cents("revenue"), cost = cents("cost"), profit = cents("profit");
  const per = (n, d) => (d > 0 ? Math.round(n / d) / 100 : 0);
  return { clicks, unique_clicks: sum("unique_clicks"), leads: sum("leads"), approved_leads: approved,
    cr: per(approved * 10000, clicks), revenue: revenue / 100, cost: cost / 100, profit: profit / 100,
    roi: cost > 0 ? Math.round((profit * 10000) / cost) / 100 : null, epc: per(revenue, clicks), cpc: per(cost, clicks) };
}

async function reports() {
  const search = location.search;
  const s = reportState(search);
  const from = h("input", { type: "date", id: "report-from" });
  const to = h("input", { type: "date", id: "report-to" });
  const group = h("select", { id: "report-group" }, REPORT_GROUPS.map((g) => h("option", { value: g, selected: g === s.group }, t(`rep_by_${g}`))));
  const csv = h("button", { type: "button", class: "secondary", id: "report-csv" }, t("download_csv"));
  const chips = h("div", { class: "chips", id: "report-filters", hidden: true });
  const error = h("div", { class: "error", role: "alert", id: "report-error" });
  const box = h("div", { class: "table-wrap", id: "report-table" }, h("p", { class: "muted" }, t("loading")));
  const note = h("p", { class: "muted", id: "report-note" });
  const field = (label, input) => h("div", { class: "field" }, h("label", { for: input.id }, label), input);
  app.append(h("h1", {}, t("reports")),
    h("div", { class: "card", id: "report-controls" },
      h("div", { class: "report-fields" }, field(t("date_from"), from), field(t("date_to"), to), field(t("group_by"), group),
        h("div", { class: "field report-download" }, csv)),
      chips, h("p", { class: "muted" }, t("drill_help"))),
    h("div", { class: "card", id: "report" }, error, box, note));

  // Without dates: the last 7 days ending on the server's today, written into the address.
  if (!s.from || !s.to) {
    const today = await serverToday();
    if (location.pathname !== "/reports" || location.search !== search) return; // left meanwhile
    s.to ||= s.from && s.from > today ? s.from : today;
    s.from ||= addDays(s.to, -6);
    history.replaceState({}, "", reportUrl(s));
  }
  from.value = s.from;
  to.value = s.to;
  from.max = s.to;
  to.min = s.from;
  const change = (next) => go(reportUrl({ ...s, ...next }));
  from.addEventListener("change", () => change({ from: from.value || null }));
  to.addEventListener("change", () => change({ to: to.value || null }));
  group.addEventListener("change", () => change({ group: group.value }));

  const drawChips = () => {
    const active = REPORT_FILTERS.filter((f) => s.filters[f] !== undefined);
    chips.hidden = !active.length;
    chips.replaceChildren(h("span", { class: "chips-label" }, `${t("filters")}:`), ...active.map((f) => {
      const label = `${t(`rep_by_${GROUP_OF[f]}`)}: ${groupLabel(GROUP_OF[f], s.filters[f])}`;
      const without = { ...s, filters: { ...s.filters } };
      delete without.filters[f];
      return h("span", { class: "chip", "data-filter": f }, h("span", { class: "chip-text" }, label),
        h("button", { type: "button", class: "chip-remove", title: t("remove_filter", { name: label }), "aria-label": t("remove_filter", { name: label }),
          onclick: () => go(reportUrl(without)) }, "×"));
    }));
  };
  drawChips();

  csv.addEventListener("click", async () => {
    error.textContent = "";
    csv.disabled = true;
    try {
      const res = await fetch(`/api/reports?${reportQuery(s, { limit: REPORT_LIMIT, format: "csv" })}`,
        { headers: { Accept: "text/csv", Authorization: `Bearer ${localStorage.getItem(TOKEN)}` } });
      if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => ({})));
      const url = URL.createObjectURL(await res.blob());
      const a = h("a", { href: url, download: `apextrack-${s.group}-${s.from}-${s.to}.csv`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    } catch (e) { showError(e, {}, error); }
    finally { csv.disabled = false; }
  });

  let r;
  try {
    [r] = await Promise.all([api("GET", `/api/reports?${reportQuery(s, { limit: REPORT_LIMIT })}`), learnNames(s)]);
  } catch (e) {
    box.replaceChildren();
    if (e instanceof ApiError && e.status === 422 && e.body.errors) error.textContent = Object.values(e.body.errors).flat().join(" ");
    else showError(e, {}, error);
    return;
  }
  const g = s.group;
  const rows = r.data;
  const byId = g === "link" || g === "destination";
  if (byId) rows.forEach((row) => row.name && reportNames.set(`${g}:${row[g]}`, row.name));
  drawChips();
  const next = (row) => drillState(s, g, drillValue(g, row));
  const columns = [
    { key: g, label: t(`rep_by_${g}`), sort: (row) => (byId ? groupLabel(g, row[g], row.name).toLowerCase() : row[g]),
      show: (row) => {
        const label = groupLabel(g, row[g], row.name);
        if (drillValue(g, row) === null) return h("span", { class: "group-value" }, label);
        const target = next(row);
        return h("a", { href: reportUrl(target), "data-link": true, class: "drill", title: t("drill_to", { dim: t(`rep_by_${target.group}`) }) }, label);
      } },
    { key: "clicks", label: t("clicks"), num: true },
    { key: "unique_clicks", label: t("unique"), num: true },
    { key: "leads", label: t("conversions"), num: true },
    { key: "approved_leads", label: t("approved"), num: true },
    { key: "cr", label: t("cr"), num: true, show: (row) => row.cr.toFixed(2) },
    { key: "revenue", label: t("revenue"), num: true, show: (row) => money(row.revenue) },
    ...moneyColumns(),
    { key: "epc", label: t("epc"), num: true, show: (row) => money(row.epc) },
    { key: "cpc", label: t("cpc"), num: true, show: (row) => money(row.cpc) },
  ];
  const totals = reportTotals(rows);
  const foot = columns.map((c, i) => (i === 0 ? t("total") : c.show ? c.show(totals) : totals[c.key]));
  box.replaceChildren(table(columns, rows, { sortable: true, empty: t("empty_title"), foot,
    sorted: { key: g === "day" ? "day" : "clicks", desc: true } }));
  box.dataset.group = g;
  note.textContent = rows.length >= REPORT_LIMIT ? t("rows_limited", { n: REPORT_LIMIT }) : "";
}

async function settings() {
  app.append(h("h1", {}, t("settings")));
  const section = (title, ...body) => h("div", { class: "card" }, h("h2", {}, title), ...body);

  // Profile, language, currency
  const langForm = form([{ name: "language", label: t("language"), value: me.language, options: [["id", "Bahasa Indonesia"], ["en", "English"]] }],
    t("save"), async (v) => { await api("PATCH", "/api/users/language", { language: v.language }); me = null; render(); });
  const curForm = form([{ name: "currency", label: t("currency"), value: me.currency }], t("save"), async (v) => {
    const res = await api("PATCH", "/api/users/currency", { currency: v.currency }); me.currency = res.data.currency; toast(res.message); });
  app.append(section(t("profile"), h("p", {}, h("strong", {}, me.name), " · ", me.email), h("div", { class: "grid2" }, langForm.node, curForm.node)));

  // Postback URL
  const pb = h("code", { id: "postback-url" }, me.postback_url);
  app.append(section(t("postback"), h("p", {}, pb), h("div", { class: "row" },
    h("button", { class: "secondary", type: "button", onclick: () => copy(pb.textContent) }, t("copy")),
    h("button", { class: "danger", type: "button", onclick: async () => { if (confirm(t("confirm_rotate"))) { const r = await api("POST", "/api/user/postback-secret"); pb.textContent = r.postback_url; me.postback_url = r.postback_url; } } }, t("rotate")))));

  // Phone
  const phoneBox = h("div");
  const phoneForm = form([
    { name: "phone", label: t("phone"), type: "tel", value: "" }, { name: "dialCode", label: t("dial_code"), value: "+62" },
    { name: "countryCode", label: t("country_code"), value: "ID" }, { name: "otpCode", label: t("code"), inputmode: "numeric" },
  ], t("bind"), async (v) => { const r = await api("POST", "/api/users/phone-bind", v); me = r.data; toast(r.message); render(); },
  [h("p", {}, h("button", { class: "secondary", type: "button", id: "send-sms", onclick: async () => {
    const v = Object.fromEntries(["phone", "dialCode", "countryCode"].map((k) => [k, phoneForm.inputs[k].value]));
    try { const r = await api("POST", "/api/users/phone-otp", v); toast(r.message); } catch (e) { showError(e, {}, phoneForm.general); }
  } }, t("send_code")))]);
  phoneBox.append(me.phone ? h("p", {}, t("phone_bound", { p: me.phone })) : phoneForm.node);
  app.append(section(t("phone"), phoneBox));

  // 2FA
  const tfa = h("div", { id: "twofa" });
  app.append(section(t("twofa"), tfa));
  const status = await api("GET", "/api/users/twofa");
  if (status.data.bound) {
    const off = form([{ name: "otpCode", label: t("code"), inputmode: "numeric" }], t("disable"), async (v) => {
      const r = await api("POST", "/api/users/twofa-unbind", v); toast(r.message); me = null; render(); });
    tfa.append(h("p", {}, t("twofa_on")), off.node);
  } else {
    const svg = `data:image/svg+xml;base64,${btoa(status.data.qr_svg)}`;
    const on = form([{ name: "otpCode", label: t("code"), inputmode: "numeric" }], t("enable"), async (v) => {
      const r = await api("POST", "/api/users/twofa-bind", v);
      tfa.replaceChildren(h("p", {}, t("twofa_on")), h("p", {}, t("recovery_codes")),
        h("ul", { class: "codes", id: "recovery-codes" }, r.data.recovery_codes.map((c) => h("li", {}, c))));
      me.two_factor_enabled = true;
    });
    tfa.append(h("p", { class: "muted" }, t("twofa_off")), h("div", { class: "qr" }, h("img", { src: svg, alt: "QR" })),
      h("p", {}, t("secret"), ": ", h("code", { id: "twofa-secret" }, status.data.secret)), on.node);
  }

  // API keys
  const keys = h("div");
  const shown = h("div");
  const perms = ["dashboard:read", "reports:read", "links:read", "links:write"];
  const checks = perms.map((p) => h("label", { class: "check" }, h("input", { type: "checkbox", value: p, checked: p.endsWith(":read") }), p));
  const fields = [{ name: "apiName", label: t("api_name") }, { name: "emailOtpCode", label: t("email_code"), inputmode: "numeric" }];
  if (me.phone) fields.push({ name: "phoneOtpCode", label: t("phone_code"), inputmode: "numeric" });
  const smsButton = me.phone ? h("button", { class: "secondary", type: "button", id: "sms-code", onclick: async () => {
    try { const r = await api("POST", "/api/users/phone-otp", { phone: me.phone, dialCode: me.phone.slice(0, 3), countryCode: "ID" }); toast(r.message); }
    catch (e) { showError(e, {}, keyForm.general); } } }, t("send_code")) : null;
  const keyForm = form(fields, t("create_key"), async (v) => {
    const body = { ...v, permissions: checks.map((c) => c.querySelector("input")).filter((i) => i.checked).map((i) => i.value) };
    if (!body.phoneOtpCode) delete body.phoneOtpCode;
    const r = await api("POST", "/api/user/api-key", body);
    showSecret(r.data);
    keyForm.node.reset();
    await loadKeys();
  }, [h("div", { class: "field" }, h("label", {}, t("permissions")), checks),
      h("p", {}, h("button", { class: "secondary", type: "button", id: "email-code", onclick: async () => {
        try { const r = await api("POST", "/api/users/email-otp"); toast(r.message); } catch (e) { showError(e, {}, keyForm.general); } } }, t("request_email_code")), " ", smsButton)]);
  const showSecret = (k) => shown.replaceChildren(h("div", { class: "notice", id: "new-secret" }, h("p", {}, t("secret_once")),
    h("p", {}, "API key: ", h("code", {}, k.apiKey)), h("p", {}, "Secret: ", h("code", { id: "secret-key" }, k.secretKey),
      " ", h("button", { class: "secondary", type: "button", onclick: () => copy(k.secretKey) }, t("copy")))));
  const loadKeys = async () => {
    const r = await api("GET", "/api/user/api-key?sortBy=createdAt&sort=desc");
    keys.replaceChildren(table([
      { key: "apiName", label: t("api_name") }, { key: "apiKey", label: "API key", show: (k) => h("code", {}, k.apiKey) },
      { key: "permissions", label: t("permissions"), show: (k) => k.permissions.join(", ") },
      { key: "createdAt", label: t("created"), show: (k) => when(k.createdAt) },
      { key: "id", label: "", show: (k) => h("span", { class: "row" },
        h("button", { class: "secondary", type: "button", onclick: async () => { const r = await api("PUT", "/api/user/api-key", { apiKeyId: k.id, apiKey: k.apiKey, permissions: k.permissions }); showSecret(r.data); loadKeys(); } }, t("regenerate")),
        h("button", { class: "danger", type: "button", onclick: async () => { await api("DELETE", "/api/user/api-key", { apiKeyId: k.id, apiKey: k.apiKey }); loadKeys(); } }, t("delete"))) },
    ], r.data.items, { empty: t("no_keys") }));
  };
  app.append(section(t("api_keys"), keyForm.node, shown, keys));
  await Promise.all([loadKeys(), notifySettings()]);
}

// ---- notifications (§13): Telegram, a webhook, the daily digest, a stop-loss --

const CHANNELS = { telegram: "Telegram", webhook: "Webhook" };
/** An event's name in words (the server's name itself for one this UI does not know yet). */
const eventLabel = (name) => (t(`event_${name}`) === `event_${name}` ? name : t(`event_${name}`));

/** The settings' card "notifications": each channel's fields and events, the digest hour and stop-loss, saved by one PUT; and a test. */
async function notifySettings() {
  const card = h("div", { class: "card", id: "notifications" }, h("h2", {}, t("notifications")));
  app.append(card);
  let n;
  try { n = await api("GET", "/api/notifications"); }
  catch (e) { const box = h("div", { class: "error", role: "alert" }); card.append(box); showError(e, {}, box); return; }
  let errors = {};      // the API's field name (telegram.bot_token) → the element showing its errors
  const editor = h("form", { id: "notify-form", novalidate: true });
  const general = h("div", { class: "error", role: "alert", id: "notify-error" });
  const secretBox = h("div", { id: "webhook-new-secret" });
  const lastBoxes = Object.fromEntries(Object.keys(CHANNELS).map((c) => [c, h("div", { id: `${c}-last-error`, "aria-live": "polite" })]));
  const idOf = (key) => key.replaceAll(".", "-");
  const errorBox = (key) => (errors[key] = h("div", { class: "error", id: `e-${idOf(key)}` }));
  const input = (key, attrs) => h("input", { id: `f-${idOf(key)}`, autocomplete: "off", ...attrs });
  const field = (label, control, key, help) => h("div", { class: "field" }, h("label", { for: control.id }, label), control,
    help ? h("div", { class: "muted" }, help) : null, errorBox(key));
  const valueOf = (key) => editor.querySelector(`#f-${idOf(key)}`).value.trim();
  const ticked = (c) => n.event_names.filter((name) => editor.querySelector(`#f-${c}-events-${name}`).checked);
  /** A channel's events as checkboxes; a channel not set yet offers all but the stop-loss (which needs an amount). */
  const events = (c) => h("fieldset", { class: "field" }, h("legend", {}, t("notify_events")),
    h("div", { class: "checks" }, n.event_names.map((name) => h("label", { class: "check" },
      h("input", { type: "checkbox", id: `f-${c}-events-${name}`, value: name,
        checked: n[c] ? n[c].events.includes(name) : name !== "stop_loss" }), eventLabel(name)))),
    errorBox(`${c}.events`));
  const showLast = (from) => Object.entries(lastBoxes).forEach(([c, box]) => {
    const last = from[c]?.last_error;
    box.replaceChildren(...(last ? [h("div", { class: "notice bad" }, t("notify_last_failed", { message: last.message, at: when(last.at) }))] : []));
  });
  const state = (c) => h("p", { class: "muted", id: `${c}-state` }, n[c] ? t("channel_on") : t("channel_off"));
  const busy = (on) => editor.querySelectorAll("button").forEach((b) => (b.disabled = on));

  /** PUT `body`; the answer is drawn again, a webhook secret that came whole is shown once. */
  const save = async (body) => {
    Object.values(errors).forEach((el) => (el.textContent = ""));
    general.textContent = "";
    busy(true);
    try {
      n = await api("PUT", "/api/notifications", body);
      const secret = n.webhook?.secret || "";
      if (!n.webhook) secretBox.replaceChildren();
      else if (secret.startsWith("whsec_") && !secret.includes("…")) {
        secretBox.replaceChildren(h("div", { class: "notice", id: "new-webhook-secret" }, h("p", {}, t("secret_once")),
          h("p", {}, `${t("webhook_secret")}: `, h("code", { id: "webhook-secret" }, secret), " ",
            h("button", { class: "secondary", type: "button", onclick: () => copy(secret) }, t("copy")))));
      }
      draw();
      toast(t("saved"));
    } catch (e) { placeErrors(e, errors, general); }
    finally { busy(false); }
  };
  const off = (c) => h("button", { type: "button", class: "danger", id: `${c}-off`,
    onclick: () => confirm(t("notify_confirm_off", { channel: CHANNELS[c] })) && save({ [c]: null }) }, t("turn_off"));

  const draw = () => {
    errors = {};
    const tg = n.telegram, wh = n.webhook;
    editor.replaceChildren(
      h("h3", {}, "Telegram"), state("telegram"), errorBox("telegram"),
      h("ol", { class: "muted howto", id: "telegram-howto" }, ["tg_step1", "tg_step2", "tg_step3"].map((k) => h("li", {}, t(k)))),
      lastBoxes.telegram,
      h("div", { class: "fields roomy" },
        field(t("bot_token"), input("telegram.bot_token", { placeholder: tg?.bot_token || "123456789:AA…", spellcheck: "false" }),
          "telegram.bot_token", tg ? t("bot_token_keep") : null),
        field(t("chat_id"), input("telegram.chat_id", { value: tg?.chat_id || "", placeholder: "-1001234567890" }), "telegram.chat_id")),
      events("telegram"),
      tg ? h("p", {}, off("telegram")) : null,
      h("h3", {}, "Webhook"), state("webhook"), errorBox("webhook"), h("p", { class: "muted howto" }, t("webhook_help")),
      lastBoxes.webhook,
      field(t("webhook_url"), input("webhook.url", { type: "url", value: wh?.url || "", placeholder: "https://hooks.example.com/apextrack" }), "webhook.url"),
      wh?.secret.includes("…") ? h("p", {}, `${t("webhook_secret")}: `, h("code", { id: "webhook-secret-masked" }, wh.secret)) : null,
      events("webhook"),
      secretBox,
      wh ? h("div", { class: "row" }, h("button", { type: "button", class: "secondary", id: "webhook-rotate", onclick: () => confirm(t("confirm_new_secret"))
        && save({ webhook: { url: wh.url, events: wh.events, rotate_secret: true } }) }, t("new_secret")), off("webhook")) : null,
      h("h3", {}, t("notify_general")),
      h("div", { class: "fields roomy" },
        field(t("digest_hour"), h("select", { id: "f-digest_hour" }, [...Array(24).keys()].map((hr) =>
          h("option", { value: hr, selected: hr === n.digest_hour }, `${String(hr).padStart(2, "0")}:00`))), "digest_hour", t("digest_hour_help")),
        field(t("stop_loss_amount"), input("stop_loss_amount", { inputmode: "decimal", value: n.stop_loss_amount ?? "", placeholder: t("stop_loss_off") }),
          "stop_loss_amount", t("stop_loss_help"))),
      general, h("button", { type: "submit", id: "notify-save" }, t("save")));
    showLast(n);
  };
  editor.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = { digest_hour: Number(valueOf("digest_hour")), stop_loss_amount: valueOf("stop_loss_amount").replace(",", ".") || null };
    // An empty token field keeps the stored token: the masked one is never sent back.
    const token = valueOf("telegram.bot_token"), chat = valueOf("telegram.chat_id"), url = valueOf("webhook.url");
    if (n.telegram || token || chat) body.telegram = { ...(token ? { bot_token: token } : {}), chat_id: chat, events: ticked("telegram") };
    if (n.webhook || url) body.webhook = { url, events: ticked("webhook") };
    save(body);
  });

  // A test message through the saved channels: each channel's outcome as the server saw it.
  const results = h("ul", { class: "test-results", id: "notify-test-results", "aria-live": "polite" });
  const testError = h("div", { class: "error", role: "alert", id: "notify-test-error" });
  const test = h("button", { type: "button", class: "secondary", id: "notify-test", onclick: async () => {
    testError.textContent = "";
    results.replaceChildren();
    test.disabled = true;
    try {
      const r = await api("POST", "/api/notifications/test");
      results.replaceChildren(...r.results.map((x) => h("li", { class: x.ok ? "outcome-ok" : "outcome-bad", "data-channel": x.channel, "data-ok": String(x.ok) },
        h("strong", {}, CHANNELS[x.channel] || x.channel), `: ${x.ok ? t("notify_ok") : t("notify_failed")} · ${x.status ?? t("no_answer")}`,
        x.response ? h("span", { class: "mono" }, ` · ${x.response}`) : null)));
      api("GET", "/api/notifications").then(showLast).catch(() => {});
    } catch (e) { showError(e, {}, testError); }
    finally { test.disabled = false; }
  } }, t("send_test"));
  card.append(h("p", { class: "muted" }, t("notify_help")), editor,
    h("h3", {}, t("send_test")), h("p", { class: "muted" }, t("notify_test_help")), h("p", {}, test), testError, results);
  draw();
}

setLang((navigator.language || "id").toLowerCase().startsWith("en") ? "en" : "id");
render();
