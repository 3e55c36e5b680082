// What every palmhall page shares: the API client, safe DOM building, messages, and 适老模式.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

// Calls palmhall's own /api/v1. `headers` may carry Authorization (counter) or a kiosk signature.
export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, signal };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", "网络连接中断，请稍后再试");
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
  if (!response.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(response.status, e.code || "http." + response.status,
                       e.message || "服务暂时不可用，请稍后再试", e.details);
  }
  return data;
}

// Builds elements from data with textContent only, so nothing from the API is ever parsed as HTML.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function show(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

let statusTimer = null;
export function say(message, { error = false, ms = 5000 } = {}) {
  const box = document.getElementById("status");
  if (!box) return;
  box.classList.toggle("error", error);
  box.textContent = message;
  clearTimeout(statusTimer);
  if (ms) statusTimer = setTimeout(() => { box.textContent = ""; }, ms);
}

export function sayError(err) {
  say(err instanceof ApiError ? err.message : "出错了，请稍后再试", { error: true });
}

export function fmtTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
}

// 适老模式 is a display preference of this screen, not personal data, so it is kept in localStorage.
const LARGE = "palmhall.largeType";
export function initLargeType() {
  const button = document.getElementById("large-type-toggle");
  const apply = (on) => {
    document.documentElement.classList.toggle("large-type", on);
    if (button) button.setAttribute("aria-pressed", on ? "true" : "false");
  };
  apply(localStorage.getItem(LARGE) === "1");
  if (button) button.addEventListener("click", () => {
    const on = !document.documentElement.classList.contains("large-type");
    localStorage.setItem(LARGE, on ? "1" : "0");
    apply(on);
  });
}

initLargeType();
