// The hall display board: the public queue over server-sent events, spoken aloud when the hall enables it.
// It shows ticket numbers and counters only: nothing personal ever reaches this page.

import { api, ApiError, h, show } from "/static/web/common.js";

const $ = (id) => document.getElementById(id);
const hallId = $("board").dataset.hallId;
const STREAM = `/api/v1/halls/${hallId}/queue/stream`;
const SNAPSHOT = `/api/v1/halls/${hallId}/queue`;
const SPEECH = "palmhall.boardSpeech"; // a setting of this screen, not personal data
const STATUS = { called: "请前往", serving: "办理中", done: "已办理", missed: "已过号" };
const MAX_BACKOFF_MS = 30000;
const REFRESH_MS = 60000;

let source = null;
let attempt = 0;
let reconnectTimer = null;
let lastAt = "";
let stopped = false;

// ---- what the board shows -------------------------------------------------------------------

const counterText = (n) => `${n}号窗口`;
const callText = (call) => `请${call.code}号到${call.counter}号窗口办理`;

function render(state) {
  // A re-read of /queue may answer after a newer stream event: never go back in time.
  if (state.at && lastAt && state.at < lastAt) return;
  lastAt = state.at || lastAt;
  $("hall-name").textContent = `${state.hall} · 叫号屏`;
  document.title = `${state.hall} 叫号屏 · 掌上办`;
  const calling = state.calling || [];
  const now = state.announce || calling[0] || null;
  const box = $("now-calling");
  box.querySelector("[data-field=ticket]").textContent = now ? now.code : "—";
  box.querySelector("[data-field=counter]").textContent = now ? counterText(now.counter) : "请稍候";
  $("call-line").textContent = now ? callText(now) : "暂无叫号，请留意屏幕和广播";
  show($("also-calling"), calling.filter((c) => !now || c.code !== now.code)
    .map((c) => h("li", {}, `${c.code} → ${counterText(c.counter)}`)));
  show($("recent-list"), (state.recent || []).map((r) => h("li", { class: r.status },
    h("span", { class: "recent-ticket" }, r.code),
    h("span", { class: "recent-counter" }, counterText(r.counter)),
    h("span", { class: "recent-status" }, STATUS[r.status] || ""))));
  if (!(state.recent || []).length) show($("recent-list"), h("li", { class: "empty" }, "今日尚未叫号"));
  const groups = Object.entries(state.waiting || {});
  show($("waiting-list"), groups.length
    ? groups.map(([group, n]) => h("li", { dataset: { group } }, `${group} 类 等候 `,
                                   h("span", { class: "count" }, String(n)), " 人"))
    : [h("li", { class: "empty" }, "当前无人等候")]);
}

function flash() {
  const box = $("now-calling");
  box.classList.remove("flash");
  void box.offsetWidth; // restart the animation
  box.classList.add("flash");
}

function setConnection(state, text) {
  const conn = $("conn");
  conn.dataset.state = state;
  conn.textContent = text;
}

function unknownHall(message) {
  stopped = true;
  $("board").hidden = true;
  const box = $("board-message");
  show(box, h("p", {}, `未找到编号为 ${hallId} 的服务大厅。`),
       h("p", {}, message || "请检查叫号屏地址，或联系大厅管理员。"));
  box.hidden = false;
  setConnection("stopped", "未连接");
}

// ---- speech ---------------------------------------------------------------------------------

let speechOn = localStorage.getItem(SPEECH) === "1";

function speak(text) {
  if (!speechOn || !("speechSynthesis" in window)) return;
  const utterance = new SpeechSynthesisUtterance(text);
  utterance.lang = "zh-CN";
  utterance.rate = 0.9;
  window.speechSynthesis.speak(utterance);
}

function showSpeech() {
  const button = $("speech-toggle");
  button.setAttribute("aria-pressed", speechOn ? "true" : "false");
  button.textContent = speechOn ? "语音播报：开" : "语音播报：关";
}

// Browsers speak only after someone has touched the page: the toggle is that touch.
$("speech-toggle").addEventListener("click", () => {
  speechOn = !speechOn;
  localStorage.setItem(SPEECH, speechOn ? "1" : "0");
  showSpeech();
  if (speechOn) speak("语音播报已开启");
  else if ("speechSynthesis" in window) window.speechSynthesis.cancel();
});
if (!("speechSynthesis" in window)) $("speech-toggle").hidden = true;
showSpeech();

// ---- the live connection --------------------------------------------------------------------

function scheduleReconnect() {
  if (stopped) return;
  clearTimeout(reconnectTimer);
  // 1 s, 2 s, 4 s … up to 30 s, with jitter so a hall's boards do not all come back at once.
  const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempt) * (0.8 + Math.random() * 0.4);
  attempt += 1;
  setConnection("reconnecting", `连接中断，${Math.ceil(delay / 1000)} 秒后重连…`);
  reconnectTimer = setTimeout(connect, delay);
}

async function refresh() {
  try {
    render(await api(SNAPSHOT));
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) unknownHall(err.message);
    return false;
  }
}

async function connect() {
  clearTimeout(reconnectTimer);
  if (source) source.close();
  source = null;
  // Whatever happened while the stream was down is read again first.
  if (!(await refresh())) {
    scheduleReconnect();
    return;
  }
  const es = new EventSource(STREAM);
  source = es;
  es.addEventListener("queue", (event) => {
    let state;
    try { state = JSON.parse(event.data); } catch (err) { return; }
    attempt = 0;
    setConnection("live", "实时");
    render(state);
    if (state.announce) {
      flash();
      speak(callText(state.announce));
    }
  });
  // EventSource retries some drops by itself but gives up on others (an error status, a wrong type):
  // the board handles every drop the same way, with its own backoff and a fresh read of the queue.
  es.addEventListener("error", () => {
    if (source !== es) return;
    es.close();
    source = null;
    scheduleReconnect();
  });
}

window.addEventListener("online", () => { if (!stopped) { attempt = 0; connect(); } });
// A safety net for a connection that hangs without closing.
setInterval(() => { if (!stopped && source) refresh(); }, REFRESH_MS);

function tick() {
  $("clock").textContent = new Date().toLocaleTimeString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false,
                                                                    hour: "2-digit", minute: "2-digit" });
}
tick();
setInterval(tick, 10000);

connect();
