// Browser and API tests of the admin UI, run by run.sh against a real gatewayd (simulated
// route) and PostgreSQL. Debian's chromium (headless, --no-sandbox) is driven by
// playwright-core; axe-core checks each main screen (serious/critical violations fail).
//
// What a member of staff does, and sees: log in; add a resident; schedule a recurring
// reminder and see its next five dates; send an SMS and watch it go from queued to delivered
// without reloading; answer an inbound SMS from the inbox; create an activity session, check
// in by SMS, watch the attendance appear, print the poster, download the monthly CSV; confirm
// a loan requested by SMS. And what the API refuses: no session (401), no CSRF token (403),
// a viewer changing something (403), another centre's objects (404), password guessing (429).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {ADMIN, ARTIFACTS, Session, axe, axeReport, createRunner, inbound, launchBrowser, log,
  login, newContext, pageHelpers, paris, raw, readPasswords, TZ, waitUntil} from './lib.mjs';

const WWW = process.env.PASSERELLE_WWW;
const PASSWORDS = readPasswords({agnes: 'PW_ADMIN_FILE', victor: 'PW_VIEWER_FILE',
  cible: 'PW_TARGET_FILE', bruno: 'PW_B_FILE'});
const PHONE = '06 11 22 33 44';
const E164 = '+33611223344';

/* ------------------------------------------------------------------ a tiny runner (lib.mjs) */

const state = {}; // what steps learn and later steps use
let page = null;
let browser;
let context;
const {step, shot, main} = createRunner({firstShot: 0, failShot: 'ECHEC', page: () => page, browser: () => browser});
const {h1, go, statusText, noError} = pageHelpers(() => page);

async function previewDates() {
  return page.locator('#prochaines-dates li').allInnerTexts();
}

/* ================================================================== API without a session */

const ENDPOINTS = [
  ['GET', 'me'], ['POST', 'logout'], ['POST', 'logout-all'], ['GET', 'dashboard'],
  ['GET', 'residents'], ['POST', 'residents'], ['GET', 'residents/1'], ['PATCH', 'residents/1'],
  ['POST', 'reminders/preview'], ['POST', 'reminders'], ['DELETE', 'reminders/1'],
  ['GET', 'messages'], ['GET', 'messages/1'], ['POST', 'messages'], ['GET', 'inbox'],
  ['POST', 'inbox/1/reply'], ['POST', 'inbox/1/done'], ['POST', 'inbox/1/assign'],
  ['GET', 'activities'], ['POST', 'activities'], ['POST', 'activities/1/sessions'],
  ['GET', 'sessions/1/attendance'], ['GET', 'activities/report.csv?month=2026-01'],
  ['GET', 'loans'], ['POST', 'loans/1/confirm'], ['POST', 'loans/1/refuse'],
  ['POST', 'loans/1/returned'], ['GET', 'audit'],
];

step('API: every endpoint answers 401 without a session (and with a forged cookie)', async () => {
  for (const [m, p] of ENDPOINTS) {
    const body = m === 'GET' || m === 'DELETE' ? undefined : {};
    const r = await raw(m, p, {body});
    assert.equal(r.status, 401, `${m} ${p} without a session: ${r.status} ${r.text}`);
    assert.equal(r.json?.error?.code, 'unauthenticated', `${m} ${p}: ${r.text}`);
    assert.ok(r.json.error.message, `${m} ${p}: a French message`);
    const f = await raw(m, p, {body, headers: {Cookie: `passerelle_session=${'ab'.repeat(32)}`,
      'X-CSRF-Token': 'x'}});
    assert.equal(f.status, 401, `${m} ${p} with a forged cookie: ${f.status} ${f.text}`);
  }
  log(`    ${ENDPOINTS.length} endpoints × 2: 401`);
});

step('static UI: served at /admin/ with its types and CSP, small, nothing outside www', async () => {
  const idx = await fetch(ADMIN);
  assert.equal(idx.status, 200);
  assert.match(idx.headers.get('content-type'), /^text\/html/);
  assert.match(idx.headers.get('content-security-policy') || '', /script-src 'self'/);
  const js = await fetch(`${ADMIN}app.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /javascript/);
  assert.equal((await fetch(`${ADMIN}nope.js`)).status, 404);
  assert.equal((await fetch(`${ADMIN}..%2F..%2FREADME.md`)).status, 404);
  if (WWW) {
    let total = 0;
    for (const f of fs.readdirSync(WWW, {recursive: true})) {
      const st = fs.statSync(path.join(WWW, f));
      if (st.isFile()) total += st.size;
    }
    log(`    admin/www: ${(total / 1024).toFixed(1)} KiB`);
    assert.ok(total < 200 * 1024, `admin/www weighs ${total} bytes (limit 200 KiB)`);
  }
});

/* ================================================================== the browser */

let loads = 0;
const pageErrors = [];

async function newPage(ctx) {
  const p = await ctx.newPage();
  p.on('pageerror', (e) => pageErrors.push(`${e.message}`));
  // answers the tests provoke on purpose (401 wrong password, 409 known number, 422 invalid
  // number) are logged by chromium as errors too: only the others count
  p.on('console', (m) => {
    const where = m.location() && m.location().url ? ` (${m.location().url})` : '';
    if (m.type() === 'error' && !/status of (401|409|422)/.test(m.text())) {
      pageErrors.push(`console: ${m.text()}${where}`);
    }
  });
  return p;
}

step('browser: chromium starts (headless, --no-sandbox, no download)', async () => {
  browser = await launchBrowser();
  context = await newContext(browser);
  page = await newPage(context);
  page.on('load', () => { loads += 1; });
  log(`    chromium ${browser.version()}`);
}, {critical: true});

step('Connexion: a wrong password is refused in French, then the login opens Accueil', async () => {
  await page.goto(ADMIN);
  await h1('Connexion').waitFor();
  await axe(page, 'Connexion');
  await shot(page, 'connexion');
  await page.getByLabel('Identifiant').fill('agnes');
  await page.getByLabel('Mot de passe').fill('pas-le-bon-mot-de-passe');
  await page.getByRole('button', {name: 'Se connecter'}).click();
  await page.locator('#errors').getByText('Identifiant ou mot de passe incorrect.').waitFor();
  assert.equal(await page.locator('#errors').getAttribute('role'), 'alert');
  await login(page, 'agnes');
  const cookies = await context.cookies();
  const c = cookies.find((x) => x.name === 'passerelle_session');
  assert.ok(c, 'a session cookie');
  assert.equal(c.httpOnly, true, 'HttpOnly');
  assert.equal(c.sameSite, 'Strict', 'SameSite=Strict');
  assert.equal(await page.evaluate(() => document.cookie), '', 'the cookie is not readable by scripts');
}, {critical: true});

step('Accueil: today, the inbox, failures, routes', async () => {
  await page.getByText('rappels prévus aujourd’hui').waitFor();
  await page.getByText('échecs d’envoi en 24 h').waitFor();
  const routes = page.getByRole('table', {name: 'État des voies d’envoi'});
  await routes.getByRole('rowheader', {name: 'sim', exact: true}).waitFor();
  await routes.getByText('Fonctionne').first().waitFor();
  assert.ok(await page.getByRole('navigation', {name: 'Menu principal'}).isVisible());
  assert.ok(await page.getByRole('main').isVisible());
  assert.ok(await page.getByRole('banner').isVisible());
  await axe(page, 'Accueil');
  await shot(page, 'accueil');
});

step('Habitants: an invalid number is refused with the API’s French message', async () => {
  await page.getByRole('navigation', {name: 'Menu principal'}).getByRole('link', {name: 'Habitants', exact: true}).click();
  await h1('Habitants').waitFor();
  await page.getByRole('link', {name: 'Ajouter un habitant'}).click();
  await h1('Ajouter un habitant').waitFor();
  await axe(page, 'Ajouter un habitant');
  await page.getByLabel('Téléphone portable').fill('01 23 45 67 89');
  await page.getByLabel('Prénom').fill('Fatima');
  await page.getByLabel('Formulaire papier signé').check();
  await page.getByRole('button', {name: 'Ajouter l’habitant'}).click();
  await page.locator('#errors').getByText(/n'est pas un numéro de portable valide|portable/).waitFor();
  await shot(page, 'habitant-erreur');
});

step('Habitants: add a resident (phone, first name, language, paper consent)', async () => {
  await page.getByLabel('Téléphone portable').fill(PHONE);
  await page.getByLabel('Langue des SMS').selectOption('fr');
  await page.getByRole('button', {name: 'Ajouter l’habitant'}).click();
  await h1('Fatima').waitFor();
  await statusText(/Fatima a été ajouté/);
  state.residentId = Number(/#\/habitants\/(\d+)/.exec(page.url())[1]);
  const details = page.locator('dl.details');
  await details.getByText('06 11 22 33 44').waitFor();
  await details.getByText('formulaire papier').waitFor();
  await page.locator('#etat-sms').getByText('Reçoit les SMS').waitFor();
  await axe(page, 'Fiche habitant');
  await shot(page, 'fiche-habitant');
  // the same number again: 409 with a link to the resident
  await go('#/habitants/ajouter', 'Ajouter un habitant');
  await page.getByLabel('Téléphone portable').fill('0611223344');
  await page.getByLabel('Accord oral (noté par vous)').check();
  await page.getByRole('button', {name: 'Ajouter l’habitant'}).click();
  await page.locator('#errors').getByRole('link', {name: 'Ouvrir la fiche de cet habitant'}).waitFor();
});

step('Habitants: search by first name and by phone digits', async () => {
  await go('#/habitants', 'Habitants');
  const q = page.getByLabel('Rechercher un habitant (prénom ou téléphone)');
  await q.fill('fati');
  await page.getByRole('table').getByRole('link', {name: 'Fatima'}).waitFor();
  await q.fill('22 33');
  await page.getByRole('table').getByRole('link', {name: 'Fatima'}).waitFor();
  await q.fill('zzzz');
  await page.getByText('Aucun habitant ne correspond à cette recherche.').waitFor();
  await q.fill('');
  await page.getByRole('table').getByRole('link', {name: 'Fatima'}).waitFor();
  await axe(page, 'Habitants');
  await shot(page, 'habitants');
});

step('Rappels: the plain-French picker builds the RRULE and shows the next five dates', async () => {
  await go(`#/habitants/${state.residentId}`, 'Fatima');
  await page.getByRole('link', {name: 'Créer un rappel'}).click();
  await h1('Créer un rappel').waitFor();
  await waitUntil(async () => (await page.getByLabel('Habitant choisi').inputValue()) === String(state.residentId),
    'the resident to be chosen');
  await page.getByLabel('Texte du SMS').fill('Bonjour {prenom}, pensez à actualiser votre dossier CAF.');
  await page.getByLabel('Régulièrement (récurrent)').check();
  const previews = [];
  page.on('response', async (r) => {
    if (r.url().endsWith('/admin/api/reminders/preview') && r.status() === 200) {
      try {
        previews.push({body: JSON.parse(r.request().postData()), answer: await r.json()});
      } catch (e) {
        // a superseded answer
      }
    }
  });
  const lastPreview = async (rrule) => waitUntil(() => {
    const p = [...previews].reverse().find((x) => x.body.rrule === rrule);
    return p && p.answer.next.length === 5 ? p : null;
  }, `a preview of ${rrule}`);

  // tous les mois le 28 à 10:00
  await page.getByLabel('Fréquence').selectOption('monthly');
  await page.getByLabel('Le jour du mois').fill('28');
  await page.getByLabel('À quelle heure').fill('10:00');
  await page.getByText('Résumé : tous les mois le 28 à 10:00').waitFor();
  const monthly = await lastPreview('FREQ=MONTHLY;BYMONTHDAY=28');
  for (const l of monthly.answer.next_local) assert.match(l, /^\d{4}-\d{2}-28 10:00$/);
  await waitUntil(async () => {
    const d = await previewDates();
    return d.length === 5 && d.every((x) => /\b28 \S+ \d{4} à 10:00$/.test(x));
  }, 'five dates on the 28th at 10:00 on the screen');
  log(`    monthly: ${(await previewDates()).join(' | ')}`);
  await page.locator('#apercu-sms').getByText('Bonjour Fatima, pensez à actualiser votre dossier CAF.').waitFor();
  const size = await page.locator('#apercu-taille').innerText();
  assert.match(size, /1 SMS/);
  assert.match(size, /GSM-7/);

  // chaque semaine le mardi et le jeudi
  await page.getByLabel('Fréquence').selectOption('weekly');
  await page.getByLabel('jeudi', {exact: true}).check();
  await page.getByText('Résumé : chaque semaine le mardi et jeudi à 10:00').waitFor();
  await lastPreview('FREQ=WEEKLY;BYDAY=TU,TH');
  await waitUntil(async () => {
    const d = await previewDates();
    return d.length === 5 && d.every((x) => /^(mardi|jeudi) /.test(x));
  }, 'five Tuesdays and Thursdays');

  // le dernier jour ouvré du mois
  await page.getByLabel('Fréquence').selectOption('lastworkday');
  const last = await lastPreview('FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1');
  for (const l of last.answer.next_local) {
    const [y, m, d] = l.slice(0, 10).split('-').map(Number);
    const dow = new Date(Date.UTC(y, m - 1, d)).getUTCDay();
    assert.ok(dow >= 1 && dow <= 5, `${l} is a weekday`);
    for (let x = d + 1; x <= new Date(Date.UTC(y, m, 0)).getUTCDate(); x++) {
      const w = new Date(Date.UTC(y, m - 1, x)).getUTCDay();
      assert.ok(w === 0 || w === 6, `${l}: no weekday after it in its month (${x})`);
    }
  }
  await page.getByText('Résumé : le dernier jour ouvré du mois à 10:00').waitFor();

  // tous les jours
  await page.getByLabel('Fréquence').selectOption('daily');
  const daily = await lastPreview('FREQ=DAILY');
  const days = daily.answer.next_local.map((l) => Date.parse(`${l.slice(0, 10)}T00:00:00Z`));
  for (let i = 1; i < 5; i++) assert.equal(days[i] - days[i - 1], 86400000, 'consecutive days');

  // back to the 28th, urgent off, confirmation on; save
  await page.getByLabel('Fréquence').selectOption('monthly');
  await page.getByLabel('Demander une confirmation (OK)').check();
  await lastPreview('FREQ=MONTHLY;BYMONTHDAY=28');
  await axe(page, 'Rappels');
  await shot(page, 'rappel');
  await page.getByRole('button', {name: 'Enregistrer le rappel'}).click();
  await h1('Fatima').waitFor();
  await statusText(/Rappel enregistré/);
  const rem = page.getByRole('table', {name: 'Rappels de Fatima'});
  await rem.getByText(/tous les mois le 28 à 10:00/).waitFor();
  await rem.getByText('confirmation OK demandée', {exact: false}).waitFor();
  await noError();
});

step('Rappels: an appointment reminder, then "Annuler" on it', async () => {
  await page.getByRole('link', {name: 'Créer un rappel'}).click();
  await h1('Créer un rappel').waitFor();
  await waitUntil(async () => (await page.getByLabel('Habitant choisi').inputValue()) === String(state.residentId),
    'the resident to be chosen');
  await page.getByLabel('Texte du SMS').fill('RDV {lieu} le {date} à {heure}.');
  await page.getByLabel('Avant un rendez-vous').check();
  await page.getByLabel('Lieu').fill('CAF');
  await waitUntil(async () => (await previewDates()).length === 2, 'two reminders (la veille, 2 heures avant)');
  await page.locator('#apercu-sms').getByText(/^RDV CAF le \d{2}\/\d{2} à \d{1,2}h30\.$/).waitFor();
  await page.getByRole('button', {name: 'Enregistrer le rappel'}).click();
  await h1('Fatima').waitFor();
  const rem = page.getByRole('table', {name: 'Rappels de Fatima'});
  const row = rem.getByRole('row').filter({hasText: 'avant le rendez-vous'});
  page.once('dialog', (d) => d.accept());
  await row.getByRole('button', {name: /^Annuler le rappel/}).click();
  await statusText(/Rappel annulé/);
  await rem.getByRole('row').filter({hasText: 'avant le rendez-vous'}).getByText('Annulé').waitFor();
});

step('Messages: send an SMS and watch it go from queued to delivered without reloading', async () => {
  await page.getByRole('navigation', {name: 'Menu principal'}).getByRole('link', {name: 'Messages', exact: true}).click();
  await h1('Messages').waitFor();
  // record every state each row shows, from the moment it appears
  await page.evaluate(() => {
    window.__marker = 'same-document';
    window.__seen = {};
    const tbody = document.querySelector('#messages tbody');
    const note = (tr) => {
      const id = tr.dataset.id;
      const s = tr.dataset.status;
      const list = (window.__seen[id] ||= []);
      if (list[list.length - 1] !== s) list.push(s);
    };
    new MutationObserver((muts) => {
      for (const m of muts) {
        if (m.type === 'childList') m.addedNodes.forEach((n) => n.dataset && n.dataset.id && note(n));
        if (m.type === 'attributes') note(m.target);
      }
    }).observe(tbody, {childList: true, subtree: true, attributes: true, attributeFilter: ['data-status']});
  });
  const loadsBefore = loads;
  await page.getByLabel('Rechercher (prénom ou téléphone)').fill('Fatima');
  await waitUntil(async () => (await page.getByLabel('Habitant choisi').inputValue()) === String(state.residentId),
    'Fatima chosen in the picker');
  await page.getByLabel('Texte du SMS').fill('Bonjour Fatima, votre colis est arrivé à l’accueil.');
  await page.getByRole('button', {name: 'Envoyer le SMS'}).click();
  const m = await statusText(/SMS n° (\d+) mis en file d’attente : 1 SMS/);
  const id = m[1];
  state.messageId = Number(id);
  const row = page.locator(`#messages tr[data-id="${id}"]`);
  await row.waitFor();
  await row.locator('[data-status="delivered"]').waitFor({timeout: 30000});
  await row.getByText('Distribué').waitFor();
  const seen = await page.evaluate((i) => window.__seen[i], id);
  log(`    message ${id} states seen on the page: ${seen.join(' → ')}`);
  assert.ok(seen.length >= 2, `the row changed state on the page (${seen.join(', ')})`);
  assert.ok(['queued', 'sending', 'sent'].includes(seen[0]), `first seen as not yet delivered: ${seen[0]}`);
  assert.equal(seen[seen.length - 1], 'delivered');
  assert.equal(await page.evaluate(() => window.__marker), 'same-document', 'the document was not reloaded');
  assert.equal(loads, loadsBefore, 'no page load');
  await axe(page, 'Messages');
  await shot(page, 'messages');
});

step('Messages: filters and a message’s state history', async () => {
  await page.getByLabel('État').selectOption('delivered');
  await waitUntil(async () => {
    const st = await page.locator('#messages tbody tr').evaluateAll((rs) => rs.map((r) => r.dataset.status));
    return st.length > 0 && st.every((s) => s === 'delivered') && st.length;
  }, 'only delivered messages');
  await page.getByLabel('Sens').selectOption('in');
  await page.getByLabel('État').selectOption('');
  await waitUntil(async () => {
    const st = await page.locator('#messages tbody tr').evaluateAll((rs) => rs.map((r) => r.dataset.status));
    return st.every((s) => s === 'received');
  }, 'only received messages');
  await page.getByLabel('Sens').selectOption('');
  await page.getByRole('link', {name: `Historique du message n° ${state.messageId}`}).click();
  await h1(`Message n° ${state.messageId}`).waitFor();
  const hist = page.getByRole('table', {name: `Historique des états du message n° ${state.messageId}`});
  await hist.getByText('En file d’attente').waitFor();
  await hist.getByText('Distribué').waitFor();
  await axe(page, 'Message (historique)');
  await shot(page, 'message-historique');
});

step('Boîte de réception: an inbound "bonjour" appears; answer it; mark another as handled', async () => {
  await go('#/boite', 'Boîte de réception');
  await inbound(E164, 'bonjour');
  // it appears by itself (the inbox polls)
  const item = page.locator('article.inbox-item').filter({hasText: 'bonjour'});
  await item.waitFor({timeout: 20000});
  await item.getByRole('link', {name: /Fatima/}).waitFor();
  await inbound(E164, 'A quelle heure ouvre le centre samedi');
  const other = page.locator('article.inbox-item').filter({hasText: 'ouvre le centre'});
  await other.waitFor({timeout: 20000});
  await axe(page, 'Boîte de réception');
  await shot(page, 'boite');
  await item.getByRole('button', {name: 'Répondre'}).click();
  await item.getByLabel('Votre réponse à Fatima').fill('Bonjour Fatima, que pouvons-nous faire pour vous ?');
  await item.getByRole('button', {name: 'Envoyer la réponse'}).click();
  const m = await statusText(/Réponse envoyée \(SMS n° (\d+)\)/);
  state.replyId = Number(m[1]);
  await item.waitFor({state: 'detached'});
  await other.getByRole('button', {name: 'Marquer comme traité'}).click();
  await statusText(/Message marqué comme traité/);
  await other.waitFor({state: 'detached'});
  await page.getByRole('link', {name: 'Traités'}).click();
  await page.locator('article.inbox-item').filter({hasText: 'bonjour'}).getByText(/Traité le .* par agnes/).waitFor();
});

step('Activités: create an activity and a session (its code), check in by SMS, see it live', async () => {
  await page.getByRole('navigation', {name: 'Menu principal'}).getByRole('link', {name: 'Activités', exact: true}).click();
  await h1('Activités').waitFor();
  await page.getByLabel('Nom de l’activité').fill('Atelier couture');
  await page.getByRole('button', {name: 'Créer l’activité'}).click();
  await statusText(/Activité « Atelier couture » créée/);
  const sec = page.locator('section.activity').filter({has: page.getByRole('heading', {name: 'Atelier couture'})});
  const start = paris(-5);
  state.sessionStart = start;
  await sec.getByLabel('Date').fill(start.date);
  await sec.getByLabel('Heure de début').fill(start.time);
  await sec.getByLabel('Durée').selectOption('90');
  await sec.getByRole('button', {name: 'Créer la séance'}).click();
  const m = await statusText(/code de pointage est (\d{4})/);
  state.code = m[1];
  await sec.locator(`.code[data-code="${state.code}"]`).waitFor();
  await axe(page, 'Activités');
  await shot(page, 'activites');
  await sec.getByRole('link', {name: /^Présences de la séance/}).first().click();
  await h1('Présences : Atelier couture').waitFor();
  await page.getByText('Personne n’a encore pointé.').waitFor();
  const loadsBefore = loads;
  await inbound(E164, `CHECK ${state.code}`);
  await page.getByText('1 personne présente').waitFor({timeout: 15000});
  await page.getByRole('table', {name: 'Pointages de la séance'}).getByRole('rowheader', {name: 'Fatima'}).waitFor();
  assert.equal(loads, loadsBefore, 'attendance appeared without a reload');
  state.sessionId = Number(/#\/activites\/seance\/(\d+)/.exec(page.url())[1]);
  await axe(page, 'Présences');
  await shot(page, 'presences');
});

step('Activités: the printable A4 poster (big code, CHECK <code>, USSD) prints on one page', async () => {
  await page.getByRole('link', {name: 'Affiche à imprimer'}).click();
  await h1('Affiche : Atelier couture').waitFor();
  assert.equal((await page.locator('.poster-code').innerText()).trim(), `CHECK ${state.code}`);
  await page.locator('.poster').getByText(/Composez/).waitFor();
  await page.getByLabel('Numéro qui reçoit les SMS').fill('07 12 34 56 78');
  await page.getByRole('button', {name: 'Mettre à jour l’affiche'}).click();
  await page.locator('.poster-number').getByText('07 12 34 56 78').waitFor();
  await axe(page, 'Affiche');
  await shot(page, 'affiche');
  await page.emulateMedia({media: 'print'});
  assert.equal(await page.locator('header.top').isVisible(), false, 'no header on paper');
  assert.equal(await page.locator('nav#nav').isVisible(), false, 'no menu on paper');
  await shot(page, 'affiche-impression');
  const pdf = await page.pdf({format: 'A4', printBackground: true});
  const pdfFile = path.join(ARTIFACTS, 'affiche.pdf');
  fs.writeFileSync(pdfFile, pdf);
  const pages = (pdf.toString('latin1').match(/\/Type\s*\/Page[^s]/g) || []).length;
  log(`    poster PDF: ${pdfFile} (${pages} page)`);
  assert.equal(pages, 1, 'the poster fits on one A4 page');
  await page.emulateMedia({media: 'screen'});
});

step('Activités: the monthly CSV report lists the session with its check-in', async () => {
  await go('#/activites', 'Activités');
  await page.getByLabel('Mois').fill(state.sessionStart.month);
  const [dl] = await Promise.all([page.waitForEvent('download'),
    page.getByRole('link', {name: 'Télécharger le rapport du mois (CSV)'}).click()]);
  const file = path.join(ARTIFACTS, `presences-${state.sessionStart.month}.csv`);
  await dl.saveAs(file);
  const text = fs.readFileSync(file, 'utf8');
  log(`    CSV: ${file}`);
  const lines = text.trim().split('\n');
  assert.equal(lines[0], 'date;activite;seance;pointages;personnes;dont_anonymes');
  const rows = lines.slice(1).map((l) => l.split(';').map((c) => c.replace(/^"(.*)"$/, '$1')));
  const mine = rows.find((r) => r[1] === 'Atelier couture');
  assert.deepEqual(mine, [state.sessionStart.date, 'Atelier couture', state.sessionStart.time, '1', '1', '0'],
    `the session's line in:\n${text}`);
  for (const r of rows) {
    assert.equal(r.length, 6, `6 columns: ${r.join(';')}`);
    assert.ok(r[0].startsWith(state.sessionStart.month), `${r[0]} is in ${state.sessionStart.month}`);
  }
});

step('Prêts: a resident texts "PRET 12"; confirm it for 10 days; it is out, and the resident is told', async () => {
  await inbound(E164, 'PRET 12');
  await page.getByRole('navigation', {name: 'Menu principal'}).getByRole('link', {name: 'Prêts', exact: true}).click();
  await h1('Prêts de matériel').waitFor();
  const req = page.getByRole('table', {name: 'Demandes de prêt'}).getByRole('row').filter({hasText: 'Fatima'});
  await req.getByText('Perceuse (n° 12)').waitFor();
  await axe(page, 'Prêts');
  await shot(page, 'prets');
  await req.getByLabel('Durée (jours)').fill('10');
  await req.getByRole('button', {name: /^Confirmer le prêt de Perceuse/}).click();
  await statusText(/Prêt de Perceuse \(n° 12\) confirmé\..*SMS envoyé/);
  const out = page.getByRole('table', {name: 'Objets prêtés'}).getByRole('row').filter({hasText: 'Perceuse'});
  await out.getByText('Fatima').waitFor();
  const due = new Intl.DateTimeFormat('fr-FR', {timeZone: TZ, weekday: 'long', day: 'numeric', month: 'long',
    year: 'numeric'}).format(new Date(Date.now() + 10 * 86400000));
  await out.getByText(due).waitFor();
  await shot(page, 'prets-confirme');
});

step('Fiche habitant: history of messages, reminders, attendance and loans', async () => {
  await go(`#/habitants/${state.residentId}`, 'Fatima');
  const msgs = page.locator('#messages');
  await msgs.locator(`tr[data-id="${state.messageId}"][data-status="delivered"]`).waitFor();
  await msgs.getByText('bonjour', {exact: true}).waitFor();
  await page.getByRole('table', {name: 'Présences'}).getByText('Atelier couture').waitFor();
  await page.getByRole('table', {name: 'Prêts'}).getByText('Perceuse (12)').waitFor();
  await page.getByRole('table', {name: 'Rappels de Fatima'}).getByText(/tous les mois le 28/).waitFor();
  await shot(page, 'fiche-habitant-complete');
  // STOP by staff, then back
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', {name: 'Arrêter les SMS (STOP)'}).click();
  await statusText(/Plus aucun SMS/);
  await page.locator('#etat-sms').getByText(/STOP/).waitFor();
  await page.getByRole('button', {name: 'Réactiver les SMS (l’habitant est d’accord)'}).click();
  await statusText(/SMS sont réactivés/);
  await page.locator('#etat-sms').getByText('Reçoit les SMS').waitFor();
});

step('RGPD: export what is stored about a resident; an admin erases another one', async () => {
  const [dl] = await Promise.all([page.waitForEvent('download'),
    page.getByRole('link', {name: 'Télécharger ses données (JSON)'}).click()]);
  const file = path.join(ARTIFACTS, `export-habitant-${state.residentId}.json`);
  await dl.saveAs(file);
  const data = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.equal(data.phone, E164, 'the export is about this number');
  assert.ok(JSON.stringify(data).includes('votre colis est arrivé'), 'with its messages');
  log(`    export: ${file}`);
  const a = await new Session('agnes').open();
  const made = await a.req('POST', 'residents', {body: {phone: '06 77 88 99 00', first_name: 'Effacée', consent_source: 'verbal'}});
  assert.equal(made.status, 201, made.text);
  await go(`#/habitants/${made.json.id}`, 'Effacée');
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', {name: 'Effacer cet habitant'}).click();
  await h1('Habitants').waitFor();
  await statusText(/Effacée a été effacé/);
  const gone = await a.req('GET', `residents/${made.json.id}`);
  assert.equal(gone.status, 404, `the erased resident: ${gone.status}`);
});

step('a 360 px phone and 200 % zoom: no sideways scrolling, and axe is still happy', async () => {
  const ctx = await newContext(browser, {viewport: {width: 360, height: 740}, deviceScaleFactor: 2, isMobile: true, hasTouch: true});
  const p = await newPage(ctx);
  await p.goto(ADMIN);
  await p.getByRole('heading', {level: 1, name: 'Connexion'}).waitFor();
  await login(p, 'agnes');
  for (const [hash, title, name] of [['#/', 'Accueil', 'accueil'], ['#/habitants', 'Habitants', 'habitants'],
    [`#/habitants/${state.residentId}`, 'Fatima', 'fiche'], ['#/rappels/nouveau', 'Créer un rappel', 'rappel'],
    ['#/messages', 'Messages', 'messages'], ['#/activites', 'Activités', 'activites']]) {
    await p.evaluate((x) => { location.hash = x; }, hash);
    await p.getByRole('heading', {level: 1, name: title, exact: true}).waitFor();
    await p.waitForFunction(() => !document.getElementById('view')?.hasAttribute('aria-busy'));
    const w = await p.evaluate(() => document.documentElement.scrollWidth);
    if (w > 361) {
      // name the widest elements that stick out (not inside a scrolling table wrapper)
      const culprits = await p.evaluate(() => [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > 361 && !e.closest('.table-wrap'))
        .slice(-6).map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className ? `.${String(e.className).replace(/ /g, '.')}` : ''} (right ${Math.round(e.getBoundingClientRect().right)})`));
      assert.fail(`${title} at 360 px: the page is ${w} px wide; sticking out: ${culprits.join(', ')}`);
    }
    await axe(p, `${title} (360 px)`);
    await shot(p, `mobile-${name}`);
  }
  // 200 % zoom on a 1280 × 900 screen: a 640 × 450 CSS-pixel viewport
  await p.setViewportSize({width: 640, height: 450});
  for (const [hash, title] of [['#/', 'Accueil'], [`#/habitants/${state.residentId}`, 'Fatima'],
    ['#/rappels/nouveau', 'Créer un rappel'], ['#/boite', 'Boîte de réception'], ['#/prets', 'Prêts de matériel']]) {
    await p.evaluate((x) => { location.hash = x; }, hash);
    await p.getByRole('heading', {level: 1, name: title, exact: true}).waitFor();
    await p.waitForFunction(() => !document.getElementById('view')?.hasAttribute('aria-busy'));
    const w = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(w <= 641, `${title} at 200 % zoom: the page is ${w} px wide`);
  }
  await shot(p, 'zoom-200-prets');
  await ctx.close();
});

step('a viewer sees the screens without the buttons that change things', async () => {
  const ctx = await newContext(browser);
  const p = await newPage(ctx);
  await p.goto(ADMIN);
  await p.getByRole('heading', {level: 1, name: 'Connexion'}).waitFor();
  await login(p, 'victor');
  await p.evaluate(() => { location.hash = '#/habitants'; });
  await p.getByRole('heading', {level: 1, name: 'Habitants'}).waitFor();
  await p.getByRole('table').getByRole('link', {name: 'Fatima'}).waitFor();
  assert.equal(await p.getByRole('link', {name: 'Ajouter un habitant'}).count(), 0);
  assert.equal(await p.getByRole('link', {name: 'Rappels'}).count(), 0, 'no Rappels entry for a viewer');
  await ctx.close();
});

step('a lost session (401) anywhere leads back to Connexion; "Se déconnecter" ends it', async () => {
  await context.clearCookies();
  await go('#/'); // the page was elsewhere: a new screen, a new API call, a 401
  await h1('Connexion').waitFor();
  await statusText(/session a expiré/);
  await login(page, 'agnes');
  await page.getByRole('button', {name: 'Se déconnecter'}).click();
  await h1('Connexion').waitFor();
  await statusText(/Vous êtes déconnecté/);
  const s = await page.evaluate(async () => (await fetch('/admin/api/me', {credentials: 'same-origin'})).status);
  assert.equal(s, 401, 'GET me after logout');
});

step('no JavaScript error on any page', async () => {
  assert.deepEqual(pageErrors, []);
});

/* ================================================================== API: what it refuses */

step('API: CSRF — a state-changing request without the token (or with a wrong one) is 403', async () => {
  const a = await new Session('agnes').open();
  assert.match(a.setCookie, /HttpOnly/i);
  assert.match(a.setCookie, /SameSite=Strict/i);
  assert.match(a.setCookie, /Path=\//);
  const body = {phone: '06 22 33 44 55', first_name: 'Omar', consent_source: 'verbal'};
  const checks = [
    ['POST', 'residents', body], ['PATCH', `residents/${state.residentId}`, {first_name: 'X'}],
    ['POST', 'messages', {resident_id: state.residentId, text: 'x'}], ['DELETE', 'reminders/1', undefined],
    ['POST', 'activities', {name: 'Pirate'}], ['POST', 'logout', {}],
  ];
  for (const [m, p, b] of checks) {
    const none = await a.req(m, p, {body: b, csrf: false});
    assert.equal(none.status, 403, `${m} ${p} without X-CSRF-Token: ${none.status} ${none.text}`);
    assert.equal(none.json?.error?.code, 'csrf');
    const wrong = await a.req(m, p, {body: b, token: 'f'.repeat(32)});
    assert.equal(wrong.status, 403, `${m} ${p} with a wrong token: ${wrong.status} ${wrong.text}`);
  }
  const me = await a.req('GET', 'me');
  assert.equal(me.status, 200, 'the session is still open (logout without the token did nothing)');
  const ok = await a.req('POST', 'residents', {body});
  assert.equal(ok.status, 201, `with the token: ${ok.status} ${ok.text}`);
  const r = await a.req('GET', `residents/${state.residentId}`);
  assert.equal(r.json.resident.first_name, 'Fatima', 'nothing changed without the token');
  state.agnes = a;
});

step('API: a viewer may read but not change (403)', async () => {
  const v = await new Session('victor').open();
  for (const [m, p] of [['GET', 'dashboard'], ['GET', 'residents'], ['GET', `residents/${state.residentId}`],
    ['GET', 'messages'], ['GET', 'activities'], ['GET', 'loans']]) {
    const r = await v.req(m, p);
    assert.equal(r.status, 200, `viewer ${m} ${p}: ${r.status} ${r.text}`);
  }
  for (const [m, p, b] of [
    ['POST', 'residents', {phone: '06 33 44 55 66', first_name: 'Léa', consent_source: 'paper'}],
    ['PATCH', `residents/${state.residentId}`, {opted_out: true}],
    ['POST', 'messages', {resident_id: state.residentId, text: 'Bonjour'}],
    ['POST', 'reminders', {resident_id: state.residentId, text: 'x', schedule: 'once', at: '2030-01-01 10:00'}],
    ['POST', 'activities', {name: 'Interdit'}], ['POST', `loans/1/confirm`, {days: 3}],
  ]) {
    const r = await v.req(m, p, {body: b});
    assert.equal(r.status, 403, `viewer ${m} ${p}: ${r.status} ${r.text}`);
    assert.equal(r.json?.error?.code, 'forbidden');
  }
  const audit = await v.req('GET', 'audit');
  assert.equal(audit.status, 403, 'the audit log is for admins');
});

step('API: another centre’s objects are 404, exactly like missing ones', async () => {
  const a = state.agnes;
  const b = await new Session('bruno').open();
  assert.equal(b.me.centre.name, 'Centre social des Tilleuls');
  const made = await b.req('POST', 'residents', {body: {phone: '06 55 44 33 22', first_name: 'Zoé', consent_source: 'verbal'}});
  assert.equal(made.status, 201, `centre B adds a resident: ${made.status} ${made.text}`);
  const idB = made.json.id;
  const missing = await a.req('GET', 'residents/999999999');
  assert.equal(missing.status, 404);
  const checks = [
    [a, 'GET', `residents/${idB}`], [a, 'PATCH', `residents/${idB}`, {opted_out: true}],
    [a, 'POST', 'messages', {resident_id: idB, text: 'Bonjour'}],
    [a, 'POST', 'reminders/preview', {resident_id: idB, text: 'x', schedule: 'once', at: '2030-01-01 10:00'}],
    [a, 'POST', 'reminders', {resident_id: idB, text: 'x', schedule: 'once', at: '2030-01-01 10:00'}],
    [b, 'GET', `residents/${state.residentId}`], [b, 'GET', `messages/${state.messageId}`],
    [b, 'GET', `sessions/${state.sessionId}/attendance`],
    [b, 'POST', `activities/${1}/sessions`, {start: '2030-01-01 10:00', minutes: 60}],
  ];
  const loans = await a.req('GET', 'loans');
  const loan = loans.json.out.find((l) => l.item === 'Perceuse');
  assert.ok(loan, 'the confirmed loan is out');
  checks.push([b, 'POST', `loans/${loan.id}/returned`, {}]);
  const inbox = await a.req('GET', 'inbox', {});
  const done = await a.req('GET', 'inbox?state=done');
  const item = done.json.items.find((i) => i.text === 'bonjour');
  assert.ok(item, 'the answered item is in the done list');
  assert.equal(item.handled_by, 'agnes');
  checks.push([b, 'POST', `inbox/${item.id}/done`, {}], [b, 'POST', `inbox/${item.id}/reply`, {text: 'x'}]);
  for (const [who, m, p, body] of checks) {
    const r = await who.req(m, p, {body});
    assert.equal(r.status, 404, `${who.login} ${m} ${p}: ${r.status} ${r.text}`);
    assert.equal(r.json?.error?.code, 'not_found', `${who.login} ${m} ${p}: ${r.text}`);
  }
  const list = await a.req('GET', 'residents?q=Zo');
  assert.equal(list.json.residents.length, 0, 'centre B’s resident is not in centre A’s search');
  const bList = await b.req('GET', 'residents');
  assert.ok(bList.json.residents.every((r) => r.id !== state.residentId), 'and the other way round');
  assert.equal(inbox.status, 200);
});

step('API: the audit log holds every change', async () => {
  const r = await state.agnes.req('GET', 'audit?limit=200');
  assert.equal(r.status, 200);
  const actions = new Set(r.json.entries.map((e) => e.action));
  for (const a of ['login', 'resident.create', 'resident.update', 'reminder.create', 'reminder.cancel',
    'message.send', 'inbox.reply', 'inbox.done', 'activity.create', 'session.create', 'loan.confirm',
    'resident.export', 'resident.erase']) {
    assert.ok(actions.has(a), `audit has ${a} (has: ${[...actions].join(', ')})`);
  }
});

step('API: password guessing is rate-limited (429 after 5 failures, even with the right password)', async () => {
  const unknown = await raw('POST', 'login', {body: {login: 'personne', password: 'devinette-123'}});
  assert.equal(unknown.status, 401, 'an unknown login');
  const known = await raw('POST', 'login', {body: {login: 'cible', password: 'devinette-123'}});
  assert.equal(known.status, 401);
  assert.equal(known.text, unknown.text, 'unknown and known logins answer the same');
  for (let i = 2; i <= 5; i++) {
    const r = await raw('POST', 'login', {body: {login: 'cible', password: `devinette-${i}`}});
    assert.equal(r.status, 401, `failure ${i}: ${r.status} ${r.text}`);
    assert.equal(r.json.error.code, 'bad_credentials');
  }
  const sixth = await raw('POST', 'login', {body: {login: 'cible', password: 'devinette-6'}});
  assert.equal(sixth.status, 429, `6th try: ${sixth.status} ${sixth.text}`);
  assert.equal(sixth.json.error.code, 'rate_limited');
  assert.ok(sixth.headers.get('retry-after'), 'Retry-After');
  const right = await raw('POST', 'login', {body: {login: 'cible', password: PASSWORDS.cible}});
  assert.equal(right.status, 429, `the right password while limited: ${right.status}`);
  // other accounts are not locked out by it
  const other = await raw('POST', 'login', {body: {login: 'victor', password: PASSWORDS.victor}});
  assert.equal(other.status, 200, `another account: ${other.status} ${other.text}`);
});

/* ------------------------------------------------------------------ run */

main({
  timed: true,
  epilogue() {
    log('\naxe-core summary (screen: violations / serious or critical):');
    for (const a of axeReport) log(`  ${a.screen}: ${a.violations} / ${a.serious}`);
    log(`\nartifacts: ${ARTIFACTS}`);
  },
}).catch((e) => {
  console.error(e);
  process.exit(1);
});
