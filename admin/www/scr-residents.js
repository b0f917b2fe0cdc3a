// Habitants: search (first name or phone), list, and the "Ajouter un habitant" form.
import * as api from './api.js';
import {h, put, clear, field, table, debounce} from './dom.js';
import * as fmt from './fmt.js';
import {can, act, announce, navigate, replaceQuery, showError} from './app.js';

export function smsState(r) {
  if (r.opted_out_at) return h('span', {class: 'pill bad'}, 'STOP : ne reçoit plus de SMS');
  if (r.unknown) return h('span', {class: 'pill warn'}, 'Numéro inconnu (pas de consentement)');
  return h('span', {class: 'pill ok'}, 'Reçoit les SMS');
}

export function residentName(r) {
  return r.first_name || fmt.phone(r.phone) || `Habitant n° ${r.id}`;
}

function list(ctx) {
  const q = h('input', {type: 'search', name: 'q', value: ctx.query.get('q') || '',
    autocomplete: 'off', placeholder: 'ex. Fatima ou 06 12'});
  const results = h('div', {id: 'resultats'});
  let seq = 0;
  const search = async () => {
    const mine = ++seq;
    replaceQuery({q: q.value.trim()});
    const data = await api.get('residents', {q: q.value.trim(), limit: 100});
    if (mine !== seq || !ctx.alive()) return;
    const rows = data.residents || [];
    clear(results);
    if (rows.length === 0) {
      put(results, h('p', null, q.value.trim() ? 'Aucun habitant ne correspond à cette recherche.'
        : 'Aucun habitant pour l’instant.'));
    } else {
      put(results, table(q.value.trim() ? `Habitants correspondant à « ${q.value.trim()} »` : 'Habitants',
        ['Prénom', 'Téléphone', 'Langue', 'Consentement', 'SMS'],
        rows.map((r) => [
          {th: true, content: h('a', {href: `#/habitants/${r.id}`}, residentName(r))},
          fmt.phone(r.phone), fmt.language(r.language), fmt.consent(r.consent_source), smsState(r)])));
    }
    if (q.value.trim()) announce(`${fmt.plural(rows.length, 'habitant trouvé', 'habitants trouvés')}${rows.length === 100 ? ' (les 100 premiers)' : ''}.`);
  };
  const run = () => search().catch(showError);
  q.addEventListener('input', debounce(run, 300));
  const form = h('form', {role: 'search', class: 'search', 'aria-label': 'Rechercher un habitant'},
    field('Rechercher un habitant (prénom ou téléphone)', q),
    h('button', {type: 'submit'}, 'Rechercher'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    run();
  });
  put(ctx.view, ctx.heading('Habitants'),
    can('resident') ? h('p', {class: 'quick'}, h('a', {class: 'button primary', href: '#/habitants/ajouter'},
      'Ajouter un habitant'), can('import') ? [' ', h('a', {class: 'button', href: '#/habitants/importer'},
      'Importer un fichier CSV')] : null) : null,
    form, results);
  return search();
}

function addForm(ctx) {
  const phone = h('input', {type: 'tel', name: 'phone', autocomplete: 'off', required: true,
    inputmode: 'tel'});
  const firstName = h('input', {type: 'text', name: 'first_name', autocomplete: 'off',
    maxlength: '60'});
  const lang = h('select', {name: 'language'},
    fmt.LANGUAGES.map(([code, name]) => h('option', {value: code, selected: code === 'fr'}, name)));
  const consents = [['paper', 'Formulaire papier signé'], ['verbal', 'Accord oral (noté par vous)'],
    ['sms', 'L’habitant a envoyé START par SMS']];
  const consent = h('fieldset', {class: 'choices'},
    h('legend', null, 'Consentement pour recevoir des SMS'),
    consents.map(([v, label], i) => h('div', {class: 'choice'},
      h('input', {type: 'radio', name: 'consent', id: `consent-${v}`, value: v, required: i === 0}),
      h('label', {for: `consent-${v}`}, label))));
  const submit = h('button', {type: 'submit', class: 'primary'}, 'Ajouter l’habitant');
  const form = h('form', {class: 'card', 'aria-labelledby': 'titre', novalidate: true},
    field('Téléphone portable', phone, 'Un numéro de portable : 06…, 07… ou +33…'),
    field('Prénom', firstName, 'Facultatif. Il sert à personnaliser les SMS ({prenom}).'),
    field('Langue des SMS', lang),
    consent,
    h('div', {class: 'actions'}, submit, h('a', {href: '#/habitants'}, 'Annuler')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const chosen = form.querySelector('input[name=consent]:checked');
    if (!phone.value.trim()) {
      showError('Indiquez le numéro de téléphone portable.');
      phone.focus();
      return;
    }
    if (!chosen) {
      showError('Indiquez comment l’habitant a donné son accord pour recevoir des SMS.');
      form.querySelector('input[name=consent]').focus();
      return;
    }
    const body = {phone: phone.value.trim(), first_name: firstName.value.trim(),
      language: lang.value, consent_source: chosen.value};
    const r = await act(submit, () => api.post('residents', body).catch((err) => {
      // the number is already known: say who has it and offer the link
      if (err.status === 409 && err.body && err.body.id) {
        err.link = {href: `#/habitants/${err.body.id}`, text: 'Ouvrir la fiche de cet habitant'};
      }
      throw err;
    }), (res) => `${residentName(res)} a été ajouté.`);
    if (r && r.id) navigate(`#/habitants/${r.id}`);
  });
  put(ctx.view, ctx.heading('Ajouter un habitant'),
    can('resident') ? form : h('p', null, 'Votre rôle ne permet pas d’ajouter un habitant.'));
}

export async function render(ctx) {
  if (ctx.opts.add) return addForm(ctx);
  return list(ctx);
}
