// What admin.test.mjs and admin-more.test.mjs share: the environment run.sh gives them, a tiny
// TAP step runner, screenshots, axe-core, raw API requests and node-held sessions, inbound SMS
// through the simulator, and page helpers (h1, go, statusText, noError) on the current page.
import {chromium} from 'playwright-core';
import assert from 'node:assert/strict';
import {createRequire} from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
export const BASE = process.env.PASSERELLE_URL;
export const ADMIN = `${BASE}/admin/`;
export const ARTIFACTS = process.env.PASSERELLE_ARTIFACTS || path.resolve('browser-artifacts');
export const CHROMIUM = process.env.PASSERELLE_CHROMIUM || '/usr/bin/chromium';
export const TZ = 'Europe/Paris';

// Staff passwords, read from the files run.sh names in the environment: readPasswords fills it.
export const PASSWORDS = {};

// readPasswords({agnes: 'PW_ADMIN_FILE', ...}): each login's password from the file in that
// environment variable (a missing variable or file throws).
export function readPasswords(vars) {
  for (const [login, v] of Object.entries(vars)) PASSWORDS[login] = fs.readFileSync(process.env[v], 'utf8').trim();
  return PASSWORDS;
}

assert.ok(BASE, 'PASSERELLE_URL is not set: run this through run.sh');
fs.mkdirSync(ARTIFACTS, {recursive: true});

export function log(...a) {
  console.log(...a);
}

export async function waitUntil(fn, what, timeout = 15000, every = 100) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last instanceof Error ? ` (${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

/* ------------------------------------------------------------------ a tiny runner */

// createRunner({firstShot, failShot, page, browser}): step() queues a step ({critical: true}
// skips the rest when it fails), shot() numbers screenshots from firstShot + 1, main() runs
// the steps as TAP (on failure a screenshot `<failShot>-<n>` of page()), closes browser() and
// exits; main({epilogue, timed}) prints epilogue() before the last line, with the total time
// when timed.
export function createRunner({firstShot = 0, failShot = 'ECHEC', page = () => null, browser = () => null} = {}) {
  const steps = [];
  let shotNo = firstShot;

  const step = (name, fn, opts = {}) => steps.push({name, fn, ...opts});

  async function shot(p, name, opts = {}) {
    shotNo += 1;
    const file = path.join(ARTIFACTS, `${String(shotNo).padStart(2, '0')}-${name}.png`);
    await p.screenshot({path: file, fullPage: true, ...opts});
    log(`    screenshot: ${file}`);
    return file;
  }

  async function main({epilogue, timed = false} = {}) {
    const t0 = Date.now();
    let failed = 0;
    let skipRest = false;
    log(`TAP version 13\n1..${steps.length}`);
    for (const [i, s] of steps.entries()) {
      const n = i + 1;
      if (skipRest) {
        log(`not ok ${n} - ${s.name} # SKIP an earlier critical step failed`);
        failed += 1;
        continue;
      }
      const t = Date.now();
      try {
        await s.fn();
        log(`ok ${n} - ${s.name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
      } catch (e) {
        failed += 1;
        log(`not ok ${n} - ${s.name}`);
        log(`  ---\n  ${String(e && e.stack || e).split('\n').slice(0, 8).join('\n  ')}\n  ...`);
        const pg = page();
        if (pg) {
          try {
            await shot(pg, `${failShot}-${n}`);
            log(`    page: ${pg.url()}; error area: ${(await pg.locator('#errors').innerText()).trim()}`);
          } catch (e2) {
            // the browser may be gone
          }
        }
        if (s.critical) skipRest = true;
      }
    }
    const b = browser();
    if (b) await b.close();
    if (epilogue) epilogue();
    log(`${steps.length - failed} of ${steps.length} steps passed${timed ? ` in ${((Date.now() - t0) / 1000).toFixed(1)} s` : ''}`);
    process.exit(failed ? 1 : 0);
  }

  return {steps, step, shot, main};
}

/* ------------------------------------------------------------------ browser */

export function launchBrowser() {
  return chromium.launch({executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage']});
}

export async function newContext(browser, opts = {}) {
  const ctx = await browser.newContext({locale: 'fr-FR', timezoneId: TZ, acceptDownloads: true,
    viewport: {width: 1280, height: 900}, ...opts});
  // axe as an init script: not subject to the page's Content-Security-Policy
  await ctx.addInitScript({path: require.resolve('axe-core/axe.min.js')});
  return ctx;
}

export async function login(p, user, password = PASSWORDS[user]) {
  await p.getByLabel('Identifiant').fill(user);
  await p.getByLabel('Mot de passe').fill(password);
  await p.getByRole('button', {name: 'Se connecter'}).click();
  await p.getByRole('heading', {level: 1, name: 'Accueil', exact: true}).waitFor();
}

// Every axe check, in order, for a summary: {screen, violations, serious}.
export const axeReport = [];

// axe-core on the current screen: serious and critical violations fail, others are printed.
export async function axe(p, label) {
  await p.waitForFunction(() => !document.getElementById('view')?.hasAttribute('aria-busy'));
  const res = await p.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, {resultTypes: ['violations']});
    return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' '))}));
  });
  const bad = res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  axeReport.push({screen: label, violations: res.length, serious: bad.length});
  for (const v of res) {
    log(`    axe ${label}: ${v.impact} ${v.id} — ${v.help} (${v.nodes.join(', ')})`);
  }
  if (!res.length) log(`    axe ${label}: no violation`);
  assert.equal(bad.length, 0, `axe: ${bad.length} serious/critical violation(s) on ${label}: ${bad.map((v) => `${v.id} ${v.nodes.join(', ')}`).join('; ')}`);
}

// h1, go, statusText, noError on whatever page() returns when they are called.
export function pageHelpers(page) {
  const h1 = (name) => page().getByRole('heading', {level: 1, name, exact: true});

  async function go(hash, title) {
    // a hash change: the application routes without reloading the document
    await page().evaluate((hsh) => { location.hash = hsh; }, hash);
    if (title) await h1(title).waitFor();
    await page().waitForFunction(() => !document.getElementById('view')?.hasAttribute('aria-busy'));
  }

  async function statusText(re, what) {
    return waitUntil(async () => {
      const t = await page().locator('#status').innerText();
      return re.exec(t);
    }, what || `status message ${re}`);
  }

  async function noError() {
    const t = (await page().locator('#errors').innerText()).trim();
    assert.equal(t, '', `the error area shows: ${t}`);
  }

  return {h1, go, statusText, noError};
}

/* ------------------------------------------------------------------ HTTP from node */

export async function raw(method, p, {body, headers = {}} = {}) {
  const h = {...headers};
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(`${BASE}/admin/api/${p}`, {method, headers: h,
    body: body === undefined ? undefined : JSON.stringify(body), redirect: 'manual'});
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch (e) {
    json = null;
  }
  return {status: res.status, headers: res.headers, text, json};
}

// A staff session held by node: cookie and CSRF token from POST login.
export class Session {
  constructor(login) {
    this.login = login;
    this.cookie = null;
    this.csrf = null;
  }

  async open(password = PASSWORDS[this.login]) {
    const r = await raw('POST', 'login', {body: {login: this.login, password}});
    assert.equal(r.status, 200, `login ${this.login}: ${r.status} ${r.text}`);
    this.setCookie = r.headers.get('set-cookie');
    this.cookie = this.setCookie.split(';')[0];
    this.csrf = r.json.csrf;
    this.me = r.json;
    return this;
  }

  req(method, p, {body, csrf = true, token} = {}) {
    const headers = {Cookie: this.cookie};
    if (csrf && method !== 'GET') headers['X-CSRF-Token'] = token || this.csrf;
    return raw(method, p, {body, headers});
  }
}

// An SMS from a resident's phone through the simulator; the id of the inbound message.
export async function inbound(from, text) {
  const res = await fetch(`${BASE}/providers/sim/inbound`, {method: 'POST',
    headers: {'Content-Type': 'application/x-www-form-urlencoded'},
    body: new URLSearchParams({from, text}).toString()});
  const body = await res.text();
  assert.equal(res.status, 200, `inbound '${text}': ${res.status} ${body}`);
  return JSON.parse(body).id;
}

// Local time in the centre's zone, minutes from now.
export function paris(minutesFromNow = 0) {
  const d = new Date(Date.now() + minutesFromNow * 60000);
  const p = Object.fromEntries(new Intl.DateTimeFormat('en-CA', {timeZone: TZ, year: 'numeric',
    month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23'})
    .formatToParts(d).map((x) => [x.type, x.value]));
  return {date: `${p.year}-${p.month}-${p.day}`, time: `${p.hour}:${p.minute}`, month: `${p.year}-${p.month}`};
}
