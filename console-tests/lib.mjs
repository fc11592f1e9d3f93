// Shared by the browser tests: launching Chromium, pages that record their errors,
// screenshots, and a few waits (playwright-core has no `expect`).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Where screenshots go (gitignored; CI keeps them as artifacts). */
export const SCREENSHOTS = process.env.CONSOLE_SCREENSHOTS || path.join(HERE, 'screenshots');

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/**
 * A page in a fresh context (its own localStorage) that records console errors and
 * uncaught exceptions in `problems`; `ignore` lists patterns of expected ones.
 */
export async function openPage(browser, baseURL, { ignore = [], ...options } = {}) {
  const context = await browser.newContext({
    baseURL,
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
    viewport: { width: 1280, height: 860 },
    ...options,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const problems = [];
  const keep = (text) => { if (!ignore.some((re) => re.test(text))) problems.push(text); };
  page.on('console', (m) => { if (m.type() === 'error') keep(`console: ${m.text()}`); });
  page.on('pageerror', (e) => keep(`page error: ${e.message}`));
  return { context, page, problems };
}

/** Saves a screenshot (the whole page unless `fullPage` is false) under SCREENSHOTS. */
export async function shot(page, name, { fullPage = true } = {}) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  if (fullPage) await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage });
}

/** Waits until `selector`'s text contains `text`. */
export async function waitText(page, selector, text, timeout) {
  try {
    await page.waitForFunction(
      ([sel, want]) => document.querySelector(sel)?.textContent.includes(want),
      [selector, text],
      { timeout },
    );
  } catch (e) {
    const found = await page.locator(selector).first().textContent().catch(() => '(none)');
    assert.fail(`${selector} never contained "${text}"; it holds "${found}"`);
  }
}

/** Polls `check` (an async function returning a truthy value when done) until it holds. */
export async function until(check, { timeout = 20_000, interval = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** The task table's rows as `{ batchId, status, cols: { ticketNo, phone, … } }`. */
export function taskRows(page) {
  return page.$$eval('#task-table tbody tr[data-batch-id]', (trs) => trs.map((tr) => ({
    batchId: Number(tr.dataset.batchId),
    status: tr.dataset.status,
    cols: Object.fromEntries([...tr.querySelectorAll('td[data-col]')].map((td) => [td.dataset.col, td.textContent.trim()])),
  })));
}

/** The uuids of the call table's rows, in order. */
export function callUuids(page) {
  return page.$$eval('#call-table tbody tr[data-uuid]', (trs) => trs.map((tr) => tr.dataset.uuid));
}

/** Calls the API from the test itself (to check what the page shows). */
export async function api(base, path, body, key) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers['X-API-Key'] = key;
  const res = await fetch(new URL(path, base), { method: 'POST', headers, body: JSON.stringify(body) });
  const env = await res.json();
  assert.equal(env.code, 0, `${path}: ${JSON.stringify(env)}`);
  return env;
}

export function ticket(ticketNo, phone, extra = {}) {
  return {
    ticketNo,
    phone,
    username: '张三',
    ticketType: '活动通知',
    ticketContent: '尊敬的张三先生，提醒您参加我们本周末的线下优惠活动。',
    ...extra,
  };
}

/** Waits until the audio element has loaded a recording with a duration. */
export async function audioLoaded(page) {
  await page.waitForFunction(() => {
    const a = document.querySelector('#call-audio');
    return a.readyState >= 1 && Number.isFinite(a.duration) && a.duration > 0;
  });
  return page.$eval('#call-audio', (a) => ({ duration: a.duration, src: a.currentSrc }));
}
