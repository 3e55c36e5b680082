// The clerk's session: the staff token in this tab's sessionStorage (never a cookie), sent as a Bearer header.

// The page's import map turns this plain path into the page's own content-versioned URL: one module instance.
import * as common from "/static/web/common.js";
const { api, ApiError } = common;
export { common };

const KEY = "palmhall.counter";
let state = load();
const listeners = [];
const passwordListeners = [];

function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (saved && saved.token && saved.expiresAt > Date.now()) return saved;
  } catch (err) { /* a damaged entry is as good as none */ }
  sessionStorage.removeItem(KEY);
  return null;
}

function save() {
  if (state) sessionStorage.setItem(KEY, JSON.stringify(state));
  else sessionStorage.removeItem(KEY);
}

export function current() { return state; }

export function onLogout(fn) { listeners.push(fn); }

// Called when the server says this account must first replace its one-time password.
export function onPasswordRequired(fn) { passwordListeners.push(fn); }

export async function login(username, password) {
  const answer = await api("/api/v1/staff/auth/login", { method: "POST", body: { username, password } });
  state = {
    token: answer.access_token,
    expiresAt: Date.now() + answer.expires_in * 1000,
    staff: { id: answer.staff.id, username: answer.staff.username, name: answer.staff.display_name,
             grants: answer.staff.grants },
    mustChangePassword: answer.must_change_password,
    counter: null,
  };
  save();
  return state;
}

export function setCounter(counter) {
  state.counter = counter;
  save();
}

export function logout() {
  state = null;
  save();
  for (const fn of listeners) fn();
}

// Halls where this clerk may hold roles, e.g. rolesIn(hallId).includes("hall_admin").
export function rolesIn(hallId) {
  const grant = (state && state.staff.grants || []).find((g) => g.hall_id === hallId);
  return grant ? grant.roles : [];
}

// A call to /api/v1/staff with the token; a token that is no longer good ends the session.
export async function staffApi(path, options = {}) {
  if (!state) throw new ApiError(401, "auth.token_missing", "请先登录");
  try {
    return await api("/api/v1/staff" + path, {
      ...options, headers: { ...(options.headers || {}), Authorization: "Bearer " + state.token },
    });
  } catch (err) {
    // A wrong current password (when changing it) is the clerk's typo, not the end of the session.
    if (err instanceof ApiError && err.status === 401 && err.code !== "auth.bad_credentials") logout();
    if (err instanceof ApiError && err.code === "staff.password_change_required" && state) {
      state.mustChangePassword = true;
      save();
      for (const fn of passwordListeners) fn();
    }
    throw err;
  }
}

// Replace the one-time (or any) password. The server ends every token of the account when it changes,
// so the session logs in again with the new password and keeps the counter already chosen, if any.
export async function changePassword(oldPassword, newPassword) {
  await staffApi("/auth/password", { method: "POST", body: { old_password: oldPassword, new_password: newPassword } });
  const { staff: { username }, counter } = state;
  try {
    await login(username, newPassword);
  } catch (err) {
    logout();
    throw new ApiError(err.status || 0, "auth.relogin_failed", "密码已修改，请用新密码重新登录");
  }
  if (counter) setCounter(counter);
  return state;
}

// A file behind the token (a material), as a blob: URL the caller must revoke.
export async function staffBlobUrl(path) {
  if (!state) throw new ApiError(401, "auth.token_missing", "请先登录");
  const response = await fetch("/api/v1/staff" + path, { headers: { Authorization: "Bearer " + state.token } });
  if (!response.ok) {
    let e = {};
    try { e = (await response.json()).error || {}; } catch (err) { e = {}; }
    throw new ApiError(response.status, e.code || "http." + response.status, e.message || "文件暂时无法打开");
  }
  const blob = await response.blob();
  return { url: URL.createObjectURL(blob), type: blob.type };
}
