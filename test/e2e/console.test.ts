// The operator console in a real headless Chromium (Debian's package, driven by
// playwright-core): the page loads with no network but the node, signs in with an
// observer credential, shows a registered agent and the FIB, updates when the agent goes
// down, and a screenshot is taken (test-results/console.png).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, register, start, type Proc, type Registered } from './harness.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const SHOTS = new URL('../../test-results/', import.meta.url).pathname;

describe('operator console', () => {
  let node: Proc;
  let browser: Browser;
  let agent: Registered;

  beforeAll(async () => {
    node = await start('node', ['--heartbeat-ms', '60000']);
    const key = await addProvider(node, 'acme', ['/capability/**']);
    agent = await register(node, key, [{ name: '/capability/vision/ocr' }], 'http://127.0.0.1:9100');
    await register(node, key, [{ name: '/capability/vision/ocr' }, { name: '/capability/text/translate' }], 'http://127.0.0.1:9101');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await cleanup();
  });

  it('shows the agents, the FIB and the events, and updates when an agent goes down', async () => {
    const observer = await api(node.url, 'POST', '/v1/observers', { auth: node.token, body: { name: 'noc', scope: 'node', node: 'node-1' } });
    expect(observer.status).toBe(201);
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    // Nothing but the node: any other request fails the test.
    const elsewhere: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(node.url)) elsewhere.push(r.url());
    });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));

    await page.goto(`${node.url}/console`);
    // A wrong credential is refused on the page, with the API's error code.
    await page.fill('#token', 'not-a-token');
    await page.click('button[type=submit]');
    await page.waitForSelector('.error');
    expect(await page.textContent('.error')).toContain('ERR_DMSC_UNAUTHORIZED');
    await page.fill('#token', observer.body.credential);
    await page.click('button[type=submit]');

    const row = page.locator(`tr[data-aic="${agent.aic}"]`);
    await row.waitFor();
    expect(await row.locator('td.state').textContent()).toBe('up');
    const fibRow = page.locator('tr[data-prefix="/capability/vision/ocr"]');
    await fibRow.waitFor();
    expect(await fibRow.locator('.hop').count()).toBe(2);
    expect(await page.locator('svg.graph .self').textContent()).toContain('node-1');
    // The live stream: the registrations are in it.
    await page.locator('tr.registration').first().waitFor();

    // The agent goes down: the agents table, the FIB and the events follow.
    expect((await api(node.url, 'POST', `/v1/agents/${agent.aic}/heartbeat`, { auth: agent.credential, body: { state: 'down' } })).status).toBe(200);
    await page.waitForFunction((aic) => document.querySelector(`tr[data-aic="${aic}"] td.state`)?.textContent === 'down', agent.aic, { timeout: 10_000 });
    await page.waitForSelector(`tr[data-prefix="/capability/vision/ocr"] .hop.down[data-hop="${agent.aic}"]`, { timeout: 10_000 });
    await page.waitForSelector('tr.health', { timeout: 10_000 });
    // Filtering the events by kind.
    await page.selectOption('#kind', 'health');
    expect(await page.locator('table.events tbody tr').count()).toBe(await page.locator('table.events tbody tr.health').count());

    // Some resolutions, for the latency chart.
    for (let i = 0; i < 20; i++) await api(node.url, 'POST', '/v1/resolve', { auth: agent.credential, body: { capability: '/capability/text/translate' } });
    await page.waitForTimeout(2500);
    await mkdir(SHOTS, { recursive: true });
    const shot = join(SHOTS, 'console.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(errors).toEqual([]);
    expect(elsewhere).toEqual([]);
  });
});
