// Activités: activities and their sessions (each with a 4-digit check-in code), live
// attendance per session, a printable A4 poster per session, the monthly CSV report.
import * as api from './api.js';
import {h, put, clear, field, table, newId} from './dom.js';
import * as fmt from './fmt.js';
import {can, act, announce, getSession, showError} from './app.js';

const DURATIONS = [[30, '30 minutes'], [60, '1 heure'], [90, '1 h 30'], [120, '2 heures'],
  [150, '2 h 30'], [180, '3 heures'], [240, '4 heures'], [480, 'la journée (8 heures)']];

const minutesBetween = (a, b) => Math.round((new Date(b) - new Date(a)) / 60000);

function duration(a, b) {
  const m = minutesBetween(a, b);
  if (!Number.isFinite(m)) return '';
  const hrs = Math.floor(m / 60);
  const min = m % 60;
  if (!hrs) return `${min} min`;
  return min ? `${hrs} h ${String(min).padStart(2, '0')}` : `${hrs} h`;
}

function sessionForm(activity, onCreated) {
  const t = fmt.today();
  const date = h('input', {type: 'date', value: t.date, required: true});
  const time = h('input', {type: 'time', value: '14:00', required: true});
  const dur = h('select', null, DURATIONS.map(([m, label]) => h('option', {value: String(m), selected: m === 90}, label)));
  const add = h('button', {type: 'submit', class: 'primary'}, 'Créer la séance');
  const form = h('form', {class: 'inline-form', novalidate: true},
    field('Date', date), field('Heure de début', time), field('Durée', dur), add);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!date.value || !time.value) {
      showError('Indiquez la date et l’heure de la séance.');
      date.focus();
      return;
    }
    const r = await act(add, () => api.post(`activities/${activity.id}/sessions`,
      {start: `${date.value} ${time.value}`, minutes: Number(dur.value)}),
    (res) => `Séance créée. Son code de pointage est ${res.code}.`);
    if (r) onCreated(r);
  });
  return h('details', {class: 'add-session'},
    h('summary', null, `Ajouter une séance à « ${activity.name} »`), form);
}

function activityCard(a, refresh) {
  const hid = `act-${a.id}`;
  const sessions = a.sessions || [];
  return h('section', {class: 'card activity', 'aria-labelledby': hid, 'data-id': String(a.id)},
    h('h2', {id: hid}, a.name, a.anonymous ? h('span', {class: 'tag'}, ' anonyme') : null),
    a.anonymous ? h('p', {class: 'hint'}, 'Activité anonyme : on compte les personnes sans garder qui est venu.') : null,
    sessions.length
      ? table(`Séances de ${a.name}`, ['Date', 'Horaire', 'Code', 'Présents', 'Actions'],
        sessions.map((s) => [
          {th: true, content: fmt.date(s.starts_at)},
          `${fmt.time(s.starts_at)} (${duration(s.starts_at, s.ends_at)})`,
          h('span', {class: 'code', 'data-code': s.code}, s.code),
          `${fmt.plural((s.attendance && s.attendance.people) || 0, 'personne', 'personnes')}`,
          h('span', {class: 'links'},
            h('a', {href: `#/activites/seance/${s.id}`}, 'Présences',
              h('span', {class: 'sr-only'}, ` de la séance du ${fmt.date(s.starts_at)}`)),
            ' ',
            h('a', {href: `#/activites/affiche/${s.id}`}, 'Affiche à imprimer',
              h('span', {class: 'sr-only'}, ` pour la séance du ${fmt.date(s.starts_at)}`))),
        ]), {captionHidden: true})
      : h('p', null, 'Aucune séance pour l’instant.'),
    can('activity') ? sessionForm(a, () => refresh(a.id)) : null);
}

async function list(ctx) {
  const box = h('div');
  const refresh = async (focusActivity) => {
    const data = await api.get('activities');
    if (!ctx.alive()) return;
    clear(box);
    const acts = data.activities || [];
    if (!acts.length) put(box, h('p', null, 'Aucune activité pour l’instant.'));
    for (const a of acts) put(box, activityCard(a, (id) => refresh(id).catch(showError)));
    if (focusActivity) {
      const sec = box.querySelector(`section[data-id="${focusActivity}"]`);
      if (sec) {
        const first = sec.querySelector('tbody tr');
        if (first) first.classList.add('fresh');
        const h2 = sec.querySelector('h2');
        h2.setAttribute('tabindex', '-1');
        h2.focus();
      }
    }
  };

  const name = h('input', {type: 'text', maxlength: '80', required: true});
  const anon = h('input', {type: 'checkbox', id: newId('anon')});
  const create = h('button', {type: 'submit', class: 'primary'}, 'Créer l’activité');
  const form = h('form', {class: 'inline-form', novalidate: true},
    field('Nom de l’activité', name),
    h('div', {class: 'choice'}, anon, h('label', {for: anon.id}, 'Anonyme (compter sans savoir qui)')),
    create);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!name.value.trim()) {
      showError('Donnez un nom à l’activité.');
      name.focus();
      return;
    }
    const r = await act(create, () => api.post('activities', {name: name.value.trim(), anonymous: anon.checked}),
      `Activité « ${name.value.trim()} » créée. Ajoutez-lui une séance.`);
    if (r) {
      name.value = '';
      anon.checked = false;
      await refresh(r.id);
      const det = box.querySelector(`section[data-id="${r.id}"] details`);
      if (det) det.open = true;
    }
  });

  const month = h('input', {type: 'month', value: fmt.today().month});
  const csv = h('a', {class: 'button', download: ''}, 'Télécharger le rapport du mois (CSV)');
  const setCsv = () => {
    csv.href = api.url('activities/report.csv', {month: month.value}).href;
    csv.setAttribute('download', `presences-${month.value}.csv`);
  };
  month.addEventListener('input', setCsv);
  setCsv();

  put(ctx.view, ctx.heading('Activités'),
    can('activity') ? h('section', {class: 'card', 'aria-labelledby': 'h-new-act'},
      h('h2', {id: 'h-new-act'}, 'Nouvelle activité'), form) : null,
    h('section', {class: 'card', 'aria-labelledby': 'h-report'},
      h('h2', {id: 'h-report'}, 'Rapport mensuel des présences'),
      h('div', {class: 'inline-form'}, field('Mois', month), csv),
      h('p', {class: 'hint'}, 'Un fichier à ouvrir dans un tableur : une ligne par séance (date, activité, heure, pointages, personnes).')),
    box);
  await refresh();
}

async function attendance(ctx) {
  const id = ctx.params[0];
  const box = h('div');
  const total = h('p', {class: 'big-number', 'aria-live': 'polite'});
  let last = null;
  const draw = (d) => {
    const key = JSON.stringify([d.people, (d.rows || []).map((r) => [r.who, r.people, r.at])]);
    if (key === last) return;
    const before = last === null ? null : JSON.parse(last)[1].length;
    last = key;
    total.textContent = fmt.plural(d.people || 0, 'personne présente', 'personnes présentes');
    clear(box);
    const rows = d.rows || [];
    put(box, rows.length
      ? table('Pointages de la séance', ['Qui', 'Personnes', 'Comment', 'Heure'],
        rows.map((r) => [{th: true, content: r.who || 'anonyme'}, String(r.people ?? 1),
          fmt.channel(r.channel), fmt.time(r.at)]), {class: 'data', captionHidden: false})
      : h('p', null, 'Personne n’a encore pointé.'));
    if (before !== null && rows.length > before) announce('Nouvelle présence enregistrée.');
  };
  const d = await api.get(`sessions/${id}/attendance`);
  if (!ctx.alive()) return;
  const s = d.session || {};
  put(ctx.view, ctx.heading(`Présences : ${s.activity || 'séance'}`),
    h('p', null, h('a', {href: '#/activites'}, '← Toutes les activités'), ' · ',
      h('a', {href: `#/activites/affiche/${id}`}, 'Affiche à imprimer')),
    h('p', {class: 'lead'}, `${fmt.date(s.starts_at)}, de ${fmt.time(s.starts_at)} à ${fmt.time(s.ends_at)} · code `,
      h('span', {class: 'code'}, s.code || '')),
    total,
    h('p', {class: 'hint'}, 'Cette page se met à jour toute seule quand quelqu’un pointe.'),
    box);
  draw(d);
  ctx.poll(async () => draw(await api.get(`sessions/${id}/attendance`)), 3000);
}

// Poster settings: what the centre's number and USSD code are, from the session (me) when the
// server knows them, else what was typed here last (kept in this browser), else placeholders.
function posterSetting(key, fromServer, fallback) {
  if (fromServer) return {value: fromServer, fixed: true};
  let v = null;
  try {
    v = localStorage.getItem(`passerelle.${key}`);
  } catch (e) {
    v = null;
  }
  return {value: v || fallback, fixed: false, placeholder: !v};
}

async function poster(ctx) {
  const id = ctx.params[0];
  const d = await api.get(`sessions/${id}/attendance`);
  if (!ctx.alive()) return;
  const s = d.session || {};
  const centre = (getSession() && getSession().centre) || {};
  const num = posterSetting('sms_number', centre.sms_number || centre.phone, '06 00 00 00 00');
  const ussd = posterSetting('ussd_code', centre.ussd_code, '*000#');
  const numOut = h('strong', {class: 'poster-number'}, num.value);
  const ussdOut = h('strong', null, ussd.value);
  const settings = h('form', {class: 'card no-print inline-form', novalidate: true});
  if (!num.fixed || !ussd.fixed) {
    const numIn = h('input', {type: 'tel', value: num.placeholder ? '' : num.value, placeholder: num.value});
    const ussdIn = h('input', {type: 'text', value: ussd.placeholder ? '' : ussd.value, placeholder: ussd.value, class: 'short'});
    const save = h('button', {type: 'submit'}, 'Mettre à jour l’affiche');
    put(settings, 
      h('p', {class: 'hint'}, num.placeholder || ussd.placeholder
        ? 'Le numéro du centre n’est pas encore réglé : indiquez le numéro qui reçoit les SMS et le code USSD (gardés dans ce navigateur).'
        : 'Numéro et code USSD gardés dans ce navigateur.'),
      num.fixed ? null : field('Numéro qui reçoit les SMS', numIn),
      ussd.fixed ? null : field('Code USSD du centre', ussdIn), save);
    settings.addEventListener('submit', (e) => {
      e.preventDefault();
      try {
        if (!num.fixed && numIn.value.trim()) localStorage.setItem('passerelle.sms_number', numIn.value.trim());
        if (!ussd.fixed && ussdIn.value.trim()) localStorage.setItem('passerelle.ussd_code', ussdIn.value.trim());
      } catch (err) {
        // private browsing: the poster still shows what was typed
      }
      if (numIn.value.trim()) numOut.textContent = numIn.value.trim();
      if (ussdIn.value.trim()) ussdOut.textContent = ussdIn.value.trim();
      announce('Affiche mise à jour.');
    });
  }
  const print = h('button', {type: 'button', class: 'primary'}, 'Imprimer l’affiche');
  print.addEventListener('click', () => window.print());
  put(ctx.view, 
    h('div', {class: 'no-print'}, ctx.heading(`Affiche : ${s.activity || 'séance'}`),
      h('p', null, h('a', {href: '#/activites'}, '← Toutes les activités'), ' · ',
        h('a', {href: `#/activites/seance/${id}`}, 'Présences de la séance')),
      h('p', {class: 'actions'}, print)),
    settings,
    h('article', {class: 'poster', 'aria-label': 'Affiche (aperçu avant impression)'},
      h('p', {class: 'poster-activity'}, s.activity || ''),
      h('p', {class: 'poster-date'}, `${fmt.date(s.starts_at)} à ${fmt.time(s.starts_at)}`),
      h('p', {class: 'poster-call'}, 'Vous êtes là ? Dites-le par SMS :'),
      h('p', {class: 'poster-sms'}, 'Envoyez ', h('strong', {class: 'poster-code'}, `CHECK ${s.code || ''}`)),
      h('p', {class: 'poster-to'}, 'au ', numOut),
      h('p', {class: 'poster-ussd'}, 'Sans SMS ? Composez ', ussdOut,
        `, choisissez 1 « Pointer une activité » puis tapez le code ${s.code || ''}.`),
      h('p', {class: 'poster-foot'}, 'Vous venez à plusieurs ? Ajoutez le nombre de personnes : ',
        h('strong', null, `CHECK ${s.code || ''} 3`), '. Le SMS coûte le prix d’un SMS normal.')));
}

export async function render(ctx) {
  if (ctx.opts.session) return attendance(ctx);
  if (ctx.opts.poster) return poster(ctx);
  return list(ctx);
}
