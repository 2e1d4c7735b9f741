// livewatch review page: a small dependency-free single page over the JSON API (/docs).
// Routes live in the hash: #/queue?filters, #/alert/ID, #/stats?period. All text goes into the DOM as
// text nodes (never innerHTML), so alert text from broadcasts cannot inject markup.
"use strict";

const $ = (sel) => document.querySelector(sel);
const FACETS = ["status", "stream", "category", "severity", "source"];
const STATUS_NAMES = { unreviewed: "未审核 unreviewed", confirmed: "确认 confirmed", false_positive: "误报 false positive",
  escalated: "上报 escalated", note: "备注 note" };

const state = {
  me: null, csrf: null, tz: "Asia/Shanghai", pageSize: 100,
  filters: {}, items: [], total: 0, sel: 0, cursor: null,
  alert: null, media: null,
  undo: null,  // {alertId, decisionId, timer}: the decision the Undo bar would take back
  // alerts whose page this reviewer has had on screen: a decision key in the queue acts only on those,
  // so a stray `c` cannot confirm an alert nobody looked at
  viewed: new Set(),
};

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class HttpError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, opts = {}) {
  const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
  const init = { method: opts.method || "GET", headers, credentials: "same-origin" };
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  if (init.method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const res = await fetch(path, init);
  if (res.status === 401 && !opts.noRedirect) {
    state.me = null;
    showLogin();
    throw new HttpError(401, "login required");
  }
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw new HttpError(res.status, (data && data.detail) || res.statusText);
  return data;
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? "?" + s : "";
}

function fmtTime(ts) {
  if (ts === null || ts === undefined) return "—";
  return new Date(ts * 1000).toLocaleString("zh-CN", { timeZone: state.tz, hour12: false });
}

function fmtS(s) {
  if (s === null || s === undefined) return "—";
  const m = Math.floor(s / 60), sec = (s % 60).toFixed(1).padStart(4, "0");
  return `${m}:${sec}`;
}

// When the alert's moment was broadcast; where the broadcast's clock is unknown, the scan's time, labelled.
function momentCell(ts, basis, scannedTs) {
  if (basis === "scan") {
    return h("span", { title: "播出时间未知 broadcast time unknown: time of the scan (pass --started-at to scan)" },
      fmtTime(scannedTs ?? ts), " ", h("span", { class: "muted small basis" }, "扫描 scanned"));
  }
  return fmtTime(ts);
}

function statusBadge(st) { return h("span", { class: `status st-${st}` }, STATUS_NAMES[st] || st); }

function show(id) {
  for (const v of ["login-view", "queue-view", "alert-view", "stats-view"]) $("#" + v).hidden = v !== id;
  $("#nav-queue").classList.toggle("active", id === "queue-view" || id === "alert-view");
  $("#nav-stats").classList.toggle("active", id === "stats-view");
}

// ---- login ---------------------------------------------------------------------------------------

function showLogin() {
  $("#nav").hidden = true; $("#who").hidden = true;
  show("login-view");
  $("#login-user").focus();
}

async function doLogin(ev) {
  ev.preventDefault();
  $("#login-error").textContent = "";
  try {
    const r = await api("/api/login", { method: "POST", noRedirect: true,
      body: { username: $("#login-user").value, password: $("#login-pass").value } });
    state.csrf = r.csrf_token;
    $("#login-pass").value = "";
    await boot();
  } catch (e) {
    $("#login-error").textContent = e.status === 429 ? e.message : "登录失败 " + e.message;
  }
}

async function boot() {
  try {
    const me = await api("/api/session", { noRedirect: true });
    state.me = me.username; state.csrf = me.csrf_token; state.tz = me.timezone; state.pageSize = me.page_size;
  } catch (e) {
    if (e.status === 401) { showLogin(); return; }
    throw e;
  }
  $("#who-name").textContent = state.me;
  $("#nav").hidden = false; $("#who").hidden = false;
  route();
}

// ---- queue ---------------------------------------------------------------------------------------

function filtersFromHash() {
  const q = location.hash.split("?")[1] || "";
  const p = new URLSearchParams(q);
  const f = {};
  for (const k of [...FACETS, "q", "since", "until", "rule", "broadcast"]) if (p.get(k)) f[k] = p.get(k);
  return f;
}

function setFilter(k, v) {
  const f = Object.assign({}, state.filters);
  if (v) f[k] = v; else delete f[k];
  location.hash = "#/queue" + qs(f);
}

async function loadQueue(append = false) {
  // later pages by the cursor the previous page handed out (a keyset seek; no total or counts then)
  const page = append && state.cursor ? { cursor: state.cursor } : {};
  const r = await api("/api/alerts" + qs(Object.assign({}, state.filters, { limit: state.pageSize }, page)));
  state.items = append ? state.items.concat(r.items) : r.items;
  state.cursor = r.next_cursor || null;
  if (!append) {
    state.total = r.total;
    state.sel = Math.min(state.sel, Math.max(0, state.items.length - 1));
    renderFacets(r.counts);
  }
  return r;
}

function renderFacets(counts) {
  for (const facet of FACETS) {
    const sel = $("#f-" + facet);
    const cur = state.filters[facet] || "";
    const opts = [h("option", { value: "" }, "全部 all")];
    const keys = Object.keys(counts[facet] || {}).sort();
    if (cur && !keys.includes(cur)) keys.push(cur);
    for (const k of keys) {
      const label = facet === "status" ? (STATUS_NAMES[k] || k) : k;
      opts.push(h("option", { value: k, selected: k === cur }, `${label} (${(counts[facet] || {})[k] || 0})`));
    }
    sel.replaceChildren(...opts);
    sel.value = cur;
  }
  $("#f-q").value = state.filters.q || "";
  $("#f-since").value = state.filters.since || "";
  $("#f-until").value = state.filters.until || "";
}

function highlight(text, needle) {
  if (!needle) return [text];
  const i = text.indexOf(needle);
  if (i < 0) return [text];
  return [text.slice(0, i), h("mark", {}, needle), text.slice(i + needle.length)];
}

function renderQueue() {
  const rows = state.items.map((a, i) => h("tr", {
      class: i === state.sel ? "sel" : "", dataset: { id: a.alert_id },
      onclick: () => { state.sel = i; renderQueue(); }, ondblclick: () => openAlert(a.alert_id) },
    h("td", { class: "small" }, momentCell(a.time_ts, a.time_basis, a.scanned_ts)),
    h("td", {}, a.stream_id || "—"),
    h("td", {}, `${a.category_name} `, h("span", { class: "muted small" }, a.code)),
    h("td", {}, h("span", { class: `sev sev-${a.severity}` }, a.severity)),
    h("td", { class: "small" }, a.source),
    h("td", { class: "text" }, highlight(a.text, a.matched)),
    h("td", {}, statusBadge(a.status),
      a.evidence_state && a.evidence_state !== "ok"
        ? h("span", { class: "small bad", title: "evidence verification pass" }, " " + (FILE_STATES[a.evidence_state] || a.evidence_state))
        : "")));
  $("#queue-body").replaceChildren(...rows);
  const scope = [state.filters.rule && `rule ${state.filters.rule}`, state.filters.broadcast && `broadcast ${state.filters.broadcast}`]
    .filter(Boolean).join(" · ");
  $("#queue-title").textContent = scope ? `告警 Alerts · ${scope}` : "告警 Alerts";
  $("#queue-count").textContent = `${state.total} 条 alerts` + (state.items.length < state.total ? ` (showing ${state.items.length})` : "");
  $("#more").hidden = !state.cursor;
  const cur = $("#queue-body tr.sel");
  if (cur) cur.scrollIntoView({ block: "nearest" });
}

async function showQueue() {
  const f = filtersFromHash();
  const same = JSON.stringify(f) === JSON.stringify(state.filters);
  state.filters = f;
  show("queue-view");
  if (same && state.items.length) renderQueue();  // what we know now; the reload below brings news
  await loadQueue();
  renderQueue();
}

function openAlert(id) { location.hash = "#/alert/" + encodeURIComponent(id); }

// ---- alert page ----------------------------------------------------------------------------------

async function showAlert(id) {
  show("alert-view");
  if (!state.items.length) { state.filters = state.filters || {}; await loadQueue(); }
  const idx = state.items.findIndex((a) => a.alert_id === id);
  if (idx >= 0) state.sel = idx;
  const d = await api("/api/alerts/" + encodeURIComponent(id));
  if (alertIdInHash() !== id) return;  // the reviewer moved on while it loaded
  state.alert = d;
  state.viewed.add(id);
  renderAlert(d);
}

function alertIdInHash() {
  const hash = location.hash || "";
  return hash.startsWith("#/alert/") ? decodeURIComponent(hash.slice(8).split("?")[0]) : null;
}

function fact(label, value, cls) { return [h("dt", {}, label), h("dd", { class: cls || "" }, value ?? "—")]; }

function renderAlert(d) {
  const a = d.alert;
  $("#position").textContent = state.sel >= 0 && state.items[state.sel]?.alert_id === a.alert_id
    ? `${state.sel + 1} / ${state.total}` : "";
  $("#alert-status").replaceChildren(statusBadge(d.status));
  $("#facts").replaceChildren(
    h("h2", {}, `${a.category_name} · ${a.code}`),
    h("dl", {},
      fact("告警 Alert", a.alert_id, "mono"),
      fact("规则 Rule", a.rule),
      fact("类别 Category", `${a.category} (${a.category_name})`),
      fact("严重 Severity", h("span", { class: `sev sev-${a.severity}` }, a.severity)),
      fact("信号 Source", a.source),
      fact("命中 Matched", h("mark", {}, a.matched || "")),
      fact("原文 Text", highlight(a.text || "", a.matched)),
      fact("上下文 Context", a.context),
      a.stage ? fact("阶段 Stage", a.stage) : null,
      a.reason ? fact("语义依据 Nearest examples", a.reason) : null,
      fact("法律 Law", a.law),
      fact("直播间 Stream", a.stream_id),
      fact("播出时间 Broadcast time", momentCell(a.start_ts, a.time_basis || (a.start_ts == null ? "scan" : "broadcast"), a.scanned_ts ?? a.created_ts)),
      fact("入库时间 Stored", fmtTime(a.scanned_ts ?? a.created_ts), "small"),
      fact("时间点 Moment", `${fmtS(a.start_s)} – ${fmtS(a.end_s)}`),
      fact("规则版本 Rules", a.rules_version, "mono")));
  renderPlayer(d);
  renderTranscript(d);
  renderPrice(d);
  const snap = $("#snapshot");
  $("#snap-card").hidden = !d.snapshot_url;
  if (d.snapshot_url) snap.src = d.snapshot_url; else snap.removeAttribute("src");
  renderHistory(d);
  renderFiles(d);
  $("#package").href = d.package_url;
  renderEvidenceState(d);
  $("#decide-msg").textContent = "";
  $("#note").value = "";
}

function renderPlayer(d) {
  const box = $("#player-box");
  state.media = null;
  if (!d.clip) { box.replaceChildren(h("p", { class: "muted" }, "no clip (evidence " + d.alert.evidence_status + ")")); return; }
  const el = h(d.clip.element, { id: "player", controls: true, preload: "auto", src: d.clip.url });
  el.addEventListener("loadedmetadata", () => { el.currentTime = 0; updateTimeline(); });
  el.addEventListener("timeupdate", updateTimeline);
  el.addEventListener("seeked", updateTimeline);
  box.replaceChildren(el);
  state.media = el;
  updateTimeline();
}

function clipDuration() {
  const m = state.media, c = state.alert?.clip;
  if (m && isFinite(m.duration) && m.duration > 0) return m.duration;
  return c && c.end_s != null ? c.end_s - c.start_s : 0;
}

function updateTimeline() {
  const c = state.alert?.clip; const m = state.media;
  if (!c) return;
  const dur = clipDuration() || 1;
  const mk = $("#tl-moment");
  mk.style.left = `${(100 * c.moment_offset_s) / dur}%`;
  mk.style.width = `${(100 * Math.max(0.2, c.moment_end_offset_s - c.moment_offset_s)) / dur}%`;
  const t = m ? m.currentTime : 0;
  $("#tl-pos").style.left = `${(100 * t) / dur}%`;
  $("#clock").textContent = `${fmtS(t)} / ${fmtS(dur)} · moment at ${fmtS(c.moment_offset_s)} · broadcast ${fmtS(c.start_s + t)}`;
  for (const w of document.querySelectorAll("#transcript .w.now")) w.classList.remove("now");
  const words = document.querySelectorAll("#transcript .w");
  for (const w of words) {
    const s = Number(w.dataset.offset), e = Number(w.dataset.end);
    if (t >= s && t < e) { w.classList.add("now"); break; }
  }
}

function seek(t) {
  const m = state.media;
  if (!m) return;
  m.currentTime = Math.max(0, Math.min(t, clipDuration() || t));
  updateTimeline();
}

function renderTranscript(d) {
  const box = $("#transcript");
  if (!d.transcript || !d.transcript.utterances.length) { box.replaceChildren(h("p", { class: "muted" }, "no transcript")); return; }
  const clipStart = d.transcript.clip_start_s;
  box.replaceChildren(...d.transcript.utterances.map((u) => h("div", { class: "utt" + (u.hit ? " hit-utt" : "") },
    h("span", { class: "t", onclick: () => seek(u.offset_s) }, `${fmtS(u.start_s)} ${u.source === "screen" ? "[屏幕]" : ""}`),
    ...u.words.map((w) => h("span", { class: "w" + (w.hit ? " hit" : ""), title: fmtS(w.start_s),
      dataset: { offset: w.offset_s, end: Math.max(w.offset_s + 0.05, w.end_s - clipStart) },
      onclick: () => { seek(w.offset_s); state.media?.play().catch(() => {}); } }, w.text)))));
  const first = box.querySelector(".hit-utt");
  if (first) first.scrollIntoView({ block: "nearest" });
}

function renderPrice(d) {
  const items = d.contradicts || [];
  $("#price-card").hidden = !items.length;
  if (!items.length) return;
  const now = h("div", { class: "claim now" }, h("h4", {}, "本条 This alert"),
    h("div", {}, fmtTime(d.alert.start_ts)), h("div", {}, highlight(d.alert.text, d.alert.matched)),
    ...[...new Set((d.claims || []).map((c) =>
      `ref ${c.reference_kind || ""} ${c.reference_price ?? "—"} → now ${c.current_kind || ""} ${c.current_price ?? "—"}`))]
      .map((line) => h("div", { class: "small muted" }, line)));
  const earlier = h("div", {}, ...items.map((c) => h("div", { class: "claim" },
    h("div", {}, fmtTime(c.ts), " · ", h("span", { class: "muted small" }, `${c.broadcast_id || ""} @ ${fmtS(c.start_s)}`)),
    h("div", {}, c.text || ""),
    h("div", { class: "small" },
      c.reference_price != null || c.current_price != null ? `ref ${c.reference_price ?? "—"} → now ${c.current_price ?? "—"} ` : "",
      c.alert_url ? h("a", { href: c.alert_url }, "告警 alert") : "",
      c.clip_url ? [" · ", h("a", { href: `${c.clip_url}#t=${c.clip_offset_s || 0}`, target: "_blank" }, "片段 clip")] : ""))));
  $("#price").replaceChildren(h("div", { class: "price-grid" }, now, earlier));
}

function renderHistory(d) {
  $("#alert-status").replaceChildren(statusBadge(d.status));
  $("#history").replaceChildren(...(d.decisions.length ? d.decisions.map((x) => h("li", {},
    x.undoes_id ? h("span", { class: "muted small" }, "撤销 undo → ") : "",
    statusBadge(x.decision), " ", h("b", {}, x.reviewer), " ", h("span", { class: "muted small" }, fmtTime(x.created_ts)),
    x.note ? h("div", {}, x.note) : "")) : [h("li", { class: "muted" }, "未审核 not reviewed yet")]));
}

// Undo: for UNDO_SHOW_MS after a decision the bar at the bottom offers to take it back (button or z).
// It names the decision it undoes (bound when the decision was saved), whatever is on screen by then;
// the server allows the reviewer's own latest decision within its window and keeps both rows.
const UNDO_SHOW_MS = 5000;

function showUndo(alertId, decision) {
  clearTimeout(state.undo?.timer);
  state.undo = { alertId, decisionId: decision.id, timer: setTimeout(hideUndo, UNDO_SHOW_MS) };
  $("#undo-text").textContent = `已记录 saved: ${STATUS_NAMES[decision.decision] || decision.decision} (${alertId})`;
  $("#undo").hidden = false;
  $("#undo-bar").hidden = false;
}

function hideUndo() {
  clearTimeout(state.undo?.timer);
  state.undo = null;
  $("#undo-bar").hidden = true;
}

async function undoLast() {
  const u = state.undo;
  if (!u) return;
  clearTimeout(u.timer);
  state.undo = null;
  $("#undo").hidden = true;
  try {
    const r = await api(`/api/alerts/${encodeURIComponent(u.alertId)}/decisions/${u.decisionId}/undo`, { method: "POST" });
    const item = state.items.find((a) => a.alert_id === u.alertId);
    if (item) item.status = r.status;
    if (state.alert?.alert.alert_id === u.alertId) {
      state.alert.status = r.status; state.alert.decisions = r.decisions;
      renderHistory(state.alert);
      $("#decide-msg").textContent = `已撤销 undone: ${STATUS_NAMES[r.status] || r.status}`;
    }
    if (!$("#queue-view").hidden) renderQueue();
    $("#undo-text").textContent = `已撤销 undone (${u.alertId}): ${STATUS_NAMES[r.status] || r.status}`;
  } catch (e) {
    $("#undo-text").textContent = `未能撤销 not undone: ${e.message}`;
  }
  state.undo = { timer: setTimeout(hideUndo, 2500) };  // the outcome stays readable for a moment
}

// A decision acts on the alert on screen when the key was pressed (its id is bound before any await),
// and the page does not move on by itself afterwards: a timer that advanced it would make the next click
// ("Evidence package", Verify, a decision) act on an alert the reviewer has not seen. j / Next moves on.
// One decision per alert in flight: a key pressed again (or a second click) while the first POST is on
// its way is ignored, so a slow server never records the same decision twice.
const deciding = new Set();

async function decide(decision) {
  const inAlert = !$("#alert-view").hidden;
  const id = currentId();
  if (!id || deciding.has(id)) return;
  if (!inAlert && !state.viewed.has(id)) {
    $("#queue-msg").textContent = `先打开再决定 open the alert first (Enter), then ${decision === "confirmed" ? "c" : "decide"}`;
    return;
  }
  const note = inAlert ? ($("#note")?.value || "") : "";
  if (decision === "note" && !note.trim()) { $("#note").focus(); return; }
  deciding.add(id);
  let r;
  try {
    r = await api(`/api/alerts/${encodeURIComponent(id)}/decisions`, { method: "POST", body: { decision, note } });
  } finally {
    deciding.delete(id);
  }
  if (decision !== "note") showUndo(id, r.decision);
  const item = state.items.find((a) => a.alert_id === id);
  if (item) item.status = r.status;
  if (inAlert && state.alert?.alert.alert_id === id) {
    state.alert.status = r.status; state.alert.decisions = r.decisions;
    renderHistory(state.alert);
    $("#note").value = "";
    $("#decide-msg").textContent = `已记录 saved: ${STATUS_NAMES[decision]} · j 下一条 next`;
  } else if (!inAlert) {
    $("#queue-msg").textContent = `已记录 saved: ${STATUS_NAMES[decision]} (${id})`;
    renderQueue();
  }
}

// The alert an action applies to: on the alert page, the one shown (and only once the page shows the
// alert its address names, never the previous one while the next loads); in the queue, the selected row.
function currentId() {
  if (!$("#alert-view").hidden) {
    const shown = state.alert?.alert.alert_id;
    return shown && shown === alertIdInHash() ? shown : null;
  }
  return state.items[state.sel]?.alert_id;
}

async function move(step, open) {
  if (!state.items.length) return;
  let i = state.sel + step;
  if (i >= state.items.length && state.cursor) { await loadQueue(true); }
  i = Math.max(0, Math.min(i, state.items.length - 1));
  state.sel = i;
  if ($("#queue-msg")) $("#queue-msg").textContent = "";
  if (open) openAlert(state.items[i].alert_id); else renderQueue();
}

// ---- evidence file states: shown on load (existence and size at once, SHA-256 from the server's
// background check), without waiting for a click on Verify ----------------------------------------------

const FILE_STATES = { ok: "✓ ok", changed: "✗ 已改变 changed", missing: "✗ 缺失 missing", unverified: "… 校验中 checking" };
// (also used by the queue's evidence marker, from the stored verification pass)

function renderFiles(d) {
  $("#files").replaceChildren(h("tr", {}, h("th", {}, "文件 File"), h("th", {}, "SHA-256"), h("th", {}, "bytes"), h("th", {}, "状态 State")),
    ...d.files.map((f) => h("tr", { class: `file-${f.state || "unverified"}` },
      h("td", {}, h("a", { href: f.url, target: "_blank" }, f.name)),
      h("td", { class: "mono" }, f.sha256), h("td", { class: "small" }, f.size || ""),
      h("td", { class: "small " + (f.state === "ok" ? "ok" : f.state === "unverified" ? "muted" : "bad"),
        title: f.checked === "sha256" ? "SHA-256 checked" : "existence and size checked; SHA-256 pending" },
        FILE_STATES[f.state] || f.state || ""))));
}

function renderEvidenceState(d) {
  const msg = $("#verify-msg");
  const bad = d.files.filter((f) => f.state === "missing" || f.state === "changed");
  msg.className = "small " + (bad.length ? "bad" : "");
  const sig = d.manifest_signature === "invalid" ? " · ✗ manifest signature INVALID"
    : d.manifest_signature === "untrusted" ? " · manifest signed by another key"
    : d.manifest_signature === "unsigned" ? " · manifest unsigned (older capture)" : "";
  msg.textContent = (bad.length ? `✗ 证据异常 evidence: ${bad.map((f) => `${f.name} (${f.state})`).join(", ")}` : "") + sig;
  if (d.manifest_signature === "invalid") msg.className = "small bad";
  if (d.files.some((f) => f.state === "unverified")) {
    const id = d.alert.alert_id;
    setTimeout(async () => {  // the background hash is usually done within seconds: show its verdict
      if (currentId() !== id) return;
      const again = await api("/api/alerts/" + encodeURIComponent(id));
      if (currentId() !== id || !state.alert) return;
      state.alert.files = again.files; state.alert.evidence_state = again.evidence_state;
      renderFiles(state.alert);
      renderEvidenceState(state.alert);
    }, 3000);
  }
}

async function verifyHashes() {
  const id = currentId();
  if (!id) return;
  const r = await api(`/api/alerts/${encodeURIComponent(id)}/verify`);
  const bad = r.files.filter((f) => f.status !== "ok");
  const msg = $("#verify-msg");
  msg.className = "small " + (r.ok ? "ok" : "bad");
  msg.textContent = r.ok ? `✓ ${r.files.length} files match their recorded SHA-256`
    : `✗ changed: ${bad.map((f) => `${f.name} (${f.status})`).join(", ")}`;
  if (state.alert?.alert.alert_id === id) {
    const byName = Object.fromEntries(r.files.map((f) => [f.name, f.status]));
    for (const f of state.alert.files) if (byName[f.name]) { f.state = byName[f.name]; f.checked = "sha256"; }
    renderFiles(state.alert);
  }
}

// ---- statistics ----------------------------------------------------------------------------------

async function showStats() {
  show("stats-view");
  const f = filtersFromHash();
  if (!f.since && !f.until) {
    const d = new Date(); const back = new Date(d.getTime() - 29 * 86400e3);
    f.since = back.toISOString().slice(0, 10);
  }
  $("#s-since").value = f.since || ""; $("#s-until").value = f.until || ""; $("#s-stream").value = f.stream || "";
  const p = qs({ since: f.since, until: f.until, stream: f.stream });
  $("#chart").src = "/api/stats/chart.svg" + p;
  $("#s-csv").href = "/api/ledger.csv" + p;
  $("#s-xlsx").href = "/api/ledger.xlsx" + p;
  const rows = await api("/api/precision" + qs({ since: f.since, until: f.until }));
  $("#precision").replaceChildren(
    h("tr", {}, ...["规则 Rule", "alerts", "confirmed", "escalated", "false positive", "unreviewed", "precision"].map((t) => h("th", {}, t))),
    ...rows.map((r) => h("tr", {}, h("td", {}, h("a", { href: "#/queue" + qs({ rule: r.rule_id }) }, r.rule_id)), h("td", {}, r.alerts),
      h("td", {}, r.confirmed), h("td", {}, r.escalated), h("td", {}, r.false_positive), h("td", {}, r.unreviewed),
      h("td", {}, r.precision === null ? "—" : `${(r.precision * 100).toFixed(0)}% of ${r.decided}`))));
  const st = await api("/api/streams");
  $("#streams").replaceChildren(
    h("tr", {}, ...["直播间 Stream", "state", "served by", "gaps today", "ASR lag", "alerts today"].map((t) => h("th", {}, t))),
    ...st.streams.map((r) => h("tr", {}, h("td", {}, r.stream_id), h("td", {}, r.state),
      h("td", {}, r.served_by ? r.served_by + (r.server_alive ? "" : " (lease expired)") : "—"), h("td", {}, r.gaps_today),
      h("td", {}, r.asr_lag_s === null ? "—" : `${r.asr_lag_s.toFixed(1)} s`), h("td", {}, r.alerts_today))));
}

// ---- routing and keys ----------------------------------------------------------------------------

async function route() {
  if (!state.me) { showLogin(); return; }
  const hash = location.hash || "#/queue";
  try {
    if (hash.startsWith("#/alert/")) await showAlert(decodeURIComponent(hash.slice(8).split("?")[0]));
    else if (hash.startsWith("#/stats")) await showStats();
    else await showQueue();
  } catch (e) {
    if (e.status !== 401) { console.error(e); alert(`error: ${e.message}`); }
  }
}

function typing(ev) {
  const t = ev.target;
  return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
}

function onKey(ev) {
  if (!state.me || ev.altKey || ev.metaKey) return;
  if (!$("#help").hidden) { if (ev.key === "Escape" || ev.key === "?") $("#help").hidden = true; return; }
  if (ev.target.id === "note") {
    if (ev.key === "Enter" && ev.ctrlKey) { ev.preventDefault(); decide("note"); }
    else if (ev.key === "Escape") ev.target.blur();
    return;
  }
  if (typing(ev) || ev.ctrlKey) return;
  const inAlert = !$("#alert-view").hidden, inQueue = !$("#queue-view").hidden;
  if (!inAlert && !inQueue) return;
  const m = state.media;
  const keys = {
    j: () => move(1, inAlert), ArrowDown: () => move(1, inAlert),
    k: () => move(-1, inAlert), ArrowUp: () => move(-1, inAlert),
    Enter: () => inQueue && state.items[state.sel] && openAlert(state.items[state.sel].alert_id),
    o: () => inQueue && state.items[state.sel] && openAlert(state.items[state.sel].alert_id),
    c: () => decide("confirmed"), f: () => decide("false_positive"), x: () => decide("false_positive"),
    e: () => decide("escalated"),
    z: () => undoLast(),
    n: () => { if (inAlert) $("#note").focus(); },
    u: () => { location.hash = "#/queue" + qs(state.filters); },
    Escape: () => { location.hash = "#/queue" + qs(state.filters); },
    "/": () => { location.hash = "#/queue" + qs(state.filters); setTimeout(() => $("#f-q").focus(), 50); },
    "?": () => { $("#help").hidden = false; },
    " ": () => m && (m.paused ? m.play().catch(() => {}) : m.pause()),
    m: () => { if (m && state.alert?.clip) { seek(state.alert.clip.moment_offset_s); m.play().catch(() => {}); } },
    0: () => seek(0),
    ArrowLeft: () => m && seek(m.currentTime - 2), ArrowRight: () => m && seek(m.currentTime + 2),
  };
  const fn = keys[ev.key];
  if (fn) { ev.preventDefault(); Promise.resolve(fn()).catch((e) => console.error(e)); }
}

function init() {
  $("#login-form").addEventListener("submit", doLogin);
  $("#logout").addEventListener("click", async () => {
    await api("/api/logout", { method: "POST" }).catch(() => {});
    hideUndo();
    state.me = null; state.csrf = null; showLogin();
  });
  $("#help-btn").addEventListener("click", () => { $("#help").hidden = false; });
  $("#help-close").addEventListener("click", () => { $("#help").hidden = true; });
  for (const facet of FACETS) $("#f-" + facet).addEventListener("change", (e) => setFilter(facet, e.target.value));
  $("#f-q").addEventListener("change", (e) => setFilter("q", e.target.value.trim()));
  $("#f-since").addEventListener("change", (e) => setFilter("since", e.target.value));
  $("#f-until").addEventListener("change", (e) => setFilter("until", e.target.value));
  $("#f-clear").addEventListener("click", () => { location.hash = "#/queue"; });
  $("#more").addEventListener("click", async () => { await loadQueue(true); renderQueue(); });
  $("#prev").addEventListener("click", () => move(-1, true));
  $("#next").addEventListener("click", () => move(1, true));
  $("#to-moment").addEventListener("click", () => { seek(state.alert?.clip?.moment_offset_s || 0); state.media?.play().catch(() => {}); });
  $("#to-start").addEventListener("click", () => seek(0));
  $("#timeline").addEventListener("click", (e) => {
    const r = e.currentTarget.getBoundingClientRect();
    seek(((e.clientX - r.left) / r.width) * clipDuration());
  });
  for (const b of document.querySelectorAll("#decide button.d")) b.addEventListener("click", () => decide(b.dataset.decision).catch((e) => { $("#decide-msg").textContent = e.message; }));
  $("#undo").addEventListener("click", () => undoLast());
  $("#verify").addEventListener("click", () => verifyHashes().catch((e) => { $("#verify-msg").textContent = e.message; }));
  $("#s-apply").addEventListener("click", () => {
    location.hash = "#/stats" + qs({ since: $("#s-since").value, until: $("#s-until").value, stream: $("#s-stream").value.trim() });
  });
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", onKey);
  boot();
}

document.addEventListener("DOMContentLoaded", init);
