// Boîte de réception: messages the flows did not understand, waiting for a human. Reply
// (text → SMS, the item is then done), mark as handled, assign to a colleague. New items
// appear by themselves (polled while the page is visible).
import * as api from './api.js';
import {h, put, clear, field} from './dom.js';
import * as fmt from './fmt.js';
import {can, act, announce, setInboxCount, showError} from './app.js';
import {smsBox} from './widgets.js';

function who(it) {
  const name = it.first_name ? `${it.first_name} (${fmt.phone(it.phone)})` : fmt.phone(it.phone);
  return it.resident_id ? h('a', {href: `#/habitants/${it.resident_id}`}, name) : name;
}

function itemCard(it, {open, onGone}) {
  const hid = `inbox-h-${it.id}`;
  const art = h('article', {class: 'card inbox-item', 'aria-labelledby': hid, 'data-id': String(it.id)});
  const actions = h('div', {class: 'actions'});
  const replyBox = h('div', {hidden: true});
  if (open && can('inbox')) {
    const replyBtn = h('button', {type: 'button', class: 'primary', 'aria-expanded': 'false'}, 'Répondre');
    const sms = smsBox({label: `Votre réponse à ${it.first_name || fmt.phone(it.phone)}`});
    const send = h('button', {type: 'submit', class: 'primary'}, 'Envoyer la réponse');
    const form = h('form', {novalidate: true}, sms.el, h('div', {class: 'actions'}, send));
    put(replyBox, form);
    replyBtn.addEventListener('click', () => {
      const show = replyBox.hidden;
      replyBox.hidden = !show;
      replyBtn.setAttribute('aria-expanded', String(show));
      if (show) sms.textarea.focus();
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!sms.textarea.value.trim()) {
        showError('Écrivez la réponse.');
        sms.textarea.focus();
        return;
      }
      const r = await act(send, () => api.post(`inbox/${it.id}/reply`, {text: sms.textarea.value}),
        (res) => `Réponse envoyée (SMS n° ${res.message_id}) ; le message est traité.`);
      if (r) onGone(it.id);
    });
    const done = h('button', {type: 'button'}, 'Marquer comme traité');
    done.addEventListener('click', async () => {
      const r = await act(done, () => api.post(`inbox/${it.id}/done`), 'Message marqué comme traité.');
      if (r !== undefined) onGone(it.id);
    });
    const login = h('input', {type: 'text', autocomplete: 'off', value: it.assigned_to || '',
      autocapitalize: 'none', class: 'short'});
    const assign = h('button', {type: 'submit'}, 'Attribuer');
    const assignForm = h('form', {class: 'inline-form assign', novalidate: true},
      field('Attribuer à (identifiant du collègue)', login), assign);
    assignForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!login.value.trim()) {
        showError('Indiquez l’identifiant du collègue.');
        login.focus();
        return;
      }
      const r = await act(assign, () => api.post(`inbox/${it.id}/assign`, {login: login.value.trim()}),
        `Message attribué à ${login.value.trim()}.`);
      if (r !== undefined) {
        put(clear(art.querySelector('.assigned')), `Attribué à ${login.value.trim()}`);
      }
    });
    put(actions, replyBtn, done, h('details', null, h('summary', null, 'Attribuer à un collègue'), assignForm));
  }
  put(art, 
    h('h2', {id: hid, class: 'h3'}, 'De ', who(it)),
    h('p', {class: 'meta'}, fmt.dateTime(it.created_at), ' · ', fmt.reason(it.reason),
      h('span', {class: 'assigned'}, it.assigned_to ? ` · Attribué à ${it.assigned_to}` : ''),
      it.handled_at ? ` · Traité le ${fmt.shortDateTime(it.handled_at)}${it.handled_by ? ` par ${it.handled_by}` : ''}` : ''),
    h('p', {class: 'bubble in'}, it.text || '(message vide)'),
    actions, replyBox);
  return art;
}

export async function render(ctx) {
  const state = ctx.query.get('etat') === 'traites' ? 'done' : 'open';
  const open = state === 'open';
  const listBox = h('div', {class: 'inbox'});
  const empty = h('p', {hidden: true}, open ? 'Aucun message en attente. Bravo !' : 'Aucun message traité.');
  const cards = new Map();
  const gone = (id) => {
    const art = cards.get(id);
    cards.delete(id);
    if (art) {
      // keep the focus somewhere sensible: the next item, else the title
      const next = art.nextElementSibling || art.previousElementSibling;
      art.remove();
      const target = next ? next.querySelector('button, a') : document.getElementById('titre');
      if (target) target.focus();
    }
    empty.hidden = cards.size > 0;
    if (open) setInboxCount(cards.size);
  };
  const load = async () => {
    const data = await api.get('inbox', {state});
    if (!ctx.alive()) return;
    const items = data.items || [];
    const ids = new Set(items.map((i) => i.id));
    let added = 0;
    // newest first: insert in order before the first known card
    const anchor = listBox.firstElementChild;
    for (const it of items) {
      if (!cards.has(it.id)) {
        const art = itemCard(it, {open, onGone: gone});
        cards.set(it.id, art);
        listBox.insertBefore(art, anchor);
        added += 1;
      }
    }
    for (const [id, art] of cards) {
      if (!ids.has(id) && !art.contains(document.activeElement)) {
        art.remove();
        cards.delete(id);
      }
    }
    empty.hidden = cards.size > 0;
    if (open) setInboxCount(cards.size);
    return added;
  };
  put(ctx.view, ctx.heading('Boîte de réception'),
    h('p', null, 'Les SMS que Passerelle n’a pas compris arrivent ici : répondez-leur ou marquez-les comme traités.'),
    h('nav', {class: 'tabs', 'aria-label': 'Messages à traiter ou traités'},
      h('a', {href: '#/boite', 'aria-current': open ? 'page' : null}, 'À traiter'),
      h('a', {href: '#/boite?etat=traites', 'aria-current': open ? null : 'page'}, 'Traités')),
    empty, listBox);
  if (!can('inbox')) {
    put(ctx.view, h('p', null, 'Votre rôle ne permet pas de lire la boîte de réception.'));
    return;
  }
  await load();
  ctx.poll(async () => {
    const added = await load();
    if (added) announce(`${fmt.plural(added, 'nouveau message', 'nouveaux messages')} dans la boîte de réception.`);
  }, 5000);
}
