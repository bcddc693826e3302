// /docs rendered by a real headless Chromium: the reference shows the spec's operations and the page
// makes no request to anything but the daemon (every asset is served locally, no CDN).
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spec, startApp, type Harness } from '../unit/api/helpers.js';

const CHROMIUM = '/usr/bin/chromium';

let h: Harness;
let profile: string;

beforeAll(async () => {
  h = await startApp();
  profile = await mkdtemp(join(tmpdir(), 'nodevirt-chromium-'));
});
afterAll(async () => {
  await h?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

it('renders the API reference from the spec using only the daemon', async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install --no-install-recommends chromium) to run this test`);
  }
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const requested: string[] = [];
    const problems: string[] = [];
    context.on('request', (r) => requested.push(r.url()));
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));

    const response = await page.goto(`${h.url}/docs`, { waitUntil: 'load' });
    expect(response?.status()).toBe(200);
    await page.locator('.opblock-summary-path').first().waitFor({ timeout: 20_000 });

    const shown = await page.locator('.opblock-summary-path').evaluateAll((els) => els.map((e) => e.getAttribute('data-path') ?? e.textContent ?? ''));
    const s = await spec();
    for (const op of s.operations) expect(shown, op.path).toContain(op.path);
    expect(await page.locator('body').innerText()).toContain('/v1/node');
    // The title comes from the spec, rendered by Swagger UI itself (not our static HTML).
    expect(await page.locator('.info .title').innerText()).toContain(String((s.document.info as { title: string }).title));

    const origin = new URL(h.url).origin;
    const outside = requested.filter((u) => !u.startsWith('data:') && !u.startsWith('blob:') && new URL(u).origin !== origin);
    expect(outside).toEqual([]);
    expect(requested).toContain(`${origin}/openapi.json`);
    // A CSP violation or script error would mean part of the page silently did not work.
    expect(problems).toEqual([]);
  } finally {
    await context.close();
  }
});
