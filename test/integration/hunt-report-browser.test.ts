import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { loadHunt, type HuntView } from '../../analyzer/hunt-record.js';
import { register as huntCmds } from '../../cli/hunt.js';
import { register as reportCmds } from '../../cli/report.js';
import { TraceStore } from '../../trace/store.js';
import { runCommand } from '../helpers/cli.js';
import { expectNoSurvivors } from '../helpers/processes.js';
import { sleep } from '../../trace/async.js';

/*
 * The HTML matrix of a real minimig hunt, opened from disk in Debian's
 * chromium: no console error, no request but the files themselves, one
 * cell per read point x transition (and a control per row), and every link
 * (a broken cell's own timeline) opens a page that loads cleanly too.
 */

const CHROMIUM = '/usr/bin/chromium';
const OUT = resolve('test-results/hunt');

describe.skipIf(!existsSync(CHROMIUM))('the hunt matrix in chromium', () => {
  let dir: string;
  let profile: string;
  let context: BrowserContext;
  let view: HuntView;
  let page: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'migrace-hunt-html-'));
    const db = join(dir, 'hunt.db');
    const h = await runCommand(huntCmds, ['hunt', '--db', db, '--scenarios', 'precopy,fail']);
    expect(h.code, h.err).toBeUndefined();
    mkdirSync(OUT, { recursive: true });
    page = join(OUT, 'hunt.html');
    const r = await runCommand(reportCmds, ['report', '--hunt', '1', '--html', page, '--db', db]);
    expect(r.code, r.err).toBeUndefined();
    const store = TraceStore.open(db, { readonly: true });
    view = loadHunt(store, 1);
    store.close();
    expectNoSurvivors();
    // A profile folder of our own: every process of this browser names it.
    profile = join(dir, 'chromium-profile');
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, viewport: { width: 1400, height: 900 },
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 300_000);

  afterAll(async () => {
    await context?.close();
    const naming = (): string[] => execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).split('\n').filter((l) => profile && l.includes(profile) && !l.includes('ps -eo'));
    for (let i = 0; i < 100 && naming().length > 0; i++) await sleep(100);
    expect(naming()).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function open(file: string): Promise<{ p: Page; errors: string[]; requests: string[] }> {
    const p = await context.newPage();
    const errors: string[] = [];
    const requests: string[] = [];
    p.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(m.text()); });
    p.on('pageerror', (e) => errors.push(e.message));
    p.on('request', (q) => requests.push(q.url()));
    const res = await p.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    expect(res?.ok()).toBe(true);
    return { p, errors, requests };
  }

  it('one cell per read point x transition, no console error, no request but its own file', async () => {
    const { p, errors, requests } = await open(page);
    expect(errors).toEqual([]);
    expect(requests).toEqual([pathToFileURL(page).href]);
    const cols = view.data.columns.length;
    expect(cols).toBeGreaterThanOrEqual(4);
    expect(await p.locator('table.matrix thead th').count()).toBe(1 + cols + 1);
    expect(await p.locator('table.matrix tbody tr').count()).toBe(view.data.rows.length);
    expect(await p.locator('table.matrix tbody td').count()).toBe(view.data.rows.length * (cols + 1));
    // The stylesheet applied (the CSP hash matched): a broken cell is red.
    const bg = await p.locator('td.broken').first().evaluate((el) => getComputedStyle(el).backgroundColor);
    expect(bg).toBe('rgb(252, 232, 230)');
    await p.screenshot({ path: join(OUT, 'hunt.png'), fullPage: true });
    await p.close();
  });

  it('every broken cell links to its own timeline, and each link opens a clean page', async () => {
    const { p } = await open(page);
    const hrefs = await p.locator('td.broken a').evaluateAll((as) => as.map((a) => (a as HTMLAnchorElement).href));
    expect(hrefs.length).toBe(view.cells.filter((c) => c.class === 'broken').length);
    expect(hrefs.length).toBeGreaterThanOrEqual(2);
    expect(await p.locator('a').count()).toBe(hrefs.length);
    await p.close();
    for (const href of hrefs) {
      const file = new URL(href).pathname;
      expect(existsSync(file), file).toBe(true);
      const t = await open(file);
      expect(t.errors).toEqual([]);
      expect(t.requests).toEqual([href]);
      expect(await t.p.title()).toMatch(/^migrace session \d+: hunt 1 \S+ x /);
      expect(await t.p.locator('svg.migrace-timeline').count()).toBe(1);
      await t.p.close();
    }
  });
});
