// The kiosk: one page of screens, a signed client of /api/v1/kiosk (and the public catalog for guides).
//
// Personal data lives only in the DOM of the screen showing it and in the few variables below; after 60 s
// without input `resetSession` clears all of it and the kiosk returns home. Nothing is ever written to
// browser storage except the device credential (device.js) and the 适老模式 display preference.
import { common, ApiError, kioskApi, kioskBlob, loadDevice } from "./device.js";

const { api, h, show, say, sayError, fmtTime } = common;

const VERSION = "kiosk-web/1.0.0";
const IDLE_MS = 60 * 1000;
// While a payment QR is on the screen the citizen is busy with their phone, not the kiosk: wait longer.
const PAYING_IDLE_MS = 3 * 60 * 1000;
const HEARTBEAT_MS = 60 * 1000;
const POLL_MS = 2000;
const TOKEN = /^[A-Za-z0-9_-]{20,200}$/;
const CASE_NO = /^\d{10,32}$/;

const $ = (id) => document.getElementById(id);
const scanBar = $("scan-bar");
const scan = $("scan");
const OPERATIONAL = ["home", "checkin", "ticket", "walkin", "progress", "pay", "guides"];
const SCAN_LABELS = {
  checkin: "请扫描预约二维码",
  progress: "请扫描办件二维码",
  pay: "请扫描办件二维码，或输入办件编号后按确认",
};

let device = null;   // { deviceId, key (non-extractable CryptoKey), hall }
let hallInfo = null; // { hall: {id, name}, groups: [{group, items, counters}] } — no personal data
let current = "loading";
let session = 0;     // bumped on every reset: answers that arrive later for an old session are dropped
let idleTimer = null;
let pollTimer = null;
let qrUrl = null;
let payChannel = "wechat";
let busy = false;

// ---- screens and focus ------------------------------------------------------------------------

function go(name) {
  current = name;
  for (const section of document.querySelectorAll(".kiosk-screen")) {
    section.hidden = section.id !== "screen-" + name;
  }
  const operational = OPERATIONAL.includes(name);
  scanBar.hidden = !operational;
  $("home-button").hidden = !operational || name === "home";
  $("scan-label").textContent = SCAN_LABELS[name] || "扫码区：请将预约码或办件码对准扫描口";
  scan.setAttribute("inputmode", name === "pay" ? "numeric" : "none");
  scan.value = "";
  if (name !== "pay") stopPolling();
  if (operational) armIdle();
  else clearTimeout(idleTimer);
  focusScan();
  window.scrollTo(0, 0);
}

// A hardware scanner types like a keyboard into whatever has focus, so the scan field takes focus back
// whenever anything but another text field (the guide search) holds it.
function focusScan() {
  if (scanBar.hidden) return;
  const active = document.activeElement;
  if (active && active !== scan && active.tagName === "INPUT" && active.offsetParent !== null) return;
  scan.focus({ preventScroll: true });
}

scan.addEventListener("blur", () => setTimeout(focusScan, 0));
document.addEventListener("click", () => setTimeout(focusScan, 0));

// ---- idle reset ------------------------------------------------------------------------------

function armIdle() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    resetSession();
    if (OPERATIONAL.includes(current)) go("home");
  }, pollTimer ? PAYING_IDLE_MS : IDLE_MS);
}

for (const type of ["pointerdown", "keydown", "input", "touchstart", "wheel"]) {
  document.addEventListener(type, () => { if (OPERATIONAL.includes(current)) armIdle(); },
                            { capture: true, passive: true });
}

function stopPolling() {
  clearTimeout(pollTimer);
  pollTimer = null;
}

// Everything a citizen left on the screen goes: results, inputs, the receipt, messages and variables.
function resetSession() {
  session += 1;
  busy = false;
  stopPolling();
  if (qrUrl) URL.revokeObjectURL(qrUrl);
  qrUrl = null;
  payChannel = "wechat";
  markChannel();
  for (const id of ["ticket", "progress-result", "pay-result", "guide-list", "guide-detail", "receipt"]) {
    show($(id));
  }
  for (const input of document.querySelectorAll("input")) input.value = "";
  const status = $("status");
  if (status) { status.textContent = ""; status.classList.remove("error"); }
  try { sessionStorage.clear(); } catch (err) { /* storage may be unavailable */ }
  try {
    for (const key of Object.keys(localStorage)) if (key !== "palmhall.largeType") localStorage.removeItem(key);
  } catch (err) { /* storage may be unavailable */ }
}

// ---- errors shared by every call --------------------------------------------------------------

function handle(err) {
  if (err instanceof ApiError && err.code === "kiosk.disabled") {
    resetSession();
    go("disabled");
    return;
  }
  if (err instanceof ApiError && (err.code === "kiosk.signature_invalid" || err.code === "kiosk.signature_missing")) {
    resetSession();
    $("unenrolled-reason").textContent = "本终端的登记凭据已失效（可能已重新登记），请重新登记本终端。";
    go("unenrolled");
    return;
  }
  sayError(err);
}

// Runs one citizen action; its answer is shown only if the session it started in is still the current one.
async function act(fn) {
  if (busy) return;
  busy = true;
  const mine = session;
  try {
    await fn(() => mine === session);
  } catch (err) {
    if (mine === session) handle(err);
  } finally {
    if (mine === session) busy = false;
  }
}

// ---- tickets and the 80 mm receipt ---------------------------------------------------------------

function countersOf(group) {
  const found = hallInfo && hallInfo.groups.find((g) => g.group === group);
  return found ? found.counters : [];
}

function counterText(group) {
  const counters = countersOf(group);
  return counters.length ? counters.map((n) => `${n}号`).join("、") + "窗口" : "相应窗口";
}

function showTicket(ticket, heading) {
  $("ticket-title").textContent = heading;
  const ahead = ticket.waiting_ahead ?? 0;
  show($("ticket"),
    h("p", { class: "muted" }, "您的排队号"),
    h("p", { class: "kiosk-ticket-code", id: "ticket-code" }, ticket.code),
    h("p", { class: "kiosk-lead" }, `业务类别 ${ticket.group}：请到 ${counterText(ticket.group)} 等候叫号`),
    h("p", { class: "kiosk-lead", id: "ticket-ahead" }, `前面还有 ${ahead} 人等候`),
    h("p", { class: "muted" }, `取号时间 ${fmtTime(ticket.issued_at)}`),
    h("p", { class: "muted" }, "凭条正在打印，请取走凭条并留意叫号屏和语音提示。"));
  show($("receipt"),
    h("p", { class: "receipt-hall" }, hallInfo ? hallInfo.hall.name : ""),
    h("p", {}, "排队号"),
    h("p", { class: "receipt-code" }, ticket.code),
    h("p", {}, `业务类别 ${ticket.group}　${counterText(ticket.group)}`),
    h("p", {}, `前面还有 ${ahead} 人`),
    h("p", {}, fmtTime(ticket.issued_at)),
    h("p", { class: "receipt-note" }, "请留意叫号屏和语音提示，过号请到服务台咨询。"));
  go("ticket");
  printReceipt();
}

function printReceipt() {
  if (!$("receipt").hasChildNodes()) return;
  document.body.classList.add("printing-receipt");
  try { window.print(); } finally { document.body.classList.remove("printing-receipt"); }
}

$("reprint").addEventListener("click", printReceipt);

async function checkIn(code) {
  await act(async (still) => {
    const answer = await kioskApi(device, "/check-in", { method: "POST", body: { code } });
    if (!still()) return;
    showTicket(answer.ticket, answer.already ? "您已签到，排队号如下" : "签到成功");
  });
}

async function walkIn(group) {
  await act(async (still) => {
    const ticket = await kioskApi(device, "/tickets", { method: "POST", body: { group } });
    if (!still()) return;
    showTicket(ticket, "取号成功");
  });
}

function renderGroups() {
  const groups = hallInfo ? hallInfo.groups : [];
  show($("groups"), groups.length ? groups.map((g) => h("button", {
    type: "button", class: "btn kiosk-big kiosk-group", dataset: { group: g.group },
    onclick: () => walkIn(g.group),
  }, `${g.group} 类业务`,
     h("span", { class: "kiosk-sub" }, g.items.slice(0, 3).join("、") + (g.items.length > 3 ? " 等" : "")),
     h("span", { class: "kiosk-sub" }, g.counters.length ? `办理窗口：${g.counters.join("、")}号` : "")))
    : h("p", { class: "kiosk-lead" }, "本大厅暂无可现场取号的业务，请到服务台咨询。"));
}

// ---- progress ----------------------------------------------------------------------------------

function tokenOf(code) {
  const token = code.trim().replace(/[?#].*$/, "").replace(/\/+$/, "").split("/").pop();
  return TOKEN.test(token) ? token : null;
}

async function lookUp(code) {
  const token = tokenOf(code);
  if (!token) throw new ApiError(400, "qr.unreadable", "无法识别该二维码，请重新扫描");
  return await kioskApi(device, "/progress/" + encodeURIComponent(token));
}

function field(label, value) {
  return [h("dt", {}, label), h("dd", {}, value ?? "—")];
}

function showProgress(p) {
  if (p.kind === "case") {
    const d = p.deadline || {};
    show($("progress-result"), h("div", { class: "card" },
      h("dl", { class: "kiosk-facts" },
        field("事项", p.item.name), field("办件编号", p.case_no), field("申请人", p.applicant),
        field("受理大厅", p.hall.name), field("当前状态", p.status_label),
        field("承诺办结日期", d.promised_due), p.tracking_no ? field("快递单号", p.tracking_no) : null),
      h("h3", {}, "办理过程"),
      h("ol", { class: "kiosk-history" }, (p.history || []).map((s) => h("li", {}, `${fmtTime(s.at)}　${s.step}`)))));
  } else {
    show($("progress-result"), h("div", { class: "card" },
      h("dl", { class: "kiosk-facts" },
        field("预约事项", p.item && p.item.name), field("预约时段", `${fmtTime(p.starts_at)} 至 ${fmtTime(p.ends_at)}`),
        field("状态", p.status), field("排队号", p.ticket))));
  }
  go("progress");
}

async function progress(code) {
  await act(async (still) => {
    const p = await lookUp(code);
    if (still()) showProgress(p);
  });
}

// From home (and any screen without a purpose of its own) a scan is routed by what the QR turns out to be.
async function route(code) {
  await act(async (still) => {
    const p = await lookUp(code);
    if (!still()) return;
    if (p.kind === "appointment") {
      const answer = await kioskApi(device, "/check-in", { method: "POST", body: { code } });
      if (still()) showTicket(answer.ticket, answer.already ? "您已签到，排队号如下" : "签到成功");
    } else {
      showProgress(p);
    }
  });
}

// ---- payment -----------------------------------------------------------------------------------

function markChannel() {
  for (const b of document.querySelectorAll("[data-channel]")) {
    b.setAttribute("aria-pressed", b.dataset.channel === payChannel ? "true" : "false");
  }
}

for (const b of document.querySelectorAll("[data-channel]")) {
  b.addEventListener("click", () => { payChannel = b.dataset.channel; markChannel(); });
}

const yuan = (fen) => (fen / 100).toFixed(2) + " 元";

async function pay(code) {
  await act(async (still) => {
    let caseNo = code.trim();
    if (!CASE_NO.test(caseNo)) {
      const p = await lookUp(code);
      if (!still()) return;
      if (p.kind !== "case") throw new ApiError(400, "qr.not_case", "这不是办件二维码，请扫描办件二维码或输入办件编号");
      caseNo = p.case_no;
    }
    const answer = await kioskApi(device, "/payments", { method: "POST", body: { case_no: caseNo, channel: payChannel } });
    if (!still()) return;
    const order = answer.order;
    if (order.state === "paid") {
      showPaid(order);
      return;
    }
    const blob = await kioskBlob(device, answer.qr.png);
    if (!still()) return;
    if (qrUrl) URL.revokeObjectURL(qrUrl);
    qrUrl = URL.createObjectURL(blob);
    const app = order.channel === "alipay" ? "支付宝" : "微信";
    show($("pay-result"), h("div", { class: "card kiosk-pay" },
      h("p", { class: "kiosk-lead" }, `办件编号 ${order.case_no}`),
      h("ul", { class: "kiosk-fees" }, (order.fees || []).map((f) => h("li", {}, `${f.name}　${yuan(f.amount_fen)}`))),
      h("p", { class: "kiosk-amount", id: "pay-amount" }, `应缴金额 ${yuan(order.amount_fen)}`),
      h("img", { src: qrUrl, alt: `${app}支付二维码`, class: "kiosk-qr", width: 360, height: 360 }),
      h("p", { class: "kiosk-lead", id: "pay-state" }, `请打开${app}“扫一扫”扫描上方二维码完成支付`),
      h("p", { class: "muted" }, "支付完成后本屏将自动显示结果。60秒无操作将返回首页，不影响已完成的支付。")));
    watch(order.id, still);
  });
}

function watch(orderId, still) {
  stopPolling();
  const tick = async () => {
    if (!still()) return;
    try {
      const { order } = await kioskApi(device, `/payments/${orderId}`);
      if (!still()) return;
      if (order.state === "paid") { showPaid(order); return; }
      if (order.state === "closed") {
        show($("pay-result"), h("p", { class: "card level-yellow kiosk-lead" }, "订单已关闭，请重新发起缴费。"));
        return;
      }
    } catch (err) {
      if (!still()) return;
      if (err instanceof ApiError && err.code.startsWith("kiosk.")) { handle(err); return; }
    }
    pollTimer = setTimeout(tick, POLL_MS);
  };
  pollTimer = setTimeout(tick, POLL_MS);
  armIdle();
}

function showPaid(order) {
  stopPolling();
  if (qrUrl) URL.revokeObjectURL(qrUrl);
  qrUrl = null;
  show($("pay-result"), h("div", { class: "card level-green kiosk-pay", id: "pay-done" },
    h("p", { class: "kiosk-title" }, "缴费成功"),
    h("p", { class: "kiosk-lead" }, `办件编号 ${order.case_no}　已缴 ${yuan(order.paid_fen || order.amount_fen)}`),
    h("p", { class: "muted" }, order.paid_at ? `支付时间 ${fmtTime(order.paid_at)}` : "")));
  if (current !== "pay") go("pay");
}

// ---- guides (the public catalog) --------------------------------------------------------------------

async function searchGuides(q) {
  await act(async (still) => {
    const params = new URLSearchParams({ page_size: "50" });
    if (q) params.set("q", q);
    if (hallInfo) params.set("hall", String(hallInfo.hall.id));
    const page = await api("/api/v1/catalog/items?" + params.toString());
    if (!still()) return;
    show($("guide-detail"));
    show($("guide-list"), page.items.length ? page.items.map((item) => h("button", {
      type: "button", class: "btn btn-ghost kiosk-item", onclick: () => openGuide(item.code),
    }, item.name, h("span", { class: "kiosk-sub" }, `${item.department}　承诺${item.promised_days}个工作日`)))
      : h("p", { class: "kiosk-lead" }, "没有找到相关事项，请换个关键词试试。"));
  });
}

async function openGuide(code) {
  await act(async (still) => {
    const g = await api("/api/v1/catalog/items/" + encodeURIComponent(code));
    if (!still()) return;
    show($("guide-list"));
    show($("guide-detail"), h("article", { class: "card kiosk-guide" },
      h("h3", { class: "kiosk-title" }, g.name),
      h("dl", { class: "kiosk-facts" },
        field("实施部门", g.department), field("服务对象", g.subject_type_label),
        field("法定时限", g.statutory_display), field("承诺时限", g.promised_display),
        field("办理渠道", (g.channel_labels || []).join("、")), field("取号类别", g.queue_group + " 类业务")),
      g.conditions ? [h("h4", {}, "受理条件"), h("p", {}, g.conditions)] : null,
      h("h4", {}, "申请材料"),
      h("ol", {}, g.materials.map((m) => h("li", {}, m.name + (m.required === false ? "（选交）" : "")))),
      h("h4", {}, "收费"),
      g.fees.length ? h("ul", {}, g.fees.map((f) => h("li", {}, `${f.name}　${f.amount_display || yuan(f.amount_fen)}`)))
        : h("p", {}, "不收费"),
      h("button", { type: "button", class: "btn kiosk-mid", onclick: () => searchGuides($("guide-q").value.trim()) },
        "返回列表")));
  });
}

$("guide-search").addEventListener("submit", (event) => {
  event.preventDefault();
  searchGuides($("guide-q").value.trim());
  setTimeout(focusScan, 0);
});

// ---- the scan field and the menu ----------------------------------------------------------------------

scanBar.addEventListener("submit", (event) => {
  event.preventDefault();
  const code = scan.value.trim();
  scan.value = "";
  if (!code) return;
  if (current === "checkin") checkIn(code);
  else if (current === "progress") progress(code);
  else if (current === "pay") pay(code);
  else route(code);
});

function open(name) {
  resetSession();
  go(name);
  if (name === "walkin") renderGroups();
  if (name === "guides") searchGuides("");
}

for (const b of document.querySelectorAll("[data-go]")) b.addEventListener("click", () => open(b.dataset.go));
$("home-button").addEventListener("click", () => open("home"));

// ---- heartbeat and start-up -----------------------------------------------------------------------------

async function beat() {
  if (!device) return;
  try {
    await kioskApi(device, "/heartbeat", { method: "POST", body: { software_version: VERSION } });
    if (current === "disabled" || current === "loading") await start();
  } catch (err) {
    if (err instanceof ApiError && err.code.startsWith("kiosk.")) handle(err);
  }
}

async function start() {
  try {
    hallInfo = await kioskApi(device, "/hall");
    $("hall-name").textContent = hallInfo.hall.name;
  } catch (err) {
    handle(err);
    if (err instanceof ApiError && err.code.startsWith("kiosk.")) return;
  }
  go("home");
}

async function boot() {
  device = window.isSecureContext && crypto.subtle ? await loadDevice() : null;
  if (!device) {
    if (!window.isSecureContext) $("unenrolled-reason").textContent = "自助终端页面须通过 HTTPS 地址打开。";
    go("unenrolled");
    return;
  }
  $("hall-name").textContent = device.hall ? device.hall.name : "";
  await beat();
  if (current === "loading") await start();
  setInterval(beat, HEARTBEAT_MS);
}

boot();
