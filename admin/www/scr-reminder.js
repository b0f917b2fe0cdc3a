// Rappels: create a reminder for a resident — once, recurring (plain-French picker that builds
// the RRULE), or before an appointment. Before saving: the next five dates and the SMS as it
// will be sent, with its segments and encoding (POST reminders/preview, debounced).
import * as api from './api.js';
import {h, put, clear, field, newId, debounce} from './dom.js';
import * as fmt from './fmt.js';
import {PATTERNS, WEEKDAYS, OFFSETS, buildRrule, describe} from './rrule.js';
import {can, act, navigate, showError} from './app.js';
import {residentPicker, smsBox, segmentsText, encodingText} from './widgets.js';

function radio(name, value, label, checked) {
  const id = newId(name);
  return h('div', {class: 'choice'},
    h('input', {type: 'radio', name, id, value, checked}), h('label', {for: id}, label));
}

function checkbox(name, value, label, checked, hint) {
  const id = newId(name);
  const input = h('input', {type: 'checkbox', name, id, value, checked});
  const parts = [input, h('label', {for: id}, label)];
  if (hint) {
    const hid = newId('hint');
    input.setAttribute('aria-describedby', hid);
    parts.push(h('p', {class: 'hint', id: hid}, hint));
  }
  return h('div', {class: 'choice'}, parts);
}

// A stored reminder → the form's choices (edit mode).
function fill(form, rem, f) {
  const set = (el, v) => { if (v !== undefined && v !== null) el.value = v; };
  form.querySelector(`input[name=kind][value=${rem.schedule}]`).checked = true;
  f.sms.textarea.value = rem.text || '';
  f.sms.textarea.dispatchEvent(new Event('input'));
  const [d, t] = (rem.start_local || ' ').split(' ');
  if (rem.schedule === 'once') {
    set(f.onceDate, d);
    set(f.onceTime, t);
  } else if (rem.schedule === 'rrule') {
    set(f.rStart, d);
    set(f.rTime, t);
    const r = rem.rrule || '';
    let m;
    if ((m = /^FREQ=MONTHLY;BYMONTHDAY=(\d+)$/.exec(r))) {
      f.pattern.value = 'monthly';
      f.monthday.value = m[1];
    } else if ((m = /^FREQ=WEEKLY;BYDAY=([A-Z,]+)$/.exec(r))) {
      f.pattern.value = 'weekly';
      const days = m[1].split(',');
      for (const i of f.days.querySelectorAll('input')) i.checked = days.includes(i.value);
    } else if (r === 'FREQ=DAILY') {
      f.pattern.value = 'daily';
    } else {
      f.pattern.value = 'lastworkday';
    }
  } else {
    const [ad, at] = (rem.appointment_local || ' ').split(' ');
    set(f.apDate, ad);
    set(f.apTime, at);
    set(f.place, rem.place || '');
    const offs = (rem.offsets || []).map((o) => JSON.stringify(o));
    for (const i of f.offsets.querySelectorAll('input')) {
      const o = OFFSETS.find(([v]) => v === i.value);
      i.checked = Boolean(o && offs.includes(JSON.stringify(o[2])));
    }
  }
  form.querySelector('input[name=urgent]').checked = Boolean(rem.urgent);
  form.querySelector('input[name=ack]').checked = Boolean(rem.ack);
}

export async function render(ctx) {
  const editing = Boolean(ctx.opts.edit);
  const title = editing ? 'Modifier le rappel' : 'Créer un rappel';
  if (!can('reminder')) {
    put(ctx.view, ctx.heading(title),
      h('p', null, 'Votre rôle ne permet pas de créer ou modifier des rappels.'));
    return;
  }
  const rem = editing ? await api.get(`reminders/${ctx.params[0]}`) : null;
  if (!ctx.alive()) return;
  const today = fmt.today();
  const tomorrow = fmt.today(1);
  const inAWeek = fmt.today(7);

  const picker = residentPicker({initialId: rem ? rem.resident_id : ctx.query.get('habitant'), label: 'Pour qui ?',
    onChange: () => schedulePreview()});
  const sms = smsBox({label: 'Texte du SMS',
    hint: 'Vous pouvez écrire {prenom}, et pour un rendez-vous {date}, {heure} et {lieu} : ils seront remplacés.'});

  // --- when
  const kind = h('fieldset', {class: 'choices'}, h('legend', null, 'Quand ?'),
    radio('kind', 'once', 'Une fois', true),
    radio('kind', 'rrule', 'Régulièrement (récurrent)', false),
    radio('kind', 'appointment', 'Avant un rendez-vous', false));

  const onceDate = h('input', {type: 'date', value: tomorrow.date, required: true});
  const onceTime = h('input', {type: 'time', value: '10:00', required: true});
  const once = h('fieldset', {class: 'group', 'data-kind': 'once'}, h('legend', null, 'Une fois'),
    h('div', {class: 'row'}, field('Date', onceDate), field('Heure', onceTime)));

  const pattern = h('select', null, PATTERNS.map(([v, label]) => h('option', {value: v}, label)));
  const monthday = h('input', {type: 'number', min: '1', max: '31', value: String(Number(today.date.slice(8))),
    inputmode: 'numeric', class: 'short'});
  const monthdayField = field('Le jour du mois', monthday, 'De 1 à 31. Un mois plus court que ce jour est sauté.');
  const days = h('fieldset', {class: 'choices days'}, h('legend', null, 'Les jours'),
    WEEKDAYS.map(([code, name]) => checkbox('day', code, name, code === 'TU')));
  const rTime = h('input', {type: 'time', value: '10:00', required: true});
  const rStart = h('input', {type: 'date', value: today.date, required: true});
  const sentence = h('p', {class: 'sentence', id: newId('sentence')});
  const recurring = h('fieldset', {class: 'group', 'data-kind': 'rrule', hidden: true},
    h('legend', null, 'Récurrent'),
    field('Fréquence', pattern), monthdayField, days,
    h('div', {class: 'row'}, field('À quelle heure', rTime), field('À partir du', rStart)),
    sentence);

  const apDate = h('input', {type: 'date', value: inAWeek.date, required: true});
  const apTime = h('input', {type: 'time', value: '14:30', required: true});
  const place = h('input', {type: 'text', maxlength: '80', placeholder: 'ex. CAF, mairie, centre social'});
  const offsets = h('fieldset', {class: 'choices'}, h('legend', null, 'Envoyer le rappel'),
    OFFSETS.map(([v, label]) => checkbox('offset', v, label, v === 'd1' || v === 'm120')));
  const appointment = h('fieldset', {class: 'group', 'data-kind': 'appointment', hidden: true},
    h('legend', null, 'Avant un rendez-vous'),
    h('div', {class: 'row'}, field('Date du rendez-vous', apDate), field('Heure du rendez-vous', apTime)),
    field('Lieu', place), offsets);

  const urgent = checkbox('urgent', '1', 'Urgent', false,
    'Part même pendant les heures calmes (soir, dimanche, jours fériés) et au-delà de la limite de SMS par jour.');
  const ack = checkbox('ack', '1', 'Demander une confirmation (OK)', false,
    'L’habitant répond OK ; sans réponse, un second SMS lui est envoyé.');

  // --- preview
  const previewState = h('p', {class: 'hint', 'aria-live': 'polite'});
  const dates = h('ol', {class: 'dates', id: 'prochaines-dates'});
  const bubble = h('p', {class: 'bubble', id: 'apercu-sms'});
  const bubbleInfo = h('p', {class: 'hint', id: 'apercu-taille'});
  const preview = h('section', {class: 'card preview', 'aria-labelledby': 'h-preview'},
    h('h2', {id: 'h-preview'}, 'Aperçu'), previewState,
    h('h3', null, 'Les cinq prochains envois'), dates,
    h('h3', null, 'Le SMS tel qu’il sera envoyé'), bubble, bubbleInfo);

  // the button comes after the preview (on a phone too: check, then save), tied to the form
  const save = h('button', {type: 'submit', class: 'primary', form: 'rappel-form'},
    editing ? 'Enregistrer les modifications' : 'Enregistrer le rappel');
  const form = h('form', {class: 'card', id: 'rappel-form', 'aria-labelledby': 'titre', novalidate: true},
    picker.el, sms.el, kind, once, recurring, appointment,
    h('fieldset', {class: 'choices'}, h('legend', null, 'Options'), urgent, ack));

  const chosenKind = () => form.querySelector('input[name=kind]:checked').value;
  const choice = () => ({pattern: pattern.value, monthday: monthday.value,
    days: [...days.querySelectorAll('input:checked')].map((i) => i.value)});

  // The request body, or {error} saying what is missing (in French).
  const body = () => {
    const b = {resident_id: picker.value(), text: sms.textarea.value, schedule: chosenKind(),
      urgent: form.querySelector('input[name=urgent]').checked,
      ack: form.querySelector('input[name=ack]').checked};
    if (!b.resident_id) return {error: 'Choisissez un habitant.', focus: picker};
    if (!b.text.trim()) return {error: 'Écrivez le texte du SMS.', focus: sms.textarea};
    if (b.schedule === 'once') {
      if (!onceDate.value || !onceTime.value) return {error: 'Indiquez la date et l’heure.', focus: onceDate};
      b.at = `${onceDate.value} ${onceTime.value}`;
    } else if (b.schedule === 'rrule') {
      const r = buildRrule(choice());
      if (r.error) return {error: r.error, focus: pattern.value === 'monthly' ? monthday : days.querySelector('input')};
      if (!rTime.value || !rStart.value) return {error: 'Indiquez l’heure et la date de début.', focus: rTime};
      b.rrule = r.rrule;
      b.start = `${rStart.value} ${rTime.value}`;
    } else {
      if (!apDate.value || !apTime.value) return {error: 'Indiquez la date et l’heure du rendez-vous.', focus: apDate};
      const picked = [...offsets.querySelectorAll('input:checked')].map((i) => i.value);
      if (!picked.length) return {error: 'Cochez au moins un moment d’envoi.', focus: offsets.querySelector('input')};
      b.appointment = `${apDate.value} ${apTime.value}`;
      b.place = place.value.trim();
      b.offsets = OFFSETS.filter(([v]) => picked.includes(v)).map(([, , o]) => o);
    }
    return {body: b};
  };

  const showKind = () => {
    const k = chosenKind();
    for (const g of [once, recurring, appointment]) g.hidden = g.dataset.kind !== k;
    const p = pattern.value;
    monthdayField.hidden = p !== 'monthly';
    days.hidden = p !== 'weekly';
    const c = choice();
    const r = buildRrule(c);
    sentence.textContent = r.error ? r.error
      : `Résumé : ${describe(c, rTime.value)}, à partir du ${rStart.value.split('-').reverse().join('/')}.`;
  };

  let seq = 0;
  const runPreview = async () => {
    const mine = ++seq;
    const b = body();
    if (b.error) {
      previewState.textContent = `Aperçu en attente : ${b.error.charAt(0).toLowerCase()}${b.error.slice(1)}`;
      clear(dates);
      bubble.textContent = '';
      bubbleInfo.textContent = '';
      return;
    }
    previewState.textContent = 'Calcul de l’aperçu…';
    let p;
    try {
      p = await api.post('reminders/preview', b.body);
    } catch (e) {
      if (mine !== seq) return;
      previewState.textContent = e.status === 422 || e.status === 400 ? e.message
        : `Aperçu impossible : ${e.message}`;
      clear(dates);
      bubble.textContent = '';
      bubbleInfo.textContent = '';
      return;
    }
    if (mine !== seq || !ctx.alive()) return;
    clear(dates);
    const next = p.next || [];
    const local = p.next_local || [];
    next.forEach((t, i) => put(dates, h('li', null, local[i] ? fmt.localLong(local[i]) : fmt.dateTime(t))));
    if (!next.length) put(dates, h('li', null, 'Aucun envoi à venir avec ces réglages.'));
    bubble.textContent = p.text || '';
    bubbleInfo.textContent = p.segments ? `${p.text ? p.text.length : 0} caractères · ${segmentsText(p.segments)} · ${encodingText(p.encoding)}` : '';
    previewState.textContent = `Aperçu à jour : ${fmt.plural(next.length, 'date', 'prochaines dates')}.`;
  };
  const schedulePreview = debounce(() => runPreview().catch(showError), 400);

  form.addEventListener('input', () => {
    showKind();
    schedulePreview();
  });
  form.addEventListener('change', () => {
    showKind();
    schedulePreview();
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const b = body();
    if (b.error) {
      showError(b.error);
      if (b.focus) b.focus.focus();
      return;
    }
    const r = editing
      ? await act(save, () => api.patch(`reminders/${rem.id}`, b.body), 'Rappel modifié : les prochains envois sont recalculés.')
      : await act(save, () => api.post('reminders', b.body), 'Rappel enregistré.');
    if (r) navigate(`#/habitants/${b.body.resident_id}`);
  });

  if (rem) {
    fill(form, rem, {sms, onceDate, onceTime, rStart, rTime, pattern, monthday, days, apDate, apTime, place, offsets});
  }
  const back = rem ? rem.resident_id : ctx.query.get('habitant');
  put(ctx.view, ctx.heading(title),
    back ? h('p', null, h('a', {href: `#/habitants/${back}`},
      '← Retour à la fiche de l’habitant')) : null,
    h('div', {class: 'split'}, form, preview),
    h('div', {class: 'actions'}, save));
  showKind();
  await picker.ready;
  runPreview().catch(showError);
}
