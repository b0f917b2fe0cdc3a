// Messages: the log with filters (state, direction), live states (polled every 2.5 s while
// the page is visible), one message's state history, and "Envoyer un SMS".
import * as api from './api.js';
import {h, put, clear, field, table} from './dom.js';
import * as fmt from './fmt.js';
import {can, act, announce, replaceQuery, showError} from './app.js';
import {residentPicker, smsBox, messageRows, statusPill, segmentsText, encodingText} from './widgets.js';

const POLL_MS = 2500;
const FINAL = new Set(['delivered', 'undelivered', 'failed', 'cancelled', 'received']);

// The "Envoyer un SMS" form; onSent(answer, residentId) after a 202.
export function sendForm({residentId = null, onSent = () => {}} = {}) {
  const picker = residentId ? null : residentPicker({label: 'Destinataire'});
  const box = smsBox({label: 'Texte du SMS',
    hint: 'Le SMS part tout de suite (sauf si l’habitant a demandé STOP).'});
  const submit = h('button', {type: 'submit', class: 'primary'}, 'Envoyer le SMS');
  const form = h('form', {class: 'card', 'aria-labelledby': 'h-send', novalidate: true},
    h('h2', {id: 'h-send'}, 'Envoyer un SMS'),
    picker ? picker.el : null,
    box.el,
    h('div', {class: 'actions'}, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const rid = residentId || (picker && picker.value());
    if (!rid) {
      showError('Choisissez le destinataire.');
      picker.focus();
      return;
    }
    if (!box.textarea.value.trim()) {
      showError('Écrivez le texte du SMS.');
      box.textarea.focus();
      return;
    }
    const r = await act(submit, () => api.post('messages', {resident_id: rid,
      text: box.textarea.value}),
    (res) => `SMS n° ${res.id} mis en file d’attente : ${segmentsText(res.segments)}, ${encodingText(res.encoding)}.`);
    if (r) {
      const text = box.textarea.value;
      box.textarea.value = '';
      box.textarea.dispatchEvent(new Event('input'));
      onSent(r, rid, text);
    }
  });
  return {el: form, ready: picker ? picker.ready : Promise.resolve()};
}

function filtersForm(ctx, onChange) {
  const status = h('select', {name: 'statut'}, h('option', {value: ''}, 'Tous les états'),
    fmt.MESSAGE_STATUSES.map((s) => h('option', {value: s, selected: ctx.query.get('statut') === s},
      fmt.messageStatus(s))));
  const dir = h('select', {name: 'sens'}, h('option', {value: ''}, 'Envoyés et reçus'),
    h('option', {value: 'out', selected: ctx.query.get('sens') === 'out'}, 'Envoyés seulement'),
    h('option', {value: 'in', selected: ctx.query.get('sens') === 'in'}, 'Reçus seulement'));
  const form = h('form', {class: 'filters', 'aria-label': 'Filtrer les messages'},
    field('État', status), field('Sens', dir),
    h('button', {type: 'submit'}, 'Filtrer'));
  const fire = () => {
    replaceQuery({statut: status.value, sens: dir.value});
    onChange({status: status.value, direction: dir.value});
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    fire();
  });
  status.addEventListener('change', fire);
  dir.addEventListener('change', fire);
  return {el: form, value: () => ({status: status.value, direction: dir.value})};
}

async function list(ctx) {
  const tbody = h('tbody');
  const rows = messageRows(tbody);
  const tbl = h('div', {class: 'table-wrap'}, h('table', {class: 'data', id: 'messages'},
    h('caption', null, 'Journal des messages (le plus récent en haut ; les états se mettent à jour tout seuls)'),
    h('thead', null, h('tr', null, ['Date', 'Sens', 'Habitant', 'Texte', 'État', 'Détails']
      .map((t) => h('th', {scope: 'col'}, t)))),
    tbody));
  const empty = h('p', {hidden: true}, 'Aucun message ne correspond à ces filtres.');
  const more = h('button', {type: 'button', hidden: true}, 'Afficher des messages plus anciens');
  let filters = {};
  let nextBefore = null;
  let seq = 0;
  const load = async ({reset = false, older = false} = {}) => {
    const mine = ++seq;
    const data = await api.get('messages', {status: filters.status, direction: filters.direction,
      before: older ? nextBefore : undefined, limit: 50});
    if (mine !== seq || !ctx.alive()) return;
    if (reset) rows.reset();
    const res = rows.merge(data.messages || [], {append: older});
    if (reset || older) {
      nextBefore = data.next_before || null;
      more.hidden = !nextBefore;
    }
    empty.hidden = rows.size() > 0;
    tbl.hidden = rows.size() === 0;
    if (older) announce(`${fmt.plural(res.added, 'message plus ancien affiché', 'messages plus anciens affichés')}.`);
  };
  const f = filtersForm(ctx, (v) => {
    filters = v;
    load({reset: true}).then(() => announce(`${fmt.plural(rows.size(), 'message affiché', 'messages affichés')}.`))
      .catch(showError);
  });
  filters = f.value();
  more.addEventListener('click', () => act(more, () => load({older: true})));
  // the message is committed before the 202: it is in the log at once, the poll brings the
  // next states
  const send = can('message') ? sendForm({onSent: () => load().catch(showError)}) : null;
  put(ctx.view, ctx.heading('Messages'),
    send ? send.el : null,
    h('section', {'aria-labelledby': 'h-log'},
      h('h2', {id: 'h-log'}, 'Journal'),
      f.el, empty, tbl, more));
  await load({reset: true});
  // new messages and state changes, without reloading the page
  ctx.poll(() => load(), POLL_MS);
  if (send) await send.ready;
}

async function detail(ctx) {
  const id = ctx.params[0];
  const box = h('div');
  put(ctx.view, ctx.heading(`Message n° ${id}`),
    h('p', null, h('a', {href: '#/messages'}, '← Retour au journal des messages')), box);
  let last = null;
  const draw = (m) => {
    const key = JSON.stringify([m.status, (m.history || []).length, (m.attempts || []).length]);
    if (key === last) return;
    const first = last === null;
    last = key;
    clear(box);
    const dl = h('dl', {class: 'details'},
      h('dt', null, 'État'), h('dd', {class: 'status'}, statusPill(m.status)),
      h('dt', null, m.direction === 'in' ? 'De' : 'À'), h('dd', null, fmt.phone(m.to || m.from)),
      h('dt', null, 'Texte'), h('dd', {class: 'sms-text'}, m.text || ''),
      h('dt', null, 'Créé le'), h('dd', null, fmt.dateTime(m.created_at)),
      m.segments ? [h('dt', null, 'Taille'), h('dd', null, `${segmentsText(m.segments)}, ${encodingText(m.encoding)}`)] : null,
      m.route ? [h('dt', null, 'Voie'), h('dd', null, m.route)] : null,
      m.last_error ? [h('dt', null, 'Dernière erreur'),
        h('dd', null, [m.last_error.code, m.last_error.message].filter(Boolean).join(' — '))] : null);
    put(box, dl,
      h('h2', null, 'Historique des états'),
      table(`Historique des états du message n° ${m.id}`, ['Quand', 'État', 'Voie', 'Détail'],
        (m.history || []).map((e) => [fmt.dateTime(e.at), statusPill(e.status), e.route || '',
          typeof e.detail === 'string' ? e.detail : e.detail ? JSON.stringify(e.detail) : '']),
        {captionHidden: true}),
      (m.attempts || []).length ? [h('h2', null, 'Tentatives d’envoi'),
        table('Tentatives d’envoi', ['Début', 'Voie', 'Résultat', 'Erreur'],
          m.attempts.map((a) => [fmt.dateTime(a.started_at), a.route || '', a.outcome || 'en cours',
            [a.error_code, a.error].filter(Boolean).join(' — ')]), {captionHidden: true})] : null);
    if (!first) announce(`Message n° ${m.id} : ${fmt.messageStatus(m.status)}.`);
  };
  const m = await api.get(`messages/${id}`);
  draw(m);
  ctx.poll(async () => {
    if (last && FINAL.has(JSON.parse(last)[0])) return;
    draw(await api.get(`messages/${id}`));
  }, POLL_MS);
}

export async function render(ctx) {
  if (ctx.opts.detail) return detail(ctx);
  return list(ctx);
}
