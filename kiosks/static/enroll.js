// Enrollment from the one-time link: the code is in the URL fragment (never sent to a server by the browser).
import { common, importSecret, saveDevice } from "./device.js";

const { api, h, show, ApiError } = common;
const box = document.getElementById("enroll-result");

function fail(message) {
  show(box, h("h2", { class: "kiosk-title" }, "登记未完成"), h("p", { class: "kiosk-lead" }, message),
       h("p", { class: "muted" }, "请联系管理员运行 palmhall kiosk link 终端编号，重新生成一次性登记链接。"));
  box.classList.add("level-red");
}

async function enroll() {
  const code = location.hash.slice(1);
  // The code leaves the address bar and the history at once.
  history.replaceState(null, "", location.pathname);
  if (!code) {
    fail("登记链接不完整：链接中缺少登记码。");
    return;
  }
  if (!window.isSecureContext || !crypto.subtle) {
    // WebCrypto, which keeps the device key unreadable, exists only on HTTPS (or this machine itself).
    fail("请通过 HTTPS 地址打开登记链接（PUBLIC_BASE_URL 应为 https://…）。");
    return;
  }
  let answer;
  try {
    answer = await api("/api/v1/kiosk/enroll", { method: "POST", body: { code } });
  } catch (err) {
    fail(err instanceof ApiError ? err.message : "登记失败，请稍后再试");
    return;
  }
  const key = await importSecret(answer.secret);
  answer.secret = null;
  await saveDevice({ deviceId: answer.device_id, key, hall: answer.hall });
  box.classList.add("level-green");
  show(box,
    h("h2", { class: "kiosk-title" }, "登记成功"),
    h("p", { class: "kiosk-lead" }, `本终端已登记为 ${answer.name}（${answer.device_id}），所属大厅：${answer.hall.name}。`),
    h("p", { class: "muted" }, "登记链接已失效，不能再次使用。"),
    h("a", { href: "/kiosk", class: "btn kiosk-big", id: "enroll-continue" }, "进入自助服务首页"));
  document.getElementById("enroll-continue").focus();
}

enroll();
