// A resident's page: details and SMS consent (STOP / START), messages with live states,
// reminders (cancel), reminder occurrences with acknowledgements, subscriptions, loans,
// attendance; "Envoyer un SMS"; link to create a reminder.
import * as api from './api.js';
import {h, put, clear, field, table} from './dom.js';
import * as fmt from './fmt.js';
import {describeRrule} from './rrule.js';
import {can, act, navigate, showError} from './app.js';
import {messageRows} from './widgets.js';
import {sendForm} from './scr-messages.js';
import {smsState, residentName} from './scr-residents.js';

const hhmm = (local) => (/[ T](\d{2}:\d{2})/.exec(local || '') || [])[1] || '';
const dateOf = (local) => (/^(\d{4})-(\d{2})-(\d{2})/.exec(local || '') || []).slice(1).reverse().join('/');

export function scheduleText(r) {
  if (r.schedule === 'once') return `une fois, ${fmt.localLong(r.start_local)}`;
  if (r.schedule === 'rrule') {
    return `${describeRrule(r.rrule, hhmm(r.start_local))}, à partir du ${dateOf(r.start_local)}`;
  }
  if (r.schedule === 'appointment') {
    return `avant le rendez-vous du ${fmt.localLong(r.appointment_local)}${r.place ? ` (${r.place})` : ''}`;
  }
  return r.schedule || '';
}

function section(id, title, content) {
  return h('section', {'aria-labelledby': id}, h('h2', {id}, title), content);
}

function details(ctx, res, refresh) {
  const out = Boolean(res.opted_out_at);
  const toggle = h('button', {type: 'button', class: out ? '' : 'danger'},
    out ? 'Réactiver les SMS (l’habitant est d’accord)' : 'Arrêter les SMS (STOP)');
  toggle.addEventListener('click', async () => {
    if (!out && !window.confirm(`Ne plus envoyer aucun SMS à ${residentName(res)} ?`)) return;
    const r = await act(toggle, () => api.patch(`residents/${res.id}`, {opted_out: !out}),
      out ? 'Les SMS sont réactivés.' : 'Plus aucun SMS ne sera envoyé à cet habitant.');
    if (r) refresh();
  });
  const name = h('input', {type: 'text', value: res.first_name || '', maxlength: '60'});
  const lang = h('select', null, fmt.LANGUAGES.map(([code, label]) => h('option',
    {value: code, selected: code === res.language}, label)));
  const save = h('button', {type: 'submit'}, 'Enregistrer');
  const edit = h('form', {class: 'inline-form'}, field('Prénom', name), field('Langue des SMS', lang),
    h('div', {class: 'actions'}, save));
  edit.addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await act(save, () => api.patch(`residents/${res.id}`, {first_name: name.value.trim(),
      language: lang.value}), 'Fiche enregistrée.');
    if (r) refresh();
  });
  return h('div', {class: 'card'},
    h('dl', {class: 'details'},
      h('dt', null, 'Téléphone'), h('dd', null, fmt.phone(res.phone)),
      h('dt', null, 'Langue'), h('dd', null, fmt.language(res.language)),
      h('dt', null, 'Consentement'), h('dd', null, fmt.consent(res.consent_source),
        res.consent_at ? ` (le ${fmt.shortDateTime(res.consent_at)})` : ''),
      h('dt', null, 'SMS'), h('dd', {id: 'etat-sms'}, smsState(res),
        res.opted_out_at ? ` depuis le ${fmt.shortDateTime(res.opted_out_at)}` : '')),
    can('resident') ? h('div', {class: 'actions'}, toggle,
      h('details', null, h('summary', null, 'Modifier le prénom ou la langue'), edit)) : null);
}

// Export (everything stored about the number, as JSON) and erasure (admin only).
function privacy(res) {
  const box = h('div', {class: 'card'});
  if (can('export')) {
    put(box, h('p', null, h('a', {class: 'button', href: api.url(`residents/${res.id}/export`).href,
      download: `habitant-${res.id}.json`}, 'Télécharger ses données (JSON)'),
    ' ', h('span', {class: 'hint'}, 'Tout ce qui est enregistré sur ce numéro, à remettre à l’habitant qui le demande.')));
  }
  if (can('erase')) {
    const erase = h('button', {type: 'button', class: 'danger'}, 'Effacer cet habitant');
    erase.addEventListener('click', async () => {
      if (!window.confirm(`Effacer définitivement ${residentName(res)} ? Son numéro et les textes de ses messages seront supprimés ; les statistiques restent. Cette action ne peut pas être annulée.`)) return;
      const r = await act(erase, () => api.post(`residents/${res.id}/erase`),
        `${residentName(res)} a été effacé.`);
      if (r) navigate('#/habitants');
    });
    put(box, h('p', null, erase, ' ', h('span', {class: 'hint'},
      'Droit à l’effacement. Un numéro qui a demandé STOP reste bloqué pour ne jamais être recontacté par erreur.')));
  }
  return box;
}

export async function render(ctx) {
  const id = ctx.params[0];
  let data = await api.get(`residents/${id}`);
  if (!ctx.alive()) return;
  const res = data.resident;
  const head = ctx.heading(residentName(res));
  const detailBox = h('div');
  const remindersBox = h('div');
  const occBox = h('div');
  const tbody = h('tbody');
  const msgRows = messageRows(tbody, {withWho: false});
  const msgTable = h('div', {class: 'table-wrap'}, h('table', {class: 'data', id: 'messages'},
    h('caption', {class: 'sr-only'}, `Messages échangés avec ${residentName(res)}`),
    h('thead', null, h('tr', null, ['Date', 'Sens', 'Texte', 'État', 'Détails']
      .map((t) => h('th', {scope: 'col'}, t)))), tbody));
  const noMsg = h('p', null, 'Aucun message pour l’instant.');

  const drawReminders = (d) => {
    clear(remindersBox);
    const list = d.reminders || [];
    if (!list.length) {
      put(remindersBox, h('p', null, 'Aucun rappel.'));
    } else {
      put(remindersBox, table(`Rappels de ${residentName(d.resident)}`,
        ['Texte', 'Quand', 'Prochain envoi', 'État', can('reminder') ? 'Action' : null].filter(Boolean),
        list.map((r) => {
          const cancel = r.status === 'active' && can('reminder') ? h('button', {type: 'button',
            class: 'small', 'aria-label': `Annuler le rappel « ${(r.body || '').slice(0, 40)} »`}, 'Annuler') : null;
          if (cancel) {
            cancel.addEventListener('click', async () => {
              if (!window.confirm('Annuler ce rappel ? Il ne sera plus envoyé.')) return;
              const ok = await act(cancel, () => api.del(`reminders/${r.id}`), 'Rappel annulé.');
              if (ok) refresh();
            });
          }
          const edit = r.status !== 'cancelled' && can('reminder') && r.created_by !== 'loan'
            ? h('a', {href: `#/rappels/${r.id}/modifier`, class: 'button small',
              'aria-label': `Modifier le rappel « ${(r.body || '').slice(0, 40)} »`}, 'Modifier') : null;
          return [h('span', {class: 'sms-text'}, r.body || ''),
            [scheduleText(r), r.urgent ? ' · urgent' : '', r.ack_requested ? ' · confirmation OK demandée' : ''].join(''),
            r.next_at && r.status === 'active' ? fmt.dateTime(r.next_at) : '—',
            fmt.reminderStatus(r.status), ...(can('reminder') ? [h('span', {class: 'row-form'}, edit, cancel)] : [])];
        }), {captionHidden: true}));
    }
    clear(occBox);
    const occ = d.occurrences || [];
    if (!occ.length) {
      put(occBox, h('p', null, 'Aucun envoi de rappel pour l’instant.'));
    } else {
      put(occBox, table('Envois des rappels', ['Prévu le', 'Texte', 'État', 'Confirmation (OK)'],
        occ.map((o) => [fmt.dateTime(o.due_at), h('span', {class: 'sms-text'}, o.body || ''),
          `${fmt.occurrenceStatus(o.status)}${o.reason ? ` (${fmt.reason(o.reason)})` : ''}`,
          o.acked_at ? `Confirmé le ${fmt.shortDateTime(o.acked_at)}` : '—']), {captionHidden: true}));
    }
  };
  const drawMessages = (d) => {
    msgRows.merge(d.messages || []);
    noMsg.hidden = msgRows.size() > 0;
    msgTable.hidden = msgRows.size() === 0;
  };
  const refresh = async () => {
    try {
      data = await api.get(`residents/${id}`);
    } catch (e) {
      if (e.status !== 401) showError(e);
      return;
    }
    if (!ctx.alive()) return;
    put(clear(detailBox), details(ctx, data.resident, refresh));
    drawReminders(data);
    drawMessages(data);
  };
  put(detailBox, details(ctx, res, refresh));
  drawReminders(data);
  drawMessages(data);

  const subs = data.subscriptions || [];
  const loans = data.loans || [];
  const att = data.attendance || [];
  const kind = {topic: 'Alertes', alert: 'Alertes', job: 'Offres d’emploi', jobs: 'Offres d’emploi'};
  const send = can('message') ? sendForm({residentId: Number(id), onSent: () => refresh()}) : null;

  put(ctx.view, head,
    h('p', null, h('a', {href: '#/habitants'}, '← Tous les habitants')),
    detailBox,
    can('reminder') ? h('p', {class: 'quick'},
      h('a', {class: 'button primary', href: `#/rappels/nouveau?habitant=${id}`}, 'Créer un rappel'),
      send ? h('button', {type: 'button', onclick: () => send.el.querySelector('textarea').focus()},
        'Écrire un SMS') : null) : null,
    section('h-msg', 'Messages', [noMsg, msgTable]),
    send ? send.el : null,
    section('h-rem', 'Rappels', remindersBox),
    section('h-occ', 'Envois des rappels et confirmations', occBox),
    section('h-subs', 'Abonnements', subs.length
      ? h('ul', null, subs.map((s) => h('li', null, `${kind[s.kind] || s.kind} : ${s.label || s.name}`)))
      : h('p', null, 'Aucun abonnement.')),
    section('h-loans', 'Prêts de matériel', loans.length
      ? table('Prêts', ['Objet', 'État', 'Demandé le', 'À rendre le', 'Rendu le'],
        loans.map((l) => [`${l.item || ''}${l.code ? ` (${l.code})` : ''}`, fmt.loanStatus(l.status),
          fmt.shortDateTime(l.requested_at), l.due_at ? fmt.date(l.due_at) : '—',
          l.returned_at ? fmt.shortDateTime(l.returned_at) : '—']), {captionHidden: true})
      : h('p', null, 'Aucun prêt.')),
    section('h-att', 'Présences aux activités', att.length
      ? table('Présences', ['Activité', 'Séance', 'Personnes', 'Pointé par', 'Pointé le'],
        att.map((a) => [a.activity || '', fmt.dateTime(a.starts_at), String(a.people ?? ''),
          fmt.channel(a.channel), fmt.shortDateTime(a.at)]), {captionHidden: true})
      : h('p', null, 'Aucune présence enregistrée.')),
    can('export') || can('erase') ? section('h-rgpd', 'Données personnelles (RGPD)', privacy(res)) : null);
  // message states (queued → delivered) and new replies, without reloading
  ctx.poll(async () => {
    const d = await api.get('messages', {resident_id: id, limit: 50});
    if (!ctx.alive()) return;
    drawMessages(d);
  }, 3000);
}
