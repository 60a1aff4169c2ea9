import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildLp1994002Bundle, EVIL, EVIL_SCRIPT, type Bundle } from '../bench/reports.bench.js';
import { renderHtml } from '../../reports/html.js';
import { renderDiffHtml } from '../../reports/diff.js';
import { sleep } from '../../trace/async.js';

/*
 * The reports in a real browser, opened from disk: nothing but the file
 * itself is requested, the CSP lets the inline style and script run (and
 * nothing else), a hover shows the tooltip, and markup from the trace stays
 * text. Screenshots go to test-results/reports/ for a human to look at.
 */

const CHROMIUM = '/usr/bin/chromium';
const OUT = resolve('test-results/reports');
const hasChromium = existsSync(CHROMIUM);

interface Watch {
  page: Page;
  consoleErrors: string[];
  requests: string[];
  dialogs: string[];
  pageErrors: string[];
}

function psRows(): Array<{ pid: number; ppid: number; args: string }> {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' });
  return out.split('\n').map((l) => /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l)).filter((m): m is RegExpExecArray => !!m)
    .map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), args: m[3]! }));
}

/**
 * The profile folder of the browser this worker launched. Chromium's helpers
 * (zygotes, crashpad) get reparented to init while it shuts down, so "our"
 * processes are the ones naming this folder, not our descendants.
 */
function ourProfileDir(): string | null {
  const rows = psRows();
  const kids = new Map<number, number[]>();
  for (const r of rows) kids.set(r.ppid, [...(kids.get(r.ppid) ?? []), r.pid]);
  const byPid = new Map(rows.map((r) => [r.pid, r]));
  const stack = [...(kids.get(process.pid) ?? [])];
  while (stack.length) {
    const r = byPid.get(stack.pop()!);
    if (!r) continue;
    const m = /--user-data-dir=(\S+)/.exec(r.args);
    if (m && /chrom/i.test(r.args)) return m[1]!;
    stack.push(...(kids.get(r.pid) ?? []));
  }
  return null;
}

/** Crash handlers detach to init at once and name no profile: told apart by appearing with our launch. */
function crashpadPids(): number[] {
  return psRows().filter((r) => r.args.includes('chrome_crashpad_handler')).map((r) => r.pid);
}

function alive(pids: number[]): number[] {
  const live = new Set(psRows().map((r) => r.pid));
  return pids.filter((p) => live.has(p));
}

function processesNaming(dir: string): string[] {
  return psRows().filter((r) => r.args.includes(dir) && !r.args.startsWith('ps ')).map((r) => `${r.pid} ${r.args.slice(0, 120)}`);
}

describe.skipIf(!hasChromium)('reports in chromium', () => {
  let browser: Browser;
  let profileDir: string | null = null;
  let crashpad: number[] = [];
  let unpatched: Bundle;
  let patched: Bundle;
  let evil: Bundle;
  const files: Record<string, string> = {};

  beforeAll(async () => {
    mkdirSync(OUT, { recursive: true });
    unpatched = buildLp1994002Bundle({ variant: 'unpatched' });
    patched = buildLp1994002Bundle({ variant: 'patched' });
    evil = buildLp1994002Bundle({ evil: true, sessionId: 3 });
    const write = (name: string, html: string): void => {
      files[name] = resolve(OUT, name);
      writeFileSync(files[name]!, html);
    };
    write('report.html', renderHtml(unpatched.session, unpatched.threads, unpatched.events, unpatched.analysis));
    write('report-patched.html', renderHtml(patched.session, patched.threads, patched.events, patched.analysis));
    write('diff.html', renderDiffHtml(unpatched, patched));
    write('evil.html', renderHtml(evil.session, evil.threads, evil.events, evil.analysis));
    write('evil-diff.html', renderDiffHtml(evil, patched));
    const before = new Set(crashpadPids());
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    profileDir = ourProfileDir();
    crashpad = crashpadPids().filter((p) => !before.has(p));
  });

  afterAll(async () => {
    await browser?.close();
    expect(profileDir).not.toBeNull();
    // The browser's helpers exit shortly after it; give them a moment.
    const left = (): string[] => [...processesNaming(profileDir!), ...alive(crashpad).map((p) => `${p} chrome_crashpad_handler`)];
    for (let i = 0; i < 100 && left().length > 0; i++) await sleep(100);
    expect(left()).toEqual([]);
  });

  async function open(name: string): Promise<Watch> {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const w: Watch = { page, consoleErrors: [], requests: [], dialogs: [], pageErrors: [] };
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') w.consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => w.pageErrors.push(e.message));
    page.on('request', (r) => w.requests.push(r.url()));
    page.on('dialog', (d) => {
      w.dialogs.push(d.message());
      void d.dismiss();
    });
    await page.goto(pathToFileURL(files[name]!).href, { waitUntil: 'load' });
    return w;
  }

  async function expectClean(w: Watch, name: string): Promise<void> {
    expect(w.consoleErrors).toEqual([]);
    expect(w.pageErrors).toEqual([]);
    expect(w.dialogs).toEqual([]);
    expect(w.requests).toEqual([pathToFileURL(files[name]!).href]);
    // The CSP hashes match: the script ran (it moves <title> text into data-tip)
    // and the stylesheet applied.
    expect(await w.page.locator('svg .mark[data-tip]').count()).toBeGreaterThan(0);
    const border = await w.page.locator('p.verdict').first().evaluate((el) => getComputedStyle(el).borderLeftWidth);
    expect(border).toBe('6px');
  }

  it('shows the race: one lane per thread, the window, the crossing arrow, a tooltip on hover', async () => {
    const w = await open('report.html');
    const { page } = w;
    await expectClean(w, 'report.html');
    expect(await page.locator('svg .lane').count()).toBe(unpatched.threads.length + 1);
    const laneLabels = await page.locator('svg .lane-label').allTextContents();
    expect(laneLabels).toEqual(['minimig (LWP 4242)', 'live_migration (LWP 4250)', 'QMP client']);
    const f = unpatched.analysis.findings[0]!;
    const arrow = page.locator('svg .crossing-arrow');
    expect(await arrow.count()).toBe(1);
    expect(await arrow.getAttribute('data-from-seq')).toBe(String(f.crossing[0]!.seq));
    const marker = (await arrow.getAttribute('marker-end'))!.replace(/^url\(#|\)$/g, '');
    expect(await page.locator(`svg marker#${marker}`).count()).toBe(1);

    // The arrow starts at the transition and ends inside the window band.
    const geo = await page.evaluate((seq) => {
      const box = (sel: string) => document.querySelector(sel)!.getBoundingClientRect();
      const path = document.querySelector('svg .crossing-arrow') as SVGPathElement;
      const svg = path.ownerSVGElement!;
      const m = svg.getScreenCTM()!;
      const len = path.getTotalLength();
      const p0 = path.getPointAtLength(0).matrixTransform(m);
      const p1 = path.getPointAtLength(len).matrixTransform(m);
      return { start: { x: p0.x, y: p0.y }, end: { x: p1.x, y: p1.y }, cross: box(`svg .mark[data-seq="${seq}"] .mark-shape`), band: box('svg .band rect') };
    }, f.crossing[0]!.seq);
    expect(Math.abs(geo.start.x - (geo.cross.x + geo.cross.width / 2))).toBeLessThan(3);
    expect(geo.end.x).toBeGreaterThan(geo.band.left);
    expect(geo.end.x).toBeLessThan(geo.band.right);
    expect(Math.min(Math.abs(geo.end.y - geo.band.top), Math.abs(geo.end.y - geo.band.bottom))).toBeLessThan(3);

    await page.locator('#timeline').screenshot({ path: resolve(OUT, 'report-timeline.png') });
    const tip = page.locator('#tip');
    expect(await tip.isVisible()).toBe(false);
    await page.locator(`svg .mark[data-seq="${f.crossing[0]!.seq}"] .mark-shape`).first().hover();
    await expect.poll(() => tip.isVisible()).toBe(true);
    const tipText = await tip.textContent();
    expect(tipText).toContain(`#${f.crossing[0]!.seq} transition`);
    expect(tipText).toContain('setup (1) -> active (4)');
    expect(tipText).toContain('live_migration (LWP 4250)');
    expect(await page.locator(`#ev-${f.crossing[0]!.seq}`).getAttribute('class')).toContain('hl');
    await page.screenshot({ path: resolve(OUT, 'report-hover.png') });
    await page.screenshot({ path: resolve(OUT, 'report.png'), fullPage: true });
    await page.close();
  });

  it('shows the patched twin as benign', async () => {
    const w = await open('report-patched.html');
    await expectClean(w, 'report-patched.html');
    expect(await w.page.locator('p.verdict.not-reproduced').count()).toBe(1);
    expect(await w.page.locator('svg .band.band-benign').count()).toBe(1);
    await w.page.locator('#timeline').screenshot({ path: resolve(OUT, 'report-patched-timeline.png') });
    await w.page.close();
  });

  it('shows the diff side by side', async () => {
    const w = await open('diff.html');
    const { page } = w;
    await expectClean(w, 'diff.html');
    expect(await page.locator('svg.migrace-timeline').count()).toBe(2);
    for (const side of ['A', 'B']) {
      const box = page.locator(`.side[data-side="${side}"]`);
      expect(await box.locator('svg .lane').count()).toBe(3);
    }
    expect(await page.locator('.side[data-side="A"] svg .crossing-arrow').count()).toBe(1);
    expect(await page.locator('.side[data-side="B"] svg .crossing-arrow').count()).toBe(1);
    expect(await page.locator('#diff-findings table.pairs tr.differs td.pair').textContent()).toMatch(/^setup -> active inside q\d+: manifested \(active, no ram\) -> benign \(setup\)$/);
    // The two timelines sit next to each other.
    const a = await page.locator('.side[data-side="A"] svg.migrace-timeline').boundingBox();
    const b = await page.locator('.side[data-side="B"] svg.migrace-timeline').boundingBox();
    expect(Math.abs(a!.y - b!.y)).toBeLessThan(2);
    expect(b!.x).toBeGreaterThan(a!.x + 300);
    await page.locator('.side[data-side="B"] svg .mark.crossing .mark-shape').first().hover();
    await expect.poll(() => page.locator('#tip').isVisible()).toBe(true);
    await page.screenshot({ path: resolve(OUT, 'diff.png'), fullPage: true });
    await page.close();
  });

  it('renders markup from the trace as text and runs none of it', async () => {
    for (const name of ['evil.html', 'evil-diff.html']) {
      const w = await open(name);
      const { page } = w;
      await expectClean(w, name);
      expect(await page.evaluate(() => document.querySelectorAll('img').length)).toBe(0);
      expect(await page.evaluate(() => document.scripts.length)).toBe(1);
      const labels = await page.locator('svg .lane-label').allTextContents();
      expect(labels.some((t) => t.startsWith('<img src=x onerror=alert(1)>'))).toBe(true);
      expect(labels.some((t) => t.startsWith('live_migration<script>'))).toBe(true);
      const body = await page.locator('body').innerText();
      expect(body).toContain(EVIL);
      if (name === 'evil.html') {
        expect(body).toContain(`note: ${EVIL} <script>`);
        expect(await page.locator('svg .mark.mark-note .mark-label').textContent()).toContain(`note: ${EVIL} <s`);
        expect(await page.title()).toContain('</title><script>alert(3)</script>');
        expect(await page.locator('#replies').innerText()).toContain('<script>alert(2)</script></pre>');
      }
      // Hovering marks whose tooltips hold the markup shows it as text too.
      await page.locator('svg .mark.mark-note .mark-shape, svg .lane').first().hover();
      await page.waitForTimeout(200);
      expect(w.dialogs).toEqual([]);
      await page.screenshot({ path: resolve(OUT, name.replace('.html', '.png')), fullPage: true });
      await page.close();
    }
  });
});
