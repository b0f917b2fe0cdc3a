// Emplois: the centre's job offers (what residents get with JOB and JOB 12), publish one,
// end one; job categories ("métiers") with how many residents follow each (they receive new
// offers of that category by SMS, grouped, at most one SMS a day).
import * as api from './api.js';
import {h, put, clear, field, table} from './dom.js';
import * as fmt from './fmt.js';
import {can, act} from './app.js';

export async function render(ctx) {
  const write = can('job');
  const box = h('div');
  const catBox = h('div');
  const category = h('select', {name: 'category'});
  const refresh = async (focusSel) => {
    const d = await api.get('jobs');
    if (!ctx.alive()) return;
    const cats = d.categories || [];
    const jobs = d.jobs || [];
    const keep = category.value;
    clear(category);
    put(category, h('option', {value: ''}, '— Sans métier (pas d’alerte SMS) —'),
      cats.map((c) => h('option', {value: c.name}, `${c.label} (${fmt.plural(c.subscribers, 'abonné', 'abonnés')})`)));
    category.value = cats.some((c) => c.name === keep) ? keep : '';
    clear(catBox);
    put(catBox, cats.length ? table('Métiers et abonnés', ['Métier', 'Mot-clé SMS', 'Abonnés', 'Offres en cours'],
      cats.map((c) => [{th: true, content: c.label}, `JOB ${c.name.toUpperCase()}`, String(c.subscribers),
        String(c.active_jobs)]), {captionHidden: true})
      : h('p', null, 'Aucun métier pour l’instant.'));
    clear(box);
    const active = jobs.filter((j) => j.active);
    const ended = jobs.filter((j) => !j.active);
    const rows = (list, withAction) => list.map((j) => {
      let action = null;
      if (withAction && write) {
        action = h('button', {type: 'button', class: 'small danger',
          'aria-label': `Retirer l’offre n° ${j.number} (${j.title})`}, 'Retirer');
        action.addEventListener('click', async () => {
          if (!window.confirm(`Retirer l’offre « ${j.title} » ? Les habitants ne la verront plus.`)) return;
          const r = await act(action, () => api.post(`jobs/${j.id}/expire`), `Offre n° ${j.number} retirée.`);
          if (r) await refresh('#h-jobs');
        });
      }
      return [{th: true, content: `n° ${j.number}`}, h('span', null, h('strong', null, j.title),
        j.text ? [h('br'), j.text] : null), j.category_label || j.category || '—', j.contact || '—',
        j.expires_at ? fmt.shortDateTime(j.expires_at).slice(0, 10) : '—',
        j.source === 'staff' ? 'Centre' : 'Partenaire', ...(withAction && write ? [action] : [])];
    });
    put(box, h('section', {'aria-labelledby': 'h-jobs'},
      h('h2', {id: 'h-jobs', tabindex: '-1'}, `Offres en cours (${active.length})`),
      active.length ? table('Offres en cours', ['N°', 'Offre', 'Métier', 'Contact', 'Jusqu’au', 'Source',
        ...(write ? ['Action'] : [])], rows(active, true), {captionHidden: true})
        : h('p', null, 'Aucune offre en cours.')),
    ended.length ? h('section', {'aria-labelledby': 'h-ended'},
      h('h2', {id: 'h-ended'}, `Offres terminées (${ended.length})`),
      table('Offres terminées', ['N°', 'Offre', 'Métier', 'Contact', 'Jusqu’au', 'Source'], rows(ended, false),
        {captionHidden: true})) : null);
    if (focusSel) {
      const t = ctx.view.querySelector(focusSel);
      if (t) t.focus();
    }
  };

  let forms = null;
  if (write) {
    const title = h('input', {type: 'text', name: 'title', maxlength: '60', required: true, autocomplete: 'off'});
    const text = h('textarea', {name: 'text', rows: '3', maxlength: '300'});
    const contact = h('input', {type: 'text', name: 'contact', maxlength: '80', autocomplete: 'off'});
    const expires = h('input', {type: 'date', name: 'expires', required: true, value: fmt.today(30).date});
    const save = h('button', {type: 'submit', class: 'primary'}, 'Publier l’offre');
    const form = h('form', {class: 'card', 'aria-labelledby': 'h-new-job', novalidate: true},
      h('h2', {id: 'h-new-job'}, 'Publier une offre'),
      field('Intitulé', title, 'Court : il est lu par SMS (ex. « Cariste H/F »).'),
      field('Description', text, '300 caractères au plus : envoyée avec JOB + numéro.'),
      field('Contact', contact, 'ex. Mission locale, 03 20 00 00 00'),
      field('Métier', category, 'Les abonnés de ce métier reçoivent l’offre par SMS.'),
      field('Valable jusqu’au', expires), h('div', {class: 'actions'}, save));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const r = await act(save, () => api.post('jobs', {title: title.value.trim(), text: text.value.trim(),
        contact: contact.value.trim(), category: category.value, expires: expires.value}),
      (x) => `Offre n° ${x.number} publiée${x.alerted ? ` : ${fmt.plural(x.alerted, 'abonné sera prévenu', 'abonnés seront prévenus')} par SMS` : ''}.`);
      if (r) {
        title.value = '';
        text.value = '';
        contact.value = '';
        await refresh();
      }
    });
    const label = h('input', {type: 'text', name: 'label', maxlength: '40', required: true, autocomplete: 'off'});
    const add = h('button', {type: 'submit'}, 'Ajouter le métier');
    const catForm = h('form', {class: 'card', 'aria-labelledby': 'h-new-cat', novalidate: true},
      h('h2', {id: 'h-new-cat'}, 'Ajouter un métier'),
      field('Nom du métier', label, 'Les habitants s’abonnent en envoyant JOB + ce nom (ex. JOB LOGISTIQUE).'),
      h('div', {class: 'actions'}, add));
    catForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      const r = await act(add, () => api.post('job-categories', {label: label.value.trim()}),
        (x) => `Métier « ${x.label} » ajouté (JOB ${x.name.toUpperCase()}).`);
      if (r) {
        label.value = '';
        await refresh();
      }
    });
    forms = h('div', {class: 'split'}, form, catForm);
  }
  put(ctx.view, ctx.heading('Offres d’emploi'),
    h('p', null, 'Les habitants reçoivent la liste en envoyant JOB, le détail avec JOB + numéro, et les nouvelles offres de leur métier s’ils s’y abonnent.'),
    forms, box,
    h('section', {'aria-labelledby': 'h-cats'}, h('h2', {id: 'h-cats'}, 'Métiers'), catBox));
  await refresh();
}
