// The first-login password form (templates/counter/_password_form.html), shared by the console and the dashboard.
// The page says what a change is (`change(old, new)`), and what else to do with a refusal (`onError`, which returns
// true when it handled it); the form checks what it can itself and shows the server's own words for the rest.
import { ApiError } from "/static/web/common.js";

const FIELDS = ["old-password", "new-password", "repeat-password"];
const $ = (id) => document.getElementById(id);

export function clearPasswordForm() {
  for (const id of FIELDS) $(id).value = "";
  $("password-error").textContent = "";
}

export function bindPasswordForm({ change, onError = () => false }) {
  const form = $("password-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const [oldPassword, newPassword, repeated] = FIELDS.map((id) => $(id).value);
    const error = $("password-error");
    error.textContent = "";
    if (!oldPassword || !newPassword || !repeated) {
      error.textContent = "请填写原密码、新密码，并再次输入新密码";
      $(FIELDS.find((id) => !$(id).value)).focus();
      return;
    }
    if (newPassword !== repeated) {
      error.textContent = "两次输入的新密码不一致";
      $("repeat-password").value = "";
      $("repeat-password").focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await change(oldPassword, newPassword);
      clearPasswordForm();
    } catch (err) {
      if (onError(err)) return;
      // The server's own words: wrong current password, too weak, same as before, contains the username.
      error.textContent = err instanceof ApiError ? err.message : "修改失败，请稍后再试";
      const wrongOld = err instanceof ApiError && err.code === "auth.bad_credentials";
      for (const id of wrongOld ? ["old-password"] : ["new-password", "repeat-password"]) $(id).value = "";
      $(wrongOld ? "old-password" : "new-password").focus();
    } finally {
      button.disabled = false;
    }
  });
}
