// Paramètres (administrators): the centre (name, time zone, quiet hours, daily cap, retention,
// the SMS number and USSD code printed on posters…), its routes in order, reply templates,
// staff accounts, partners and API keys. Secrets (new passwords, partner secrets, API keys)
// are shown once, here, and never again.
import * as api from './api.js';
import {h, put, clear, field, table, newId} from './dom.js';
import * as fmt from './fmt.js';
import {can, act, announce} from './app.js';
import {segmentsText, encodingText} from './widgets.js';

const ROLES = [['admin', 'Administrateur'], ['referent', 'Référent'], ['staff', 'Animateur / accueil'],
  ['viewer', 'Lecture seule']];

function section(id, title, ...children) {
  return h('section', {'aria-labelledby': id, class: 'card'}, h('h2', {id, tabindex: '-1'}, title), ...children);
}

// A secret shown once (new password, partner secret, API key).
function secretBox(box, title, lines) {
  clear(box);
  put(box, h('div', {class: 'secret', role: 'group', 'aria-label': title},
    h('p', null, h('strong', null, title), ' — notez-le maintenant : il ne sera plus affiché.'),
    lines.map(([label, value]) => h('p', null, `${label} : `, h('code', {class: 'secret-value'}, value)))));
}

function checkbox(label, checked, hint) {
  const id = newId('cb');
  const input = h('input', {type: 'checkbox', id, checked});
  const parts = [input, h('label', {for: id}, label)];
  if (hint) {
    const hid = newId('hint');
    input.setAttribute('aria-describedby', hid);
    parts.push(h('p', {class: 'hint', id: hid}, hint));
  }
  return {el: h('div', {class: 'choice'}, parts), input};
}

export async function render(ctx) {
  if (!can('settings')) {
    put(ctx.view, ctx.heading('Paramètres'), h('p', null, 'Les paramètres sont réservés aux administrateurs.'));
    return;
  }
  const [d, rt] = await Promise.all([api.get('settings'), api.get('routes')]);
  if (!ctx.alive()) return;
  const reload = async (focus) => {
    const [d2, rt2] = await Promise.all([api.get('settings'), api.get('routes')]);
    Object.assign(d, d2);
    Object.assign(rt, rt2);
    draw(focus);
  };
  const root = h('div');
  const draw = (focus) => {
    clear(root);
    put(root, centreSection(d, rt, reload), routesSection(rt, reload), templatesSection(d, reload),
      staffSection(d, ctx, reload), partnersSection(d, reload), keysSection(d, reload));
    if (focus) {
      const t = root.querySelector(focus);
      if (t) t.focus();
    }
  };
  put(ctx.view, ctx.heading('Paramètres'), h('p', null, 'Réglages du centre, voies d’envoi, modèles de SMS, comptes, partenaires et clés d’API.'), root);
  draw();
}

function centreSection(d, rt, reload) {
  const c = d.centre;
  const s = c.settings;
  const name = h('input', {type: 'text', value: c.name, maxlength: '100', required: true});
  const tz = h('select', null, (d.timezones || [c.timezone]).map((z) => h('option', {value: z, selected: z === c.timezone}, z)));
  const display = h('input', {type: 'text', value: s.display_name, maxlength: '40'});
  const qs = h('input', {type: 'time', value: s.quiet_start});
  const qe = h('input', {type: 'text', value: s.quiet_end, maxlength: '5', inputmode: 'numeric', class: 'short', pattern: '[0-9]{2}:[0-9]{2}'});
  const sundays = checkbox('Pas de SMS le dimanche', s.quiet_sundays === 'yes');
  const holidays = checkbox('Pas de SMS les jours fériés', s.quiet_holidays === 'yes');
  const cap = h('input', {type: 'number', min: '1', max: '50', value: s.daily_cap, class: 'short'});
  const retention = h('input', {type: 'number', min: '1', max: '9999', value: s.retention_days, class: 'short'});
  const staffMax = h('input', {type: 'number', min: '1', value: s.staff_alert_max, class: 'short'});
  const loanDays = h('input', {type: 'number', min: '1', max: '999', value: s.loan_days, class: 'short'});
  const number = h('input', {type: 'text', value: s.sms_number, maxlength: '20', inputmode: 'tel', id: 'numero-sms'});
  const ussd = h('input', {type: 'text', value: s.ussd_code, maxlength: '20', id: 'code-ussd'});
  const senders = (rt.routes || []).map((r) => r.emetteur).filter(Boolean);
  const save = h('button', {type: 'submit', class: 'primary'}, 'Enregistrer les réglages');
  const form = h('form', {novalidate: true},
    h('div', {class: 'row'}, field('Nom du centre', name), field('Fuseau horaire', tz)),
    field('Nom dans les SMS', display, 'Remplace {centre} dans les réponses (40 caractères au plus ; vide : le nom du centre).'),
    h('fieldset', {class: 'group'}, h('legend', null, 'Heures d’envoi des SMS non urgents'),
      h('div', {class: 'row'}, field('De', qs), field('À', qe, 'HH:MM, 24:00 pour minuit. En dehors, les rappels attendent.')),
      sundays.el, holidays.el),
    h('div', {class: 'row'}, field('SMS par jour et par habitant (au plus)', cap),
      field('Conservation des textes (jours)', retention),
      field('Alerte envoyée par un animateur : destinataires au plus', staffMax),
      field('Durée d’un prêt (jours)', loanDays)),
    h('div', {class: 'row'}, field('Numéro SMS du centre (affiche)', number, 'Imprimé sur les affiches : « Envoyez CHECK 1234 au … ».'),
      field('Code USSD (affiche)', ussd, 'ex. *123#')),
    h('p', {class: 'hint'}, `Expéditeur des SMS : ${senders.length ? senders.join(', ') : 'le numéro de la voie'} (réglé dans la configuration de la voie, « emetteur »).`),
    h('div', {class: 'actions'}, save));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await act(save, () => api.patch('settings', {name: name.value.trim(), timezone: tz.value,
      settings: {display_name: display.value.trim(), quiet_start: qs.value, quiet_end: qe.value.trim(),
        quiet_sundays: sundays.input.checked ? 'yes' : 'no', quiet_holidays: holidays.input.checked ? 'yes' : 'no',
        daily_cap: cap.value, retention_days: retention.value, staff_alert_max: staffMax.value,
        loan_days: loanDays.value, sms_number: number.value.trim(), ussd_code: ussd.value.trim()}}),
    'Réglages du centre enregistrés.');
    if (r) await reload('#h-centre');
  });
  return section('h-centre', 'Le centre', form);
}

function routesSection(rt, reload) {
  const chosen = (rt.routes || []).filter((r) => !r.default).map((r) => r.name);
  const order = chosen.length ? [...chosen] : [];
  const list = h('ol', {class: 'route-order'});
  const avail = rt.available || [];
  const draw = () => {
    clear(list);
    order.forEach((n, i) => {
      const up = h('button', {type: 'button', class: 'small', disabled: i === 0, 'aria-label': `Monter ${n}`}, '↑');
      const down = h('button', {type: 'button', class: 'small', disabled: i === order.length - 1, 'aria-label': `Descendre ${n}`}, '↓');
      const rm = h('button', {type: 'button', class: 'small', 'aria-label': `Retirer ${n}`}, 'Retirer');
      up.addEventListener('click', () => { [order[i - 1], order[i]] = [order[i], order[i - 1]]; draw(); });
      down.addEventListener('click', () => { [order[i + 1], order[i]] = [order[i], order[i + 1]]; draw(); });
      rm.addEventListener('click', () => { order.splice(i, 1); draw(); });
      put(list, h('li', null, h('span', {class: 'route-name'}, n), ' ', up, down, rm));
    });
    if (!order.length) put(list, h('li', null, `Aucune voie choisie : la voie par défaut (${rt.default_route}) est utilisée.`));
    clear(addSel);
    put(addSel, avail.filter((n) => !order.includes(n)).map((n) => h('option', {value: n}, n)));
    addBtn.disabled = !addSel.options.length;
  };
  const addSel = h('select');
  const addBtn = h('button', {type: 'button'}, 'Ajouter à la liste');
  addBtn.addEventListener('click', () => { if (addSel.value) { order.push(addSel.value); draw(); } });
  const save = h('button', {type: 'button', class: 'primary'}, 'Enregistrer l’ordre des voies');
  save.addEventListener('click', async () => {
    const r = await act(save, () => api.put('routes', {routes: order}), 'Ordre des voies enregistré.');
    if (r) await reload('#h-routes');
  });
  draw();
  return section('h-routes', 'Voies d’envoi',
    h('p', null, 'Les rappels et alertes partent par la première voie ; si elle est en panne, par la suivante.'),
    list, h('div', {class: 'row-form'}, field('Voie à ajouter', addSel), addBtn), h('div', {class: 'actions'}, save));
}

function templatesSection(d, reload) {
  const tpls = d.templates || [];
  const sel = h('select', {id: 'modele'}, tpls.map((t) => h('option', {value: t.name}, `${t.name}${t.custom ? ' (modifié)' : ''}`)));
  const ta = h('textarea', {rows: '4', maxlength: '400', id: 'modele-texte'});
  const orig = h('p', {class: 'hint', id: newId('orig')});
  const bubble = h('p', {class: 'bubble', id: 'apercu-modele'});
  const info = h('p', {class: 'hint'});
  const load = () => {
    const t = tpls.find((x) => x.name === sel.value);
    ta.value = t ? t.body : '';
    orig.textContent = t ? `Modèle d’origine : ${t.default}` : '';
    bubble.textContent = '';
    info.textContent = '';
  };
  sel.addEventListener('change', load);
  const prev = h('button', {type: 'button'}, 'Aperçu');
  const save = h('button', {type: 'button', class: 'primary'}, 'Enregistrer le modèle');
  const reset = h('button', {type: 'button'}, 'Revenir au modèle d’origine');
  prev.addEventListener('click', async () => {
    const p = await act(prev, () => api.post('templates/preview', {name: sel.value, body: ta.value}));
    if (p) {
      bubble.textContent = p.text;
      info.textContent = `${segmentsText(p.segments)} · ${encodingText(p.encoding)} (exemple avec des valeurs fictives)`;
    }
  });
  save.addEventListener('click', async () => {
    const name = sel.value;
    const r = await act(save, () => api.put('templates', {name, body: ta.value}), `Modèle « ${name} » enregistré.`);
    if (r) {
      await reload('#h-tpl');
      const s2 = document.getElementById('modele');
      if (s2) { s2.value = name; s2.dispatchEvent(new Event('change')); }
    }
  });
  reset.addEventListener('click', async () => {
    const name = sel.value;
    const r = await act(reset, () => api.post('templates/reset', {name}), `Modèle « ${name} » remis à l’origine.`);
    if (r) {
      await reload('#h-tpl');
      const s2 = document.getElementById('modele');
      if (s2) { s2.value = name; s2.dispatchEvent(new Event('change')); }
    }
  });
  load();
  return section('h-tpl', 'Modèles de SMS',
    h('p', null, 'Les réponses automatiques du centre. Les mots entre accolades ({centre}, {item}…) sont remplacés à l’envoi.'),
    field('Modèle', sel), field('Texte', ta), orig, h('div', {class: 'actions'}, prev, save, reset), bubble, info);
}

function staffSection(d, ctx, reload) {
  const secret = h('div', {id: 'secret-compte'});
  const rows = (d.staff || []).map((s) => {
    const pw = h('input', {type: 'password', autocomplete: 'new-password', class: 'short', id: newId('pw'),
      placeholder: 'vide : généré'});
    const reset = h('button', {type: 'button', class: 'small'}, 'Nouveau mot de passe');
    reset.setAttribute('aria-label', `Nouveau mot de passe pour ${s.login}`);
    reset.addEventListener('click', async () => {
      if (!window.confirm(`Changer le mot de passe de ${s.login} ? Ses sessions ouvertes seront fermées.`)) return;
      const r = await act(reset, () => api.post(`staff/${s.id}/password`, pw.value ? {password: pw.value} : {}),
        `Mot de passe de ${s.login} changé ; ses sessions sont fermées.`);
      if (r && r.password) secretBox(secret, `Nouveau mot de passe de ${s.login}`, [['Mot de passe', r.password]]);
      else if (r) clear(secret);
      pw.value = '';
    });
    const toggle = s.me ? null : h('button', {type: 'button', class: `small${s.disabled_at ? '' : ' danger'}`},
      s.disabled_at ? 'Réactiver' : 'Désactiver');
    if (toggle) {
      toggle.setAttribute('aria-label', `${s.disabled_at ? 'Réactiver' : 'Désactiver'} le compte ${s.login}`);
      toggle.addEventListener('click', async () => {
        const what = s.disabled_at ? 'enable' : 'disable';
        const r = await act(toggle, () => api.post(`staff/${s.id}/${what}`),
          `Compte ${s.login} ${s.disabled_at ? 'réactivé' : 'désactivé'}.`);
        if (r) await reload('#h-staff');
      });
    }
    return [{th: true, content: s.login}, s.name || '', fmt.role(s.role),
      s.disabled_at ? h('span', {class: 'pill bad'}, 'Désactivé') : h('span', {class: 'pill ok'}, 'Actif'),
      h('div', {class: 'row-form'}, h('label', {for: pw.id}, 'Mot de passe'), pw, reset, toggle)];
  });
  const login = h('input', {type: 'text', maxlength: '60', autocomplete: 'off', required: true});
  const name = h('input', {type: 'text', maxlength: '100', autocomplete: 'off'});
  const role = h('select', null, ROLES.map(([v, l]) => h('option', {value: v, selected: v === 'referent'}, l)));
  const pw = h('input', {type: 'password', autocomplete: 'new-password'});
  const create = h('button', {type: 'submit', class: 'primary'}, 'Créer le compte');
  const form = h('form', {novalidate: true, 'aria-labelledby': 'h-new-staff'}, h('h3', {id: 'h-new-staff'}, 'Nouveau compte'),
    h('div', {class: 'row'}, field('Identifiant', login), field('Nom', name), field('Rôle', role)),
    field('Mot de passe', pw, 'Au moins 10 caractères. Laissez vide pour en générer un (affiché une seule fois).'),
    h('div', {class: 'actions'}, create));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {login: login.value.trim(), name: name.value.trim(), role: role.value};
    if (pw.value) body.password = pw.value;
    const r = await act(create, () => api.post('staff', body), `Compte ${body.login} créé.`);
    if (r) {
      await reload('#h-staff');
      const box = document.getElementById('secret-compte');
      if (r.password && box) secretBox(box, `Mot de passe de ${r.login}`, [['Mot de passe', r.password]]);
    }
  });
  return section('h-staff', 'Comptes du personnel',
    table('Comptes', ['Identifiant', 'Nom', 'Rôle', 'État', 'Actions'], rows, {captionHidden: true}), secret, form);
}

function partnersSection(d, reload) {
  const secret = h('div', {id: 'secret-partenaire'});
  const rows = (d.partners || []).map((p) => {
    const revoke = p.revoked_at ? null : h('button', {type: 'button', class: 'small danger',
      'aria-label': `Révoquer le partenaire ${p.name}`}, 'Révoquer');
    if (revoke) {
      revoke.addEventListener('click', async () => {
        if (!window.confirm(`Révoquer ${p.name} ? Ses requêtes seront refusées.`)) return;
        const r = await act(revoke, () => api.post(`partners/${p.id}/revoke`), `Partenaire ${p.name} révoqué.`);
        if (r) await reload('#h-partners');
      });
    }
    return [{th: true, content: p.name}, h('code', null, p.key_id), (p.topics || []).join(', ') || '—',
      p.may_post_jobs ? 'oui' : 'non', String(p.rate_per_min),
      p.revoked_at ? h('span', {class: 'pill bad'}, 'Révoqué') : h('span', {class: 'pill ok'}, 'Actif'), revoke || ''];
  });
  const name = h('input', {type: 'text', maxlength: '100', autocomplete: 'off'});
  const topics = (d.alert_topics || []).map((t) => ({t, cb: checkbox(t, false)}));
  const jobs = checkbox('Peut publier des offres d’emploi', false);
  const rate = h('input', {type: 'number', min: '1', max: '100000', value: '60', class: 'short'});
  const create = h('button', {type: 'submit', class: 'primary'}, 'Créer le partenaire');
  const form = h('form', {novalidate: true, 'aria-labelledby': 'h-new-partner'}, h('h3', {id: 'h-new-partner'}, 'Nouveau partenaire'),
    field('Nom', name),
    h('fieldset', {class: 'choices'}, h('legend', null, 'Thèmes d’alerte autorisés'),
      topics.length ? topics.map((x) => x.cb.el) : h('p', null, 'Aucun thème.')),
    jobs.el, field('Requêtes par minute (au plus)', rate), h('div', {class: 'actions'}, create));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await act(create, () => api.post('partners', {name: name.value.trim(),
      topics: topics.filter((x) => x.cb.input.checked).map((x) => x.t), may_post_jobs: jobs.input.checked,
      rate_per_min: Number(rate.value)}), 'Partenaire créé.');
    if (r) {
      await reload('#h-partners');
      const box = document.getElementById('secret-partenaire');
      if (box) secretBox(box, 'Identifiants du partenaire', [['Identifiant de clé', r.key_id], ['Secret', r.secret]]);
    }
  });
  return section('h-partners', 'Partenaires (webhooks signés)',
    rows.length ? table('Partenaires', ['Nom', 'Identifiant de clé', 'Thèmes', 'Offres', 'Débit', 'État', 'Action'], rows,
      {captionHidden: true}) : h('p', null, 'Aucun partenaire.'), secret, form);
}

function keysSection(d, reload) {
  const secret = h('div', {id: 'secret-cle'});
  const rows = (d.api_keys || []).map((k) => {
    const revoke = k.revoked_at ? null : h('button', {type: 'button', class: 'small danger',
      'aria-label': `Révoquer la clé ${k.prefix}`}, 'Révoquer');
    if (revoke) {
      revoke.addEventListener('click', async () => {
        if (!window.confirm(`Révoquer la clé ${k.prefix} ? Les envois qui l’utilisent seront refusés.`)) return;
        const r = await act(revoke, () => api.post(`api-keys/${k.id}/revoke`), `Clé ${k.prefix} révoquée.`);
        if (r) await reload('#h-keys');
      });
    }
    return [{th: true, content: h('code', null, k.prefix)}, k.label || '—', fmt.shortDateTime(k.created_at),
      k.revoked_at ? h('span', {class: 'pill bad'}, 'Révoquée') : h('span', {class: 'pill ok'}, 'Active'), revoke || ''];
  });
  const label = h('input', {type: 'text', maxlength: '80', autocomplete: 'off'});
  const create = h('button', {type: 'submit', class: 'primary'}, 'Créer une clé');
  const form = h('form', {novalidate: true, class: 'row-form'}, field('Libellé de la nouvelle clé', label), create);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await act(create, () => api.post('api-keys', {label: label.value.trim()}), 'Clé d’API créée.');
    if (r) {
      await reload('#h-keys');
      const box = document.getElementById('secret-cle');
      if (box) secretBox(box, `Clé d’API ${r.prefix}`, [['Clé', r.key]]);
      announce('Clé d’API créée : notez-la maintenant.');
    }
  });
  return section('h-keys', 'Clés d’API (envoi de SMS par un logiciel)',
    rows.length ? table('Clés d’API', ['Préfixe', 'Libellé', 'Créée le', 'État', 'Action'], rows, {captionHidden: true})
      : h('p', null, 'Aucune clé.'), secret, form);
}
