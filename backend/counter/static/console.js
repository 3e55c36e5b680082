// Counter console: log in, choose a counter, scan any QR code, call the queue, work cases, answer bad ratings.

import * as session from "./session.js";
import * as casework from "./casework.js";
import * as ratings from "./ratings.js";
import { bindPasswordForm, clearPasswordForm } from "./password_form.js";

const { h, show, say, sayError, fmtTime } = session.common;
const $ = (id) => document.getElementById(id);

const views = { login: $("login-view"), password: $("password-view"), counter: $("counter-view"),
                desk: $("desk-view") };
const scanInput = $("scan-input");

function showView(name) {
  for (const [key, node] of Object.entries(views)) node.hidden = key !== name;
  const s = session.current();
  $("who").hidden = !s;
  $("logout").hidden = !s;
  $("change-counter").hidden = name !== "desk";
  if (s) {
    const c = s.counter;
    $("who").textContent = s.staff.name + (c ? ` · ${c.hall_name} ${c.number}号窗口` : "");
  }
}

// ---- login ----------------------------------------------------------------------------------

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  const error = $("login-error");
  error.textContent = "";
  if (!username || !password) {
    error.textContent = "请输入用户名和密码";
    return;
  }
  try {
    const s = await session.login(username, password);
    $("login-password").value = "";
    if (s.mustChangePassword) askForNewPassword();
    else await chooseCounter();
  } catch (err) {
    // The server's own words: wrong password, or locked after too many wrong ones.
    error.textContent = err.message || "登录失败，请稍后再试";
    $("login-password").value = "";
    $("login-password").focus();
  }
});

// ---- the one-time password: replaced before anything else ------------------------------------

function askForNewPassword() {
  clearPasswordForm();
  showView("password");
  $("old-password").focus();
}

session.onPasswordRequired(askForNewPassword);

bindPasswordForm({
  change: async (oldPassword, newPassword) => {
    const s = await session.changePassword(oldPassword, newPassword);
    say("密码已修改");
    if (s.counter) await enterDesk(s.counter);
    else await chooseCounter();
  },
  onError: (err) => {
    if (err.code !== "auth.relogin_failed") return false;
    // Changed, but the new login did not go through: the login form says so.
    $("login-error").textContent = err.message;
    return true;
  },
});

$("logout").addEventListener("click", () => session.logout());
$("change-counter").addEventListener("click", () => chooseCounter());

session.onLogout(() => {
  casework.reset();
  ratings.reset();
  show($("scan-card"), h("p", { class: "muted" }, "请让办事群众出示预约码、办件码或电子证照码。"));
  $("current-ticket").textContent = "—";
  $("current-meta").textContent = "";
  $("waiting").textContent = "";
  show($("counter-list"));
  scanInput.value = "";
  $("login-error").textContent = "";
  clearPasswordForm();
  showView("login");
  $("login-username").focus();
});

// ---- choosing a counter ---------------------------------------------------------------------

const DESK_ROLES = ["clerk", "hall_admin"];

async function chooseCounter() {
  const s = session.current();
  showView("counter");
  const halls = s.staff.grants.filter((g) => g.roles.some((r) => DESK_ROLES.includes(r)));
  if (!halls.length) {
    show($("counter-list"), h("p", { class: "error-text" }, "您的账号没有窗口岗位，请联系大厅管理员。"));
    return;
  }
  const blocks = [];
  for (const grant of halls) {
    try {
      const answer = await session.staffApi(`/halls/${grant.hall_id}/counters`);
      const buttons = answer.counters.map((c) => h("button", {
        type: "button", class: "btn btn-ghost counter-choice", dataset: { counterId: c.id },
        onclick: () => enterDesk({ id: c.id, number: c.number, name: c.name, groups: c.groups,
                                   hall_id: answer.hall.id, hall_name: answer.hall.name }),
      }, `${c.number}号窗口 · ${c.name}`));
      blocks.push(h("h3", {}, answer.hall.name),
                  h("div", { class: "row" }, buttons.length ? buttons : h("p", { class: "muted" }, "该大厅还没有设置窗口")));
    } catch (err) {
      blocks.push(h("p", { class: "error-text" }, err.message));
    }
  }
  show($("counter-list"), blocks);
  const first = $("counter-list").querySelector("button");
  if (first) first.focus();
}

async function enterDesk(counter) {
  session.setCounter(counter);
  showView("desk");
  const admin = session.rolesIn(counter.hall_id).some((r) => r === "hall_admin" || r === "auditor");
  $("tab-ratings").hidden = !admin;
  selectTab("queue");
  casework.setHall(counter.hall_id, counter.id);
  ratings.setHall(counter.hall_id);
  await refreshQueue({ withCurrent: true });
  scanInput.focus();
}

// ---- tabs -----------------------------------------------------------------------------------

function selectTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-pressed", tab.dataset.tab === name ? "true" : "false");
  }
  for (const key of ["queue", "cases", "ratings"]) $("panel-" + key).hidden = key !== name;
  if (name === "cases") casework.loadWorkList();
  if (name === "ratings") ratings.load();
}

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => selectTab(tab.dataset.tab));
}

casework.onOpen(() => selectTab("cases"));

// ---- the scan field: always ready for the scanner --------------------------------------------

function typingElsewhere(target) {
  if (!target || target === scanInput) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

// A hardware scanner types like a keyboard: whatever is typed while no other field is in use goes to the scan field.
document.addEventListener("keydown", (event) => {
  if (views.desk.hidden || event.ctrlKey || event.altKey || event.metaKey) return;
  if (event.key.length === 1 && !typingElsewhere(document.activeElement) && document.activeElement !== scanInput) {
    scanInput.focus();
  }
}, true);

// Idle (nothing focused): the scan field takes the focus back.
document.addEventListener("focusout", () => {
  setTimeout(() => {
    const active = document.activeElement;
    if (!views.desk.hidden && (!active || active === document.body)) scanInput.focus();
  }, 0);
});

$("scan-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const code = scanInput.value.trim();
  scanInput.value = "";
  if (!code) return;
  try {
    const card = await session.staffApi("/scan", { method: "POST", body: { code } });
    renderScan(card);
    selectTab("queue");
  } catch (err) {
    show($("scan-card"), h("p", { class: "error-text" }, err.message || "无法识别该二维码"));
    sayError(err);
  }
  scanInput.focus();
});

const APPOINTMENT_STATUS = { booked: "已预约，未签到", checked_in: "已签到", cancelled: "已取消",
                             no_show: "爽约", completed: "已办理" };

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function renderScan(card) {
  const box = $("scan-card");
  if (card.kind === "appointment") {
    const a = card.appointment;
    const actions = [];
    if (card.actions.includes("check_in")) {
      actions.push(h("button", { type: "button", class: "btn", id: "check-in", onclick: () => checkIn(a.id) },
                     "签到取号"));
    }
    show(box, h("div", { class: "scan-result", dataset: { kind: "appointment" } },
      h("h3", {}, "预约 · " + a.item.name),
      facts([["办理大厅", a.hall.name], ["预约时段", fmtTime(a.starts_at) + " 至 " + fmtTime(a.ends_at).slice(-8)],
             ["状态", APPOINTMENT_STATUS[a.status] || a.status], ["签到时间", fmtTime(a.checked_in_at)]]),
      h("div", { class: "row" }, actions), h("p", { id: "check-in-result", class: "ticket-note" })));
  } else if (card.kind === "case") {
    const c = card.case;
    show(box, h("div", { class: "scan-result", dataset: { kind: "case" } },
      h("h3", {}, "办件 · " + c.item.name),
      facts([["办件编号", c.case_no], ["状态", c.status_label], ["承诺办结", c.promised_due || "受理后计算"],
             ["可办理操作", c.actions.map((x) => casework.ACTION_LABELS[x] || x).join("、") || "无"]]),
      h("button", { type: "button", class: "btn", onclick: () => casework.openCase(c.case_no) }, "打开办件")));
  } else if (card.kind === "certificate") {
    const v = card.verification;
    const cert = v.certificate || {};
    show(box, h("div", { class: "scan-result", dataset: { kind: "certificate", result: v.result } },
      h("h3", {}, "电子证照核验 · " + v.result_label),
      facts([["证照编号", cert.cert_no], ["证照类型", cert.cert_type], ["持证人", cert.holder],
             ["证件号码", cert.holder_id_number], ["发证部门", cert.issuing_department],
             ["发证日期", cert.issued_on], ["有效期至", cert.valid_until || (cert.cert_no ? "长期" : null)]])));
  } else {
    show(box, h("p", { class: "error-text" }, "无法识别该二维码"));
  }
}

async function checkIn(appointmentId) {
  try {
    const answer = await session.staffApi(`/appointments/${appointmentId}/check-in`, { method: "POST" });
    const t = answer.ticket;
    const button = $("check-in");
    if (button) button.remove();
    $("check-in-result").textContent = `已签到，排队号 ${t.code}` + (t.ahead != null ? `，前面还有 ${t.ahead} 人` : "");
    say(`已签到，排队号 ${t.code}`);
    await refreshQueue();
  } catch (err) {
    sayError(err);
  }
  scanInput.focus();
}

// ---- the queue ------------------------------------------------------------------------------

function showCurrent(code, meta) {
  $("current-ticket").textContent = code || "—";
  $("current-meta").textContent = meta || "";
}

// The hall's public queue: who waits for this counter's groups, and (on arrival) whom this counter is calling.
async function refreshQueue({ withCurrent = false } = {}) {
  const c = session.current() && session.current().counter;
  if (!c) return;
  try {
    const q = await session.common.api(`/api/v1/halls/${c.hall_id}/queue`);
    const mine = q.calling.find((x) => x.counter === c.number);
    if (withCurrent) showCurrent(mine ? mine.code : "", mine ? `已呼叫 ${mine.calls} 次` : "");
    const waiting = Object.entries(q.waiting).filter(([g]) => !c.groups.length || c.groups.includes(g));
    $("waiting").textContent = waiting.length
      ? "等候：" + waiting.map(([g, n]) => `${g}组 ${n}人`).join("，") : "暂无等候";
  } catch (err) {
    $("waiting").textContent = "";
  }
}

async function queueAction(path, after) {
  const c = session.current().counter;
  try {
    const answer = await session.staffApi(`/counters/${c.id}/${path}`, { method: "POST" });
    after(answer);
  } catch (err) {
    sayError(err);
  }
  await refreshQueue();
  scanInput.focus();
}

$("call-next").addEventListener("click", () => queueAction("call-next", (a) => {
  showCurrent(a.ticket.code, `已呼叫 1 次 · 请${a.ticket.code}号到${a.counter}号窗口`);
  say(`已叫号 ${a.ticket.code}`);
}));
$("recall").addEventListener("click", () => queueAction("recall", (a) => {
  if (a.ticket.status === "missed") {
    showCurrent("", `${a.ticket.code} 多次呼叫未到，已过号`);
    say(`${a.ticket.code} 已过号`);
  } else {
    showCurrent(a.ticket.code, `已呼叫 ${a.calls} 次`);
    say(`已重呼 ${a.ticket.code}`);
  }
}));
$("missed").addEventListener("click", () => queueAction("missed", (a) => {
  showCurrent("", `${a.ticket.code} 已过号`);
  say(`${a.ticket.code} 已标记过号`);
}));

// ---- start ----------------------------------------------------------------------------------

const saved = session.current();
if (saved && saved.mustChangePassword) askForNewPassword();
else if (saved && saved.counter) enterDesk(saved.counter);
else if (saved) chooseCounter();
else {
  showView("login");
  $("login-username").focus();
}
