// The callcenter console: a plain client of the public API, and a reference for writing
// one. No framework and no build step; served from the binary (src/api/console.rs).
//
// Endpoints used: POST /api/aicall/stats, /api/aicall/calltask/list, /api/aicall/createTasks,
// /api/aicall/stopTasks, /api/aicall/records/list, /api/aicall/campaign/list, /campaign/pause,
// /campaign/resume; GET /api/aicall/calltype/uuid and the
// recording (`wavFileUrl`). Every request carries the API key from localStorage when one
// is saved; an answer with code 401 asks for it.

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

const REFRESH_MS = 5000;
const KEY_STORE = 'callcenter.apiKey';
const LANG_STORE = 'callcenter.lang';
const TICKET_FIELDS = ['ticketNo', 'phone', 'username', 'ticketType', 'ticketContent'];
const STATUSES = ['待呼叫', '呼叫中', '等待重呼', '已完成', '已停止', '已拦截'];
const ENDED = new Set(['已完成', '已停止', '已拦截']);
const STATUS_CLASS = {
  待呼叫: 'st-waiting', 呼叫中: 'st-calling', 等待重呼: 'st-retry',
  已完成: 'st-done', 已停止: 'st-stopped', 已拦截: 'st-blocked',
};
const OUTCOMES = ['answered', 'busy', 'no_answer', 'unallocated', 'rejected', 'stopped', 'interrupted', 'failed'];
const CALL_TYPES = ['01', '02', '03'];
const PAGE_SIZES = [10, 20, 50, 100];

// ---------------------------------------------------------------- all UI strings

const I18N = {
  zh: {
    'title': '呼叫中心控制台',
    'nav.overview': '概览', 'nav.tasks': '任务', 'nav.calls': '通话记录', 'nav.campaigns': '外呼活动',
    'task.batchName': '外呼活动', 'call.batchName': '外呼活动',
    'campaign.name': '活动名称', 'campaign.state': '状态', 'campaign.priority': '优先级',
    'campaign.todayCalls': '今日呼叫', 'campaign.todayAnswered': '今日接通',
    'campaign.running': '运行中', 'campaign.paused': '已暂停',
    'campaign.pause': '暂停', 'campaign.resume': '恢复', 'campaign.tasks': '任务',
    'campaign.tasksTitle': '查看该活动的任务',
    'lang.other': 'English',
    'key.placeholder': 'API 密钥', 'key.save': '保存', 'key.clear': '清除',
    'key.saved': 'API 密钥已保存（仅存于本浏览器）', 'key.cleared': 'API 密钥已清除',
    'key.needed': '服务器要求 API 密钥：请在页面右上角输入密钥并点击“保存”。',
    'key.invalid': '服务器拒绝了当前的 API 密钥：请检查后重新输入并保存。',
    'common.search': '查询', 'common.reset': '重置', 'common.refresh': '刷新', 'common.close': '关闭',
    'common.autoRefresh': '每 5 秒自动刷新', 'common.empty': '暂无数据', 'common.loading': '加载中…',
    'common.callType': '通话类型', 'common.yes': '是', 'common.no': '否',
    'common.prev': '上一页', 'common.next': '下一页', 'common.perPage': '每页',
    'common.page': '第 {page} / {pages} 页，共 {total} 条',
    'error.network': '无法连接服务器：{msg}', 'error.http': '服务器返回 HTTP {status}',
    'error.code': '错误 {code}：{msg}',
    'callType.01': '呼入', 'callType.02': 'AI 外呼', 'callType.03': '人工外呼',
    'status.待呼叫': '待呼叫', 'status.呼叫中': '呼叫中', 'status.等待重呼': '等待重呼',
    'status.已完成': '已完成', 'status.已停止': '已停止', 'status.已拦截': '已拦截', 'status.all': '全部',
    'outcome.answered': '接通', 'outcome.busy': '忙线', 'outcome.no_answer': '无人接听',
    'outcome.unallocated': '空号', 'outcome.rejected': '拒接', 'outcome.stopped': '人工停止',
    'outcome.interrupted': '中断', 'outcome.failed': '线路失败',
    'overview.date': '日期', 'overview.today': '今天', 'overview.callsStarted': '呼叫数',
    'overview.answered': '接通数', 'overview.answerRate': '接通率', 'overview.avgTalk': '平均通话时长',
    'overview.inProgress': '通话中', 'overview.waiting': '待呼叫任务',
    'overview.chart': '每小时呼叫（按结果）', 'overview.updated': '{date} · 更新于 {time}',
    'overview.noCalls': '当天还没有呼叫', 'overview.hourTip': '{hour} {label}：{n}',
    'duration.s': '{s} 秒', 'duration.ms': '{m} 分 {s} 秒',
    'create.title': '新建任务',
    'create.hint': '粘贴工单的 JSON 数组，或上传带表头的 CSV（列：ticketNo, phone, username, ticketType, ticketContent；UTF-8 或 GBK）。先预览，再创建；服务器指出的错误会标在对应行上。',
    'create.placeholder': '[{"ticketNo":"T001","phone":"13912345678","username":"张三","ticketType":"活动通知","ticketContent":"…"}]',
    'create.csv': '上传 CSV', 'create.clear': '清空', 'create.submit': '创建任务', 'create.result': '结果',
    'create.preview': '预览：{n} 条工单', 'create.ok': '已创建 {n} 个任务（批次号 {first}…{last}）',
    'create.invalidJson': 'JSON 无法解析：{msg}', 'create.notArray': '应为工单的 JSON 数组',
    'create.empty': '没有工单：请粘贴 JSON 或上传 CSV', 'create.csvLoaded': '已读取 {file}：{n} 条工单',
    'create.rowError': '第 {n} 条工单有误，已在下方标出：{msg}',
    'csv.missing': 'CSV 表头缺少列：{cols}', 'csv.unclosed': 'CSV 第 {line} 行：引号没有闭合',
    'csv.noRows': 'CSV 只有表头，没有数据行',
    'task.batchId': '批次号', 'task.ticketNo': '工单号', 'task.phone': '电话', 'task.username': '客户',
    'task.ticketType': '工单类型', 'task.ticketContent': '工单内容', 'task.status': '状态',
    'task.connected': '接通', 'task.callCount': '呼叫次数', 'task.lastHangupCause': '最后挂断原因',
    'task.createtime': '创建时间', 'task.stopTime': '结束时间', 'task.createTimeStart': '创建时间起',
    'task.createTimeEnd': '创建时间止', 'task.selectAll': '全选本页', 'task.select': '选择任务 {id}',
    'task.calls': '通话', 'task.callsTitle': '查看该号码的通话记录',
    'stop.selected': '停止所选（{n}）', 'stop.confirm': '停止所选的 {n} 个任务？正在进行的通话会被挂断。',
    'call.uuid': '通话 ID', 'call.telephone': '电话', 'call.extnum': '分机号',
    'call.calloutTime': '呼叫时间', 'call.answeredTime': '接听时间', 'call.callEndTime': '结束时间',
    'call.timeLen': '时长（秒）', 'call.hangupCause': '挂断原因', 'call.intent': '意向',
    'call.recording': '录音', 'call.callType': '通话类型', 'call.hasRecording': '有录音',
    'call.calloutTimeStart': '呼叫时间起', 'call.calloutTimeEnd': '呼叫时间止',
    'call.timeLenStart': '最短时长（秒）', 'call.timeLenEnd': '最长时长（秒）',
    'call.uuidType': '通话 {uuid} 属于“{type}”', 'call.notAnswered': '未接通',
    'detail.title': '通话详情', 'detail.dialogue': '对话', 'detail.noDialogue': '这通电话没有对话内容',
    'detail.noRecording': '这通电话没有录音', 'detail.recordingMissing': '录音文件不存在',
    'detail.recordingError': '录音无法加载：{msg}',
    'role.assistant': '智能助理', 'role.user': '客户',
  },
  en: {
    'title': 'Callcenter console',
    'nav.overview': 'Overview', 'nav.tasks': 'Tasks', 'nav.calls': 'Calls', 'nav.campaigns': 'Campaigns',
    'task.batchName': 'Campaign', 'call.batchName': 'Campaign',
    'campaign.name': 'Campaign', 'campaign.state': 'State', 'campaign.priority': 'Priority',
    'campaign.todayCalls': 'Calls today', 'campaign.todayAnswered': 'Answered today',
    'campaign.running': 'Running', 'campaign.paused': 'Paused',
    'campaign.pause': 'Pause', 'campaign.resume': 'Resume', 'campaign.tasks': 'Tasks',
    'campaign.tasksTitle': 'Show the tasks of this campaign',
    'lang.other': '中文',
    'key.placeholder': 'API key', 'key.save': 'Save', 'key.clear': 'Clear',
    'key.saved': 'API key saved (in this browser only)', 'key.cleared': 'API key cleared',
    'key.needed': 'The server requires an API key: enter it at the top right and press “Save”.',
    'key.invalid': 'The server refused this API key: check it, enter it again and save.',
    'common.search': 'Search', 'common.reset': 'Reset', 'common.refresh': 'Refresh', 'common.close': 'Close',
    'common.autoRefresh': 'Refresh every 5 s', 'common.empty': 'Nothing here', 'common.loading': 'Loading…',
    'common.callType': 'Call type', 'common.yes': 'yes', 'common.no': 'no',
    'common.prev': 'Previous', 'common.next': 'Next', 'common.perPage': 'Per page',
    'common.page': 'Page {page} of {pages}, {total} in all',
    'error.network': 'Cannot reach the server: {msg}', 'error.http': 'The server answered HTTP {status}',
    'error.code': 'Error {code}: {msg}',
    'callType.01': 'Inbound', 'callType.02': 'AI outbound', 'callType.03': 'Manual outbound',
    'status.待呼叫': 'Waiting', 'status.呼叫中': 'Calling', 'status.等待重呼': 'Retry pending',
    'status.已完成': 'Completed', 'status.已停止': 'Stopped', 'status.已拦截': 'Blocked', 'status.all': 'All',
    'outcome.answered': 'Answered', 'outcome.busy': 'Busy', 'outcome.no_answer': 'No answer',
    'outcome.unallocated': 'Unallocated', 'outcome.rejected': 'Rejected', 'outcome.stopped': 'Stopped',
    'outcome.interrupted': 'Interrupted', 'outcome.failed': 'Network failure',
    'overview.date': 'Date', 'overview.today': 'Today', 'overview.callsStarted': 'Calls started',
    'overview.answered': 'Answered', 'overview.answerRate': 'Answer rate', 'overview.avgTalk': 'Average talk time',
    'overview.inProgress': 'Calls in progress', 'overview.waiting': 'Tasks waiting',
    'overview.chart': 'Calls per hour by outcome', 'overview.updated': '{date} · updated {time}',
    'overview.noCalls': 'No calls on this day yet', 'overview.hourTip': '{hour} {label}: {n}',
    'duration.s': '{s} s', 'duration.ms': '{m} min {s} s',
    'create.title': 'Create tasks',
    'create.hint': 'Paste a JSON array of tickets, or upload a CSV with a header row (columns: ticketNo, phone, username, ticketType, ticketContent; UTF-8 or GBK). Check the preview, then create; a ticket the server rejects is marked in its row.',
    'create.placeholder': '[{"ticketNo":"T001","phone":"13912345678","username":"Zhang San","ticketType":"Notice","ticketContent":"…"}]',
    'create.csv': 'Upload CSV', 'create.clear': 'Clear', 'create.submit': 'Create tasks', 'create.result': 'Result',
    'create.preview': 'Preview: {n} tickets', 'create.ok': 'Created {n} tasks (batch ids {first}…{last})',
    'create.invalidJson': 'The JSON does not parse: {msg}', 'create.notArray': 'Expected a JSON array of tickets',
    'create.empty': 'No tickets: paste JSON or upload a CSV', 'create.csvLoaded': 'Read {file}: {n} tickets',
    'create.rowError': 'Ticket {n} was rejected (marked below): {msg}',
    'csv.missing': 'The CSV header lacks the columns: {cols}', 'csv.unclosed': 'CSV line {line}: a quote is never closed',
    'csv.noRows': 'The CSV has a header but no rows',
    'task.batchId': 'Batch id', 'task.ticketNo': 'Ticket no.', 'task.phone': 'Phone', 'task.username': 'Customer',
    'task.ticketType': 'Ticket type', 'task.ticketContent': 'Ticket content', 'task.status': 'Status',
    'task.connected': 'Connected', 'task.callCount': 'Calls', 'task.lastHangupCause': 'Last hangup cause',
    'task.createtime': 'Created', 'task.stopTime': 'Ended', 'task.createTimeStart': 'Created from',
    'task.createTimeEnd': 'Created until', 'task.selectAll': 'Select this page', 'task.select': 'Select task {id}',
    'task.calls': 'Calls', 'task.callsTitle': 'Show the calls to this number',
    'stop.selected': 'Stop selected ({n})', 'stop.confirm': 'Stop the {n} selected tasks? Calls in progress are hung up.',
    'call.uuid': 'Call id', 'call.telephone': 'Phone', 'call.extnum': 'Extension',
    'call.calloutTime': 'Call time', 'call.answeredTime': 'Answered', 'call.callEndTime': 'Ended',
    'call.timeLen': 'Length (s)', 'call.hangupCause': 'Hangup cause', 'call.intent': 'Intent',
    'call.recording': 'Recording', 'call.callType': 'Call type', 'call.hasRecording': 'has a recording',
    'call.calloutTimeStart': 'Call time from', 'call.calloutTimeEnd': 'Call time until',
    'call.timeLenStart': 'Length at least (s)', 'call.timeLenEnd': 'Length at most (s)',
    'call.uuidType': 'Call {uuid} is “{type}”', 'call.notAnswered': 'not answered',
    'detail.title': 'Call', 'detail.dialogue': 'Dialogue', 'detail.noDialogue': 'Nothing was said on this call',
    'detail.noRecording': 'This call has no recording', 'detail.recordingMissing': 'The recording file is missing',
    'detail.recordingError': 'The recording does not load: {msg}',
    'role.assistant': 'Agent', 'role.user': 'Customer',
  },
};

let lang = I18N[localStorage.getItem(LANG_STORE)] ? localStorage.getItem(LANG_STORE) : 'zh';

/** The current language's string for `key`, with `{name}` replaced from `vars`. */
function t(key, vars = {}) {
  const s = I18N[lang][key] ?? I18N.zh[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

function applyI18n() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  document.title = t('title');
  for (const el of $$('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of $$('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of $$('[data-i18n-aria-label]')) el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  const toggle = $('#lang-toggle');
  toggle.textContent = t('lang.other');
  toggle.lang = lang === 'zh' ? 'en' : 'zh-CN';
  for (const select of $$('.call-type-select')) fillOptions(select, CALL_TYPES.map((c) => [c, `${c} ${t(`callType.${c}`)}`]));
  fillOptions($('#status-select'), [['', t('status.all')], ...STATUSES.map((s) => [s, t(`status.${s}`)])]);
}

function fillOptions(select, options) {
  const value = select.value;
  select.replaceChildren(...options.map(([v, label]) => el('option', { value: v }, label)));
  if (options.some(([v]) => v === value)) select.value = value;
}

// ---------------------------------------------------------------- small helpers

/** An element with attributes (`class`, `data-*`, properties via `.name`) and children (text is escaped). */
function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('.')) node[k.slice(1)] = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const pad = (n) => String(n).padStart(2, '0');

/** Epoch milliseconds as `yyyy-MM-dd HH:mm:ss` in the browser's zone. */
function fmtMs(ms) {
  if (ms === null || ms === undefined) return '';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A `datetime-local` value as the API's `yyyy-MM-dd HH:mm:ss`. */
function apiTime(value) {
  if (!value) return undefined;
  const s = value.replace('T', ' ');
  return s.length === 16 ? `${s}:00` : s.slice(0, 19);
}

function fmtDuration(secs) {
  if (secs < 60) return t('duration.s', { s: secs.toFixed(1) });
  const whole = Math.round(secs);
  return t('duration.ms', { m: Math.floor(whole / 60), s: pad(whole % 60) });
}

const fmtInt = (n) => new Intl.NumberFormat(lang === 'zh' ? 'zh-CN' : 'en').format(n);

/** Hides an error once a later request succeeds; leaves an answer (a stop's result) in place. */
function clearError(box) {
  if (box.classList.contains('error')) showMsg(box, '');
}

function showMsg(box, text, kind = 'error') {
  box.hidden = !text;
  box.textContent = text || '';
  box.className = `msg ${kind}`;
}

let toastTimer;
function toast(text) {
  const box = $('#toast');
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 3000);
}

/** The reset button clears the form, sets `defaults`, and searches at once. */
function onReset(form, defaults) {
  form.querySelector('button[type=reset]').addEventListener('click', (e) => {
    e.preventDefault();
    form.reset();
    defaults();
    form.requestSubmit();
  });
}

/** Removes blank values: the API reads a blank filter as no filter, but sending none is plainer. */
function formFilter(form, numeric = []) {
  const out = {};
  for (const [k, raw] of new FormData(form)) {
    const v = String(raw).trim();
    if (!v) continue;
    if (form.elements[k].type === 'datetime-local') out[k] = apiTime(v);
    else if (numeric.includes(k) && /^\d+$/.test(v)) out[k] = Number(v);
    else out[k] = v;
  }
  return out;
}

// ---------------------------------------------------------------- the API

const getKey = () => localStorage.getItem(KEY_STORE) || '';

class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

function authHeaders() {
  const key = getKey();
  return key ? { 'X-API-Key': key } : {};
}

/** One API call: the envelope when `code` is 0, else an ApiError with the server's message. */
async function api(method, path, body) {
  const headers = authHeaders();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(t('error.network', { msg: e.message }), -1);
  }
  let env = null;
  try { env = await res.json(); } catch { /* not JSON: reported below */ }
  if (res.status === 401 || env?.code === 401) {
    askForKey();
    throw new ApiError(env?.msg || t('key.needed'), 401);
  }
  keyAccepted();
  if (!env || typeof env.code !== 'number') throw new ApiError(t('error.http', { status: res.status }), res.status);
  if (env.code !== 0) throw new ApiError(env.msg, env.code);
  return env;
}

const post = (path, body) => api('POST', path, body);

/** An error under a view; not for a 401, which the banner above already explains. */
function showError(box, e) {
  showMsg(box, e instanceof ApiError && e.code === 401 ? '' : errorText(e));
}

function errorText(e) {
  return e instanceof ApiError && e.code > 0 && e.code !== 405 ? t('error.code', { code: e.code, msg: e.message }) : e.message;
}

// ---------------------------------------------------------------- the API key

let keyPrompted = false;

function askForKey() {
  const banner = $('#banner');
  banner.textContent = t(getKey() ? 'key.invalid' : 'key.needed');
  banner.hidden = false;
  $('#key-form').classList.add('attention');
  if (!keyPrompted) {
    keyPrompted = true;
    $('#api-key').focus();
  }
}

function keyAccepted() {
  $('#banner').hidden = true;
  $('#key-form').classList.remove('attention');
  keyPrompted = false;
}

function setupKey() {
  const input = $('#api-key');
  input.value = getKey();
  $('#key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (key) localStorage.setItem(KEY_STORE, key);
    else localStorage.removeItem(KEY_STORE);
    toast(t(key ? 'key.saved' : 'key.cleared'));
    keyPrompted = true;
    refreshView();
  });
  $('#key-clear').addEventListener('click', () => {
    input.value = '';
    localStorage.removeItem(KEY_STORE);
    toast(t('key.cleared'));
    refreshView();
  });
}

// ---------------------------------------------------------------- paging

function renderPager(box, state, load) {
  const pages = Math.max(1, Math.ceil(state.total / state.size));
  const size = el('select', { 'aria-label': t('common.perPage') },
    PAGE_SIZES.map((n) => el('option', { value: n, '.selected': n === state.size }, n)));
  size.addEventListener('change', () => { state.size = Number(size.value); state.page = 1; load(); });
  const prev = el('button', { type: 'button', class: 'secondary', 'data-page': 'prev', '.disabled': state.page <= 1 }, t('common.prev'));
  const next = el('button', { type: 'button', class: 'secondary', 'data-page': 'next', '.disabled': state.page >= pages }, t('common.next'));
  prev.addEventListener('click', () => { state.page -= 1; load(); });
  next.addEventListener('click', () => { state.page += 1; load(); });
  box.replaceChildren(
    prev,
    el('span', { class: 'page-info' }, t('common.page', { page: state.page, pages, total: fmtInt(state.total) })),
    next,
    el('label', { class: 'page-size' }, t('common.perPage'), ' ', size),
  );
}

function emptyRow(cols) {
  return el('tr', { class: 'empty' }, el('td', { colspan: cols }, t('common.empty')));
}

// ---------------------------------------------------------------- overview

const stats = { data: null, at: null, seq: 0 };

async function loadStats() {
  const seq = ++stats.seq;
  const body = { callType: $('#stats-call-type').value || '02' };
  const date = $('#stats-date').value;
  if (date) body.date = date;
  try {
    const env = await post('/api/aicall/stats', body);
    if (seq !== stats.seq) return;
    stats.data = env.data;
    stats.at = new Date();
    clearError($('#stats-msg'));
  } catch (e) {
    if (seq !== stats.seq) return;
    showError($('#stats-msg'), e);
  }
  renderStats();
}

function renderStats() {
  const d = stats.data;
  if (!d) return;
  $('#stat-callsStarted').textContent = fmtInt(d.callsStarted);
  $('#stat-answered').textContent = fmtInt(d.answered);
  $('#stat-answerRate').textContent = `${(d.answerRate * 100).toFixed(1)}%`;
  $('#stat-avgTalkSecs').textContent = fmtDuration(d.avgTalkSecs);
  $('#stat-callsInProgress').textContent = fmtInt(d.callsInProgress);
  $('#stat-tasksWaiting').textContent = fmtInt(d.tasksWaiting);
  $('#stats-updated').textContent = t('overview.updated', { date: d.date, time: stats.at.toLocaleTimeString(lang === 'zh' ? 'zh-CN' : 'en-GB') });
  renderChart(d.hours);
  $('#legend').replaceChildren(...OUTCOMES.map((o) =>
    el('li', {}, el('span', { class: `swatch o-${o}` }), t(`outcome.${o}`))));
}

/** Calls per hour as stacked bars by outcome: inline SVG, 24 slots. */
function renderChart(hours) {
  const byHour = new Map(hours.map((h) => [Number(h.hour.slice(0, 2)), h]));
  const max = Math.max(0, ...hours.map((h) => h.calls));
  const step = niceStep(max);
  const top = Math.max(step * 4, 4);
  const W = Math.max(320, Math.round($('#chart').clientWidth) || 720);
  const H = 240, left = 40, right = 8, topPad = 10, bottom = 24;
  const plotW = W - left - right, plotH = H - topPad - bottom, slot = plotW / 24;
  const y = (v) => topPad + plotH - (v / top) * plotH;
  const svg = el('svg:svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': t('overview.chart'), class: 'chart-svg' });
  for (let v = 0; v <= top; v += top / 4) {
    svg.append(el('svg:line', { x1: left, x2: W - right, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(el('svg:text', { x: left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, fmtInt(Math.round(v))));
  }
  for (let h = 0; h < 24; h += 1) {
    const x = left + h * slot;
    if (h % 3 === 0) svg.append(el('svg:text', { x: x + slot / 2, y: H - 6, class: 'axis', 'text-anchor': 'middle' }, `${pad(h)}`));
    const row = byHour.get(h);
    if (!row) continue;
    let base = 0;
    for (const o of OUTCOMES) {
      const n = row.outcomes[o] || 0;
      if (!n) continue;
      const bar = el('svg:rect', {
        x: x + slot * 0.15, width: slot * 0.7, y: y(base + n), height: y(base) - y(base + n),
        class: `bar o-${o}`, 'data-hour': row.hour, 'data-outcome': o,
      }, el('svg:title', {}, t('overview.hourTip', { hour: row.hour, label: t(`outcome.${o}`), n })));
      svg.append(bar);
      base += n;
    }
  }
  if (max === 0) svg.append(el('svg:text', { x: left + plotW / 2, y: topPad + plotH / 2, class: 'axis empty-note', 'text-anchor': 'middle' }, t('overview.noCalls')));
  $('#chart').replaceChildren(svg);
}

/** A round step for four grid lines above `max`. */
function niceStep(max) {
  const raw = Math.max(1, max / 4);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const steps = mag >= 10 ? [1, 2, 2.5, 5, 10] : [1, 2, 5, 10];
  return steps.map((m) => m * mag).find((s) => s >= raw);
}

function setupOverview() {
  $('#stats-form').addEventListener('submit', (e) => e.preventDefault());
  $('#stats-date').addEventListener('change', loadStats);
  $('#stats-call-type').addEventListener('change', loadStats);
  $('#stats-call-type').value = '02';
  $('#stats-today').addEventListener('click', () => { $('#stats-date').value = ''; loadStats(); });
}

// ---------------------------------------------------------------- tasks

const tasks = { page: 1, size: 20, filter: {}, rows: [], total: 0, selected: new Set(), seq: 0 };

async function loadTasks() {
  const seq = ++tasks.seq;
  try {
    const env = await post('/api/aicall/calltask/list', { pageNum: tasks.page, pageSize: tasks.size, ...tasks.filter });
    if (seq !== tasks.seq) return;
    const pages = Math.max(1, Math.ceil(env.total / tasks.size));
    if (tasks.page > pages && env.total > 0) { tasks.page = pages; loadTasks(); return; }
    tasks.rows = env.rows;
    tasks.total = env.total;
    clearError($('#task-msg'));
  } catch (e) {
    if (seq !== tasks.seq) return;
    showError($('#task-msg'), e);
  }
  renderTasks();
}

function statusBadge(status) {
  return el('span', { class: `badge ${STATUS_CLASS[status] || ''}`, 'data-status': status }, t(`status.${status}`));
}

function renderTasks() {
  const tbody = $('#task-table tbody');
  const cell = (label, ...content) => el('td', { 'data-label': t(label), 'data-col': label.split('.')[1] }, ...content);
  const rows = tasks.rows.map((r) => {
    const box = el('input', {
      type: 'checkbox', 'aria-label': t('task.select', { id: r.batchId }),
      '.checked': tasks.selected.has(r.batchId), '.disabled': ENDED.has(r.status),
    });
    box.addEventListener('change', () => {
      if (box.checked) tasks.selected.add(r.batchId); else tasks.selected.delete(r.batchId);
      updateStopButton();
    });
    const calls = el('button', { type: 'button', class: 'link', title: t('task.callsTitle') }, t('task.calls'));
    calls.addEventListener('click', () => showCallsFor(r.phone));
    return el('tr', { 'data-batch-id': r.batchId, 'data-status': r.status },
      el('td', { class: 'sel' }, box),
      cell('task.batchId', r.batchId),
      cell('task.ticketNo', r.ticketNo),
      cell('task.batchName', r.batchName),
      cell('task.phone', el('span', { class: 'mono' }, r.phone)),
      cell('task.username', r.username),
      cell('task.ticketType', r.ticketType),
      cell('task.status', statusBadge(r.status)),
      cell('task.connected', el('span', { class: r.connected ? 'yes' : 'no' }, t(r.connected ? 'common.yes' : 'common.no'))),
      cell('task.callCount', r.callCount),
      cell('task.lastHangupCause', el('span', { class: 'mono' }, r.lastHangupCause || '')),
      cell('task.createtime', fmtMs(r.createtime)),
      cell('task.stopTime', fmtMs(r.stopTime)),
      el('td', { class: 'actions' }, calls),
    );
  });
  tbody.replaceChildren(...(rows.length ? rows : [emptyRow(14)]));
  const selectable = tasks.rows.filter((r) => !ENDED.has(r.status));
  const all = $('#task-select-all');
  all.checked = selectable.length > 0 && selectable.every((r) => tasks.selected.has(r.batchId));
  all.disabled = selectable.length === 0;
  renderPager($('#task-pager'), tasks, loadTasks);
  updateStopButton();
}

function updateStopButton() {
  const button = $('#stop-selected');
  button.textContent = t('stop.selected', { n: tasks.selected.size });
  button.disabled = tasks.selected.size === 0;
}

async function stopSelected() {
  const ids = [...tasks.selected];
  if (!ids.length || !window.confirm(t('stop.confirm', { n: ids.length }))) return;
  try {
    const env = await post('/api/aicall/stopTasks', { batchIds: ids });
    tasks.selected.clear();
    showMsg($('#task-msg'), env.msg, 'ok');
  } catch (e) {
    showError($('#task-msg'), e);
  }
  loadTasks();
}

function setupTasks() {
  const form = $('#task-filter');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    tasks.filter = formFilter(form, ['batchId']);
    tasks.page = 1;
    showMsg($('#task-msg'), '');
    loadTasks();
  });
  onReset(form, () => {});
  $('#task-select-all').addEventListener('change', (e) => {
    for (const r of tasks.rows) {
      if (ENDED.has(r.status)) continue;
      if (e.target.checked) tasks.selected.add(r.batchId); else tasks.selected.delete(r.batchId);
    }
    renderTasks();
  });
  $('#stop-selected').addEventListener('click', stopSelected);
  $('#tasks-refresh').addEventListener('click', loadTasks);
  setupCreate();
}

// ---------------------------------------------------------------- creating tasks

/**
 * RFC 4180 CSV: fields separated by commas, optionally in double quotes (a quoted field
 * may hold commas, line breaks and `""` for a quote); CRLF or LF line ends; a BOM is
 * skipped. Returns rows of `{ cells, line }`, blank lines left out.
 */
export function parseCsv(text) {
  const src = text.replace(/^\uFEFF/, '');
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  const endRow = () => {
    row.push(field);
    if (!(row.length === 1 && row[0].trim() === '')) rows.push({ cells: row, line: rowLine });
    row = [];
    field = '';
  };
  for (let i = 0; i < src.length; i += 1) {
    const c = src[i];
    if (quoted) {
      if (c === '"' && src[i + 1] === '"') { field += '"'; i += 1; }
      else if (c === '"') quoted = false;
      else { if (c === '\n') line += 1; field += c; }
    } else if (c === '"' && field.trim() === '') {
      quoted = true;
      field = '';
    } else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && src[i + 1] === '\n') i += 1;
      endRow();
      line += 1;
      rowLine = line;
    } else {
      field += c;
    }
  }
  if (quoted) throw new Error(t('csv.unclosed', { line: rowLine }));
  if (field !== '' || row.length) endRow();
  return rows;
}

/** CSV rows with a header naming the five ticket columns (any order, any case) as tickets. */
export function csvTickets(text) {
  const rows = parseCsv(text);
  if (!rows.length) throw new Error(t('create.empty'));
  const header = rows[0].cells.map((h) => h.trim().toLowerCase());
  const index = Object.fromEntries(TICKET_FIELDS.map((f) => [f, header.indexOf(f.toLowerCase())]));
  const missing = TICKET_FIELDS.filter((f) => index[f] < 0);
  if (missing.length) throw new Error(t('csv.missing', { cols: missing.join(', ') }));
  if (rows.length < 2) throw new Error(t('csv.noRows'));
  return rows.slice(1).map(({ cells }) =>
    Object.fromEntries(TICKET_FIELDS.map((f) => [f, (cells[index[f]] ?? '').trim()])));
}

/** A CSV file as text: UTF-8, or GBK as Excel saves it on Chinese Windows. */
async function readCsvFile(file) {
  const bytes = await file.arrayBuffer();
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return new TextDecoder('gbk').decode(bytes);
  }
}

const create = { tickets: null, results: new Map(), errorIndex: null, errorField: null, errorMsg: '' };

/** Reads the textarea; the preview shows what would be sent. */
function parseTicketsInput() {
  const text = $('#tickets-json').value.trim();
  create.results.clear();
  create.errorIndex = null;
  if (!text) { create.tickets = null; renderPreview(); showMsg($('#create-msg'), ''); return; }
  try {
    const value = JSON.parse(text);
    if (!Array.isArray(value)) throw new Error(t('create.notArray'));
    create.tickets = value;
    showMsg($('#create-msg'), t('create.preview', { n: value.length }), 'info');
  } catch (e) {
    create.tickets = null;
    showMsg($('#create-msg'), e instanceof SyntaxError ? t('create.invalidJson', { msg: e.message }) : e.message);
  }
  renderPreview();
}

function renderPreview() {
  const table = $('#preview-table');
  const list = create.tickets || [];
  table.hidden = list.length === 0;
  const show = (v) => (v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const rows = list.map((tk, i) => {
    const bad = i === create.errorIndex;
    const obj = tk && typeof tk === 'object' ? tk : {};
    const result = create.results.get(i);
    return el('tr', { 'data-index': i, class: bad ? 'row-error' : result ? 'row-ok' : '' },
      el('td', { 'data-label': '#' }, i + 1),
      ...TICKET_FIELDS.map((f) => el('td', {
        'data-label': t(`task.${f}`), 'data-field': f,
        class: bad && create.errorField === f ? 'cell-error' : f === 'ticketContent' ? 'clip' : '',
      }, show(obj[f]))),
      el('td', { 'data-label': t('create.result'), class: 'result' },
        bad ? create.errorMsg : result ? `batchId ${result}` : ''),
    );
  });
  table.tBodies[0].replaceChildren(...rows);
}

async function submitTickets() {
  parseTicketsInput();
  const list = create.tickets;
  if (!list) {
    if (!$('#tickets-json').value.trim()) showMsg($('#create-msg'), t('create.empty'));
    return;
  }
  const button = $('#create-submit');
  button.disabled = true;
  try {
    const env = await post('/api/aicall/createTasks', list);
    env.data.forEach((d, i) => create.results.set(i, d.batchId));
    const ids = env.data.map((d) => d.batchId);
    showMsg($('#create-msg'), t('create.ok', { n: ids.length, first: Math.min(...ids), last: Math.max(...ids) }), 'ok');
    tasks.page = 1;
    loadTasks();
  } catch (e) {
    // The API names the ticket: `第 3 条工单（下标 2）的 phone …`.
    const at = /下标\s*(\d+)/.exec(e.message);
    if (e instanceof ApiError && at) {
      create.errorIndex = Number(at[1]);
      create.errorField = (/的\s+(\w+)\s/.exec(e.message) || [])[1];
      create.errorMsg = e.message;
      showMsg($('#create-msg'), t('create.rowError', { n: create.errorIndex + 1, msg: e.message }));
    } else {
      showError($('#create-msg'), e);
    }
  } finally {
    button.disabled = false;
  }
  renderPreview();
  $('#preview-table tr.row-error')?.scrollIntoView({ block: 'nearest' });
}

function setupCreate() {
  const area = $('#tickets-json');
  let timer;
  area.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(parseTicketsInput, 250); });
  $('#csv-file').addEventListener('change', async (e) => {
    const file = e.target.files[0];
    e.target.value = '';
    if (!file) return;
    try {
      const list = csvTickets(await readCsvFile(file));
      area.value = JSON.stringify(list, null, 2);
      parseTicketsInput();
      showMsg($('#create-msg'), t('create.csvLoaded', { file: file.name, n: list.length }), 'info');
    } catch (err) {
      showMsg($('#create-msg'), err.message);
    }
  });
  $('#create-clear').addEventListener('click', () => { area.value = ''; parseTicketsInput(); });
  $('#create-submit').addEventListener('click', submitTickets);
}

// ---------------------------------------------------------------- calls

const calls = { page: 1, size: 20, filter: { callType: '02' }, rows: [], total: 0, seq: 0 };

async function loadCalls() {
  const seq = ++calls.seq;
  try {
    const env = await post('/api/aicall/records/list', { pageNum: calls.page, pageSize: calls.size, ...calls.filter });
    if (seq !== calls.seq) return;
    calls.rows = env.rows;
    calls.total = env.total;
    clearError($('#call-msg'));
  } catch (e) {
    if (seq !== calls.seq) return;
    showError($('#call-msg'), e);
  }
  renderCalls();
}

function renderCalls() {
  const cell = (label, ...content) => el('td', { 'data-label': t(label), 'data-col': label.split('.')[1] }, ...content);
  const rows = calls.rows.map((r) => {
    const tr = el('tr', { tabindex: 0, 'data-uuid': r.uuid },
      cell('call.uuid', el('span', { class: 'mono' }, r.uuid)),
      cell('call.telephone', el('span', { class: 'mono' }, r.telephone)),
      cell('call.calloutTime', r.calloutTime),
      cell('call.answeredTime', r.answeredTime || el('span', { class: 'muted' }, t('call.notAnswered'))),
      cell('call.timeLen', r.timeLen),
      cell('call.hangupCause', el('span', { class: 'mono' }, r.hangupCause)),
      cell('call.intent', r.intent || ''),
      cell('call.extnum', r.extnum ?? ''),
      cell('call.recording', r.wavFileUrl ? el('span', { class: 'has-audio', title: t('call.hasRecording') }, '▶') : ''),
    );
    tr.addEventListener('click', () => openCall(r));
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') openCall(r); });
    return tr;
  });
  $('#call-table tbody').replaceChildren(...(rows.length ? rows : [emptyRow(9)]));
  renderPager($('#call-pager'), calls, loadCalls);
}

function setupCalls() {
  const form = $('#call-filter');
  form.elements.callType.value = '02';
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const filter = formFilter(form, ['timeLenStart', 'timeLenEnd']);
    // A call id alone says nothing of its type: ask, as the spec's own client does.
    if (filter.uuid) {
      try {
        const env = await api('GET', `/api/aicall/calltype/uuid?uuid=${encodeURIComponent(filter.uuid)}`);
        filter.callType = env.data.callType;
        form.elements.callType.value = filter.callType;
      } catch (err) {
        showError($('#call-msg'), err);
        return;
      }
    }
    calls.filter = filter;
    calls.page = 1;
    loadCalls();
  });
  onReset(form, () => { form.elements.callType.value = '02'; });
  form.elements.callType.addEventListener('change', () => form.requestSubmit());
  $('#call-dialog-close').addEventListener('click', () => $('#call-dialog').close());
  $('#call-dialog').addEventListener('close', resetAudio);
  $('#call-audio').addEventListener('error', audioFailed);
}

/** From a task row: the AI calls to its number. */
function showCallsFor(phone) {
  const form = $('#call-filter');
  for (const input of form.querySelectorAll('input')) input.value = '';
  form.elements.callType.value = '02';
  form.elements.telephone.value = phone;
  calls.filter = { callType: '02', telephone: phone };
  calls.page = 1;
  window.location.hash = '#calls';
}

// ---------------------------------------------------------------- one call

let audioBlobUrl = null;
let audioSource = null;

function openCall(r) {
  const dialog = $('#call-dialog');
  const field = (label, value) => [el('dt', {}, t(label)), el('dd', { 'data-field': label.split('.')[1] }, value)];
  $('#call-fields').replaceChildren(...[
    field('call.uuid', el('span', { class: 'mono' }, r.uuid)),
    field('call.telephone', r.telephone),
    field('call.callType', `${r.callType} ${t(`callType.${r.callType}`)}`),
    field('call.calloutTime', r.calloutTime),
    field('call.answeredTime', r.answeredTime || t('call.notAnswered')),
    field('call.callEndTime', r.callEndTime),
    field('call.timeLen', r.timeLen),
    field('call.hangupCause', el('span', { class: 'mono' }, r.hangupCause)),
    field('call.intent', r.intent || '–'),
    r.extnum ? field('call.extnum', r.extnum) : [],
  ].flat());
  const turns = r.dialogue.map((turn) => el('div', { class: `bubble ${turn.role}` },
    el('div', { class: 'who' }, t(`role.${turn.role}`)), el('div', { class: 'said' }, turn.content)));
  $('#transcript').replaceChildren(...(turns.length ? turns : [el('p', { class: 'muted' }, t('detail.noDialogue'))]));
  resetAudio();
  if (!dialog.open) dialog.showModal();
  loadAudio(r.wavFileUrl);
}

/**
 * The recording. `wavFileUrl` is relative to this page's origin unless absolute. Without a
 * key the player streams it (and seeks with HTTP Range); with one, the player cannot send
 * the header, so the file is fetched with it and played from a Blob URL.
 */
async function loadAudio(wavFileUrl) {
  const audio = $('#call-audio');
  const msg = $('#audio-msg');
  audio.hidden = !wavFileUrl;
  if (!wavFileUrl) { showMsg(msg, t('detail.noRecording'), 'info'); return; }
  const url = new URL(wavFileUrl, window.location.origin).href;
  audioSource = url;
  if (!getKey()) { audio.src = url; return; }
  try {
    const res = await fetch(url, { headers: authHeaders() });
    if (res.status === 401) { askForKey(); throw new Error(t('key.invalid')); }
    if (res.status === 404) throw new Error(t('detail.recordingMissing'));
    if (!res.ok) throw new Error(t('error.http', { status: res.status }));
    const blob = await res.blob();
    if (audioSource !== url) return;
    audioBlobUrl = URL.createObjectURL(blob.type ? blob : new Blob([blob], { type: 'audio/wav' }));
    audio.src = audioBlobUrl;
  } catch (e) {
    if (audioSource === url) showMsg(msg, t('detail.recordingError', { msg: e.message }));
  }
}

/** The player says only that it failed; ask the server why (key, missing file). */
async function audioFailed() {
  const audio = $('#call-audio');
  if (!audioSource || !audio.getAttribute('src')) return;
  const source = audioSource;
  let why = audio.error?.message || String(audio.error?.code || '');
  if (!audioBlobUrl) {
    try {
      const res = await fetch(source, { method: 'HEAD', headers: authHeaders() });
      if (res.status === 401) { askForKey(); why = t('key.needed'); }
      else if (res.status === 404) why = t('detail.recordingMissing');
      else if (!res.ok) why = t('error.http', { status: res.status });
    } catch (e) {
      why = e.message;
    }
  }
  if (source === audioSource) showMsg($('#audio-msg'), t('detail.recordingError', { msg: why }));
}

function resetAudio() {
  const audio = $('#call-audio');
  audio.pause();
  audio.removeAttribute('src');
  audio.load();
  audioSource = null;
  if (audioBlobUrl) URL.revokeObjectURL(audioBlobUrl);
  audioBlobUrl = null;
  showMsg($('#audio-msg'), '');
}

// ---------------------------------------------------------------- campaigns

const campaigns = { rows: [], seq: 0 };

async function loadCampaigns() {
  const seq = ++campaigns.seq;
  try {
    const env = await post('/api/aicall/campaign/list', {});
    if (seq !== campaigns.seq) return;
    campaigns.rows = env.rows;
    clearError($('#campaign-msg'));
  } catch (e) {
    if (seq !== campaigns.seq) return;
    showError($('#campaign-msg'), e);
  }
  renderCampaigns();
}

function renderCampaigns() {
  const cell = (label, ...content) => el('td', { 'data-label': t(label), 'data-col': label.split('.')[1] }, ...content);
  const count = (r, status) => el('td', { 'data-label': t(`status.${status}`), 'data-col': status }, r.tasks[status] ?? 0);
  const rows = campaigns.rows.map((r) => {
    const toggle = el('button', { type: 'button', class: r.paused ? '' : 'secondary', 'data-action': r.paused ? 'resume' : 'pause' },
      t(r.paused ? 'campaign.resume' : 'campaign.pause'));
    toggle.addEventListener('click', () => setPaused(r.batchName, !r.paused));
    const show = el('button', { type: 'button', class: 'link', title: t('campaign.tasksTitle') }, t('campaign.tasks'));
    show.addEventListener('click', () => showTasksOf(r.batchName));
    return el('tr', { 'data-campaign': r.batchName, 'data-paused': String(r.paused) },
      cell('campaign.name', r.batchName),
      cell('campaign.state', el('span', { class: `badge ${r.paused ? 'st-stopped' : 'st-calling'}` },
        t(r.paused ? 'campaign.paused' : 'campaign.running'))),
      cell('campaign.priority', r.settings.priority ?? 0),
      count(r, '待呼叫'), count(r, '呼叫中'), count(r, '等待重呼'), count(r, '已完成'), count(r, '已停止'),
      cell('campaign.todayCalls', r.today.calls),
      cell('campaign.todayAnswered', r.today.answered),
      el('td', { class: 'actions' }, toggle, ' ', show),
    );
  });
  $('#campaign-table tbody').replaceChildren(...(rows.length ? rows : [emptyRow(11)]));
  $('#campaign-names').replaceChildren(...campaigns.rows.map((r) => el('option', { value: r.batchName })));
}

async function setPaused(name, paused) {
  try {
    const env = await post(`/api/aicall/campaign/${paused ? 'pause' : 'resume'}`, { batchName: name });
    showMsg($('#campaign-msg'), env.msg, 'ok');
  } catch (e) {
    showError($('#campaign-msg'), e);
  }
  loadCampaigns();
}

/** From a campaign row: its tasks. */
function showTasksOf(name) {
  const form = $('#task-filter');
  form.reset();
  form.elements.batchName.value = name;
  tasks.filter = { batchName: name };
  tasks.page = 1;
  window.location.hash = '#tasks';
}

function setupCampaigns() {
  $('#campaigns-refresh').addEventListener('click', loadCampaigns);
}

// ---------------------------------------------------------------- views

const VIEWS = { overview: loadStats, tasks: loadTasks, campaigns: loadCampaigns, calls: loadCalls };

function currentView() {
  const name = window.location.hash.slice(1);
  return name in VIEWS ? name : 'overview';
}

function showView() {
  const name = currentView();
  for (const [view] of Object.entries(VIEWS)) $(`#view-${view}`).hidden = view !== name;
  for (const a of $$('.tabs a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  VIEWS[name]();
}

const refreshView = () => VIEWS[currentView()]();

/** The overview and the campaigns refresh every 5 seconds, and so does the task list when asked to; not in a hidden tab. */
function tick() {
  // Not while the page waits for a key: saving one refreshes at once.
  if (document.hidden || !$('#banner').hidden) return;
  const view = currentView();
  if (view === 'overview') loadStats();
  else if (view === 'tasks' && $('#tasks-auto').checked) loadTasks();
  else if (view === 'campaigns') loadCampaigns();
}

function setLanguage(next) {
  lang = next;
  localStorage.setItem(LANG_STORE, lang);
  applyI18n();
  if (stats.data) renderStats();
  renderTasks();
  renderCampaigns();
  renderCalls();
  renderPreview();
  if (!$('#banner').hidden) askForKey();
}

function start() {
  applyI18n();
  setupKey();
  setupOverview();
  setupTasks();
  setupCampaigns();
  setupCalls();
  updateStopButton();
  $('#lang-toggle').addEventListener('click', () => setLanguage(lang === 'zh' ? 'en' : 'zh'));
  window.addEventListener('hashchange', showView);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshView(); });
  setInterval(tick, REFRESH_MS);
  let resizing;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => { if (stats.data && currentView() === 'overview') renderChart(stats.data.hours); }, 150);
  });
  showView();
}

start();
