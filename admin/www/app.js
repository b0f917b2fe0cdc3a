// Passerelle admin UI: session, hash router (#/habitants, #/messages/42…), shared status and
// error areas, polling that only runs while its screen is shown and the tab is visible.
import * as api from './api.js';
import {h, clear} from './dom.js';
import * as fmt from './fmt.js';
import * as login from './scr-login.js';
import * as home from './scr-home.js';
import * as residents from './scr-residents.js';
import * as resident from './scr-resident.js';
import * as reminder from './scr-reminder.js';
import * as messages from './scr-messages.js';
import * as inbox from './scr-inbox.js';
import * as activities from './scr-activities.js';
import * as loans from './scr-loans.js';
import * as jobs from './scr-jobs.js';
import * as alerts from './scr-alerts.js';
import * as settings from './scr-settings.js';
import * as importer from './scr-import.js';
import * as account from './scr-account.js';

const $ = (id) => document.getElementById(id);

let session = null;

// Who may change what (admin/API.md "Roles"); reading is open to every role.
const WRITERS = {
  resident: ['admin', 'referent'],
  reminder: ['admin', 'referent'],
  message: ['admin', 'referent'],
  inbox: ['admin', 'referent'],
  activity: ['admin', 'staff'],
  loan: ['admin', 'staff'],
  export: ['admin', 'referent'],
  erase: ['admin'],
  job: ['admin', 'staff'],
  alert: ['admin', 'staff'],
  settings: ['admin'],
  import: ['admin', 'referent'],
};

export function can(what) {
  return Boolean(session && (WRITERS[what] || []).includes(session.role));
}

// [pattern, screen module, needs a session]
const ROUTES = [
  [/^\/connexion$/, login, false],
  [/^\/$/, home, true],
  [/^\/habitants$/, residents, true],
  [/^\/habitants\/ajouter$/, residents, true, {add: true}],
  [/^\/habitants\/importer$/, importer, true],
  [/^\/habitants\/(\d+)$/, resident, true],
  [/^\/rappels\/nouveau$/, reminder, true],
  [/^\/rappels\/(\d+)\/modifier$/, reminder, true, {edit: true}],
  [/^\/messages$/, messages, true],
  [/^\/messages\/(\d+)$/, messages, true, {detail: true}],
  [/^\/boite$/, inbox, true],
  [/^\/activites$/, activities, true],
  [/^\/activites\/seance\/(\d+)$/, activities, true, {session: true}],
  [/^\/activites\/affiche\/(\d+)$/, activities, true, {poster: true}],
  [/^\/prets$/, loans, true],
  [/^\/emplois$/, jobs, true],
  [/^\/alertes$/, alerts, true],
  [/^\/parametres$/, settings, true],
  [/^\/mon-compte$/, account, true],
];

/* ------------------------------------------------------------------ status and errors */

export function showError(e) {
  const msg = typeof e === 'string' ? e : (e && e.message) || 'Une erreur est survenue.';
  const box = $('errors');
  clear(box);
  box.appendChild(h('p', null, h('span', {class: 'icon', 'aria-hidden': 'true'}, '⚠ '), msg,
    e && e.link ? [' ', h('a', {href: e.link.href}, e.link.text)] : null));
  box.scrollIntoView({block: 'nearest'});
}

export function clearError() {
  clear($('errors'));
}

let statusTimer = null;
let announceTimer = null;
let announcedAt = 0;
export function announce(text) {
  announcedAt = Date.now();
  const box = $('status');
  clear(box);
  // a fresh node each time, so that the same text twice is read twice
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => box.appendChild(h('p', null, text)), 30);
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => clear(box), 15000);
}

// Runs an action from a button or form: errors go to the error area, the button is disabled
// meanwhile (and says so), the success message is announced.
export async function act(button, fn, success) {
  clearError();
  if (button) {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
  }
  try {
    const r = await fn();
    if (success) announce(typeof success === 'function' ? success(r) : success);
    return r;
  } catch (e) {
    if (e && e.status !== 401) showError(e);
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }
}

/* ------------------------------------------------------------------ session */

function setSession(s) {
  session = s;
  api.setCsrf(s ? s.csrf : null);
  if (s && s.centre) fmt.setZone(s.centre.timezone);
  $('nav').hidden = !s;
  $('who').hidden = !s;
  $('centre-name').textContent = s && s.centre ? `· ${s.centre.name}` : '';
  $('who-name').textContent = s ? `${s.name || s.login} (${fmt.role(s.role)})` : '';
  for (const li of document.querySelectorAll('#nav [data-role]')) {
    li.hidden = !s || !li.dataset.role.split(' ').includes(s.role);
  }
}

export function getSession() {
  return session;
}

export function loggedIn(s) {
  setSession(s);
  navigate('#/');
}

export function setInboxCount(n) {
  const b = $('inbox-count');
  b.hidden = !n;
  b.textContent = n ? String(n) : '';
  b.setAttribute('aria-label', n ? `${n} en attente` : '');
}

api.onUnauthenticated(() => {
  if (!session) return; // not logged in yet: the router already shows the login screen
  setSession(null);
  pendingNotice = 'Votre session a expiré ou a été fermée : reconnectez-vous.';
  navigate('#/connexion');
});

let pendingNotice = null;

async function logout() {
  try {
    await api.post('logout');
  } catch (e) {
    // the session is gone either way
  }
  setSession(null);
  pendingNotice = 'Vous êtes déconnecté.';
  navigate('#/connexion');
}

/* ------------------------------------------------------------------ router */

function currentPath() {
  const hash = location.hash || '#/';
  return hash.slice(1).split('?')[0] || '/';
}

function currentQuery() {
  const hash = location.hash || '';
  const i = hash.indexOf('?');
  return new URLSearchParams(i >= 0 ? hash.slice(i + 1) : '');
}

// Programmatic navigation after an action keeps the message it just announced ("Rappel
// enregistré." stays on the resident's page); any other screen change clears it.
let carryStatus = false;
export function navigate(hash) {
  carryStatus = Date.now() - announcedAt < 1500;
  generation += 1; // the screen being drawn is already stale: it must not announce or focus

  if (location.hash === hash) route();
  else location.hash = hash;
}

// Sets the hash's query without rendering again (filters kept in the address).
export function replaceQuery(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  history.replaceState(null, '', `#${currentPath()}${s ? `?${s}` : ''}`);
}

let leaving = [];
let generation = 0;

function leave() {
  for (const fn of leaving) {
    try {
      fn();
    } catch (e) {
      // a screen's clean-up must not stop the next screen
    }
  }
  leaving = [];
}

// aria-current on the menu entry of the screen's section (#/habitants/12 → Habitants), and on
// the banner's "Mon compte"
function markNav(path) {
  const section = (p) => p.split('/')[1] || '';
  for (const a of document.querySelectorAll('#nav a, #who a')) {
    if (section(a.getAttribute('href').slice(1)) === section(path)) {
      a.setAttribute('aria-current', 'page');
    } else {
      a.removeAttribute('aria-current');
    }
  }
}

async function route() {
  leave();
  generation += 1;
  const mine = generation;
  const path = currentPath();
  let match = null;
  let entry = null;
  for (const r of ROUTES) {
    match = r[0].exec(path);
    if (match) {
      entry = r;
      break;
    }
  }
  clearError();
  if (!carryStatus) {
    clearTimeout(announceTimer);
    clear($('status'));
  }
  carryStatus = false;
  if (!entry) {
    navigate(session ? '#/' : '#/connexion');
    return;
  }
  if (entry[2] && !session) {
    navigate('#/connexion');
    return;
  }
  if (!entry[2] && session) {
    navigate('#/');
    return;
  }
  markNav(path);
  const view = $('view');
  clear(view);
  view.setAttribute('aria-busy', 'true');
  const ctx = {
    view,
    params: match.slice(1),
    query: currentQuery(),
    opts: entry[3] || {},
    session,
    alive: () => mine === generation,
    onLeave: (fn) => leaving.push(fn),
    // The screen's <h1>: sets the page title and takes the focus (screen readers announce
    // the new screen; keyboard users start from it).
    heading: (text, extra) => {
      document.title = `${text} — Passerelle`;
      const el = h('h1', {tabindex: '-1', id: 'titre'}, text, extra || null);
      return el;
    },
    poll: (fn, ms) => poll(ctx, fn, ms),
  };
  try {
    await entry[1].render(ctx);
  } catch (e) {
    if (ctx.alive() && e && e.status !== 401) {
      showError(e);
      if (!view.firstChild) view.appendChild(h('h1', {tabindex: '-1', id: 'titre'}, 'Erreur'));
    }
  }
  if (!ctx.alive()) return;
  view.removeAttribute('aria-busy');
  if (pendingNotice) {
    announce(pendingNotice);
    pendingNotice = null;
  }
  const title = document.getElementById('titre');
  if (title && !ctx.opts.keepFocus) title.focus({preventScroll: false});
}

// Polls stop after IDLE_MS without a key press, click or touch: a tab left open must not keep
// its session alive for ever (the server ends sessions unused for [admin] idle_minutes).
const IDLE_MS = 20 * 60 * 1000;
let lastActivity = Date.now();
for (const ev of ['keydown', 'pointerdown', 'wheel', 'touchstart']) {
  window.addEventListener(ev, () => { lastActivity = Date.now(); }, {passive: true, capture: true});
}

// Calls fn every ms while the screen is shown and the page visible (at once when it becomes
// visible again). fn's errors are shown once, not every time.
function poll(ctx, fn, ms) {
  let timer = null;
  let stopped = false;
  let failing = false;
  const tick = async () => {
    timer = null;
    if (stopped || !ctx.alive()) return;
    if (document.visibilityState === 'visible' && Date.now() - lastActivity < IDLE_MS) {
      try {
        await fn();
        if (failing) clearError();
        failing = false;
      } catch (e) {
        if (!failing && e && e.status !== 401) showError(e);
        failing = true;
      }
    }
    if (!stopped && ctx.alive()) timer = setTimeout(tick, ms);
  };
  const onVisible = () => {
    if (document.visibilityState === 'visible' && timer) {
      clearTimeout(timer);
      tick();
    }
  };
  document.addEventListener('visibilitychange', onVisible);
  timer = setTimeout(tick, ms);
  ctx.onLeave(() => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisible);
  });
}

/* ------------------------------------------------------------------ wide tables */

// A table wider than the screen scrolls sideways in its .table-wrap: then the wrapper must be
// reachable with the keyboard (a focusable, named region), and only then.
function markScrollables() {
  for (const w of document.querySelectorAll('.table-wrap')) {
    if (w.scrollWidth > w.clientWidth + 1) {
      const cap = w.querySelector('caption');
      w.tabIndex = 0;
      w.setAttribute('role', 'region');
      w.setAttribute('aria-label', `${cap ? cap.textContent : 'Tableau'} (défilement horizontal)`);
    } else if (w.hasAttribute('role')) {
      w.removeAttribute('tabindex');
      w.removeAttribute('role');
      w.removeAttribute('aria-label');
    }
  }
}

// On a narrow screen (a 360 px phone, 200 % zoom) data tables are shown as one block per row,
// each cell preceded by its column's name (CSS, from data-label). display: block would drop
// the table semantics, so the roles are written out.
function labelTables() {
  for (const t of document.querySelectorAll('table.data:not([role])')) {
    t.setAttribute('role', 'table');
  }
  for (const t of document.querySelectorAll('table.data')) {
    const heads = [...t.querySelectorAll('thead th')].map((th) => th.textContent.trim());
    for (const g of t.querySelectorAll(':scope > thead, :scope > tbody')) g.setAttribute('role', 'rowgroup');
    for (const th of t.querySelectorAll(':scope > thead th:not([role])')) th.setAttribute('role', 'columnheader');
    for (const tr of t.querySelectorAll(':scope > tbody > tr:not([role])')) {
      tr.setAttribute('role', 'row');
      [...tr.children].forEach((cell, i) => {
        cell.setAttribute('role', cell.tagName === 'TH' ? 'rowheader' : 'cell');
        if (heads[i]) cell.dataset.label = heads[i];
      });
    }
    for (const tr of t.querySelectorAll(':scope > thead > tr:not([role])')) tr.setAttribute('role', 'row');
  }
}

/* ------------------------------------------------------------------ start */

async function start() {
  $('logout').addEventListener('click', logout);
  $('skip').addEventListener('click', (e) => {
    e.preventDefault();
    const t = document.getElementById('titre') || $('contenu');
    t.focus();
  });
  window.addEventListener('hashchange', route);
  let pending = null;
  const later = () => {
    if (!pending) {
      pending = requestAnimationFrame(() => {
        pending = null;
        labelTables();
        markScrollables();
      });
    }
  };
  new MutationObserver(later).observe($('view'), {childList: true, subtree: true});
  window.addEventListener('resize', later);
  try {
    const me = await api.get('me');
    setSession(me);
  } catch (e) {
    setSession(null);
    if (e.status !== 401) showError(e);
  }
  if (!session && currentPath() !== '/connexion') {
    navigate('#/connexion');
    return;
  }
  route();
}

start();
