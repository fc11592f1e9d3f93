// The console against a server with API keys (started by tests/it/console.rs): it asks for
// the key, keeps it in localStorage, sends it on every request, and plays recordings
// through a Blob URL (an <audio> element cannot send the header).
// Run by hand: CONSOLE_KEYED_BASE_URL=http://127.0.0.1:8899 CONSOLE_API_KEY=… node --test

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { api, audioLoaded, launch, openPage, shot, taskRows, ticket, until, waitText } from './lib.mjs';

const BASE = process.env.CONSOLE_KEYED_BASE_URL;
const KEY = process.env.CONSOLE_API_KEY;

describe('the console, with API keys', { skip: !(BASE && KEY) && 'CONSOLE_KEYED_BASE_URL or CONSOLE_API_KEY is not set' }, () => {
  let browser;
  let page;
  let problems;
  const sent = [];

  before(async () => {
    browser = await launch();
    // The browser logs every 401 answer as a failed resource: expected before the key is in.
    ({ page, problems } = await openPage(browser, BASE, { ignore: [/status of 401/] }));
    page.on('request', (req) => {
      const path = new URL(req.url()).pathname;
      if (path.startsWith('/api/') || path.startsWith('/recordings/')) sent.push({ path, key: req.headers()['x-api-key'] });
    });
  });

  after(async () => {
    await browser?.close();
  });

  it('serves the page without a key, then asks for one when the API answers 401', async () => {
    const res = await fetch(new URL('/api/aicall/stats', BASE), { method: 'POST', body: '{}' });
    assert.equal(res.status, 401);
    await page.goto('/');
    await page.waitForSelector('#banner:not([hidden])');
    await waitText(page, '#banner', '服务器要求 API 密钥');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'api-key');
    assert.equal(await page.locator('#key-form.attention').count(), 1);
    await shot(page, '20-key-needed');
  });

  it('says so when the key is wrong', async () => {
    await page.fill('#api-key', 'not-the-key');
    await page.click('#key-form button[type=submit]');
    await waitText(page, '#banner', '服务器拒绝了当前的 API 密钥');
  });

  it('works once the right key is saved, and keeps it in localStorage', async () => {
    await page.fill('#api-key', KEY);
    await page.click('#key-form button[type=submit]');
    await page.waitForSelector('#banner', { state: 'hidden' });
    await waitText(page, '#stat-callsStarted', '0');
    assert.equal(await page.evaluate(() => localStorage.getItem('callcenter.apiKey')), KEY);
    await page.reload();
    await waitText(page, '#stat-tasksWaiting', '0');
    assert.equal(await page.inputValue('#api-key'), KEY);
    assert.equal(await page.isHidden('#banner'), true);
  });

  it('creates a task, watches it finish and plays its recording through a Blob URL', async () => {
    const from = sent.length;
    await page.click('.tabs a[data-view=tasks]');
    await page.click('#create-panel summary');
    await page.fill('#tickets-json', JSON.stringify([ticket('K1', '13900008888')]));
    await page.click('#create-submit');
    await waitText(page, '#create-msg', '已创建 1 个任务');
    await until(async () => (await taskRows(page)).some((r) => r.cols.ticketNo === 'K1' && r.status === '已完成'),
      { timeout: 30_000, what: 'K1 to complete' });

    await page.click('.tabs a[data-view=calls]');
    await page.waitForSelector('#call-table tbody tr[data-uuid]');
    await page.click('#call-table tbody tr[data-uuid]');
    const audio = await audioLoaded(page);
    assert.ok(audio.src.startsWith('blob:'), audio.src);
    const seeked = await page.$eval('#call-audio', (a) => new Promise((resolve) => {
      a.addEventListener('seeked', () => resolve(a.currentTime), { once: true });
      a.currentTime = a.duration / 2;
    }));
    assert.ok(seeked > 0);
    await shot(page, '21-keyed-call');

    const requests = sent.slice(from);
    assert.ok(requests.some((r) => r.path === '/api/aicall/createTasks'));
    assert.ok(requests.some((r) => r.path === '/recordings/files'));
    assert.deepEqual(requests.filter((r) => r.key !== KEY), [], 'every request carries the key');
    const record = (await api(BASE, '/api/aicall/records/list', { callType: '02' }, KEY)).rows[0];
    assert.equal(record.telephone, '13900008888');
  });

  it('clears the key, and asks again', async () => {
    await page.keyboard.press('Escape');
    await page.click('#key-clear');
    await page.click('.tabs a[data-view=overview]');
    await waitText(page, '#banner', '服务器要求 API 密钥');
    assert.equal(await page.evaluate(() => localStorage.getItem('callcenter.apiKey')), null);
  });

  it('logged no errors in the browser but the expected 401s', () => {
    assert.deepEqual(problems, []);
  });
});
