// Accueil: today's reminders, messages waiting for a human, failures, routes.
import * as api from './api.js';
import {h, put, clear, table} from './dom.js';
import * as fmt from './fmt.js';
import {can, setInboxCount} from './app.js';

function tile(label, value, link, linkText, tone) {
  return h('li', {class: `tile${tone ? ` ${tone}` : ''}`},
    h('span', {class: 'tile-value'}, String(value)),
    h('span', {class: 'tile-label'}, label),
    link ? h('a', {href: link}, linkText) : null);
}

function draw(box, d) {
  clear(box);
  const r = d.reminders_today || {};
  const m = d.messages_24h || {};
  const inboxOpen = d.inbox_open || 0;
  setInboxCount(inboxOpen);
  put(box, 
    h('section', {'aria-labelledby': 'h-today'},
      h('h2', {id: 'h-today'}, 'Aujourd’hui'),
      h('ul', {class: 'tiles'},
        tile('rappels prévus aujourd’hui', r.pending || 0),
        tile('rappels partis aujourd’hui', r.queued || 0),
        tile('rappels non envoyés aujourd’hui', r.skipped || 0, null, null, r.skipped ? 'warn' : ''),
        tile(inboxOpen === 1 ? 'message attend une réponse' : 'messages attendent une réponse',
          inboxOpen, can('inbox') ? '#/boite' : null, 'Ouvrir la boîte de réception',
          inboxOpen ? 'warn' : ''),
        tile('échecs d’envoi en 24\u00a0h', d.failures_24h || 0,
          d.failures_24h ? '#/messages?statut=failed' : null, 'Voir les échecs',
          d.failures_24h ? 'bad' : ''))),
    h('section', {'aria-labelledby': 'h-24h'},
      h('h2', {id: 'h-24h'}, 'SMS des dernières 24 heures'),
      table('SMS des dernières 24 heures par état', ['État', 'Nombre'], [
        [{th: true, content: 'Distribués'}, String(m.delivered || 0)],
        [{th: true, content: 'Envoyés (sans accusé de réception)'}, String(m.sent || 0)],
        [{th: true, content: 'En file d’attente'}, String(m.queued || 0)],
        [{th: true, content: 'En échec'}, String(m.failed || 0)],
        ...(m.received !== undefined ? [[{th: true, content: 'Reçus'}, String(m.received)]] : []),
      ], {captionHidden: true, class: 'data compact'})),
    h('section', {'aria-labelledby': 'h-routes'},
      h('h2', {id: 'h-routes'}, 'Voies d’envoi'),
      d.routes ? routesTable(d.routes) : h('p', null, 'État des voies d’envoi indisponible.')));
}

// routes: [{name, driver, state, queued (this centre's messages waiting), credit?, last_error?,
// default}] in the centre's order (GET routes).
function routesTable(routes) {
  if (!routes.length) return h('p', null, 'Aucune voie d’envoi configurée.');
  const driver = {sim: 'simulateur', isendpro: 'iSendPro', gammu: 'modem GSM'};
  return table('État des voies d’envoi',
    ['Voie', 'Type', 'État', 'Crédit', 'En attente', 'Dernière erreur'],
    routes.map((r) => {
      const up = r.state === 'up';
      const credit = r.credit !== undefined && r.credit !== null ? String(r.credit) : '—';
      return [{th: true, content: `${r.name}${r.default ? ' (par défaut)' : ''}`}, driver[r.driver] || r.driver || '',
        h('span', {class: `pill ${up ? 'ok' : 'bad'}`}, up ? 'Fonctionne' : (r.state === 'unknown' ? 'Inconnue' : 'En panne')),
        credit, String(r.queued ?? ''), r.last_error || '—'];
    }), {captionHidden: true});
}

// The dashboard and the centre's routes with their state and credit (GET routes).
async function load() {
  const [d, r] = await Promise.all([api.get('dashboard'), api.get('routes').catch(() => null)]);
  d.routes = r ? r.routes || [] : null;
  return d;
}

export async function render(ctx) {
  const s = ctx.session;
  const box = h('div', {class: 'dashboard'});
  put(ctx.view, ctx.heading('Accueil'),
    h('p', {class: 'lead'}, `Bonjour ${s.name || s.login}. Voici l’activité du centre.`),
    h('p', {class: 'quick'},
      can('resident') ? h('a', {class: 'button', href: '#/habitants/ajouter'}, 'Ajouter un habitant') : null,
      can('reminder') ? h('a', {class: 'button', href: '#/rappels/nouveau'}, 'Créer un rappel') : null,
      h('a', {class: 'button', href: '#/messages'}, 'Voir les messages')),
    box);
  draw(box, await load());
  ctx.poll(async () => draw(box, await load()), 15000);
}
