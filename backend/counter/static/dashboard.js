// The hall dashboard: a hall admin logs in, picks a period, and sees the figures and the server's SVG charts.
// The staff token stays in this tab's sessionStorage and goes in the Authorization header (no cookie).
import { api, ApiError, h, show, say, sayError } from "/static/web/common.js";
import { bindPasswordForm, clearPasswordForm } from "./password_form.js";

const KEY = "palmhall.dashboard";
const $ = (id) => document.getElementById(id);
const views = ["login-view", "password-view", "denied", "board-view"];
let halls = [];
let username = "";  // kept for the login again after a password change, which ends the old token

function only(id) {
  for (const v of views) $(v).hidden = v !== id;
  $("logout").hidden = id === "login-view";
}

function token() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (saved && saved.token && saved.expiresAt > Date.now()) return saved.token;
  } catch (err) { /* a damaged entry is as good as none */ }
  sessionStorage.removeItem(KEY);
  return null;
}

function auth() {
  return { Authorization: "Bearer " + token() };
}

function keep(answer) {
  sessionStorage.setItem(KEY, JSON.stringify({ token: answer.access_token,
                                               expiresAt: Date.now() + answer.expires_in * 1000 }));
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  clearPasswordForm();
  $("who").textContent = "";
  $("hall-name").textContent = "";
  only("login-view");
  $("login-error").textContent = message || "";
  $("username").focus();
}

function deny(message) {
  show($("denied"), h("h2", {}, "无法查看运行看板"), h("p", {}, message),
       h("p", { class: "muted" }, "运行看板只向本大厅的大厅管理员开放。如需查看，请联系系统管理员授予权限。"));
  only("denied");
}

// ---- formatting ---------------------------------------------------------------------------

const NONE = "—";
const count = (n) => (n === null || n === undefined ? NONE : String(n));
const percent = (r) => (r === null || r === undefined ? NONE : trim((r * 100).toFixed(1)) + "%");
const minutes = (s) => (s === null || s === undefined ? NONE : trim((s / 60).toFixed(1)) + " 分钟");
function trim(text) { return text.endsWith(".0") ? text.slice(0, -2) : text; }

function tile(name, label, value, extra = {}) {
  return h("div", { class: "figure " + (extra.cls || ""), dataset: { figure: name } },
           h("dt", {}, label), h("dd", { class: "figure-value" }, value),
           extra.note ? h("dd", { class: "muted" }, extra.note) : null);
}

function figures(f) {
  const red = (f.by_level && f.by_level.red) || 0;
  const yellow = (f.by_level && f.by_level.yellow) || 0;
  return [
    tile("appointments", "预约", count(f.appointments)),
    tile("checked_in", "签到", count(f.checked_in), { note: "签到率 " + percent(f.checkin_rate) }),
    tile("no_shows", "爽约", count(f.no_shows)),
    tile("tickets", "取号", count(f.tickets), { note: "已叫号 " + count(f.called) }),
    tile("wait_average", "平均等候（取号到叫号）", minutes(f.wait_average_seconds)),
    tile("wait_p90", "90% 的人等候不超过", minutes(f.wait_p90_seconds)),
    tile("submitted", "申请办件", count(f.submitted)),
    tile("deadline", "计时中 · 黄色/红色预警", `${count(f.running)} · ${yellow}/${red}`,
         { cls: red ? "level-red" : yellow ? "level-yellow" : "" }),
    tile("satisfaction", "满意率（好差评）", percent(f.satisfaction_rate),
         { note: `${count(f.satisfied)} / ${count(f.evaluations)} 条评价` }),
    tile("materials_avoided", "免于重复提交材料", percent(f.materials_avoided_rate),
         { note: `${count(f.materials_avoided)} / ${count(f.materials_required)} 份必交材料` }),
    tile("repeat_notices", "再次告知（一次性告知后）", count(f.repeat_notices),
         { note: `共 ${count(f.notices)} 次补正告知，待审批 ${count(f.repeat_requests_pending)}`,
           cls: f.repeat_notices ? "level-yellow" : "" }),
  ];
}

// The server draws the charts and escapes their text; they are parsed as SVG and imported as nodes,
// never assigned as HTML.
function svgNode(text) {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const root = doc.documentElement;
  if (!root || root.localName !== "svg" || doc.getElementsByTagName("parsererror").length) {
    return h("p", { class: "muted" }, "图表无法显示");
  }
  root.querySelectorAll("script, foreignObject").forEach((n) => n.remove());
  for (const el of [root, ...root.querySelectorAll("*")]) {
    for (const attr of [...el.attributes]) if (/^on/i.test(attr.name)) el.removeAttribute(attr.name);
  }
  return document.importNode(root, true);
}

function render(d) {
  $("hall-name").textContent = d.hall.name;
  $("from").value = d.period.from;
  $("to").value = d.period.to;
  $("today-title").textContent = `今日（${d.today.date}）`;
  $("period-title").textContent = `统计期间（${d.period.from} 至 ${d.period.to}，共 ${d.period.days} 天）`;
  show($("today-figures"), figures(d.today));
  show($("period-figures"), figures(d.period));
  for (const name of ["daily", "states", "levels", "ratings", "notice_items", "notice_clerks"]) {
    const svg = svgNode(d.charts[name]);
    const title = svg.querySelector && svg.querySelector("title");
    show($("chart-" + name), h("figcaption", {}, title ? title.textContent : ""), svg);
  }
}

// ---- loading --------------------------------------------------------------------------------

async function load(period = {}) {
  const hallId = $("hall").value;
  const query = new URLSearchParams(Object.entries(period).filter(([, v]) => v));
  $("period-error").textContent = "";
  try {
    const d = await api(`/api/v1/staff/halls/${hallId}/dashboard${query.size ? "?" + query : ""}`,
                        { headers: auth() });
    only("board-view");
    render(d);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signOut("登录已失效，请重新登录");
    if (err instanceof ApiError && err.code === "staff.password_change_required") return askForNewPassword();
    if (err instanceof ApiError && err.status === 403) return deny(err.message);
    if (err instanceof ApiError && err.status === 422) {
      const fields = (err.details && err.details.fields) || [];
      const names = { from: "开始日期", to: "结束日期" };
      $("period-error").textContent = fields.length
        ? fields.map((f) => `${names[f.field] || f.field}：${f.message}`).join("；") : err.message;
      return;
    }
    sayError(err);
  }
}

async function start(me) {
  $("who").textContent = me.display_name || me.username || "";
  username = me.username || username;
  if (me.must_change_password) return askForNewPassword();
  const adminOf = (me.grants || []).filter((g) => (g.roles || []).includes("hall_admin")).map((g) => g.hall_id);
  if (!adminOf.length) return deny("只有本大厅的管理员可以查看运行看板");
  try {
    halls = (await api("/api/v1/halls")).halls || [];
  } catch (err) {
    halls = [];
  }
  const names = new Map(halls.map((x) => [x.id, x.name]));
  show($("hall"), adminOf.map((id) => h("option", { value: id }, names.get(id) || `大厅 ${id}`)));
  $("hall").hidden = $("hall-label").hidden = adminOf.length < 2;
  await load();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    $("login-error").textContent = "请输入用户名和密码";
    return;
  }
  $("login-error").textContent = "";
  try {
    const answer = await api("/api/v1/staff/auth/login", { method: "POST", body: { username, password } });
    keep(answer);
    $("password").value = "";
    await start(answer.staff);
  } catch (err) {
    $("login-error").textContent = err instanceof ApiError ? err.message : "登录失败，请稍后再试";
  }
});

// ---- the one-time password: replaced before the dashboard opens ---------------------------------

function askForNewPassword() {
  clearPasswordForm();
  only("password-view");
  $("old-password").focus();
}

bindPasswordForm({
  change: async (oldPassword, newPassword) => {
    await api("/api/v1/staff/auth/password", { method: "POST", headers: auth(),
                                                body: { old_password: oldPassword, new_password: newPassword } });
    // The change ends every token of the account: log in again with the new password.
    try {
      const answer = await api("/api/v1/staff/auth/login", { method: "POST",
                                                            body: { username, password: newPassword } });
      keep(answer);
      say("密码已修改");
      await start(answer.staff);
    } catch (err) {
      signOut("密码已修改，请用新密码重新登录");
    }
  },
  onError: (err) => {
    if (!(err instanceof ApiError && err.status === 401 && err.code !== "auth.bad_credentials")) return false;
    signOut("登录已失效，请重新登录");
    return true;
  },
});

$("period-form").addEventListener("submit", (event) => {
  event.preventDefault();
  load({ from: $("from").value, to: $("to").value });
});
$("hall").addEventListener("change", () => load({ from: $("from").value, to: $("to").value }));
$("logout").addEventListener("click", () => { signOut(""); say("已退出登录"); });

if (token()) {
  api("/api/v1/staff/me", { headers: auth() }).then(start).catch((err) => {
    if (err instanceof ApiError && err.status === 401) signOut("登录已失效，请重新登录");
    else sayError(err);
  });
} else {
  only("login-view");
}
