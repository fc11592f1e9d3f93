// The console in headless Chromium against a running server without API keys (started by
// tests/it/console.rs: sim carrier, time scale 0.05, every ordinary number answers).
// Run by hand: CONSOLE_BASE_URL=http://127.0.0.1:8899 node --test (on an empty database).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { api, audioLoaded, callUuids, launch, openPage, shot, taskRows, ticket, until, waitText } from './lib.mjs';

const BASE = process.env.CONSOLE_BASE_URL;

const JSON_TICKETS = [
  ticket('J1', '13900001111'),
  ticket('J2', '13900004860', { username: '李四' }), // busy: waits for a retry
  ticket('J3', '13900002222', { username: '王五' }),
];

// Columns in another order, an extra column, CRLF, and a quoted field holding a comma,
// quotes and a line break. The third ticket's phone is wrong.
const C1_CONTENT = '尊敬的王五先生，您好, 这是一条"测试"内容\n第二行';
const csv = (phone3) => [
  'phone,ticketNo,username,ticketType,ticketContent,remark',
  '13900003333,C1,"王五","活动通知","尊敬的王五先生，您好, 这是一条""测试""内容\n第二行",x',
  '13900004444,C2,赵六,回访,普通内容,',
  `${phone3},C3,钱七,回访,"内容",`,
].join('\r\n');

/** `G1,13900006666,王五,回访,您好` as Excel saves it on Chinese Windows (GBK). */
const GBK_CSV = Buffer.concat([
  Buffer.from('ticketNo,phone,username,ticketType,ticketContent\r\n'),
  Buffer.from('47312c31333930303030363636362ccdf5cee52cbbd8b7c32cc4fabac3', 'hex'),
]);

describe('the console, without API keys', { skip: !BASE && 'CONSOLE_BASE_URL is not set' }, () => {
  let browser;
  let page;
  let problems;

  before(async () => {
    browser = await launch();
    ({ page, problems } = await openPage(browser, BASE));
  });

  after(async () => {
    await browser?.close();
  });

  it('opens on the overview, in Chinese, with the day still empty', async () => {
    await page.goto('/');
    assert.equal(await page.title(), '呼叫中心控制台');
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
    assert.equal(await page.textContent('.tabs a[aria-current=page]'), '概览');
    await waitText(page, '#stat-callsStarted', '0');
    assert.equal(await page.textContent('#stat-answerRate'), '0.0%');
    await waitText(page, '#chart', '当天还没有呼叫');
    await shot(page, '01-overview-empty');
  });

  it('creates tasks from pasted JSON and shows them finish, with their call statistics', async () => {
    await page.click('.tabs a[data-view=tasks]');
    await page.click('#create-panel summary');
    await page.fill('#tickets-json', JSON.stringify(JSON_TICKETS, null, 2));
    await waitText(page, '#create-msg', '预览：3 条工单');
    assert.equal(await page.locator('#preview-table tbody tr').count(), 3);
    await page.click('#create-submit');
    await waitText(page, '#create-msg', '已创建 3 个任务');
    await waitText(page, '#preview-table tbody tr[data-index="0"] td.result', 'batchId');

    // No clicks: the list refreshes by itself every 5 seconds.
    const rows = await until(async () => {
      const rows = await taskRows(page);
      const by = Object.fromEntries(rows.map((r) => [r.cols.ticketNo, r]));
      return by.J1?.status === '已完成' && by.J3?.status === '已完成' && by.J2?.status === '等待重呼' && by;
    }, { timeout: 30_000, what: 'J1 and J3 to complete and J2 to wait for a retry' });
    assert.deepEqual(
      [rows.J1.cols.status, rows.J1.cols.connected, rows.J1.cols.callCount, rows.J1.cols.lastHangupCause],
      ['已完成', '是', '1', 'NORMAL_CLEARING:sip:200'],
    );
    assert.deepEqual(
      [rows.J2.cols.status, rows.J2.cols.connected, rows.J2.cols.callCount, rows.J2.cols.lastHangupCause],
      ['等待重呼', '否', '1', 'USER_BUSY:sip:486'],
    );
    assert.match(rows.J1.cols.createtime, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    assert.equal(rows.J2.cols.stopTime, '');
    await shot(page, '02-tasks-created');
  });

  it('reads a CSV with quoted fields, marks the row the API rejects, then creates its tickets', async () => {
    await page.setInputFiles('#csv-file', { name: 'bad.csv', mimeType: 'text/csv', buffer: Buffer.from(csv('12ab')) });
    await waitText(page, '#create-msg', '已读取 bad.csv：3 条工单');
    assert.equal(await page.locator('#preview-table tbody tr').count(), 3);
    await page.click('#create-submit');
    // The API names the ticket (第 3 条工单（下标 2）的 phone …): that row and cell are marked.
    await page.waitForSelector('#preview-table tr.row-error[data-index="2"]');
    const result = await page.textContent('#preview-table tr.row-error td.result');
    assert.match(result, /第 3 条工单（下标 2）的 phone/);
    assert.equal(await page.locator('#preview-table tr.row-error td.cell-error[data-field=phone]').count(), 1);
    assert.equal(await page.locator('#preview-table tr.row-error').count(), 1);
    await waitText(page, '#create-msg', '第 3 条工单有误');
    await shot(page, '03-csv-row-error');

    await page.setInputFiles('#csv-file', { name: 'good.csv', mimeType: 'text/csv', buffer: Buffer.from(csv('13900005555')) });
    await waitText(page, '#create-msg', '已读取 good.csv');
    assert.equal(await page.locator('#preview-table tr.row-error').count(), 0);
    await page.click('#create-submit');
    await waitText(page, '#create-msg', '已创建 3 个任务');
    const c1 = (await api(BASE, '/api/aicall/calltask/list', { pageNum: 1, pageSize: 10, ticketNo: 'C1' })).rows[0];
    assert.equal(c1.ticketContent, C1_CONTENT);
    assert.deepEqual([c1.phone, c1.username, c1.ticketType], ['13900003333', '王五', '活动通知']);

    // A CSV without the header row, or with a quote never closed, is refused before sending.
    await page.setInputFiles('#csv-file', { name: 'noheader.csv', mimeType: 'text/csv', buffer: Buffer.from('C9,13900001234,a,b,c\n') });
    await waitText(page, '#create-msg', 'CSV 表头缺少列：ticketNo, phone, username, ticketType, ticketContent');
    await page.setInputFiles('#csv-file', { name: 'quote.csv', mimeType: 'text/csv', buffer: Buffer.from('ticketNo,phone,username,ticketType,ticketContent\nC9,1390000,"a,b,c\n') });
    await waitText(page, '#create-msg', 'CSV 第 2 行：引号没有闭合');

    // A CSV saved as GBK reads as well (previewed only).
    await page.setInputFiles('#csv-file', { name: 'gbk.csv', mimeType: 'text/csv', buffer: GBK_CSV });
    await waitText(page, '#create-msg', '1 条工单');
    assert.equal(await page.textContent('#preview-table tbody tr td[data-field=username]'), '王五');
    await page.click('#create-clear');
    assert.equal(await page.isHidden('#preview-table'), true);
  });

  it('stops a selected task', async () => {
    const j2 = (await taskRows(page)).find((r) => r.cols.ticketNo === 'J2');
    assert.equal(await page.isDisabled('#stop-selected'), true);
    // Ended tasks cannot be selected.
    const j1 = (await taskRows(page)).find((r) => r.cols.ticketNo === 'J1');
    assert.equal(await page.isDisabled(`#task-table tr[data-batch-id="${j1.batchId}"] input[type=checkbox]`), true);
    await page.check(`#task-table tr[data-batch-id="${j2.batchId}"] input[type=checkbox]`);
    await waitText(page, '#stop-selected', '停止所选（1）');
    page.once('dialog', (d) => d.accept());
    await page.click('#stop-selected');
    await waitText(page, '#task-msg', '已停止 1 个任务');
    await page.waitForSelector(`#task-table tr[data-batch-id="${j2.batchId}"][data-status="已停止"]`);
    assert.equal(await page.isDisabled('#stop-selected'), true);
    await shot(page, '04-task-stopped');
  });

  it('filters tasks by status, phone, ticket number and creation time, and pages through them', async () => {
    // Reset (which searches with no filter), fill in, search; wait for the expected rows.
    const search = async (fields, expected) => {
      await page.click('#task-filter button[type=reset]');
      await page.waitForFunction(() => !document.querySelector('#task-filter [name=ticketNo]').value);
      for (const [name, value] of Object.entries(fields)) {
        if (name === 'status') await page.selectOption(`#task-filter [name=${name}]`, value);
        else await page.fill(`#task-filter [name=${name}]`, value);
      }
      await page.click('#task-filter button[type=submit]');
      const same = (rows) => (typeof expected === 'number' ? rows.length === expected : JSON.stringify(rows) === JSON.stringify(expected));
      await until(async () => same((await taskRows(page)).map((r) => r.cols.ticketNo)), { what: `the tasks for ${JSON.stringify(fields)}` });
    };
    await page.uncheck('#tasks-auto');
    await search({ status: '已停止' }, ['J2']);
    await search({ phone: '13900001111' }, ['J1']);
    await search({ ticketNo: 'C2' }, ['C2']);
    await search({ status: '已完成', batchId: '10001' }, ['J1']);
    await search({ createTimeEnd: '2000-01-01T00:00' }, []);
    await waitText(page, '#task-table tbody', '暂无数据');
    await search({ createTimeStart: '2000-01-01T00:00', createTimeEnd: '2099-12-31T23:59:59' }, 6);

    // Paging: 20 more tasks (unallocated numbers: never retried) make two pages of 20.
    await api(BASE, '/api/aicall/createTasks', Array.from({ length: 20 }, (_, i) => ticket(`P${String(i + 1).padStart(2, '0')}`, `139000${String(i).padStart(2, '0')}4040`)));
    await until(async () => (await api(BASE, '/api/aicall/stats', {})).data.tasksWaiting === 0
      && (await api(BASE, '/api/aicall/calltask/list', { pageNum: 1, pageSize: 100, status: '呼叫中' })).total === 0,
    { what: 'the unallocated numbers to be called' });
    await search({}, 20);
    await waitText(page, '#task-pager', '第 1 / 2 页，共 26 条');
    const first = (await taskRows(page)).map((r) => r.batchId);
    assert.equal(first.length, 20);
    await page.click('#task-pager [data-page=next]');
    await waitText(page, '#task-pager', '第 2 / 2 页');
    const second = (await taskRows(page)).map((r) => r.batchId);
    assert.equal(second.length, 6);
    assert.ok(Math.min(...first) > Math.max(...second), 'newest batchId first');
    await page.selectOption('#task-pager select', '50');
    await waitText(page, '#task-pager', '第 1 / 1 页');
    assert.equal((await taskRows(page)).length, 26);
    await page.check('#tasks-auto');
    await shot(page, '05-tasks-all');
  });

  it('lists calls with every filter of the spec, as the API answers them', async () => {
    await page.click('.tabs a[data-view=calls]');
    await waitText(page, '#call-pager', '共 26 条');
    const form = '#call-filter';
    const check = async (fields, expectRows) => {
      await page.click(`${form} button[type=reset]`);
      await page.waitForFunction(() => !document.querySelector('#call-filter [name=telephone]').value);
      const body = { callType: '02', pageNum: 1, pageSize: 20 };
      for (const [name, value] of Object.entries(fields)) {
        if (name === 'callType') await page.selectOption(`${form} [name=callType]`, value);
        else await page.fill(`${form} [name=${name}]`, value);
        body[name] = /^\d{4}-\d\d-\d\dT/.test(value) ? `${value.replace('T', ' ')}${value.length === 16 ? ':00' : ''}` : value;
      }
      const expected = (await api(BASE, '/api/aicall/records/list', body)).rows.map((r) => r.uuid);
      if (expectRows !== undefined) assert.equal(expected.length, expectRows, JSON.stringify(fields));
      await page.click(`${form} button[type=submit]`);
      await until(async () => JSON.stringify(await callUuids(page)) === JSON.stringify(expected),
        { what: `the calls for ${JSON.stringify(fields)}` });
      return expected;
    };
    await check({ telephone: '13900001111' }, 1);
    await check({ timeLenStart: '1' });
    await check({ timeLenEnd: '0' });
    await check({ timeLenStart: '0', timeLenEnd: '100' }, 20);
    await check({ calloutTimeStart: '2000-01-01T00:00', calloutTimeEnd: '2099-12-31T23:59:59' }, 20);
    await check({ calloutTimeEnd: '2000-01-01T00:00' }, 0);
    await check({ extnum: '8001' }, 0);
    await check({ callType: '01' }, 0);
    // A uuid alone: the page asks calltype/uuid for its type first.
    const j3 = (await api(BASE, '/api/aicall/records/list', { callType: '02', telephone: '13900002222' })).rows[0];
    await page.click(`${form} button[type=reset]`);
    await page.selectOption(`${form} [name=callType]`, '03');
    await page.fill(`${form} [name=uuid]`, j3.uuid);
    await page.click(`${form} button[type=submit]`);
    await until(async () => JSON.stringify(await callUuids(page)) === JSON.stringify([j3.uuid]), { what: 'the call by uuid' });
    assert.equal(await page.inputValue(`${form} [name=callType]`), '02');
    await page.click(`${form} button[type=reset]`);
    await waitText(page, '#call-pager', '共 26 条');
    await shot(page, '06-calls');
  });

  it('opens a call: its times, cause, intent, the dialogue and a recording that plays and seeks', async () => {
    const record = (await api(BASE, '/api/aicall/records/list', { callType: '02', telephone: '13900001111' })).rows[0];
    assert.ok(record.wavFileUrl.startsWith('/recordings/files?filename='), record.wavFileUrl);
    await page.fill('#call-filter [name=telephone]', '13900001111');
    await page.click('#call-filter button[type=submit]');
    await page.click(`#call-table tr[data-uuid="${record.uuid}"]`);
    await page.waitForSelector('#call-dialog[open]');
    const field = (name) => page.textContent(`#call-fields dd[data-field=${name}]`);
    assert.equal(await field('uuid'), record.uuid);
    assert.equal(await field('calloutTime'), record.calloutTime);
    assert.equal(await field('answeredTime'), record.answeredTime);
    assert.equal(await field('callEndTime'), record.callEndTime);
    assert.equal(await field('hangupCause'), 'NORMAL_CLEARING:sip:200');
    assert.equal(await field('intent'), record.intent || '–');
    const bubbles = await page.$$eval('#transcript .bubble', (bs) => bs.map((b) => [b.classList.contains('user') ? 'user' : 'assistant', b.querySelector('.said').textContent]));
    assert.deepEqual(bubbles, record.dialogue.map((d) => [d.role, d.content]));

    const audio = await audioLoaded(page);
    assert.equal(audio.src, new URL(record.wavFileUrl, BASE).href, 'played straight from the server');
    assert.ok(Math.abs(audio.duration - record.timeLen) < 1.5, `duration ${audio.duration}, timeLen ${record.timeLen}`);
    // Seeking (the server answers Range requests), then playing.
    const seeked = await page.$eval('#call-audio', (a) => new Promise((resolve) => {
      a.addEventListener('seeked', () => resolve(a.currentTime), { once: true });
      a.currentTime = a.duration / 2;
    }));
    assert.ok(seeked > 0, `seeked to ${seeked}`);
    await page.$eval('#call-audio', (a) => { a.muted = true; return a.play(); });
    await page.waitForFunction((from) => document.querySelector('#call-audio').currentTime > from + 0.1, seeked);
    await page.$eval('#call-audio', (a) => a.pause());
    await shot(page, '07-call-detail');
    await page.click('#call-dialog-close');
    assert.equal(await page.isHidden('#call-dialog'), true);

    // A call never answered: no recording, no dialogue.
    const busy = (await api(BASE, '/api/aicall/records/list', { callType: '02', telephone: '13900004860' })).rows[0];
    await page.fill('#call-filter [name=telephone]', '13900004860');
    await page.click('#call-filter button[type=submit]');
    await page.click(`#call-table tr[data-uuid="${busy.uuid}"]`);
    await waitText(page, '#audio-msg', '这通电话没有录音');
    await waitText(page, '#transcript', '这通电话没有对话内容');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#call-dialog:not([open])', { state: 'attached' });

    // From a task to its calls.
    await page.click('.tabs a[data-view=tasks]');
    const j1 = (await taskRows(page)).find((r) => r.cols.ticketNo === 'J1');
    await page.click(`#task-table tr[data-batch-id="${j1.batchId}"] td.actions button`);
    await until(async () => JSON.stringify(await callUuids(page)) === JSON.stringify([record.uuid]), { what: "J1's calls" });
    assert.equal(await page.inputValue('#call-filter [name=telephone]'), '13900001111');
  });

  it("shows the day's numbers and calls per hour by outcome, refreshed every 5 seconds", async () => {
    await page.click('.tabs a[data-view=overview]');
    const cardsMatch = async () => {
      const d = (await api(BASE, '/api/aicall/stats', {})).data;
      const shown = await page.$$eval('.card-value', (cs) => Object.fromEntries(cs.map((c) => [c.id.slice(5), c.textContent])));
      const want = {
        callsStarted: String(d.callsStarted),
        answered: String(d.answered),
        answerRate: `${(d.answerRate * 100).toFixed(1)}%`,
        callsInProgress: String(d.callsInProgress),
        tasksWaiting: String(d.tasksWaiting),
      };
      return Object.entries(want).every(([k, v]) => shown[k] === v) && { d, shown };
    };
    const { d } = await until(cardsMatch, { what: 'the cards to show the stats' });
    assert.equal(d.callsStarted, 26);
    assert.equal(d.answered, 5);
    const outcomes = await page.$$eval('#chart rect.bar', (rs) => [...new Set(rs.map((r) => r.dataset.outcome))].sort());
    assert.deepEqual(outcomes, ['answered', 'busy', 'unallocated']);
    const drawn = await page.$$eval('#chart rect.bar', (rs) => rs.length);
    assert.ok(drawn >= 3);
    assert.equal(await page.locator('#legend li').count(), 8);

    // A new call shows up without a click.
    await api(BASE, '/api/aicall/createTasks', [ticket('N1', '13900007777')]);
    await until(async () => (await page.textContent('#stat-callsStarted')) === '27', { timeout: 15_000, what: 'the overview to refresh by itself' });
    await until(cardsMatch, { timeout: 15_000, what: 'the cards to settle' });
    await shot(page, '08-overview');
  });

  it('switches to English and keeps it across reloads', async () => {
    await page.click('#lang-toggle');
    assert.equal(await page.textContent('.tabs a[aria-current=page]'), 'Overview');
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    assert.equal(await page.title(), 'Callcenter console');
    await waitText(page, '#legend', 'Answered');
    await page.reload();
    await waitText(page, '.tabs a[aria-current=page]', 'Overview');
    await page.click('.tabs a[data-view=tasks]');
    await page.waitForSelector('#task-table tbody tr[data-status="已完成"]');
    await waitText(page, '#task-table tbody tr[data-status="已完成"] .badge', 'Completed');
    await waitText(page, '#task-table thead', 'Last hangup cause');
    await shot(page, '09-tasks-english');
    await page.click('#lang-toggle');
    await waitText(page, '#task-table thead', '最后挂断原因');
    assert.equal(await page.textContent('#lang-toggle'), 'English');
  });

  it('fits a phone screen', async () => {
    const phone = await openPage(browser, BASE, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    try {
      const overflow = () => phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      await phone.page.goto('/#overview');
      await waitText(phone.page, '#stat-callsStarted', '27');
      assert.ok((await overflow()) <= 0, 'no sideways scrolling on the overview');
      await shot(phone.page, '10-phone-overview', { fullPage: false });
      await phone.page.goto('/#tasks');
      await phone.page.waitForSelector('#task-table tbody tr[data-batch-id]');
      assert.equal(await phone.page.isHidden('#task-table thead'), true, 'rows are cards on a phone');
      assert.ok((await overflow()) <= 0, 'no sideways scrolling on the tasks');
      await shot(phone.page, '11-phone-tasks', { fullPage: false });
      await phone.page.goto('/#calls');
      await phone.page.waitForSelector('#call-table tbody tr[data-uuid]');
      await phone.page.fill('#call-filter [name=telephone]', '13900001111');
      await phone.page.click('#call-filter button[type=submit]');
      await phone.page.waitForFunction(() => document.querySelectorAll('#call-table tbody tr[data-uuid]').length === 1);
      await phone.page.tap('#call-table tbody tr[data-uuid]');
      await audioLoaded(phone.page);
      await shot(phone.page, '12-phone-call', { fullPage: false });
      assert.deepEqual(phone.problems, []);
    } finally {
      await phone.context.close();
    }
  });

  it('lists the campaigns with their counts, resumes and pauses one, and filters tasks and calls by campaign', async () => {
    const name = '九月份营销活动';
    await api(BASE, '/api/aicall/campaign/save', { batchName: name, settings: { priority: 3 } });
    await api(BASE, '/api/aicall/campaign/pause', { batchName: name });
    await api(BASE, '/api/aicall/createTasks', [
      ticket('M1', '13900007771', { batchName: name }),
      ticket('M2', '13900007772', { batchName: name }),
    ]);
    await page.goto('/#campaigns');
    const row = `#campaign-table tr[data-campaign="${name}"]`;
    await page.waitForSelector(`${row}[data-paused=true]`);
    assert.equal(await page.textContent(`${row} td[data-col=state]`), '已暂停');
    assert.equal(await page.textContent(`${row} td[data-col=priority]`), '3');
    assert.equal(await page.textContent(`${row} td[data-col=待呼叫]`), '2');
    await page.waitForSelector('#campaign-table tr[data-campaign="default"]');
    await shot(page, '13-campaigns-paused');
    // Resumed from the page, its tasks are called; the list refreshes by itself.
    await page.click(`${row} button[data-action=resume]`);
    await waitText(page, '#campaign-msg', '外呼活动已恢复');
    await until(async () => (await page.textContent(`${row} td[data-col=已完成]`)) === '2',
      { timeout: 30_000, what: "the campaign's tasks to complete" });
    assert.equal(await page.textContent(`${row} td[data-col=state]`), '运行中');
    assert.equal(await page.textContent(`${row} td[data-col=todayCalls]`), '2');
    await page.click(`${row} button[data-action=pause]`);
    await waitText(page, '#campaign-msg', '外呼活动已暂停');
    await page.waitForSelector(`${row}[data-paused=true]`);
    assert.equal((await api(BASE, '/api/aicall/campaign/list', { batchName: name })).rows[0].paused, true);
    await shot(page, '14-campaigns');
    // Its tasks, from its row.
    await page.click(`${row} button.link`);
    await until(async () => {
      const rows = await taskRows(page);
      return rows.length === 2 && rows.every((r) => r.cols.batchName === name);
    }, { what: "the campaign's tasks" });
    assert.equal(await page.inputValue('#task-filter [name=batchName]'), name);
    // Its calls.
    await page.click('.tabs a[data-view=calls]');
    await page.click('#call-filter button[type=reset]');
    await page.fill('#call-filter [name=batchName]', name);
    await page.click('#call-filter button[type=submit]');
    await until(async () => (await callUuids(page)).length === 2, { what: "the campaign's calls" });
    await api(BASE, '/api/aicall/campaign/resume', { batchName: name });
  });

  it('logged no errors in the browser', () => {
    assert.deepEqual(problems, []);
  });
});
