// Alertes: topics residents subscribe to (ALERTE SORTIE), with how many an alert reaches
// (subscribed, consented, not STOP); send an alert with the SMS as it will go out (segments,
// encoding) and its number of recipients before sending. The scheduler sends it (quiet hours,
// daily caps, STOP honoured). Staff may send to at most the centre's limit (50 by default);
// larger alerts need an administrator.
import * as api from './api.js';
import {h, put, clear, field, table, debounce, newId} from './dom.js';
import * as fmt from './fmt.js';
import {can, act, showError} from './app.js';
import {smsBox, segmentsText, encodingText} from './widgets.js';

export async function render(ctx) {
  const write = can('alert');
  const topicsBox = h('div');
  const historyBox = h('div');
  const topic = h('select', {name: 'topic', required: true});
  let data = null;

  const refresh = async () => {
    data = await api.get('alerts');
    if (!ctx.alive()) return;
    const topics = data.topics || [];
    const keep = topic.value;
    clear(topic);
    put(topic, h('option', {value: ''}, '— Choisissez un thème —'),
      topics.map((t) => h('option', {value: t.name}, `${t.label} (${fmt.plural(t.recipients, 'destinataire', 'destinataires')})`)));
    topic.value = topics.some((t) => t.name === keep) ? keep : '';
    clear(topicsBox);
    put(topicsBox, topics.length ? table('Thèmes d’alerte', ['Thème', 'Mot-clé SMS', 'Inscrits', 'Joignables'],
      topics.map((t) => [{th: true, content: t.label}, `ALERTE ${t.name.toUpperCase()}`, String(t.subscribed),
        String(t.recipients)]), {captionHidden: true}) : h('p', null, 'Aucun thème pour l’instant.'));
    clear(historyBox);
    const alerts = data.alerts || [];
    put(historyBox, alerts.length ? table('Alertes envoyées', ['Envoyée le', 'Thème', 'Texte', 'Destinataires', 'Partis', 'En attente', 'Par'],
      alerts.map((a) => [{th: true, content: fmt.shortDateTime(a.created_at)}, a.label, h('span', {class: 'sms-text'}, a.text),
        String(a.recipients), String(a.sent), String(a.waiting), a.created_by]), {captionHidden: true})
      : h('p', null, 'Aucune alerte envoyée pour l’instant.'));
  };

  let form = null;
  let preview = null;
  if (write) {
    const sms = smsBox({label: 'Texte de l’alerte', hint: 'Court et clair : il part tel quel par SMS.'});
    const urgentId = newId('urgent');
    const urgent = h('input', {type: 'checkbox', id: urgentId, name: 'urgent'});
    const send = h('button', {type: 'submit', class: 'primary', form: 'alerte-form'}, 'Envoyer l’alerte');
    form = h('form', {class: 'card', id: 'alerte-form', 'aria-labelledby': 'h-send', novalidate: true},
      h('h2', {id: 'h-send'}, 'Envoyer une alerte'),
      field('Thème', topic), sms.el,
      h('div', {class: 'choice'}, urgent, h('label', {for: urgentId}, 'Urgent (part même pendant les heures calmes)')));
    const state = h('p', {class: 'hint', 'aria-live': 'polite'});
    const reach = h('p', {class: 'reach', id: 'apercu-destinataires'});
    const bubble = h('p', {class: 'bubble', id: 'apercu-alerte'});
    const info = h('p', {class: 'hint', id: 'apercu-alerte-taille'});
    preview = h('section', {class: 'card preview', 'aria-labelledby': 'h-prev'},
      h('h2', {id: 'h-prev'}, 'Aperçu'), state, reach, h('h3', null, 'Le SMS tel qu’il sera envoyé'), bubble, info,
      h('div', {class: 'actions'}, send));
    let seq = 0;
    const runPreview = async () => {
      const mine = ++seq;
      if (!topic.value) {
        state.textContent = 'Aperçu en attente : choisissez un thème.';
        reach.textContent = '';
        bubble.textContent = '';
        info.textContent = '';
        return;
      }
      let p;
      try {
        p = await api.post('alerts/preview', {topic: topic.value, text: sms.textarea.value});
      } catch (e) {
        if (mine === seq) state.textContent = `Aperçu impossible : ${e.message}`;
        return;
      }
      if (mine !== seq || !ctx.alive()) return;
      reach.textContent = `Cette alerte sera envoyée à ${fmt.plural(p.recipients, 'personne', 'personnes')} (inscrites au thème, avec leur accord, sans STOP).`;
      if (!p.allowed) reach.textContent += ` Au-delà de ${p.limit}, seul un administrateur peut l’envoyer.`;
      bubble.textContent = p.text || '';
      info.textContent = p.segments ? `${p.text.length} caractères · ${segmentsText(p.segments)} · ${encodingText(p.encoding)}${p.too_long ? ' · trop long' : ''}` : '';
      state.textContent = 'Aperçu à jour.';
    };
    const schedule = debounce(() => runPreview().catch(showError), 350);
    form.addEventListener('input', schedule);
    form.addEventListener('change', schedule);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!topic.value) {
        showError('Choisissez un thème.');
        topic.focus();
        return;
      }
      if (!sms.textarea.value.trim()) {
        showError('Écrivez le texte de l’alerte.');
        sms.textarea.focus();
        return;
      }
      const label = topic.selectedOptions[0] ? topic.selectedOptions[0].textContent : topic.value;
      if (!window.confirm(`Envoyer cette alerte (${label}) ?`)) return;
      const r = await act(send, () => api.post('alerts', {topic: topic.value, text: sms.textarea.value,
        urgent: urgent.checked}), (x) => `Alerte envoyée à ${fmt.plural(x.recipients, 'personne', 'personnes')} : les SMS partent dans l’ordre (heures calmes et limites respectées).`);
      if (r) {
        sms.textarea.value = '';
        sms.textarea.dispatchEvent(new Event('input'));
        await refresh();
      }
    });
    runPreview().catch(showError);
  }

  let topicForm = null;
  if (write) {
    const label = h('input', {type: 'text', name: 'label', maxlength: '40', required: true, autocomplete: 'off'});
    const add = h('button', {type: 'submit'}, 'Ajouter le thème');
    topicForm = h('form', {class: 'card', 'aria-labelledby': 'h-new-topic', novalidate: true},
      h('h2', {id: 'h-new-topic'}, 'Ajouter un thème'),
      field('Nom du thème', label, 'Les habitants s’inscrivent en envoyant ALERTE + ce nom (ex. ALERTE SORTIE).'),
      h('div', {class: 'actions'}, add));
    topicForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      const r = await act(add, () => api.post('alert-topics', {label: label.value.trim()}),
        (x) => `Thème « ${x.label} » ajouté (ALERTE ${x.name.toUpperCase()}).`);
      if (r) {
        label.value = '';
        await refresh();
      }
    });
  }
  await refresh();
  const lim = data && data.limits;
  put(ctx.view, ctx.heading('Alertes'),
    h('p', null, 'Les habitants s’inscrivent à un thème par SMS (ALERTE + thème) et le quittent avec ALERTE STOP + thème.',
      lim && !lim.unlimited ? ` Vous pouvez envoyer une alerte à ${lim.staff_max} personnes au plus ; au-delà, demandez à un administrateur.` : ''),
    write ? h('div', {class: 'split'}, form, preview) : null,
    h('section', {'aria-labelledby': 'h-topics'}, h('h2', {id: 'h-topics'}, 'Thèmes'), topicsBox, topicForm),
    h('section', {'aria-labelledby': 'h-hist'}, h('h2', {id: 'h-hist'}, 'Alertes envoyées'), historyBox));
}
