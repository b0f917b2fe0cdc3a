// Pieces shared by several screens: the resident picker, the SMS text box with its length
// estimate, message rows that update in place.
import * as api from './api.js';
import {h, put, clear, field, newId, debounce} from './dom.js';
import * as fmt from './fmt.js';
import {showError} from './app.js';

/* ------------------------------------------------------------------ resident picker */

// A search box and a <select> of the matching residents. value() → id (number) or null.
export function residentPicker({initialId = null, label = 'Habitant', onChange = () => {}} = {}) {
  const q = h('input', {type: 'search', autocomplete: 'off', placeholder: 'ex. Fatima ou 06 12'});
  const select = h('select', {name: 'resident_id', required: true});
  const count = h('p', {class: 'hint', 'aria-live': 'polite'});
  let chosen = initialId ? Number(initialId) : null;
  const label1 = (r) => `${r.first_name || 'Sans prénom'} — ${fmt.phone(r.phone)}${r.opted_out_at ? ' (STOP)' : ''}`;
  const fill = (list) => {
    clear(select);
    put(select, h('option', {value: ''}, '— Choisissez un habitant —'));
    for (const r of list) {
      put(select, h('option', {value: String(r.id), selected: r.id === chosen}, label1(r)));
    }
    if (chosen && !list.some((r) => r.id === chosen)) chosen = null;
  };
  let seq = 0;
  const search = async () => {
    const mine = ++seq;
    const data = await api.get('residents', {q: q.value.trim(), limit: 50});
    if (mine !== seq) return;
    const list = data.residents || [];
    fill(list);
    count.textContent = q.value.trim()
      ? `${fmt.plural(list.length, 'habitant trouvé', 'habitants trouvés')} : choisissez dans la liste.` : '';
    if (list.length === 1 && q.value.trim()) {
      select.value = String(list[0].id);
      chosen = list[0].id;
      onChange(chosen);
    }
  };
  q.addEventListener('input', debounce(() => search().catch(showError), 300));
  select.addEventListener('change', () => {
    chosen = select.value ? Number(select.value) : null;
    onChange(chosen);
  });
  const el = h('fieldset', {class: 'picker'}, h('legend', null, label),
    field('Rechercher (prénom ou téléphone)', q), count, field('Habitant choisi', select));
  fill([]);
  const ready = (async () => {
    if (initialId) {
      try {
        const d = await api.get(`residents/${initialId}`);
        fill([d.resident]);
        select.value = String(d.resident.id);
        chosen = d.resident.id;
        onChange(chosen);
        return;
      } catch (e) {
        if (e.status !== 404) throw e;
      }
    }
    await search();
  })();
  return {el, ready, value: () => chosen, focus: () => q.focus()};
}

/* ------------------------------------------------------------------ SMS length */

// GSM 03.38: the basic set and the extension set (each extension character takes two).
const GSM_BASIC = '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXT = '^{}\\[~]|€\f';
const TRANSLIT = {'ê': 'e', 'ë': 'e', 'â': 'a', 'á': 'a', 'î': 'i', 'ï': 'i', 'í': 'i', 'ô': 'o',
  'ó': 'o', 'û': 'u', 'ú': 'u', 'ç': 'c', 'œ': 'oe', 'Œ': 'OE', 'À': 'A', 'Â': 'A', 'È': 'E',
  'Ê': 'E', 'Ë': 'E', 'Î': 'I', 'Ï': 'I', 'Ô': 'O', 'Ù': 'U', 'Û': 'U', '«': '"', '»': '"',
  '’': "'", '‘': "'", '“': '"', '”': '"', '–': '-', '—': '-', '…': '...', '\u00a0': ' ',
  '\u202f': ' '};

// Like the server: GSM-7 (accents made plain when that is enough) or UCS-2, and segments.
export function smsEstimate(text) {
  let gsm = true;
  let units = 0;
  for (const ch of text) {
    const t = GSM_BASIC.includes(ch) || GSM_EXT.includes(ch) ? ch : TRANSLIT[ch];
    if (t === undefined) {
      gsm = false;
      break;
    }
    for (const c of t) units += GSM_EXT.includes(c) ? 2 : 1;
  }
  if (!gsm) {
    units = 0;
    for (const ch of text) units += ch.codePointAt(0) > 0xffff ? 2 : 1;
    return {encoding: 'ucs2', units, segments: units <= 70 ? 1 : Math.ceil(units / 67)};
  }
  return {encoding: 'gsm7', units, segments: units <= 160 ? 1 : Math.ceil(units / 153)};
}

// "1 SMS", "3 SMS (message long en 3 parties)"
export function segmentsText(segments) {
  return segments > 1 ? `${segments} SMS (message long en ${segments} parties)` : `${segments} SMS`;
}

export function encodingText(encoding) {
  return encoding === 'ucs2'
    ? 'encodage UCS-2 (caractères spéciaux : 70 caractères par SMS)'
    : 'encodage GSM-7 (alphabet SMS standard : 160 caractères par SMS)';
}

// A labelled <textarea> with the length counter below it (updated as one types; read by
// screen readers only on request: aria-describedby, not a live region).
export function smsBox({label = 'Texte du SMS', name = 'text', value = '', hint} = {}) {
  const ta = h('textarea', {name, rows: '4', maxlength: '918', required: true, value});
  const counter = h('p', {class: 'hint counter', id: newId('count')});
  ta.setAttribute('aria-describedby', counter.id);
  const update = () => {
    const e = smsEstimate(ta.value);
    counter.textContent = ta.value
      ? `${ta.value.length} caractères · ${segmentsText(e.segments)} · ${encodingText(e.encoding)} (estimation)`
      : '0 caractère';
  };
  ta.addEventListener('input', update);
  update();
  return {el: field(label, ta, hint), textarea: ta, counter};
}

/* ------------------------------------------------------------------ message rows */

export function statusPill(status) {
  const tone = {delivered: 'ok', received: 'ok', sent: 'info', queued: 'info', sending: 'info',
    failed: 'bad', undelivered: 'bad', cancelled: 'warn'}[status] || '';
  return h('span', {class: `pill ${tone}`, 'data-status': status}, fmt.messageStatus(status));
}

// Keeps a <tbody> of messages in step with what the API says: new messages on top, states
// and times updated in place (no flicker, focus kept). cols: which columns to show.
export function messageRows(tbody, {withWho = true} = {}) {
  const rows = new Map();
  const cells = (m) => {
    const who = m.first_name || fmt.phone(m.phone);
    return [
      h('td', {class: 'nowrap'}, fmt.shortDateTime(m.created_at)),
      h('td', {class: 'nowrap'}, m.direction === 'in' ? '← Reçu' : '→ Envoyé'),
      withWho ? h('td', null, who || '') : null,
      h('td', {class: 'sms-text'}, m.text || ''),
      h('td', {class: 'status'}, statusPill(m.status)),
      h('td', null, h('a', {href: `#/messages/${m.id}`,
        'aria-label': `Historique du message n° ${m.id}`}, 'Historique')),
    ].filter(Boolean);
  };
  const make = (m) => {
    const tr = h('tr', {'data-id': String(m.id), 'data-status': m.status}, cells(m));
    rows.set(m.id, {tr, status: m.status});
    return tr;
  };
  return {
    // list: newest first
    merge(list, {append = false} = {}) {
      let changed = 0;
      const fresh = [];
      for (const m of list) {
        const known = rows.get(m.id);
        if (known) {
          if (known.status !== m.status) {
            known.status = m.status;
            known.tr.dataset.status = m.status;
            const td = known.tr.querySelector('td.status');
            put(clear(td), statusPill(m.status));
            changed += 1;
          }
        } else {
          fresh.push(make(m));
        }
      }
      if (append) put(tbody, ...fresh);
      else tbody.prepend(...fresh);
      return {changed, added: fresh.length};
    },
    has: (id) => rows.has(id),
    size: () => rows.size,
    reset() {
      rows.clear();
      clear(tbody);
    },
  };
}
