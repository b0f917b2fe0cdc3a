// Connexion: login form. Errors (wrong password, too many tries) come from the API in French.
import * as api from './api.js';
import {h, put, field} from './dom.js';
import {loggedIn, showError, clearError} from './app.js';

export async function render(ctx) {
  const loginInput = h('input', {type: 'text', name: 'login', autocomplete: 'username',
    autocapitalize: 'none', spellcheck: 'false', required: true});
  const password = h('input', {type: 'password', name: 'password',
    autocomplete: 'current-password', required: true});
  const submit = h('button', {type: 'submit', class: 'primary'}, 'Se connecter');
  const form = h('form', {class: 'card narrow', 'aria-labelledby': 'titre', novalidate: true},
    field('Identifiant', loginInput),
    field('Mot de passe', password),
    h('div', {class: 'actions'}, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    if (!loginInput.value.trim() || !password.value) {
      showError('Indiquez votre identifiant et votre mot de passe.');
      (loginInput.value.trim() ? password : loginInput).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Connexion…';
    try {
      const me = await api.post('login', {login: loginInput.value.trim(), password: password.value});
      password.value = '';
      loggedIn(me);
    } catch (err) {
      showError(err);
      password.value = '';
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Se connecter';
    }
  });
  put(ctx.view, 
    ctx.heading('Connexion'),
    h('p', null, 'Connectez-vous avec l’identifiant que vous a donné l’administrateur du centre.'),
    form);
}
