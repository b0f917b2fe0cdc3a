// Mon compte (every role): who is logged in, and changing one's own password (POST
// me/password). The current password is asked again; the new one is typed twice (checked
// here) and must have 10 characters at least (checked here and by the server). The server
// ends the account's other sessions and keeps this one.
import * as api from './api.js';
import {h, put, field} from './dom.js';
import * as fmt from './fmt.js';
import {announce, showError, clearError} from './app.js';

const MIN_CHARS = 10;

export async function render(ctx) {
  const s = ctx.session;
  const current = h('input', {type: 'password', name: 'current', autocomplete: 'current-password', required: true});
  const next = h('input', {type: 'password', name: 'new', autocomplete: 'new-password', required: true,
    minlength: String(MIN_CHARS), maxlength: '256'});
  const again = h('input', {type: 'password', name: 'confirm', autocomplete: 'new-password', required: true});
  const submit = h('button', {type: 'submit', class: 'primary'}, 'Changer mon mot de passe');
  const form = h('form', {novalidate: true, 'aria-labelledby': 'h-mot-de-passe'},
    field('Mot de passe actuel', current, 'Celui avec lequel vous vous êtes connecté.'),
    field('Nouveau mot de passe', next,
      `Au moins ${MIN_CHARS} caractères, différent de l’actuel. Une phrase de quelques mots est facile à retenir.`),
    field('Confirmation du nouveau mot de passe', again, 'Tapez le nouveau mot de passe une deuxième fois.'),
    h('p', {class: 'hint'}, 'Vos autres sessions (sur d’autres appareils ou navigateurs) seront fermées ; celle-ci reste ouverte.'),
    h('div', {class: 'actions'}, submit));

  const invalid = (input, message) => {
    input.setAttribute('aria-invalid', 'true');
    showError(message);
    input.focus();
  };
  for (const input of [current, next, again]) {
    input.addEventListener('input', () => input.removeAttribute('aria-invalid'));
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    if (!current.value) {
      invalid(current, 'Indiquez votre mot de passe actuel.');
      return;
    }
    if ([...next.value].length < MIN_CHARS) {
      invalid(next, `Le nouveau mot de passe doit avoir au moins ${MIN_CHARS} caractères.`);
      return;
    }
    if (next.value === current.value) {
      invalid(next, 'Le nouveau mot de passe doit être différent de l’actuel.');
      return;
    }
    if (again.value !== next.value) {
      again.value = '';
      invalid(again, 'Les deux nouveaux mots de passe ne sont pas identiques : tapez la confirmation à nouveau.');
      return;
    }
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    try {
      await api.post('me/password', {current: current.value, new: next.value});
      current.value = '';
      next.value = '';
      again.value = '';
      announce('Mot de passe changé. Vos autres sessions sont fermées.');
    } catch (err) {
      if (err.status === 401) return; // back to Connexion
      if (err.code === 'bad_current_password' || err.status === 429) {
        current.value = '';
        invalid(current, err.message);
      } else if (err.code === 'weak_password') {
        invalid(next, err.message);
      } else {
        showError(err);
      }
    } finally {
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
    }
  });

  const centre = s.centre ? s.centre.name : '';
  put(ctx.view,
    ctx.heading('Mon compte'),
    h('section', {class: 'card', 'aria-labelledby': 'h-identite'},
      h('h2', {id: 'h-identite'}, 'Vous êtes connecté'),
      h('dl', {class: 'details'},
        h('dt', null, 'Nom'), h('dd', null, s.name || s.login),
        h('dt', null, 'Identifiant'), h('dd', null, s.login),
        h('dt', null, 'Rôle'), h('dd', null, fmt.role(s.role)),
        centre ? [h('dt', null, 'Centre'), h('dd', null, centre)] : null)),
    h('section', {class: 'card narrow', 'aria-labelledby': 'h-mot-de-passe'},
      h('h2', {id: 'h-mot-de-passe'}, 'Changer mon mot de passe'),
      form));
}
