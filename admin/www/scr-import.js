// Habitants › Importer: a CSV file (telephone;prenom;langue;consentement) is checked line by
// line first (invalid number, twice in the file, already known, no consent…) and nothing is
// imported until staff confirm; the import is then all or nothing.
import * as api from './api.js';
import {h, put, clear, field, table} from './dom.js';
import * as fmt from './fmt.js';
import {can, act, showError} from './app.js';

export async function render(ctx) {
  put(ctx.view, ctx.heading('Importer des habitants'));
  if (!can('import')) {
    put(ctx.view, h('p', null, 'Votre rôle ne permet pas d’importer des habitants.'));
    return;
  }
  const file = h('input', {type: 'file', accept: '.csv,text/csv', id: 'fichier-csv'});
  const check = h('button', {type: 'submit', class: 'primary'}, 'Vérifier le fichier');
  const result = h('div', {id: 'resultat-import'});
  let csv = null;
  const form = h('form', {class: 'card', novalidate: true, 'aria-labelledby': 'h-file'},
    h('h2', {id: 'h-file'}, 'Le fichier'),
    field('Fichier CSV', file, 'Première ligne : telephone;prenom;langue;consentement. Consentement : papier, oral ou sms. Langue : fr ou en (vide : fr). Séparateur « ; » ou « , », encodage UTF-8, 1 500 lignes environ au plus.'),
    h('div', {class: 'actions'}, check));

  const show = (r, confirmed) => {
    clear(result);
    const lines = r.lines || [];
    const bad = lines.filter((l) => l.error);
    if (confirmed) {
      put(result, h('p', {class: 'pill ok'}, `${fmt.plural(r.imported, 'habitant importé', 'habitants importés')}.`),
        h('p', null, h('a', {href: '#/habitants'}, 'Voir la liste des habitants')));
      return;
    }
    const summary = bad.length
      ? `${fmt.plural(bad.length, 'ligne en erreur', 'lignes en erreur')} sur ${lines.length} : rien n’est importé. Corrigez le fichier puis vérifiez-le à nouveau.`
      : `${fmt.plural(lines.length, 'habitant prêt', 'habitants prêts')} à être importés. Rien n’est encore enregistré.`;
    put(result, h('h2', {id: 'h-check', tabindex: '-1'}, 'Vérification'), h('p', {id: 'resume-import'}, summary),
      lines.length ? table('Lignes du fichier', ['Ligne', 'Téléphone', 'Prénom', 'Langue', 'Consentement', 'Résultat'],
        lines.map((l) => [{th: true, content: String(l.line)}, l.phone ? fmt.phone(l.phone) : '', l.first_name || '',
          fmt.language(l.language), l.consent_source ? fmt.consent(l.consent_source) : '—',
          l.error ? h('span', {class: 'pill bad'}, l.message) : h('span', {class: 'pill ok'}, 'OK')]),
        {class: 'data import-lines'}) : null);
    if (!bad.length && lines.length) {
      const go = h('button', {type: 'button', class: 'primary'}, `Importer ${fmt.plural(lines.length, 'habitant', 'habitants')}`);
      go.addEventListener('click', async () => {
        const r2 = await act(go, () => api.post('residents/import', {csv, confirm: true}),
          (x) => `${fmt.plural(x.imported, 'habitant importé', 'habitants importés')}.`);
        if (r2) show(r2, true);
      });
      put(result, h('div', {class: 'actions'}, go));
    }
    const t = document.getElementById('h-check');
    if (t) t.focus();
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = file.files && file.files[0];
    if (!f) {
      showError('Choisissez un fichier CSV.');
      file.focus();
      return;
    }
    if (f.size > 60000) {
      showError('Fichier trop gros (60 Ko au plus) : découpez-le en plusieurs fichiers.');
      return;
    }
    csv = await f.text();
    const r = await act(check, () => api.post('residents/import', {csv, confirm: false}));
    if (r) show(r, false);
  });
  file.addEventListener('change', () => clear(result));
  put(ctx.view, h('p', null, h('a', {href: '#/habitants'}, '← Retour aux habitants')), form, result);
}
