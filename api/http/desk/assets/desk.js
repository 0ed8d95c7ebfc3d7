// Harbor's desk: the HTTP API in a browser tab, for clerks (reading and recording) and auditors.
// Plain DOM calls and no framework, so the page works offline and needs no build step.
// Every value from the server goes in as text (never as HTML): names and summaries are
// typed by people, and a record must not be able to run script in a reader's browser.
"use strict";

const TOKEN_KEY = "harbor.token";
const view = document.getElementById("view");
const problemBox = document.getElementById("problem");
let me = null;

// --- talking to the API -------------------------------------------------------------

class Problem extends Error {
  constructor(status, body) {
    const detail = body && body.detail ? body.detail : `HTTP ${status}`;
    const code = body && body.code ? body.code : "HTTP_" + status;
    const field = body && body.field ? `, field ${body.field}` : "";
    super(`${code}${field}: ${detail}`);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// The API lives one level up from /ui/, which keeps the page working behind a proxy prefix.
function apiUrl(path, params) {
  const url = new URL("../" + path.replace(/^\//, ""), location.href);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(name, value);
  }
  return url;
}

// JSON answers come back parsed; with asFile (or another type) as a Blob to save.
async function api(path, params, accept = "application/json", asFile = false) {
  const response = await fetch(apiUrl(path, params), {
    headers: { Authorization: "Bearer " + token(), Accept: accept },
  });
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch (_) { /* not a problem document */ }
    throw new Problem(response.status, body);
  }
  return accept === "application/json" && !asFile ? response.json() : response.blob();
}

// --- building the page (text only) ---------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "onclick" || name === "onsubmit") node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Recorded times come in UTC; as_recorded counts Shanghai's days, so they are shown so.
const SHANGHAI = new Intl.DateTimeFormat("sv-SE", {
  timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const shanghai = (iso) => (iso ? SHANGHAI.format(new Date(iso)) : null);
const dash = (value) => (value === null || value === undefined || value === "" ? "–" : value);
const short = (id) => (id ? String(id).slice(0, 8) : "–");

// A link that came without a name is named later by nameMembers (one read each).
function memberLink(id, name) {
  return el("a", { href: `#/member/${id}`, "data-member": id, title: id, ...(name ? { "data-named": "" } : {}) }, name || short(id));
}

function caseLink(id) {
  return id ? el("a", { href: `#/case/${id}`, title: id }, short(id)) : "–";
}

function table(columns, rows, empty = "nothing here 无") {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  const head = el("tr", {}, columns.map(([label, , cls]) => el("th", { class: cls }, label)));
  const body = rows.map((row) =>
    el("tr", {}, columns.map(([, cell, cls]) => el("td", { class: cls }, dash(cell(row))))));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
}

function card(pairs) {
  return el("div", { class: "card" },
    el("dl", {}, pairs.map(([label, value]) => [el("dt", {}, label), el("dd", {}, dash(value))])));
}

function form(fields, submit, values) {
  const inputs = {};
  const node = el("form", {
    onsubmit: (event) => {
      event.preventDefault();
      const wanted = {};
      for (const [name, input] of Object.entries(inputs)) wanted[name] = input.value.trim();
      submit(wanted);
    },
  });
  for (const [name, label, type, options] of fields) {
    const id = "f-" + name;
    const input = type === "select"
      ? el("select", { id, name }, options.map(([v, text]) => el("option", { value: v }, text)))
      : el("input", { id, name, type: type || "text" });
    if (values && values[name]) input.value = values[name];
    inputs[name] = input;
    node.append(el("label", { for: id }, label), input);
  }
  node.append(el("button", { type: "submit" }, "Show 查看"));
  return node;
}

// A button that saves what ``fetchFile`` answers as a file named ``filename``.
function saveButton(label, filename, fetchFile, id) {
  return el("button", {
    type: "button",
    id,
    onclick: async () => {
      try {
        const href = URL.createObjectURL(await fetchFile());
        const link = el("a", { href, download: filename });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(href), 60000);  // once the browser has saved it
      } catch (error) { showProblem(error); }
    },
  }, label);
}

// A file for the spreadsheet: the same route asked for text/csv.
function csvButton(path, params, filename) {
  return saveButton("Download CSV 下载", filename, () => api(path, params, "text/csv"));
}

// A member's proof bundle as a file, for an auditor to check offline.
function jsonButton(path, filename, label) {
  return saveButton(label, filename, () => api(path, {}, "application/json", true), "bundle");
}

function showProblem(error) {
  const text = error instanceof Problem ? error.message : String(error);
  if (me && error instanceof Problem && error.status === 401) {
    signOut(`${text}\nThe token no longer acts (expired or revoked): sign in with a new one.`);
    return;
  }
  problemBox.textContent = text;
  problemBox.hidden = false;
}

// Queue entries and findings carry member ids; the names come from each member's status,
// which this caller may read (or, if not, the short id stays).
// Four at a time, so a long page of findings does not send the server hundreds at once.
async function nameMembers(root) {
  const ids = [...new Set([...root.querySelectorAll("a[data-member]:not([data-named])")].map((a) => a.dataset.member))];
  const next = async () => {
    for (let id = ids.shift(); id !== undefined; id = ids.shift()) {
      if (!root.isConnected) return;  // the page moved on
      try {
        const member = await api(`members/${id}`);
        for (const link of root.querySelectorAll(`a[data-member="${id}"]:not([data-named])`)) link.textContent = member.name;
      } catch (_) { /* not readable by this caller: the id stays */ }
    }
  };
  await Promise.all([next(), next(), next(), next()]);
}

// --- views ---------------------------------------------------------------------------

function params() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  return { parts: path.split("/").filter(Boolean), query: Object.fromEntries(new URLSearchParams(query || "")) };
}

function go(path, query) {
  const search = new URLSearchParams(Object.entries(query || {}).filter(([, v]) => v)).toString();
  location.hash = "#/" + path + (search ? "?" + search : "");
}

async function showQueue(unit, query) {
  unit = unit || me.unit_id;
  const queue = await api(`units/${encodeURIComponent(unit)}/queue`, { on: query.on });
  const letterOrReferral = [
    ["kind 类别", (i) => (i.kind === "letter" ? "letter 介绍信"
      : i.taken_on ? `referral taken on ${i.taken_on} 已接手 (${i.handover})` : `referral 转介 (${i.handover})`)],
    ["member 党员", (i) => memberLink(i.member_id, i.member_name)],
    ["case 事项", (i) => caseLink(i.case_id)],
    ["since 起", (i) => i.since],
    ["from 自", (i) => i.from],
    ["to 至", (i) => i.to],
    ["letter no. 编号", (i) => i.letter_no],
    ["valid until 有效期", (i) => i.valid_until],
    // Days left to use a letter before it expires (R6: an unused, expired letter is a breach).
    ["days left 剩余天数", (i) => (i.days_left === undefined ? null : i.days_left < 0 ? `expired 已过期 (${-i.days_left})` : String(i.days_left))],
  ];
  const firsts = [
    ["case 事项", (c) => caseLink(c.case_id)],
    ["member 党员", (c) => memberLink(c.member_id, c.member_name)],
    ["opened 首问日", (c) => c.opened_on],
    ["outcome 结果", (c) => c.outcome],
    ["stalled 停滞", (c) => (c.stalled ? "yes 是" : "no 否")],
  ];
  // 预警: breaches against this unit that begin within the next days unless someone acts.
  const dueSoon = [
    ["due 到期", (w) => `${w.due_on} (${w.days_left})`],
    ["rule 规则", (w) => w.rule],
    ["member 党员", (w) => memberLink(w.member_id, w.member_name)],
    ["case 事项", (w) => caseLink(w.case_id)],
    ["what 事由", (w) => w.detail],
    ["to do 应办", (w) => w.action],
  ];
  const content = el("div", {},
    form([["unit", "unit 单位"], ["on", "on 日期", "date"]],
      (v) => go(`queue/${v.unit || me.unit_id}`, { on: v.on }), { unit, on: query.on }),
    el("h2", {}, `${queue.unit_id} — ${queue.on}`),
    csvButton(`units/${encodeURIComponent(unit)}/queue`, { on: query.on }, `queue-${unit}.csv`),
    el("h3", {}, "待办 waiting for this unit"), table(letterOrReferral, queue.todo),
    el("h3", {}, "未办结 waiting on others"), table(letterOrReferral, queue.waiting_on_others),
    el("h3", {}, "首问 open cases this unit answered first"), table(firsts, queue.first_responder_cases),
    el("h3", {}, `预警 breaches due within ${queue.due_within_days} days unless someone acts`), table(dueSoon, queue.due_soon));
  view.replaceChildren(content);
  nameMembers(content);  // a parent reading a sub-unit's queue gets no names with it
}

const RELATIONS = {
  held: "held 在册",
  arriving: "arriving 待接收",
  orphaned: "orphaned 原单位已撤销",  // held by a dissolved unit this one stands in for (R8)
};

// Roster pages go forward by the API's cursor (next_after), which does not shift when a
// member joins or leaves meanwhile. The hash keeps the page's cursor (after) and the
// cursors of the pages before it (back, oldest first, "." between: a cursor never holds
// one), so "previous" is the very page seen before and "first" starts again.
function rosterPage(unit, query, place) {
  const { after, back, offset, ...kept } = query;  // the place is replaced, the rest kept
  const wanted = { ...kept, ...place };
  const search = new URLSearchParams(Object.entries(wanted).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  return `#/roster/${unit}?${search}`;
}

async function showRoster(unit, query) {
  unit = unit || me.unit_id;
  const after = query.after || null;
  const back = after && query.back ? query.back.split(".").filter(Boolean) : [];
  // An offset (from an older link) still shows its page; the desk's own links use cursors.
  const offset = after ? 0 : Number(query.offset) || 0;
  const page = { on: query.on, limit: query.limit || 100, after, offset: offset || null };
  const data = await api(`units/${encodeURIComponent(unit)}/members`, page);
  const shown = data.members.length;
  // Positions are known from the start or an offset; after a cursor only the count is.
  const count = after
    ? (shown ? `${shown} member${shown === 1 ? "" : "s"} shown of ${data.total}` : `no members left after the page before; ${data.total} in all`)
    : (shown ? `members ${offset + 1}–${offset + shown} of ${data.total}` : `no members from ${offset + 1} on; ${data.total} in all`);
  let previous = null;
  if (after) previous = back.length ? { after: back[back.length - 1], back: back.slice(0, -1).join(".") } : {};
  else if (offset > 0) previous = { offset: Math.max(offset - Number(page.limit), 0) };
  const first = after ? back.length > 0 : offset > 0 && previous.offset > 0;
  const next = data.next_after ? { after: data.next_after, back: after ? [...back, after].join(".") : null } : null;
  const content = el("div", {},
    form([["unit", "unit 单位"], ["on", "on 日期", "date"]],
      (v) => go(`roster/${v.unit || me.unit_id}`, { on: v.on }), { unit, on: query.on }),
    el("h2", {}, `${data.unit_id} 在册 — ${data.on}`),
    // The file holds the whole roster, not only this page.
    csvButton(`units/${encodeURIComponent(unit)}/members`, { on: query.on }, `members-${unit}.csv`),
    el("p", { id: "roster-count" }, count),
    table([
      ["name 姓名", (m) => memberLink(m.member_id, m.name)],
      ["relation 关系", (m) => RELATIONS[m.relation] || m.relation],
      ["standing 身份", (m) => m.standing],
      ["status 状态", (m) => m.status],
      ["since 起", (m) => m.since],
      ["colour 颜色", (m) => el("span", { class: `colour ${m.colour}` }, m.colour)],
      ["letter 介绍信", (m) => (m.letter_no ? `${m.letter_no} → ${m.in_transit_to}` : null)],
      ["open case 未结事项", (m) => caseLink(m.open_case_id)],
    ], data.members, "no members here 无"),
    el("p", { class: "pages" },
      first ? el("a", { id: "roster-first", href: rosterPage(unit, query, {}) }, "« first page 首页") : null,
      previous ? el("a", { id: "roster-previous", href: rosterPage(unit, query, previous) }, "← previous 上一页") : null,
      next ? el("a", { id: "roster-next", href: rosterPage(unit, query, next) }, "next 下一页 →") : null));
  view.replaceChildren(content);
}

async function showSearch(query) {
  const content = el("div", {},
    form([["q", "ID number or name 身份证号或姓名"]], (v) => go("search", { q: v.q }), query));
  // A walk-in not found by ID number is enrolled with that number already filled in.
  const idNumber = /^\d{17}[\dXx]$/.test((query.q || "").trim()) ? query.q.trim() : "";
  if (me.role === "unit") content.append(await enrolPanel(idNumber));
  view.replaceChildren(content);
  if (!query.q) return;
  const found = await api("members", { q: query.q });
  content.append(table([
    ["name 姓名", (m) => memberLink(m.member_id, m.name)],
    ["member id", (m) => m.member_id],
  ], found, "no member found 未找到"));
  if (!found.length) {
    content.append(el("p", { class: "hint" }, idNumber
      ? "Nobody is enrolled with this ID number: enrol the member above if they are one."
      : "A name is matched whole (not part of it); the ID number finds a member surely. 姓名须完整。"));
  }
}

function trailTable(trail) {
  return table([
    ["position 位置", (e) => el("span", { class: e.voided ? "voided" : null }, e.position), "num"],
    ["occurred 发生日", (e) => e.occurred_on],
    ["unit 单位", (e) => e.unit_id],
    ["event 事件", (e) => e.event_type],
    ["summary 摘要", (e) => (e.voided ? `${e.summary} (voided 作废: ${dash(e.void_reason)})` : e.summary), "wrap"],
    ["recorded by 记录人", (e) => e.recorded_by],
    ["recorded at 记录时间 (UTC+8)", (e) => el("span", { title: e.recorded_at }, shanghai(e.recorded_at))],
  ], trail);
}

function caseSection(c) {
  return el("section", {},
    el("h3", {}, `Case 事项 ${c.number !== undefined ? "#" + c.number : ""} `, caseLink(c.case_id)),
    card([
      ["first responder 首问单位", c.first_responder],
      ["path 经手单位", (c.path || []).join(" → ")],
      ["opened 开始", c.opened_on],
      ["closed 结束", c.closed_on ? `${c.closed_on} (${c.closed_by})` : null],
      ["attached 接收", c.attached_unit_id ? `${c.attached_unit_id} on ${c.attached_on}` : null],
      ["outcome 结果", c.outcome ? `${c.outcome}${c.outcome_since ? " since " + c.outcome_since : ""}` : null],
      ["stalled 停滞", c.stalled ? "yes 是" : "no 否"],
    ]),
    c.referrals && c.referrals.length ? table([
      ["from 自", (r) => r.from], ["to 至", (r) => r.to], ["handover 交接", (r) => r.handover],
      ["referred 转介日", (r) => r.referred_on], ["reason 原因", (r) => r.reason, "wrap"],
      ["judged 判定", (r) => r.state], ["answer 答复", (r) => r.answer],
      ["answered 答复日", (r) => r.answered_on],
    ], c.referrals) : null,
    trailTable(c.trail || []));
}

async function showMember(id, query) {
  // After a command, min_position makes both reads wait until they show it.
  const seen = { min_position: query.min_position };
  const replay = { as_of: query.as_of, as_recorded: query.as_recorded, position: query.position };
  let status;
  try {
    status = await api(`members/${id}`, seen);
  } catch (error) {
    // A unit reads a member only once it holds them, receives them or took part in a case;
    // a walk-in's first inquiry is what makes it take part, so that is offered here.
    if (me.role === "unit" && error instanceof Problem && error.status === 403) {
      view.replaceChildren(el("div", {}, el("p", { class: "hint" }, error.message),
        await recordPanel({ member_id: id, version: null }, [])));
      return;
    }
    throw error;
  }
  const history = await api(`members/${id}/history`, { ...replay, ...seen });
  const replaying = Boolean(query.as_of || query.as_recorded || query.position);
  const asked = query.as_of ? `as of 截至 ${query.as_of} (what had happened)`
    : query.as_recorded ? `as recorded 记录于 ${query.as_recorded} (what the registry knew)`
      : query.position ? `at log position ${query.position}` : "as it stands now 当前";
  // Replaying, the card is the member as the replay has them, not as they are today.
  const shown = replaying ? card([
    ["member id", history.member_id],
    ["standing 身份", history.standing],
    ["holder 所在单位", history.holder_unit_id],
    ["since 起", history.since],
    ["in transit to 转往", history.in_transit_to],
  ]) : card([
    ["member id", status.member_id],
    ["standing 身份", status.standing],
    ["holder 所在单位", status.holder_unit_id],
    ["since 起", status.since],
    ["status 状态", status.status],
    ["in transit to 转往", status.in_transit_to],
    ["letter 介绍信", status.letter_no ? `${status.letter_no}, valid until ${status.letter_valid_until}` : null],
    ["open case 未结事项", caseLink(status.open_case_id)],
  ]);
  const content = el("div", {},
    el("h2", {}, `${status.name} `, replaying ? `— ${asked}` : el("span", { class: `colour ${status.colour}` }, status.colour)),
    el("div", { id: "member-card" }, shown),
    me.role === "unit" && !replaying ? await recordPanel(status, history.cases || []) : null,
    me.role === "auditor" ? el("p", {}, jsonButton(`audit/members/${id}/bundle`, `bundle-${id}.json`,
      "Download proof bundle 下载证明包"), " check it offline: harbor verify-bundle FILE --key DIR") : null,
    el("h2", {}, "History 历史 — ", asked),
    form([
      ["as_of", "as of 截至", "date"], ["as_recorded", "as recorded 记录于", "date"],
      ["position", "position 位置", "number"],
    ], (v) => go(`member/${id}`, v), query),
    history.limited_to_cases ? el("p", { class: "hint" },
      "This unit took part in some of the member's cases only: those are shown. 仅显示本单位参与的事项。") : null,
    (history.cases || []).map(caseSection),
    // The history's trail is the whole trail; the cases above showed theirs.
    el("h3", {}, "Outside any case 事项之外"), trailTable((history.trail || []).filter((e) => !e.case_id)),
    el("h3", {}, "Findings 合规"), findingsTable(history.findings || []));
  view.replaceChildren(content);
}

async function showCase(id, query) {
  const c = await api(`cases/${id}`, { on: query.on });
  const content = el("div", {}, el("h2", {}, "Case 事项 of ", memberLink(c.member_id)), caseSection(c));
  view.replaceChildren(content);
  nameMembers(content);
}

function findingsTable(rows) {
  return table([
    ["rule 规则", (f) => f.rule], ["severity 等级", (f) => f.severity],
    ["unit 单位", (f) => f.unit_id], ["member 党员", (f) => memberLink(f.member_id, f.member_name)],
    ["case 事项", (f) => caseLink(f.case_id)], ["since 起", (f) => f.since],
    ["resolved 解决", (f) => f.resolved || "open 未解决"], ["detail 说明", (f) => f.detail, "wrap"],
  ], rows, "no findings 无");
}

async function showFindings(query) {
  const wanted = { rule: query.rule, unit: query.unit, severity: query.severity, open: query.open, on: query.on };
  // The form's one choice is two filters of the API: open (unresolved) or resolved.
  const asked = { ...wanted, open: query.open === "true" ? "true" : null, resolved: query.open === "false" ? "true" : null };
  const rows = await api("compliance/findings", asked);
  const content = el("div", {},
    form([
      ["rule", "rule 规则", "select", [["", "any"], ...["R1", "R2", "R3", "R5", "R6", "R7", "R8"].map((r) => [r, r])]],
      ["unit", "unit 单位"],
      ["severity", "severity 等级", "select", [["", "any"], ["breach", "breach"], ["override", "override"]]],
      ["open", "open 未解决", "select", [["", "any"], ["true", "open"], ["false", "resolved"]]],
      ["on", "on 日期", "date"],
    ], (v) => go("findings", v), wanted),
    csvButton("compliance/findings", asked, "findings.csv"),
    el("p", {}, `${rows.length} finding(s)`),
    findingsTable(rows));
  view.replaceChildren(content);
  nameMembers(content);
}

const SCORE_COLUMNS = [
  ["unit 单位", (s) => s.unit_id],
  ["answered first 首问", (s) => s.answered_first, "num"],
  ["seen through 句号", (s) => s.seen_through, "num"],
  ["dropped 逗号", (s) => s.dropped, "num"],
  ["withdrawn 撤回", (s) => s.withdrawn, "num"],
  ["open 未结", (s) => s.open, "num"],
  ["median days 中位天数", (s) => s.median_days_to_attachment, "num"],
];

async function showScorecards(query) {
  const rows = await api("scorecards", { on: query.on });
  // Ranked by the chosen column, largest first (most dropped, by default); ties by unit.
  const by = query.by || "dropped";
  const column = SCORE_COLUMNS.find(([label]) => label.startsWith(by.replace(/_/g, " "))) || SCORE_COLUMNS[3];
  rows.sort((a, b) => (Number(column[1](b)) || 0) - (Number(column[1](a)) || 0) || String(a.unit_id).localeCompare(b.unit_id));
  const content = el("div", {},
    form([
      ["on", "on 日期", "date"],
      ["by", "rank by 排序", "select", [["dropped", "dropped 逗号"], ["seen_through", "seen through 句号"], ["answered_first", "answered first 首问"], ["open", "open 未结"]]],
    ], (v) => go("scorecards", v), { on: query.on, by }),
    csvButton("scorecards", { on: query.on }, "scorecards.csv"),
    table(SCORE_COLUMNS, rows));
  view.replaceChildren(content);
}

async function showAudit() {
  const status = await api("audit/status");
  const head = status.last_tree_head;
  const checked = status.last_verification;
  view.replaceChildren(el("div", {},
    el("h2", {}, "Tamper-evident log 防篡改日志"),
    card([
      ["events in the log 事件数", status.log_size],
      ["sealed leaves 已封存", status.tree_leaves],
      ["not yet sealed 未封存", status.unsealed_events],
      ["last tree head 最新树根", head
        ? `${head.tree_size} events, signed ${head.signed_at} with key ${head.key_id}; root ${head.root_hash}`
        : "none yet (harbor seal)"],
      ["last verification 最近核验", checked
        ? `${checked.verified_at}: ${checked.ok ? "held 通过" : "FAILED 未通过"}, ${checked.events_checked} events`
          + (checked.first_problem ? ` — ${checked.first_problem}` : "")
        : "none yet (harbor verify)"],
    ]),
    el("p", { class: "hint" }, "Prove a member's record offline with a proof bundle: harbor bundle, then harbor verify-bundle.")));
}

// --- recording what the unit just did --------------------------------------------------
// The forms are built from the API's own OpenAPI document, so every command the API takes
// has its form, with the API's field names, required fields, choices and examples.

let openapi = null;

async function apiSchema() {
  if (!openapi) {
    const response = await fetch(apiUrl("openapi.json"));
    if (!response.ok) throw new Problem(response.status, null);
    openapi = await response.json();
  }
  return openapi;
}

function resolve(spec, schema) {
  return schema && schema.$ref ? spec.components.schemas[schema.$ref.split("/").pop()] : schema;
}

// The POST routes under a path prefix: [{action, path, summary, body}], in the API's order.
function commands(spec, pattern) {
  const found = [];
  for (const [path, item] of Object.entries(spec.paths)) {
    const match = path.match(pattern);
    const post = item.post;
    if (!match || !post || !post.requestBody) continue;
    const body = resolve(spec, post.requestBody.content["application/json"].schema);
    found.push({ action: match[1] || path, path, summary: post.summary || path, body });
  }
  return found;
}

const MONTH = "^\\d{4}-(0[1-9]|1[0-2])$";

// One input for one body field; read() gives the JSON value, or undefined to leave it out.
function field(spec, name, prop, required) {
  let p = resolve(spec, prop);
  let optional = !required;
  let text = false;  // a number that may also be written as text (an amount): sent as typed
  if (p.anyOf) {
    const kinds = p.anyOf.filter((x) => x.type !== "null").map((x) => resolve(spec, x));
    optional = optional || kinds.length < p.anyOf.length;
    text = kinds.some((x) => x.type === "string") && kinds.some((x) => x.type === "number");
    p = { ...kinds[0], title: prop.title, description: prop.description, examples: prop.examples || kinds[0].examples };
  }
  const needed = required && !optional;
  const id = "c-" + name;
  const example = p.examples && p.examples.length ? String(p.examples[0]) : "";
  let input;
  let read;
  const items = p.type === "array" ? resolve(spec, p.items) : null;
  if (p.enum) {
    // Never a choice made for the clerk: a required list starts empty and must be chosen.
    input = el("select", { id, name }, el("option", { value: "" }, needed ? "choose… 请选择" : "–"),
      p.enum.map((v) => el("option", { value: v }, v)));
    read = () => input.value || undefined;
  } else if (p.type === "boolean") {
    // Unchecked is an answer too (false); a browser would refuse a required unchecked box.
    input = el("input", { id, name, type: "checkbox" });
    read = () => (input.checked ? true : needed ? false : undefined);
  } else if ((p.type === "integer" || p.type === "number") && !text) {
    input = el("input", { id, name, type: "number", step: p.type === "integer" ? "1" : "any", placeholder: example });
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (items && items.type === "object") {
    // Pairs such as prior contacts (who: what they said), one per line.
    const [first, second] = Object.keys(items.properties);
    input = el("textarea", { id, name, rows: 3, placeholder: `${first}: ${second} (one per line)` });
    read = () => {
      const lines = input.value.split("\n").map((l) => l.trim()).filter(Boolean);
      return lines.length ? lines.map((line) => {
        const [, a, b] = line.match(/^([^:：]*)[:：]\s*(.*)$/) || [null, line, ""];
        return { [first]: a.trim(), [second]: b.trim() };
      }) : undefined;
    };
  } else if (items) {
    input = el("textarea", { id, name, rows: 3, placeholder: "one per line" + (example ? `, e.g. ${example}` : "") });
    read = () => {
      const lines = input.value.split("\n").map((l) => l.trim()).filter(Boolean);
      return lines.length ? lines : undefined;
    };
  } else {
    const type = p.format === "date" ? "date" : p.pattern === MONTH ? "month" : "text";
    input = (p.maxLength || 0) > 200
      ? el("textarea", { id, name, rows: 2, placeholder: example })
      : el("input", { id, name, type, placeholder: example });
    read = () => (input.value.trim() === "" ? undefined : input.value.trim());
  }
  if (needed && p.type !== "boolean") input.required = true;
  const label = el("label", { for: id, title: p.description || "" }, `${p.title || name}${needed ? " *" : ""}`);
  return { name, label, input, read };
}

// A random key per action being recorded: pressing the button twice, or again after a
// lost answer, replays the first answer instead of recording twice.
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "desk-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

let lastRecorded = null;  // the notice after a command, shown once (never taken from a URL)

// ``member.version`` is sent as If-Match and kept current by ``refresh`` after a refusal
// for a stale version; the key is kept until the command is recorded, so a retry after a
// lost answer or an unavailable store can never record it twice.
function commandForm(spec, command, url, member, refresh, done) {
  // The acting unit always comes from the token (the API says so): never asked here.
  const props = Object.entries(command.body.properties || {}).filter(([name]) => name !== "unit_id");
  const required = new Set(command.body.required || []);
  const fields = props.map(([name, prop]) => field(spec, name, prop, required.has(name)));
  const button = el("button", { type: "submit" }, "Record 记录");
  const changed = el("div", { class: "changed" });  // what others recorded meanwhile
  let key = newKey();
  const node = el("form", {
    class: "command",
    onsubmit: async (event) => {
      event.preventDefault();
      for (const f of fields) f.input.classList.remove("refused");
      const body = {};
      for (const f of fields) {
        const value = f.read();
        if (value !== undefined) body[f.name] = value;
      }
      const headers = { Authorization: "Bearer " + token(), "Content-Type": "application/json", "Idempotency-Key": key };
      if (member.version !== null && member.version !== undefined) headers["If-Match"] = String(member.version);
      button.disabled = true;
      let response;
      let answer = null;
      try {
        response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
        answer = await response.json().catch(() => null);
      } catch (error) {
        showProblem(`The server did not answer (${error.message}). Press Record again: the same key is sent, so it is recorded once.`);
        return;
      } finally {
        button.disabled = false;
      }
      if (response.ok) {
        done(answer);
        return;
      }
      const problem = new Problem(response.status, answer);
      const named = answer && answer.field ? String(answer.field).split(".")[0] : null;
      const wrong = fields.find((f) => f.name === named);
      if (wrong) wrong.input.classList.add("refused");
      if (answer && answer.code === "STALE_VERSION") {
        // Someone recorded for this member meanwhile: show the clerk what (the entries
        // after the version this form was sent with), take the new version, and let them
        // send again as a new command.
        const sent = member.version;
        if (Number.isInteger(answer.current_version)) member.version = answer.current_version;
        else await refresh();
        key = newKey();
        changed.replaceChildren();
        if (member.id && Number.isInteger(sent)) {
          try {
            const history = await api(`members/${member.id}/history`);
            const since = history.trail.filter((e) => e.version > sent);
            changed.replaceChildren(el("h4", {}, "recorded meanwhile 期间他人记录"), trailTable(since));
          } catch (error) {
            // The message below still says what happened; the page's history can be reloaded.
          }
        }
        for (const hint of document.querySelectorAll(".version-hint")) hint.textContent = versionHint(member.version);
        showProblem(`${problem.message}\nThe member changed meanwhile (now version ${member.version}): see what was recorded, under the form, then record again if it is still needed.`);
        return;
      }
      // A refusal of this very command stored nothing; a retryable failure keeps the key.
      if (response.status < 500) key = newKey();
      showProblem(problem);
    },
  }, fields.map((f) => el("span", { class: "field" }, f.label, f.input)), button, changed);
  return node;
}

function versionHint(version) {
  return `The member's version ${version} is sent with each action, so a change by someone else meanwhile is refused, not overwritten.`;
}

// The actions this unit may record for the member: the member's own, and the case
// actions for a chosen case (the open one by default; a closed case still takes a receipt
// or an expired letter coming back, R9). ``cases`` is the history's list of cases.
async function recordPanel(status, cases) {
  const spec = await apiSchema();
  const member = { version: status.version, id: status.member_id };
  const memberActions = commands(spec, /^\/members\/\{member_id\}\/([a-z-]+)$/);
  const caseActions = cases.length ? commands(spec, /^\/members\/\{member_id\}\/cases\/\{case_id\}\/([a-z-]+)$/) : [];
  const all = [...caseActions.map((c) => ({ ...c, scope: "case" })), ...memberActions.map((c) => ({ ...c, scope: "member" }))];
  const ordered = [...cases].reverse();  // newest first
  const openFirst = ordered.find((c) => c.case_id === status.open_case_id) || ordered[0];
  const whichCase = cases.length ? el("select", { id: "record-case" }, ordered.map((c) =>
    el("option", { value: c.case_id, selected: c === openFirst },
      `case 事项 #${c.number} ${short(c.case_id)} ${c.closed_on ? `closed ${c.closed_on}` : "open 未结"}`))) : null;
  const holder = el("div", {});
  const choose = el("select", { id: "record-action" }, el("option", { value: "" }, "choose an action 选择操作…"),
    all.map((c, i) => el("option", { value: String(i) }, `${c.scope === "case" ? "case 事项" : "member 党员"}: ${c.action} — ${c.summary}`)));
  const refresh = async () => {
    member.version = (await api(`members/${status.member_id}`)).version;
  };
  const draw = () => {
    problemBox.hidden = true;
    const command = all[Number(choose.value)];
    if (!command) { holder.replaceChildren(); return; }
    const caseId = whichCase ? whichCase.value : "";
    const url = apiUrl(command.path.replace("{member_id}", status.member_id).replace("{case_id}", caseId));
    holder.replaceChildren(commandForm(spec, command, url, member, refresh, (answer) => {
      lastRecorded = answer.replayed ? "already recorded (the same action was sent before)" : `recorded at log position ${answer.position}`;
      go(`member/${status.member_id}`, { min_position: answer.position });
    }));
  };
  choose.onchange = draw;
  if (whichCase) whichCase.onchange = draw;
  const notice = lastRecorded;
  lastRecorded = null;
  return el("section", { class: "card" },
    el("h3", {}, "Record what this unit did 记录本单位的办理"),
    notice ? el("p", { id: "recorded" }, notice) : null,
    member.version === null || member.version === undefined
      ? el("p", { class: "hint" }, "This unit records an inquiry first: it then takes part in the member's case.")
      : el("p", { class: "hint" }, el("span", { class: "version-hint" }, versionHint(member.version)),
        cases.length ? "" : " No case yet: an inquiry opens one."),
    whichCase, choose, holder);
}

async function enrolPanel(idNumber) {
  const spec = await apiSchema();
  const [enrol] = commands(spec, /^\/members$/);
  const holder = el("div", {});
  const open = el("button", { type: "button" }, "Enrol a member 登记党员…");
  open.onclick = () => {
    const enrolForm = commandForm(spec, enrol, apiUrl("members"), { version: null },
      async () => {}, (answer) => {
        lastRecorded = `enrolled at log position ${answer.position}`;
        go(`member/${answer.member_id}`, { min_position: answer.position });
      });
    const number = enrolForm.querySelector('[name="id_number"]');
    if (number && idNumber) number.value = idNumber;
    holder.replaceChildren(enrolForm);
  };
  return el("section", { class: "card" }, open, holder);
}

const VIEWS = {
  queue: (p) => showQueue(p.parts[1], p.query),
  roster: (p) => showRoster(p.parts[1], p.query),
  search: (p) => showSearch(p.query),
  member: (p) => showMember(p.parts[1], p.query),
  case: (p) => showCase(p.parts[1], p.query),
  findings: (p) => showFindings(p.query),
  scorecards: (p) => showScorecards(p.query),
  audit: () => showAudit(),
};

function homeFor(role) {
  return role === "unit" ? "queue" : role === "auditor" ? "findings" : "audit";
}

async function route() {
  if (!me) return;
  const p = params();
  const name = VIEWS[p.parts[0]] ? p.parts[0] : homeFor(me.role);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.dataset.tab === name || (name === "member" && link.dataset.tab === "search"));
  }
  problemBox.hidden = true;
  view.replaceChildren(el("p", { class: "empty" }, "loading… 加载中"));
  try {
    await VIEWS[name](p);
  } catch (error) {
    view.replaceChildren();
    showProblem(error);
  }
}

// --- signing in and out --------------------------------------------------------------

async function signIn(candidate) {
  sessionStorage.setItem(TOKEN_KEY, candidate);
  try {
    me = await api("me");
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    me = null;
    showProblem(error);
    return;
  }
  document.getElementById("signin").hidden = true;
  document.getElementById("tabs").hidden = false;
  document.getElementById("signout").hidden = false;
  document.getElementById("who").textContent =
    `${me.holder} · ${me.unit_name || me.unit_id} (${me.unit_id}) · ${me.role} · valid through ${dash(me.expires_on)}`;
  // The tabs a role's reads allow (DESIGN.md "Security"): findings and the log's seals are
  // the auditor's; the admin reads no member's records, only the log's seals.
  const allowed = { unit: ["queue", "roster", "search", "scorecards"], auditor: Object.keys(VIEWS), admin: ["audit"] };
  for (const link of document.querySelectorAll("nav a")) {
    link.hidden = !allowed[me.role].includes(link.dataset.tab);
  }
  problemBox.hidden = true;
  await route();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  document.getElementById("signin").hidden = false;
  document.getElementById("tabs").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("who").textContent = "";
  view.replaceChildren();
  if (message) {
    problemBox.textContent = message;
    problemBox.hidden = false;
  }
}

document.getElementById("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  const candidate = input.value.trim();
  input.value = "";
  if (candidate) signIn(candidate);
});
document.getElementById("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
if (token()) signIn(token());
