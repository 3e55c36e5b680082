// Cases at the counter: the work list coloured by deadline level, and one case with its materials and actions.

import * as session from "./session.js";

const { h, show, say, sayError, fmtTime } = session.common;
const $ = (id) => document.getElementById(id);

export const ACTION_LABELS = {
  accept: "受理", request_correction: "一次性告知补正", start_review: "开始审查", approve: "审批通过",
  reject: "不予办理", issue_certificate: "签发电子证照", deliver: "送达", close: "办结归档",
};
const LEVELS = { none: ["level-green", "正常"], yellow: ["level-yellow", "临近"], red: ["level-red", "超期"] };
const SOURCES = { upload: "上传文件", paper: "纸质材料", reuse: "材料库复用", certificate: "电子证照" };
const CERT_STATUS = { genuine: "真实有效", expired: "已过有效期", revoked: "已注销" };
const DELIVERY = { pickup: "窗口领取", post: "邮寄送达" };
const REQUEST_STATES = { pending: "待大厅管理员审批", approved: "已批准，已再次告知", refused: "未批准" };

let hallId = null;
let counterId = null;
let shown = null; // the case on screen
let blobs = []; // blob: URLs of materials on screen, revoked when they go
const openListeners = [];

export function onOpen(fn) { openListeners.push(fn); }

export function setHall(hall, counter) {
  hallId = hall;
  counterId = counter;
}

function dropBlobs() {
  for (const url of blobs) URL.revokeObjectURL(url);
  blobs = [];
}

export function reset() {
  dropBlobs();
  shown = null;
  hallId = counterId = null;
  show($("case-body"));
  $("case-detail").hidden = true;
  show(document.querySelector("#worklist tbody"));
  $("worklist-total").textContent = "";
}

// ---- the work list --------------------------------------------------------------------------

export async function loadWorkList() {
  const params = new URLSearchParams({ hall_id: hallId, limit: "100" });
  const status = $("filter-status").value;
  const level = $("filter-level").value;
  if (status) params.set("status", status);
  if (level) params.set("warning", level);
  try {
    const answer = await session.staffApi("/cases?" + params);
    $("worklist-total").textContent = `共 ${answer.total} 件`;
    show(document.querySelector("#worklist tbody"), answer.cases.map((c) => {
      const [cls, label] = LEVELS[c.warning_level] || LEVELS.none;
      return h("tr", { class: cls, dataset: { caseNo: c.case_no, level: c.warning_level } },
        h("td", {}, c.case_no), h("td", {}, c.item.name), h("td", {}, c.status_label),
        h("td", {}, c.promised_due || "受理后计算"), h("td", {}, h("span", { class: "level-tag" }, label)),
        h("td", {}, h("button", { type: "button", class: "btn btn-ghost", "aria-label": "查看办件 " + c.case_no,
                                  onclick: () => openCase(c.case_no) }, "查看")));
    }));
  } catch (err) {
    sayError(err);
  }
}

$("worklist-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  loadWorkList();
});

// ---- one case -------------------------------------------------------------------------------

export async function openCase(caseNo) {
  try {
    const c = await session.staffApi(`/cases/${encodeURIComponent(caseNo)}`);
    for (const fn of openListeners) fn(c);
    render(c);
  } catch (err) {
    sayError(err);
  }
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function render(c) {
  dropBlobs();
  shown = c;
  $("case-detail").hidden = false;
  const d = c.deadline;
  const [, levelLabel] = LEVELS[d.warning_level] || LEVELS.none;
  const materials = h("div", { class: "materials", id: "materials" }, c.materials.map(materialBox));
  show($("case-body"),
    facts([["办件编号", c.case_no], ["事项", `${c.item.name}（第${c.item.version}版）`], ["状态", c.status_label],
           ["申请人", `${c.applicant.name}（${c.applicant.id_number}）`],
           ["承诺办结", d.promised_due ? `${d.promised_due}（${levelLabel}${d.paused ? "，已暂停计时" : ""}）`
                                        : `受理后 ${d.promised_days} 个工作日`],
           ["送达方式", DELIVERY[c.delivery.method] || c.delivery.method],
           ["收费", c.fees.total_fen ? `${(c.fees.total_fen / 100).toFixed(2)} 元，${c.fees.paid ? "已缴" : "未缴"}`
                                      : "不收费"]]),
    h("h3", {}, "申请材料"),
    c.materials.length ? materials : h("p", { class: "muted" }, "尚无材料"),
    c.corrections.length ? h("div", {}, h("h3", {}, "一次性告知"), c.corrections.map(noticeBox)) : null,
    (c.notice_requests || []).length
      ? h("div", { id: "notice-requests" }, h("h3", {}, "再次告知申请"), c.notice_requests.map((r) => requestBox(r, c)))
      : null,
    c.certificates.length ? h("div", {}, h("h3", {}, "电子证照"), h("ul", {}, c.certificates.map((x) =>
      h("li", {}, `${x.cert_type} ${x.cert_no}（${CERT_STATUS[x.status] || x.status}）`)))) : null,
    h("h3", {}, "办理过程"),
    h("ol", { class: "history" }, c.history.map((x) =>
      h("li", {}, `${fmtTime(x.at)} ${x.step}` + (x.reason ? `：${x.reason}` : "")))),
    h("h3", {}, "办理操作"),
    c.actions.length
      ? h("div", { class: "row", id: "case-actions" }, c.actions.map((a) =>
          h("button", { type: "button", class: a === "reject" ? "btn btn-danger" : "btn", dataset: { action: a },
                        onclick: () => openAction(a) }, ACTION_LABELS[a] || a)))
      : h("p", { class: "muted" }, "当前状态下没有可办理的操作"),
    h("div", { id: "action-area" }));
  loadMaterials(c);
}

function materialBox(m) {
  return h("div", { class: "material", dataset: { materialId: m.id } },
    h("h4", {}, `${m.name}` + (m.required ? "" : "（选交）")),
    h("p", { class: "muted" }, [SOURCES[m.source] || m.source, m.certificate, m.file && m.file.name,
                                m.superseded ? "已被补正材料替换" : null].filter(Boolean).join(" · ")),
    h("div", { class: "material-view" }));
}

async function loadMaterials(c) {
  for (const m of c.materials) {
    if (!m.file) continue;
    const box = document.querySelector(`.material[data-material-id="${m.id}"] .material-view`);
    try {
      const { url, type } = await session.staffBlobUrl(
        `/cases/${encodeURIComponent(c.case_no)}/materials/${m.id}/content`);
      if (shown !== c) { URL.revokeObjectURL(url); return; }
      blobs.push(url);
      show(box, type === "application/pdf"
        ? h("iframe", { src: url, title: `${m.name}（PDF）` })
        : h("img", { src: url, alt: m.name }));
    } catch (err) {
      show(box, h("p", { class: "error-text" }, err.message));
    }
  }
}

function noticeBox(n) {
  return h("div", { class: "notice", dataset: { round: n.round } },
    h("p", {}, `第${n.round}次告知（${fmtTime(n.created_at)}）` + (n.repeat ? "，经大厅管理员批准再次告知" : "")
      + (n.answered_at ? "，已补正" : "，待补正")),
    h("ul", {}, n.items.map((i) => h("li", {}, `${i.name}：${i.reason}`))),
    n.note ? h("p", { class: "notice-note" }, `补充说明：${n.note}`) : null);
}

// A clerk's request for a further notice; a hall admin of the hall (not the one who asked) decides it here.
function requestBox(r, c) {
  const mine = session.current() && session.current().staff.id === r.requested_by.id;
  const decides = r.state === "pending" && !mine && session.rolesIn(c.hall.id).includes("hall_admin");
  const reasonId = `decision-reason-${r.id}`;
  return h("div", { class: "notice notice-request", dataset: { request: r.id, state: r.state } },
    h("p", {}, `${r.requested_by.name || "工作人员"}申请（${fmtTime(r.requested_at)}）：${REQUEST_STATES[r.state] || r.state}`),
    h("p", {}, `理由：${r.reason}`),
    h("ul", {}, r.items.map((i) => h("li", {}, `${i.name}：${i.reason}`))),
    r.decision_reason ? h("p", { class: "muted" }, `审批意见（${(r.decided_by && r.decided_by.name) || ""}）：${r.decision_reason}`)
                      : null,
    decides ? h("div", { class: "stack" },
      h("label", { for: reasonId }, "审批意见（必填）"), h("textarea", { id: reasonId, maxlength: 500 }),
      h("div", { class: "row" },
        h("button", { type: "button", class: "btn", dataset: { decide: "approve" },
                      onclick: () => decideRequest(r, c, true) }, "批准再次告知"),
        h("button", { type: "button", class: "btn btn-danger", dataset: { decide: "refuse" },
                      onclick: () => decideRequest(r, c, false) }, "不批准"))) : null);
}

async function decideRequest(r, c, approve) {
  const reason = $(`decision-reason-${r.id}`).value.trim();
  if (reason.length < 2) {
    say("请填写审批意见", { error: true });
    $(`decision-reason-${r.id}`).focus();
    return;
  }
  try {
    await session.staffApi(`/notice-requests/${r.id}/decision`, { method: "POST", body: { approve, reason } });
    say(approve ? "已批准，补正告知已送达申请人" : "已不予批准");
    await openCase(c.case_no);
  } catch (err) {
    sayError(err);
  }
}

// ---- actions --------------------------------------------------------------------------------

function field(id, label, control) {
  return h("div", { class: "stack" }, h("label", { for: id }, label), control);
}

async function openAction(action) {
  const area = $("action-area");
  const c = shown;
  // 一次性告知: after an answered notice, a further one is asked of a hall admin, with the reason.
  const asking = action === "request_correction" && c.further_notice_needs_approval;
  const parts = [h("h4", {}, asking ? "申请再次告知（须经大厅管理员批准）" : ACTION_LABELS[action])];
  if (action === "request_correction") {
    let guide;
    try {
      guide = await session.common.api(
        `/api/v1/catalog/items/${encodeURIComponent(c.item.code)}?version=${c.item.version}`);
    } catch (err) {
      sayError(err);
      return;
    }
    parts.push(h("p", { class: "muted" }, "勾选需要补正的材料并写明原因，一次告知全部问题。"),
      h("fieldset", { class: "checklist" }, h("legend", {}, "材料清单"),
        guide.materials.map((m) => h("div", { class: "notice-item" },
          h("input", { type: "checkbox", id: `notice-${m.code}`, name: "notice-code", value: m.code }),
          h("label", { for: `notice-${m.code}` }, `${m.name}（${m.form_label}${m.required === false ? "，选交" : ""}）`),
          h("span"),
          h("input", { type: "text", id: `notice-reason-${m.code}`, maxlength: 90,
                       "aria-label": `${m.name}需补正的原因`, placeholder: "原因，如“复印件不清晰”" })))),
      field("notice-note", "补充说明（随告知一并送达申请人）",
            h("textarea", { id: "notice-note", maxlength: 500 })));
    if (asking) {
      parts.push(h("p", { class: "muted" }, "申请人已按上次告知补正。再次告知须说明理由，经大厅管理员批准后才会送达申请人。"),
        field("notice-request-reason", "再次告知的理由（供大厅管理员审批，申请人不可见）",
              h("textarea", { id: "notice-request-reason", maxlength: 500, required: true })));
    }
  } else {
    parts.push(field("action-reason", action === "reject" ? "不予办理的理由（必填）" : "说明（选填）",
                     h("textarea", { id: "action-reason", maxlength: 500, required: action === "reject" })));
  }
  if (action === "approve" || action === "issue_certificate") {
    parts.push(field("action-valid-until", "证照有效期至（不填为长期）", h("input", { type: "date", id: "action-valid-until" })));
  }
  if (action === "deliver" && c.delivery.method === "post") {
    parts.push(field("action-tracking", "快递单号", h("input", { id: "action-tracking", maxlength: 40, required: true })));
  }
  parts.push(h("div", { class: "row" },
    h("button", { type: "submit", class: action === "reject" ? "btn btn-danger" : "btn" },
      asking ? "提交再次告知申请" : action === "request_correction" ? "发送一次性告知" : "确认" + ACTION_LABELS[action]),
    h("button", { type: "button", class: "btn btn-ghost", onclick: () => show(area) }, "取消")));
  const form = h("form", { class: "action-form", id: "action-form", dataset: { action } }, parts);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitAction(action, c);
  });
  show(area, form);
  const first = form.querySelector("input, textarea");
  if (first) first.focus();
}

function noticeItems() {
  return [...document.querySelectorAll('input[name="notice-code"]:checked')].map((box) => {
    const own = $(`notice-reason-${box.value}`).value.trim();
    return { code: box.value, reason: own || "需补正" };
  });
}

async function askFurtherNotice(c) {
  const body = { items: noticeItems(), note: $("notice-note").value.trim(),
                 reason: $("notice-request-reason").value.trim() };
  if (!body.items.length) {
    say("请勾选需要补正的材料", { error: true });
    return;
  }
  if (body.reason.length < 5) {
    say("请写明再次告知的理由（至少5个字）", { error: true });
    $("notice-request-reason").focus();
    return;
  }
  try {
    await session.staffApi(`/cases/${encodeURIComponent(c.case_no)}/notice-requests`, { method: "POST", body });
    say("再次告知申请已提交，待大厅管理员审批");
    await openCase(c.case_no);
  } catch (err) {
    sayError(err);
  }
}

async function submitAction(action, c) {
  if (action === "request_correction" && c.further_notice_needs_approval) return askFurtherNotice(c);
  const body = { action };
  if (action === "request_correction") {
    body.items = noticeItems();
    body.reason = $("notice-note").value.trim();
    if (!body.items.length) {
      say("请勾选需要补正的材料", { error: true });
      return;
    }
  } else {
    body.reason = $("action-reason").value.trim();
    if (action === "reject" && !body.reason) {
      say("请填写不予办理的理由", { error: true });
      $("action-reason").focus();
      return;
    }
  }
  const validUntil = $("action-valid-until");
  if (validUntil && validUntil.value) body.valid_until = validUntil.value;
  const tracking = $("action-tracking");
  if (tracking) body.tracking_no = tracking.value.trim();
  if (action === "accept" && counterId) body.counter_id = counterId;
  try {
    await session.staffApi(`/cases/${encodeURIComponent(c.case_no)}/transitions`, { method: "POST", body });
    say(`${ACTION_LABELS[action]}：已完成`);
    await openCase(c.case_no);
    if (!$("panel-cases").hidden) loadWorkList();
  } catch (err) {
    sayError(err);
  }
}
