// Browser and API tests of the admin UI's second increment (run by run.sh after
// admin.test.mjs, against the same gatewayd and database): Emplois, Alertes, Paramètres, the
// residents' CSV import, editing a reminder, the Accueil's routes from the API, loan errors in
// French; and what the new endpoints refuse (401, 403 CSRF, 403 role, 404 other centre).
import assert from 'node:assert/strict';
import {ADMIN, BASE, Session, axe, createRunner, inbound, launchBrowser, log, login, newContext,
  pageHelpers, paris, raw, readPasswords, TZ, waitUntil} from './lib.mjs';

// the passwords Session and login use by default
readPasswords({agnes: 'PW_ADMIN_FILE', victor: 'PW_VIEWER_FILE', bruno: 'PW_B_FILE',
  sami: 'PW_STAFF_FILE'});

/* ------------------------------------------------------------------ runner and helpers (lib.mjs) */

const state = {};
let page = null;
let browser;
let context;
const pageErrors = [];
const {step, shot, main} = createRunner({firstShot: 50, failShot: 'ECHEC-suite', page: () => page, browser: () => browser});
const {h1, go, statusText, noError} = pageHelpers(() => page);

/* ================================================================== API: no session */

const NEW_ENDPOINTS = [
  ['GET', 'jobs'], ['POST', 'jobs'], ['POST', 'jobs/1/expire'], ['POST', 'job-categories'],
  ['GET', 'alerts'], ['POST', 'alert-topics'], ['POST', 'alerts/preview'], ['POST', 'alerts'],
  ['GET', 'routes'], ['PUT', 'routes'], ['GET', 'settings'], ['PATCH', 'settings'],
  ['PUT', 'templates'], ['POST', 'templates/preview'], ['POST', 'templates/reset'],
  ['POST', 'staff'], ['POST', 'staff/1/password'], ['POST', 'staff/1/disable'], ['POST', 'staff/1/enable'],
  ['POST', 'partners'], ['POST', 'partners/1/revoke'], ['POST', 'api-keys'], ['POST', 'api-keys/1/revoke'],
  ['POST', 'residents/import'], ['GET', 'reminders/1'], ['PATCH', 'reminders/1'], ['POST', 'me/password'],
];

step('API: every new endpoint answers 401 without a session', async () => {
  for (const [m, p] of NEW_ENDPOINTS) {
    const r = await raw(m, p, {body: m === 'GET' ? undefined : {}});
    assert.equal(r.status, 401, `${m} ${p}: ${r.status} ${r.text}`);
    assert.equal(r.json?.error?.code, 'unauthenticated');
  }
  log(`    ${NEW_ENDPOINTS.length} endpoints: 401`);
});

step('set-up: residents subscribed to the SORTIE alerts (by SMS), a staff member', async () => {
  const a = await new Session('agnes').open();
  state.agnes = a;
  state.subs = [];
  for (const [phone, name] of [['06 40 00 00 01', 'Inès'], ['06 40 00 00 02', 'Karim']]) {
    const r = await a.req('POST', 'residents', {body: {phone, first_name: name, consent_source: 'paper'}});
    assert.equal(r.status, 201, r.text);
    state.subs.push(r.json);
    await inbound(r.json.phone, 'ALERTE SORTIE');
  }
  await waitUntil(async () => {
    const r = await a.req('GET', 'alerts');
    const t = r.json.topics.find((x) => x.name === 'sortie');
    return t && t.recipients === 2;
  }, 'two subscribers to SORTIE');
  state.sami = await new Session('sami').open();
});

/* ================================================================== browser */

async function newPage(ctx) {
  const p = await ctx.newPage();
  p.on('pageerror', (e) => pageErrors.push(e.message));
  p.on('console', (m) => {
    if (m.type() === 'error' && !/status of (401|403|409|422)/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
  });
  return p;
}

step('browser: chromium starts and agnes (admin) logs in', async () => {
  browser = await launchBrowser();
  context = await newContext(browser);
  page = await newPage(context);
  await page.goto(ADMIN);
  await h1('Connexion').waitFor();
  await login(page, 'agnes');
}, {critical: true});

step('Accueil: routes and credit come from GET routes (not /healthz)', async () => {
  const urls = [];
  page.on('request', (r) => urls.push(r.url()));
  await go('#/habitants', 'Habitants');
  await go('#/', 'Accueil');
  const routes = page.getByRole('table', {name: 'État des voies d’envoi'});
  await routes.getByRole('rowheader', {name: /^sim/}).waitFor();
  await routes.getByRole('columnheader', {name: 'Crédit'}).waitFor();
  assert.ok(urls.some((u) => u.endsWith('/admin/api/routes')), 'GET routes was called');
  assert.ok(!urls.some((u) => u.includes('/healthz')), 'no /healthz call');
  const r = await state.agnes.req('GET', 'routes');
  assert.equal(r.status, 200);
  assert.equal(r.json.routes[0].name, 'sim');
  assert.ok(r.json.available.includes('simb'));
  assert.ok(!JSON.stringify(r.json).includes('keyid'), 'no credential in the answer');
  // the queue figures are the centre's own, never the daemon's over every centre
  for (const rt of r.json.routes) {
    assert.equal(typeof rt.queued, 'number', `route ${rt.name}: this centre's queued count`);
    for (const k of ['in_flight', 'due', 'claimed', 'accepted', 'tempfail', 'permfail'])
      assert.ok(!(k in rt), `route ${rt.name}: no daemon-wide '${k}'`);
  }
});

step('Emplois: add a category, publish an offer, see it and its subscribers, retire it', async () => {
  await page.getByRole('navigation', {name: 'Menu principal'}).getByRole('link', {name: 'Emplois'}).click();
  await h1('Offres d’emploi').waitFor();
  await page.getByLabel('Nom du métier').fill('Espaces verts');
  await page.getByRole('button', {name: 'Ajouter le métier'}).click();
  await statusText(/Métier « Espaces verts » ajouté \(JOB ESPACES VERTS\)/);
  const cats = page.getByRole('table', {name: 'Métiers et abonnés'});
  await cats.getByRole('rowheader', {name: 'Espaces verts'}).waitFor();
  await page.getByLabel('Intitulé').fill('Jardinier H/F');
  await page.getByLabel('Description').fill('CDD 3 mois, 35 h.');
  await page.getByLabel('Contact').fill('Mission locale, 03 20 00 00 00');
  await page.getByLabel('Métier', {exact: true}).selectOption('espaces verts');
  await page.getByRole('button', {name: 'Publier l’offre'}).click();
  const m = await statusText(/Offre n° (\d+) publiée/);
  state.jobNumber = Number(m[1]);
  const offers = page.getByRole('table', {name: 'Offres en cours'});
  await offers.getByText('Jardinier H/F').waitFor();
  await noError();
  await axe(page, 'Emplois');
  await shot(page, 'emplois');
  const jobs = await state.agnes.req('GET', 'jobs');
  const job = jobs.json.jobs.find((j) => j.number === state.jobNumber);
  assert.equal(job.category, 'espaces verts');
  assert.ok(job.active);
  state.jobId = job.id;
  page.once('dialog', (d) => d.accept());
  await offers.getByRole('button', {name: `Retirer l’offre n° ${state.jobNumber} (Jardinier H/F)`}).click();
  await statusText(new RegExp(`Offre n° ${state.jobNumber} retirée`));
  await page.getByRole('table', {name: 'Offres terminées'}).getByText('Jardinier H/F').waitFor();
  const after = await state.agnes.req('GET', 'jobs');
  assert.equal(after.json.jobs.find((j) => j.id === state.jobId).active, false);
});

step('Alertes: preview shows the SMS and its recipients; send it; staff above the limit is refused', async () => {
  await go('#/alertes', 'Alertes');
  await page.getByLabel('Thème', {exact: true}).selectOption('sortie');
  await page.getByLabel('Texte de l’alerte').fill('Sortie au parc samedi 14 h, rendez-vous devant le centre.');
  await waitUntil(async () => /envoyée à 2 personnes/.test(await page.locator('#apercu-destinataires').innerText()), 'the recipients count');
  await page.locator('#apercu-alerte').getByText('Sortie au parc samedi 14 h').waitFor();
  const size = await page.locator('#apercu-alerte-taille').innerText();
  assert.match(size, /1 SMS/);
  assert.match(size, /GSM-7/);
  await axe(page, 'Alertes');
  await shot(page, 'alertes');
  // urgent: the test may run during the quiet hours (20:00-08:00, Sundays), when a normal
  // alert waits for the morning
  await page.getByLabel('Urgent (part même pendant les heures calmes)').check();
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', {name: 'Envoyer l’alerte'}).click();
  await statusText(/Alerte envoyée à 2 personnes/);
  await page.getByRole('table', {name: 'Alertes envoyées'}).getByText('Sortie au parc samedi 14 h', {exact: false}).waitFor();
  await noError();
  // the scheduler releases it through the one alert path: two SMS to the subscribers
  await waitUntil(async () => {
    const r = await state.agnes.req('GET', 'alerts');
    return r.json.alerts[0].sent === 2;
  }, 'both alert SMS released', 20000);
  // staff: at most staff_alert_max recipients (set to 1 here); an admin may send to more
  const set = await state.agnes.req('PATCH', 'settings', {body: {settings: {staff_alert_max: '1'}}});
  assert.equal(set.status, 200, set.text);
  const big = await state.sami.req('POST', 'alerts', {body: {topic: 'sortie', text: 'Test'}});
  assert.equal(big.status, 403, big.text);
  assert.equal(big.json.error.code, 'too_large');
  assert.match(big.json.error.message, /seul un administrateur/);
  const prev = await state.sami.req('POST', 'alerts/preview', {body: {topic: 'sortie', text: 'Test'}});
  assert.equal(prev.json.allowed, false);
  assert.equal(prev.json.recipients, 2);
  const long = await state.agnes.req('POST', 'alerts', {body: {topic: 'sortie', text: 'x'.repeat(1001)}});
  assert.equal(long.status, 422);
  await state.agnes.req('PATCH', 'settings', {body: {settings: {staff_alert_max: ''}}});
  const ok = await state.sami.req('POST', 'alerts', {body: {topic: 'sortie', text: 'Rappel : sortie samedi.'}});
  assert.equal(ok.status, 202, ok.text);
  assert.equal(ok.json.recipients, 2);
});

step('Paramètres: centre settings, poster number, a template edited and previewed, then back to default', async () => {
  await page.getByRole('navigation', {name: 'Menu principal'}).getByRole('link', {name: 'Paramètres'}).click();
  await h1('Paramètres').waitFor();
  await page.getByLabel('Nom dans les SMS').fill('CS Oliviers');
  await page.getByLabel('SMS par jour et par habitant (au plus)').fill('4');
  await page.getByLabel('Numéro SMS du centre (affiche)').fill('06 99 88 77 66');
  await page.getByLabel('Code USSD (affiche)').fill('*321#');
  await page.getByRole('button', {name: 'Enregistrer les réglages'}).click();
  await statusText(/Réglages du centre enregistrés/);
  const s = await state.agnes.req('GET', 'settings');
  assert.equal(s.json.centre.settings.display_name, 'CS Oliviers');
  assert.equal(s.json.centre.settings.daily_cap, '4');
  const me = await (await new Session('agnes').open()).req('GET', 'me');
  assert.equal(me.json.centre.sms_number, '06 99 88 77 66', 'the poster number comes with the session');
  assert.equal(me.json.centre.ussd_code, '*321#');
  const bad = await state.agnes.req('PATCH', 'settings', {body: {settings: {quiet_start: '25:00'}}});
  assert.equal(bad.status, 422);
  assert.match(bad.json.error.message, /heures d'envoi/);
  // the form saved unchanged keeps the sending window 08:00-20:00 (the scheduler's meaning)
  assert.equal(s.json.centre.settings.quiet_start, '08:00', 'saving the form keeps the window');
  assert.equal(s.json.centre.settings.quiet_end, '20:00');
  const inverted = await state.agnes.req('PATCH', 'settings', {body: {settings: {quiet_start: '20:00', quiet_end: '08:00'}}});
  assert.equal(inverted.status, 422, 'a window that ends before it starts is refused');
  assert.equal(inverted.json.error.code, 'invalid_setting');
  assert.match(inverted.json.error.message, /le début doit précéder la fin/);
  // a template
  await page.getByLabel('Modèle', {exact: true}).selectOption('unknown');
  await page.getByLabel('Texte', {exact: true}).fill('Votre message est transmis à {centre}.');
  await page.getByRole('button', {name: 'Aperçu'}).click();
  await page.locator('#apercu-modele').getByText('Votre message est transmis à CS Oliviers.').waitFor();
  await page.getByRole('button', {name: 'Enregistrer le modèle'}).click();
  await statusText(/Modèle « unknown » enregistré/);
  const t = (await state.agnes.req('GET', 'settings')).json.templates.find((x) => x.name === 'unknown');
  assert.equal(t.custom, true);
  const unknown = await state.agnes.req('PUT', 'templates', {body: {name: 'ack_ok', body: 'Merci {centre}'}});
  assert.equal(unknown.status, 422);
  await page.getByRole('button', {name: 'Revenir au modèle d’origine'}).click();
  await statusText(/remis à l’origine/);
  const t2 = (await state.agnes.req('GET', 'settings')).json.templates.find((x) => x.name === 'unknown');
  assert.equal(t2.custom, false);
  // routes: simb first, then sim
  const r = await state.agnes.req('PUT', 'routes', {body: {routes: ['simb', 'sim']}});
  assert.equal(r.status, 200, r.text);
  const wrong = await state.agnes.req('PUT', 'routes', {body: {routes: ['nope']}});
  assert.equal(wrong.status, 422);
  await state.agnes.req('PUT', 'routes', {body: {routes: ['sim']}});
  await noError();
  await axe(page, 'Paramètres');
  await shot(page, 'parametres');
});

step('Paramètres: create a staff account (password shown once), log in with it, reset it, old sessions end', async () => {
  await go('#/parametres', 'Paramètres');
  const form = page.getByRole('form', {name: 'Nouveau compte'});
  await form.getByLabel('Identifiant').fill('nadia');
  await form.getByLabel('Nom').fill('Nadia Benali');
  await form.getByLabel('Rôle').selectOption('referent');
  await form.getByRole('button', {name: 'Créer le compte'}).click();
  await statusText(/Compte nadia créé/);
  const first = await waitUntil(async () => {
    const v = await page.locator('#secret-compte .secret-value').allInnerTexts();
    return v.length ? v[0].trim() : null;
  }, 'the password shown once');
  assert.match(first, /^[A-Za-z2-9]{4}-[A-Za-z2-9]{4}-[A-Za-z2-9]{4}$/);
  const n1 = await new Session('nadia').open(first);
  assert.equal(n1.me.role, 'referent');
  // the admin sets a new password: nadia's session ends, the new password works
  const row = page.getByRole('table', {name: 'Comptes'}).getByRole('row').filter({hasText: 'nadia'});
  await row.getByLabel('Mot de passe', {exact: true}).fill('Un-mot-de-passe-choisi');
  page.once('dialog', (d) => d.accept());
  await row.getByRole('button', {name: 'Nouveau mot de passe pour nadia'}).click();
  await statusText(/Mot de passe de nadia changé/);
  assert.equal((await n1.req('GET', 'me')).status, 401, 'the old session is ended');
  const old = await raw('POST', 'login', {body: {login: 'nadia', password: first}});
  assert.equal(old.status, 401);
  // and log in with it in a browser
  const ctx = await newContext(browser);
  const p = await newPage(ctx);
  await p.goto(ADMIN);
  await p.getByRole('heading', {level: 1, name: 'Connexion'}).waitFor();
  await p.getByLabel('Identifiant').fill('nadia');
  await p.getByLabel('Mot de passe').fill('Un-mot-de-passe-choisi');
  await p.getByRole('button', {name: 'Se connecter'}).click();
  await p.getByRole('heading', {level: 1, name: 'Accueil', exact: true}).waitFor();
  assert.equal(await p.getByRole('link', {name: 'Paramètres'}).count(), 0, 'no Paramètres for a referent');
  await ctx.close();
  // a generated reset, shown once
  page.once('dialog', (d) => d.accept());
  await page.getByRole('table', {name: 'Comptes'}).getByRole('button', {name: 'Nouveau mot de passe pour nadia'}).click();
  await waitUntil(async () => /^[A-Za-z2-9]{4}-/.test(await page.locator('#secret-compte .secret-value').innerText()), 'a generated password');
  const gen = (await page.locator('#secret-compte .secret-value').innerText()).trim();
  await new Session('nadia').open(gen);
  // disable it
  await page.getByRole('button', {name: 'Désactiver le compte nadia'}).click();
  await statusText(/Compte nadia désactivé/);
  const dis = await raw('POST', 'login', {body: {login: 'nadia', password: gen}});
  assert.equal(dis.status, 401, 'a disabled account cannot log in');
  const audit = await state.agnes.req('GET', 'audit?limit=200');
  const actions = new Set(audit.json.entries.map((e) => e.action));
  for (const x of ['staff.create', 'staff.password', 'staff.disable', 'centre.update', 'template.update',
    'template.reset', 'job.create', 'job.expire', 'alert.send', 'centre.routes']) {
    assert.ok(actions.has(x), `audit has ${x}`);
  }
  assert.ok(!JSON.stringify(audit.json).includes('Un-mot-de-passe-choisi'), 'no password in the audit log');
});

step('Paramètres: a partner and an API key, their secrets shown once, then revoked', async () => {
  await go('#/parametres', 'Paramètres');
  const form = page.getByRole('form', {name: 'Nouveau partenaire'});
  await form.getByLabel('Nom').fill('Mission locale');
  await form.getByLabel('sortie').check();
  await form.getByLabel('Peut publier des offres d’emploi').check();
  await form.getByRole('button', {name: 'Créer le partenaire'}).click();
  await statusText(/Partenaire créé/);
  const secrets = await waitUntil(async () => {
    const v = await page.locator('#secret-partenaire .secret-value').allInnerTexts();
    return v.length === 2 ? v : null;
  }, 'the partner’s key id and secret');
  assert.match(secrets[0], /^pk_[0-9a-f]{16}$/);
  assert.match(secrets[1], /^[0-9a-f]{64}$/);
  const s = await state.agnes.req('GET', 'settings');
  assert.ok(!s.text.includes(secrets[1]), 'the secret is not listed again');
  await page.getByLabel('Libellé de la nouvelle clé').fill('Logiciel RDV');
  await page.getByRole('button', {name: 'Créer une clé'}).click();
  await statusText(/Clé d’API créée/);
  const key = await waitUntil(async () => {
    const v = await page.locator('#secret-cle .secret-value').allInnerTexts();
    return v.length ? v[0].trim() : null;
  }, 'the API key shown once');
  assert.match(key, /^psk_[0-9a-f]{12}_[0-9a-f]{32}$/);
  // the key sends an SMS through the public API
  const send = await fetch(`${BASE}/api/v1/messages`, {method: 'POST',
    headers: {Authorization: `Bearer ${key}`, 'Content-Type': 'application/json'},
    body: JSON.stringify({to: '+33640000001', text: 'Test de clé'})});
  assert.equal(send.status, 202, `a message with the new key: ${send.status}`);
  const prefix = key.split('_').slice(0, 2).join('_');
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', {name: `Révoquer la clé ${prefix}`}).click();
  await statusText(/révoquée/);
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', {name: 'Révoquer le partenaire Mission locale'}).click();
  await statusText(/Partenaire Mission locale révoqué/);
  await noError();
});

step('Habitants: a CSV with a bad line shows the errors and imports nothing; a good one imports all', async () => {
  await go('#/habitants', 'Habitants');
  await page.getByRole('link', {name: 'Importer un fichier CSV'}).click();
  await h1('Importer des habitants').waitFor();
  const bad = 'telephone;prenom;langue;consentement\n06 50 00 00 01;Rose;fr;papier\n01 23 45 67 89;Hugo;fr;oral\n06 50 00 00 03;Jade;fr;\n06 50 00 00 01;Rose bis;fr;sms\n06 40 00 00 01;Inès;fr;papier\n';
  await page.getByLabel('Fichier CSV').setInputFiles({name: 'habitants.csv', mimeType: 'text/csv', buffer: Buffer.from(bad)});
  await page.getByRole('button', {name: 'Vérifier le fichier'}).click();
  await page.locator('#resume-import').getByText(/4 lignes en erreur sur 5 : rien n’est importé/).waitFor();
  const lines = page.getByRole('table', {name: 'Lignes du fichier'});
  await lines.getByRole('row').filter({hasText: 'Hugo'}).getByText(/pas un numéro de portable valide/).waitFor();
  await lines.getByRole('row').filter({hasText: 'Jade'}).getByText(/Accord de l'habitant manquant/).waitFor();
  await lines.getByRole('row').filter({hasText: 'Rose bis'}).getByText(/déjà sur une ligne plus haut/).waitFor();
  await lines.getByRole('row').filter({hasText: 'Inès'}).getByText(/Un habitant a déjà ce numéro/).waitFor();
  assert.equal(await page.getByRole('button', {name: /^Importer \d/}).count(), 0, 'no import button');
  await axe(page, 'Importer des habitants');
  await shot(page, 'import-erreurs');
  const none = await state.agnes.req('GET', 'residents?q=Rose');
  assert.equal(none.json.residents.length, 0, 'nothing imported');
  // confirming a file with errors imports nothing either
  const forced = await state.agnes.req('POST', 'residents/import', {body: {csv: bad, confirm: true}});
  assert.equal(forced.status, 422);
  assert.equal((await state.agnes.req('GET', 'residents?q=Rose')).json.residents.length, 0);
  const good = 'Téléphone,Prénom,Langue,Consentement\r\n06 50 00 00 01,Rose,fr,papier\r\n06 50 00 00 02,"Hugo, dit ""Hu""",en,oral\r\n';
  await page.getByLabel('Fichier CSV').setInputFiles({name: 'habitants2.csv', mimeType: 'text/csv', buffer: Buffer.from(good)});
  await page.getByRole('button', {name: 'Vérifier le fichier'}).click();
  await page.locator('#resume-import').getByText(/2 habitants prêts à être importés/).waitFor();
  assert.equal((await state.agnes.req('GET', 'residents?q=Rose')).json.residents.length, 0, 'still nothing before the confirmation');
  await page.getByRole('button', {name: 'Importer 2 habitants'}).click();
  await statusText(/2 habitants importés/);
  const rose = (await state.agnes.req('GET', 'residents?q=Rose')).json.residents;
  assert.equal(rose.length, 1);
  assert.equal(rose[0].consent_source, 'paper');
  const hugo = (await state.agnes.req('GET', 'residents?q=Hugo')).json.residents[0];
  assert.equal(hugo.first_name, 'Hugo, dit "Hu"');
  assert.equal(hugo.language, 'en');
  await noError();
});

step('Rappels: edit a reminder (monthly → weekly) and see the new next dates', async () => {
  const rid = state.subs[0].id;
  const start = paris(24 * 60).date;
  const made = await state.agnes.req('POST', 'reminders', {body: {resident_id: rid, text: 'Atelier CV',
    schedule: 'rrule', rrule: 'FREQ=MONTHLY;BYMONTHDAY=28', start: `${start} 10:00`}});
  assert.equal(made.status, 201, made.text);
  const id = made.json.id;
  const before = await waitUntil(async () => (await state.agnes.req('GET', `reminders/${id}`)).json.next_at, 'the first next_at');
  await go(`#/habitants/${rid}`, 'Inès');
  await page.getByRole('link', {name: 'Modifier le rappel « Atelier CV »'}).click();
  await h1('Modifier le rappel').waitFor();
  assert.equal(await page.getByLabel('Fréquence').inputValue(), 'monthly');
  assert.equal(await page.getByLabel('Le jour du mois').inputValue(), '28');
  await page.getByLabel('Texte du SMS').fill('Atelier CV, salle 2');
  await page.getByLabel('Fréquence').selectOption('weekly');
  await page.getByLabel('mardi', {exact: true}).uncheck();
  await page.getByLabel('mercredi', {exact: true}).check();
  await waitUntil(async () => {
    const d = await page.locator('#prochaines-dates li').allInnerTexts();
    return d.length === 5 && d.every((x) => /^mercredi /.test(x)) ? d : null;
  }, 'five Wednesdays in the preview');
  await axe(page, 'Modifier le rappel');
  await shot(page, 'rappel-modifier');
  await page.getByRole('button', {name: 'Enregistrer les modifications'}).click();
  await h1('Inès').waitFor();
  await statusText(/Rappel modifié/);
  const after = await waitUntil(async () => {
    const r = (await state.agnes.req('GET', `reminders/${id}`)).json;
    return r.next_at && r.rrule === 'FREQ=WEEKLY;BYDAY=WE' ? r : null;
  }, 'the recomputed next_at');
  assert.notEqual(after.next_at, before, 'a new next date');
  const wd = new Intl.DateTimeFormat('en-GB', {timeZone: TZ, weekday: 'long'}).format(new Date(after.next_at));
  assert.equal(wd, 'Wednesday', `next_at ${after.next_at} is a Wednesday`);
  assert.equal(after.text, 'Atelier CV, salle 2');
  const bad = await state.agnes.req('PATCH', `reminders/${id}`, {body: {text: 'x', schedule: 'once', at: '2001-01-01 10:00'}});
  assert.equal(bad.status, 422);
  await state.agnes.req('DELETE', `reminders/${id}`);
  const cancelled = await state.agnes.req('PATCH', `reminders/${id}`, {body: {text: 'x', schedule: 'once', at: '2040-01-01 10:00'}});
  assert.equal(cancelled.status, 409);
});

step('Prêts: an action on a loan in the wrong state is refused in French', async () => {
  await inbound(state.subs[1].phone, 'PRET 15');
  const loan = await waitUntil(async () => (await state.agnes.req('GET', 'loans')).json.requests.find((l) => l.code === '15'), 'the loan request');
  const r = await state.agnes.req('POST', `loans/${loan.id}/returned`, {body: {}});
  assert.equal(r.status, 409, r.text);
  assert.equal(r.json.error.code, 'bad_state');
  assert.match(r.json.error.message, /pas encore confirmé/);
  const ok = await state.agnes.req('POST', `loans/${loan.id}/refuse`, {body: {}});
  assert.equal(ok.status, 200, ok.text);
  const again = await state.agnes.req('POST', `loans/${loan.id}/confirm`, {body: {days: 3}});
  assert.equal(again.status, 409);
  assert.match(again.json.error.message, /déjà été refusé/);
});

step('a 360 px phone: the new screens without sideways scrolling, axe still happy', async () => {
  const ctx = await newContext(browser, {viewport: {width: 360, height: 740}, deviceScaleFactor: 2, isMobile: true, hasTouch: true});
  const p = await newPage(ctx);
  await p.goto(ADMIN);
  await p.getByRole('heading', {level: 1, name: 'Connexion'}).waitFor();
  await login(p, 'agnes');
  for (const [hash, title, name] of [['#/emplois', 'Offres d’emploi', 'emplois'], ['#/alertes', 'Alertes', 'alertes'],
    ['#/parametres', 'Paramètres', 'parametres'], ['#/habitants/importer', 'Importer des habitants', 'import'],
    ['#/mon-compte', 'Mon compte', 'mon-compte']]) {
    await p.evaluate((x) => { location.hash = x; }, hash);
    await p.getByRole('heading', {level: 1, name: title, exact: true}).waitFor();
    await p.waitForFunction(() => !document.getElementById('view')?.hasAttribute('aria-busy'));
    const w = await p.evaluate(() => document.documentElement.scrollWidth);
    if (w > 361) {
      const culprits = await p.evaluate(() => [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > 361 && !e.closest('.table-wrap'))
        .slice(-6).map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}.${String(e.className)}`));
      assert.fail(`${title} at 360 px: ${w} px wide; sticking out: ${culprits.join(', ')}`);
    }
    await axe(p, `${title} (360 px)`);
    await shot(p, `mobile-${name}`);
  }
  await p.setViewportSize({width: 640, height: 450});
  for (const [hash, title] of [['#/emplois', 'Offres d’emploi'], ['#/alertes', 'Alertes'], ['#/parametres', 'Paramètres']]) {
    await p.evaluate((x) => { location.hash = x; }, hash);
    await p.getByRole('heading', {level: 1, name: title, exact: true}).waitFor();
    await p.waitForFunction(() => !document.getElementById('view')?.hasAttribute('aria-busy'));
    const w = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(w <= 641, `${title} at 200 % zoom: ${w} px wide`);
  }
  await ctx.close();
});

step('a viewer sees Emplois and Alertes without the forms, and no Paramètres', async () => {
  const ctx = await newContext(browser);
  const p = await newPage(ctx);
  await p.goto(ADMIN);
  await p.getByRole('heading', {level: 1, name: 'Connexion'}).waitFor();
  await login(p, 'victor');
  assert.equal(await p.getByRole('link', {name: 'Paramètres'}).count(), 0);
  // go() waits for the screen to finish loading: a missing button is then really missing
  const v = pageHelpers(() => p);
  await v.go('#/emplois', 'Offres d’emploi');
  assert.equal(await p.getByRole('button', {name: 'Publier l’offre'}).count(), 0);
  await v.go('#/alertes', 'Alertes');
  await p.getByRole('table', {name: 'Thèmes d’alerte'}).waitFor();
  assert.equal(await p.getByRole('button', {name: 'Envoyer l’alerte'}).count(), 0);
  await ctx.close();
});

/* ================================================================== Mon compte */

// Rate limiter budget: these steps add 2 failed password checks from 127.0.0.1 in the browser
// and 5 from node (the limit per address is 20 in 15 minutes, admin.test.mjs spends 7 and the
// steps above 3).
step('Mon compte: a staff member changes their password in the browser; their other session ends, this one stays; the old password no longer logs in', async () => {
  const OLD = 'Ancien-mot-de-passe-1';
  const NEW = 'Nouveau mot de passe 2';
  const made = await state.agnes.req('POST', 'staff', {body: {login: 'lea', name: 'Léa Roux', role: 'staff', password: OLD}});
  assert.equal(made.status, 201, made.text);
  const other = await new Session('lea').open(OLD);
  const ctx = await newContext(browser);
  const p = await newPage(ctx);
  await p.goto(ADMIN);
  await p.getByRole('heading', {level: 1, name: 'Connexion'}).waitFor();
  await login(p, 'lea', OLD);
  const link = p.getByRole('banner').getByRole('link', {name: 'Mon compte'});
  await link.click();
  await p.getByRole('heading', {level: 1, name: 'Mon compte', exact: true}).waitFor();
  await p.waitForFunction(() => !document.getElementById('view')?.hasAttribute('aria-busy'));
  assert.equal(await link.getAttribute('aria-current'), 'page');
  assert.match(await p.locator('#contenu dl.details').innerText(), /lea[\s\S]*animateur/, 'who is logged in, with the role');
  const current = p.getByLabel('Mot de passe actuel');
  const next = p.getByLabel('Nouveau mot de passe', {exact: true});
  const again = p.getByLabel('Confirmation du nouveau mot de passe');
  const hint = await next.getAttribute('aria-describedby');
  assert.ok(hint, 'the new password has a hint');
  assert.match(await p.locator(`#${hint}`).innerText(), /Au moins 10 caractères/);
  await axe(p, 'Mon compte');
  const sent = [];
  p.on('request', (r) => { if (r.url().endsWith('/admin/api/me/password')) sent.push(r.method()); });
  // the confirmation differs: said in French, nothing sent
  await current.fill(OLD);
  await next.fill(NEW);
  await again.fill('Nouveau mot de passe 3');
  await p.getByRole('button', {name: 'Changer mon mot de passe'}).click();
  await p.locator('#errors').getByText(/Les deux nouveaux mots de passe ne sont pas identiques/).waitFor();
  assert.equal(await again.getAttribute('aria-invalid'), 'true');
  assert.equal(sent.length, 0, 'nothing sent while the confirmation differs');
  // a wrong current password: the server's French message, the field emptied and focused
  await current.fill('Pas-le-bon-mot-de-passe');
  await again.fill(NEW);
  await p.getByRole('button', {name: 'Changer mon mot de passe'}).click();
  await p.locator('#errors').getByText('Le mot de passe actuel est incorrect.').waitFor();
  assert.equal(await current.inputValue(), '');
  assert.ok(await current.evaluate((e) => e === document.activeElement), 'the focus is on the current password');
  // the right one
  await current.fill(OLD);
  await p.getByRole('button', {name: 'Changer mon mot de passe'}).click();
  await p.locator('#status').getByText('Mot de passe changé. Vos autres sessions sont fermées.').waitFor();
  assert.equal((await p.locator('#errors').innerText()).trim(), '');
  for (const f of [current, next, again]) assert.equal(await f.inputValue(), '', 'the fields are emptied');
  await shot(p, 'mon-compte');
  assert.equal((await other.req('GET', 'me')).status, 401, 'the other session of the account is ended');
  // this session stays
  await p.evaluate(() => { location.hash = '#/habitants'; });
  await p.getByRole('heading', {level: 1, name: 'Habitants', exact: true}).waitFor();
  assert.equal(await p.evaluate(async () => (await fetch('api/me')).status), 200, 'this session stays');
  // log out; the old password is refused (401), the new one opens Accueil
  await p.getByRole('button', {name: 'Se déconnecter'}).click();
  await p.getByRole('heading', {level: 1, name: 'Connexion'}).waitFor();
  await p.getByLabel('Identifiant').fill('lea');
  await p.getByLabel('Mot de passe').fill(OLD);
  const [refused] = await Promise.all([
    p.waitForResponse((r) => r.url().endsWith('/admin/api/login')),
    p.getByRole('button', {name: 'Se connecter'}).click(),
  ]);
  assert.equal(refused.status(), 401, 'the old password no longer logs in');
  await p.locator('#errors').getByText('Identifiant ou mot de passe incorrect.').waitFor();
  await login(p, 'lea', NEW);
  await ctx.close();
  const audit = await state.agnes.req('GET', 'audit?limit=200');
  const e = audit.json.entries.find((x) => x.action === 'staff.password_own' && x.login === 'lea');
  assert.ok(e, 'audited as staff.password_own');
  assert.equal(e.detail.sessions_ended, 1);
  for (const secret of [OLD, NEW, 'Pas-le-bon-mot-de-passe']) {
    assert.ok(!audit.text.includes(secret), 'no password in the audit log');
  }
});

step('API: POST me/password — 401, 403 CSRF, 422 weak, a viewer changes their own (other sessions end), a wrong current password counts as a failed login (429)', async () => {
  const OLD = 'Vera-ancien-mdp';
  const NEW = 'Vera-nouveau-mdp';
  const none = await raw('POST', 'me/password', {body: {current: OLD, new: NEW}});
  assert.equal(none.status, 401, none.text);
  assert.equal(none.json.error.code, 'unauthenticated');
  // the same rule when an admin sets the password: characters, not bytes
  const accented = await state.agnes.req('POST', 'staff', {body: {login: 'vera', name: 'Véra', role: 'viewer', password: 'ééééééééé'}});
  assert.equal(accented.status, 422, '9 characters (18 bytes) are too short for an admin too');
  assert.match(accented.json.error.message, /au moins 10 caractères/);
  const made = await state.agnes.req('POST', 'staff', {body: {login: 'vera', name: 'Véra', role: 'viewer', password: OLD}});
  assert.equal(made.status, 201, made.text);
  const v = await new Session('vera').open(OLD);
  const v2 = await new Session('vera').open(OLD);
  assert.equal(v.me.role, 'viewer');
  const nocsrf = await v.req('POST', 'me/password', {body: {current: OLD, new: NEW}, csrf: false});
  assert.equal(nocsrf.status, 403, nocsrf.text);
  assert.equal(nocsrf.json.error.code, 'csrf');
  const short = await v.req('POST', 'me/password', {body: {current: OLD, new: 'court'}});
  assert.equal(short.status, 422, short.text);
  assert.equal(short.json.error.code, 'weak_password');
  assert.match(short.json.error.message, /au moins 10 caractères/);
  const accents = await v.req('POST', 'me/password', {body: {current: OLD, new: 'ééééééééé'}});
  assert.equal(accents.status, 422, '9 characters (18 bytes) are too short');
  const same = await v.req('POST', 'me/password', {body: {current: OLD, new: OLD}});
  assert.equal(same.status, 422);
  assert.equal(same.json.error.code, 'weak_password');
  assert.match(same.json.error.message, /différent/);
  assert.equal((await v.req('POST', 'me/password', {body: {}})).status, 400);
  // nothing changed so far
  assert.equal((await v2.req('GET', 'me')).status, 200);
  const ok = await v.req('POST', 'me/password', {body: {current: OLD, new: NEW}});
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.sessions_ended, 1);
  assert.ok(!ok.text.includes(NEW), 'the password is not echoed');
  assert.equal((await v2.req('GET', 'me')).status, 401, 'the other session is ended');
  assert.equal((await v.req('GET', 'me')).status, 200, 'this session stays');
  await new Session('vera').open(NEW);
  // a wrong current password is a failed login: 5 of them and even the right one is refused
  for (let i = 1; i <= 5; i++) {
    const r = await v.req('POST', 'me/password', {body: {current: `devinette-${i}-xyz`, new: 'Encore-un-autre-mdp'}});
    assert.equal(r.status, 403, `wrong current password ${i}: ${r.status} ${r.text}`);
    assert.equal(r.json.error.code, 'bad_current_password');
    assert.equal(r.json.error.message, 'Le mot de passe actuel est incorrect.');
  }
  const limited = await v.req('POST', 'me/password', {body: {current: NEW, new: 'Encore-un-autre-mdp'}});
  assert.equal(limited.status, 429, `6th try with the right password: ${limited.status} ${limited.text}`);
  assert.equal(limited.json.error.code, 'rate_limited');
  assert.ok(limited.headers.get('retry-after'), 'Retry-After');
  const login = await raw('POST', 'login', {body: {login: 'vera', password: NEW}});
  assert.equal(login.status, 429, 'the login of the account is limited too');
  assert.equal((await v.req('GET', 'me')).status, 200, 'the session itself is not ended by it');
});

step('no JavaScript error on any page', async () => {
  assert.deepEqual(pageErrors, []);
});

/* ================================================================== API: refusals */

step('API: the new endpoints refuse no CSRF token (403), a viewer (403), staff where admin only (403)', async () => {
  const a = state.agnes;
  const v = await new Session('victor').open();
  const changes = [
    ['POST', 'jobs', {title: 'X', expires: '2040-01-01'}], ['POST', `jobs/${state.jobId}/expire`, {}],
    ['POST', 'job-categories', {label: 'Pirate'}], ['POST', 'alert-topics', {label: 'Pirate'}],
    ['POST', 'alerts', {topic: 'sortie', text: 'x'}], ['POST', 'alerts/preview', {topic: 'sortie', text: 'x'}],
    ['PUT', 'routes', {routes: ['sim']}], ['PATCH', 'settings', {settings: {daily_cap: '9'}}],
    ['PUT', 'templates', {name: 'help', body: 'x'}], ['POST', 'templates/preview', {name: 'help', body: 'x'}],
    ['POST', 'templates/reset', {name: 'help'}], ['POST', 'staff', {login: 'pirate', role: 'admin'}],
    ['POST', 'staff/1/password', {}], ['POST', 'staff/1/disable', {}], ['POST', 'staff/1/enable', {}],
    ['POST', 'partners', {name: 'Pirate'}], ['POST', 'partners/1/revoke', {}], ['POST', 'api-keys', {label: 'x'}],
    ['POST', 'api-keys/1/revoke', {}], ['POST', 'residents/import', {csv: 'telephone\n0612345678\n'}],
    ['PATCH', 'reminders/1', {text: 'x', schedule: 'once', at: '2040-01-01 10:00'}],
  ];
  for (const [m, p, b] of changes) {
    const none = await a.req(m, p, {body: b, csrf: false});
    assert.equal(none.status, 403, `${m} ${p} without CSRF: ${none.status} ${none.text}`);
    assert.equal(none.json?.error?.code, 'csrf');
    const viewer = await v.req(m, p, {body: b});
    assert.equal(viewer.status, 403, `viewer ${m} ${p}: ${viewer.status} ${viewer.text}`);
    assert.equal(viewer.json?.error?.code, 'forbidden');
  }
  for (const [m, p] of [['GET', 'jobs'], ['GET', 'alerts'], ['GET', 'routes']]) {
    assert.equal((await v.req(m, p)).status, 200, `viewer ${m} ${p}`);
  }
  assert.equal((await v.req('GET', 'settings')).status, 403, 'viewer GET settings');
  for (const [m, p, b] of [['GET', 'settings'], ['PATCH', 'settings', {settings: {daily_cap: '9'}}],
    ['POST', 'staff', {login: 'x', role: 'admin'}], ['POST', 'api-keys', {}], ['POST', 'residents/import', {csv: ''}]]) {
    const r = await state.sami.req(m, p, {body: b});
    assert.equal(r.status, 403, `staff ${m} ${p}: ${r.status}`);
  }
  assert.equal((await a.req('GET', 'settings')).json.centre.settings.daily_cap, '4', 'nothing changed');
});

step('API: another centre’s objects are 404, like missing ones', async () => {
  const a = state.agnes;
  const b = await new Session('bruno').open();
  const sA = (await a.req('GET', 'settings')).json;
  const nadia = sA.staff.find((x) => x.login === 'nadia');
  const partner = sA.partners[0];
  const key = sA.api_keys[0];
  const rem = await a.req('POST', 'reminders', {body: {resident_id: state.subs[0].id, text: 'x', schedule: 'once', at: '2040-01-01 10:00'}});
  const checks = [
    ['POST', `jobs/${state.jobId}/expire`, {}], ['POST', `staff/${nadia.id}/password`, {password: 'Mot-de-passe-pirate'}],
    ['POST', `staff/${nadia.id}/enable`, {}], ['POST', `staff/${nadia.id}/disable`, {}],
    ['POST', `partners/${partner.id}/revoke`, {}], ['POST', `api-keys/${key.id}/revoke`, {}],
    ['GET', `reminders/${rem.json.id}`], ['PATCH', `reminders/${rem.json.id}`, {text: 'x', schedule: 'once', at: '2040-01-01 10:00'}],
    ['POST', 'alerts', {topic: 'sortie', text: 'Pirate'}], ['POST', 'alerts/preview', {topic: 'sortie', text: 'x'}],
    ['POST', 'jobs/999999999/expire', {}],
  ];
  for (const [m, p, body] of checks) {
    const r = await b.req(m, p, {body});
    assert.equal(r.status, 404, `bruno ${m} ${p}: ${r.status} ${r.text}`);
    assert.equal(r.json?.error?.code, 'not_found');
  }
  const jobsB = await b.req('GET', 'jobs');
  assert.ok(!jobsB.json.jobs.some((j) => j.id === state.jobId), 'centre A’s offers are not listed in B');
  const setB = await b.req('GET', 'settings');
  assert.ok(!setB.json.staff.some((s) => s.login === 'agnes'), 'nor its staff');
  assert.ok(!setB.text.includes('Mission locale'), 'nor its partners');
  assert.equal((await a.req('GET', `reminders/${rem.json.id}`)).status, 200, 'the owner still reads it');
  const login = await raw('POST', 'login', {body: {login: 'nadia', password: 'Mot-de-passe-pirate'}});
  assert.equal(login.status, 401, 'B could not set A’s staff password');
});

/* ------------------------------------------------------------------ run */

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
