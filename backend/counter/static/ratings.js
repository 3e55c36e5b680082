// 好差评 at the counter: a period's ratings per item and counter, and the rectifications bad ratings opened.

import * as session from "./session.js";

const { h, show, say, sayError } = session.common;
const $ = (id) => document.getElementById(id);

const LEVEL_ORDER = ["非常满意", "满意", "基本满意", "不满意", "非常不满意"];
const STATES = { open: "整改中", closed: "已办结" };
const WARN = { none: "level-green", yellow: "level-yellow", red: "level-red" };

let hallId = null;

function shanghaiDay(offsetDays = 0) {
  const d = new Date(Date.now() + offsetDays * 86400000);
  return d.toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });
}

export function setHall(hall) {
  hallId = hall;
  if (!$("eval-from").value) $("eval-from").value = shanghaiDay(-30);
  if (!$("eval-to").value) $("eval-to").value = shanghaiDay(0);
}

export function reset() {
  hallId = null;
  show($("eval-body"));
  show($("rect-body"));
}

export async function load() {
  await Promise.all([loadStats(), loadRectifications()]);
}

function rate(block) {
  return block.satisfaction_rate == null ? "—" : `${(block.satisfaction_rate * 100).toFixed(1)}%`;
}

function statsTable(caption, firstHeader, rows) {
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, firstHeader), h("th", { scope: "col" }, "评价数"),
      LEVEL_ORDER.map((l) => h("th", { scope: "col" }, l)), h("th", { scope: "col" }, "满意率"))),
    h("tbody", {}, rows.map(([name, b]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, b.total),
      LEVEL_ORDER.map((l) => h("td", {}, b.levels[l])), h("td", {}, rate(b))))));
}

async function loadStats() {
  const params = new URLSearchParams({ hall_id: hallId, from: $("eval-from").value, to: $("eval-to").value });
  try {
    const s = await session.staffApi("/evaluations?" + params);
    const bad = s.hall.levels["不满意"] + s.hall.levels["非常不满意"];
    show($("eval-body"),
      h("p", { id: "eval-summary" }, `共 ${s.hall.total} 条评价，差评 ${bad} 条，满意率 ${rate(s.hall)}`),
      s.items.length ? statsTable("按事项", "事项", s.items.map((i) => [i.item_name, i])) : null,
      s.counters.length ? statsTable("按窗口", "窗口", s.counters.map((c) =>
        [c.counter_id == null ? "未指定窗口" : `窗口 ${c.counter_id}`, c])) : null);
  } catch (err) {
    show($("eval-body"), h("p", { class: "error-text" }, err.message));
  }
}

async function loadRectifications() {
  const params = new URLSearchParams({ hall_id: hallId });
  const state = $("rect-state").value;
  if (state) params.set("state", state);
  try {
    const answer = await session.staffApi("/rectifications?" + params);
    const admin = session.rolesIn(hallId).includes("hall_admin");
    show($("rect-body"), answer.rectifications.length
      ? answer.rectifications.map((r) => rectCard(r, admin))
      : h("p", { class: "muted" }, "没有符合条件的整改单"));
  } catch (err) {
    show($("rect-body"), h("p", { class: "error-text" }, err.message));
  }
}

function rectCard(r, admin) {
  const parts = [
    h("h3", {}, `整改单 ${r.id} · ${r.level_label} · ${STATES[r.state] || r.state}`),
    h("p", {}, `评价意见：${r.comment || "（未填写）"}`),
    h("p", { class: "muted" }, `整改期限：${r.due_on}`),
  ];
  if (r.response) parts.push(h("p", {}, `整改答复：${r.response}`));
  if (admin && r.state === "open") {
    const id = `rect-response-${r.id}`;
    const form = h("form", { class: "stack" },
      h("label", { for: id }, "整改情况书面答复（申请人可见，至少10字）"),
      h("textarea", { id, minlength: 10, maxlength: 2000, required: true }),
      h("button", { type: "submit", class: "btn" }, "办结整改"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const response = $(id).value.trim();
      if (response.length < 10) {
        say("答复至少10个字", { error: true });
        return;
      }
      try {
        await session.staffApi(`/rectifications/${r.id}/close`, { method: "POST", body: { response } });
        say(`整改单 ${r.id} 已办结`);
        await loadRectifications();
      } catch (err) {
        sayError(err);
      }
    });
    parts.push(form);
  }
  return h("div", { class: `card rectification ${WARN[r.warning_level] || ""}`, dataset: { id: r.id } }, parts);
}

$("eval-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadStats();
});
$("rect-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  loadRectifications();
});
