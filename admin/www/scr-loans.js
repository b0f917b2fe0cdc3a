// Prêts: requests residents made by SMS (PRET 12) to confirm (for how many days) or refuse,
// what is out, what is overdue, the items. Each decision texts the resident.
import * as api from './api.js';
import {h, put, clear, table, newId} from './dom.js';
import * as fmt from './fmt.js';
import {can, act, showError} from './app.js';

function who(l) {
  const name = l.first_name ? `${l.first_name} (${fmt.phone(l.phone)})` : fmt.phone(l.phone);
  return l.resident_id ? h('a', {href: `#/habitants/${l.resident_id}`}, name) : name;
}

const item = (l) => `${l.item || ''}${l.code ? ` (n° ${l.code})` : ''}`;

// The answer says which SMS went to the resident (sms: [{text}]), or that none did (STOP).
function said(r, what) {
  const due = r && r.loan && typeof r.loan === 'object' && r.loan.due_at
    ? `, à rendre le ${fmt.date(r.loan.due_at)}` : '';
  const texts = r && Array.isArray(r.sms) ? r.sms.map((m) => (m && m.text) || '').filter(Boolean) : [];
  let sms = '';
  if (texts.length) sms = ` SMS envoyé à l’habitant : « ${texts.join(' ')} »`;
  else if (r && r.resident_opted_out) sms = ' Aucun SMS : l’habitant a demandé STOP.';
  return `${what}${due}.${sms}`;
}

// Someone else decided first (409): say it in plain words and show the lists as they are.
async function decide(button, call, success, refresh) {
  const r = await act(button, () => call().catch((e) => {
    if (e.status === 409) {
      // the API says why in French (already returned, already confirmed…)
      e.message = `${e.code === 'bad_state' ? e.message : 'Ce prêt a déjà été traité.'} La liste est mise à jour.`;
      refresh().catch(() => {});
    }
    throw e;
  }), success);
  return r;
}

export async function render(ctx) {
  const box = h('div');
  const refresh = async (focusSel) => {
    const d = await api.get('loans');
    if (!ctx.alive()) return;
    clear(box);
    const write = can('loan');
    const requests = d.requests || [];
    const out = d.out || [];
    const overdue = d.overdue || [];
    const items = d.items || [];

    const reqRows = requests.map((l) => {
      const days = h('input', {type: 'number', min: '1', max: '365', value: '14', class: 'short',
        id: newId('days'), inputmode: 'numeric'});
      const ok = h('button', {type: 'submit', class: 'primary small'}, 'Confirmer');
      const no = h('button', {type: 'button', class: 'small danger'}, 'Refuser');
      ok.setAttribute('aria-label', `Confirmer le prêt de ${item(l)} à ${l.first_name || fmt.phone(l.phone)}`);
      no.setAttribute('aria-label', `Refuser le prêt de ${item(l)} à ${l.first_name || fmt.phone(l.phone)}`);
      const form = h('form', {class: 'row-form', 'data-loan': String(l.id), novalidate: true},
        h('label', {for: days.id}, 'Durée (jours)'), days, ok, no);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const n = Number(days.value);
        if (!Number.isInteger(n) || n < 1 || n > 365) {
          showError('La durée du prêt va de 1 à 365 jours.');
          days.focus();
          return;
        }
        const r = await decide(ok, () => api.post(`loans/${l.id}/confirm`, {days: n}),
          (res) => said(res, `Prêt de ${item(l)} confirmé`), refresh);
        if (r) await refresh('#h-req');
      });
      no.addEventListener('click', async () => {
        if (!window.confirm(`Refuser le prêt de ${item(l)} ?`)) return;
        const r = await decide(no, () => api.post(`loans/${l.id}/refuse`),
          (res) => said(res, `Prêt de ${item(l)} refusé`), refresh);
        if (r) await refresh('#h-req');
      });
      return [{th: true, content: item(l)}, who(l), fmt.shortDateTime(l.requested_at),
        ...(write ? [form] : [])];
    });
    const outRows = (list, overdueList) => list.map((l) => {
      const back = h('button', {type: 'button', class: 'small'}, 'Rendu');
      back.setAttribute('aria-label', `Rendu : ${item(l)}`);
      back.addEventListener('click', async () => {
        const r = await decide(back, () => api.post(`loans/${l.id}/returned`),
          (res) => said(res, `${item(l)} est rendu`), refresh);
        if (r) await refresh(overdueList ? '#h-late' : '#h-out');
      });
      return [{th: true, content: item(l)}, who(l), l.due_at ? fmt.date(l.due_at) : '—',
        l.status ? fmt.loanStatus(l.status) : fmt.loanStatus('confirmed'), ...(write ? [back] : [])];
    });
    put(box, 
      h('section', {'aria-labelledby': 'h-req'},
        h('h2', {id: 'h-req', tabindex: '-1'}, `Demandes à traiter (${requests.length})`),
        requests.length ? table('Demandes de prêt', ['Objet', 'Habitant', 'Demandé le', ...(write ? ['Décision'] : [])],
          reqRows, {captionHidden: true}) : h('p', null, 'Aucune demande en attente.')),
      h('section', {'aria-labelledby': 'h-late'},
        h('h2', {id: 'h-late', tabindex: '-1'}, `En retard (${overdue.length})`),
        overdue.length ? table('Prêts en retard', ['Objet', 'Habitant', 'À rendre le', 'État', ...(write ? ['Action'] : [])],
          outRows(overdue, true), {captionHidden: true, class: 'data late'}) : h('p', null, 'Aucun prêt en retard.')),
      h('section', {'aria-labelledby': 'h-out'},
        h('h2', {id: 'h-out', tabindex: '-1'}, `Prêtés en ce moment (${out.length})`),
        out.length ? table('Objets prêtés', ['Objet', 'Habitant', 'À rendre le', 'État', ...(write ? ['Action'] : [])],
          outRows(out, false), {captionHidden: true}) : h('p', null, 'Rien n’est prêté en ce moment.')),
      h('section', {'aria-labelledby': 'h-items'},
        h('h2', {id: 'h-items', tabindex: '-1'}, 'Objets du centre'),
        items.length ? table('Objets', ['N°', 'Objet', 'État'],
          items.map((i) => [{th: true, content: i.code || ''}, i.name || '', fmt.itemState(i.state)]), {captionHidden: true})
          : h('p', null, 'Aucun objet à prêter.')));
    if (focusSel) {
      const t = box.querySelector(focusSel);
      if (t) t.focus();
    }
  };
  put(ctx.view, ctx.heading('Prêts de matériel'),
    h('p', null, 'Les habitants demandent un objet par SMS (PRET 12). Confirmez ou refusez : ils reçoivent la réponse par SMS.'),
    box);
  await refresh();
  ctx.poll(async () => {
    // refresh the lists only when nobody is in the middle of a decision
    if (box.contains(document.activeElement)) return;
    await refresh();
  }, 15000);
}
