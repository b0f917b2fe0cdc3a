// French wording and formats: dates in the centre's time zone, phone numbers, state names.

let zone = 'Europe/Paris';

export function setZone(tz) {
  if (tz) zone = tz;
}

export function getZone() {
  return zone;
}

function fmt(iso, opts) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return new Intl.DateTimeFormat('fr-FR', {timeZone: zone, ...opts}).format(d);
}

// "mar. 28 janv. 2026, 10:00"
export const dateTime = (iso) => fmt(iso, {weekday: 'short', day: 'numeric', month: 'short',
  year: 'numeric', hour: '2-digit', minute: '2-digit'});
// "28/01/2026 10:00"
export const shortDateTime = (iso) => fmt(iso, {day: '2-digit', month: '2-digit', year: 'numeric',
  hour: '2-digit', minute: '2-digit'});
export const date = (iso) => fmt(iso, {weekday: 'long', day: 'numeric', month: 'long', year: 'numeric'});
export const time = (iso) => fmt(iso, {hour: '2-digit', minute: '2-digit'});

// "2026-01-28 10:00" (a local time as the API takes it) → "mercredi 28 janvier 2026 à 10:00"
export function localLong(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})/.exec(s || '');
  if (!m) return s || '';
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], 12));
  const day = new Intl.DateTimeFormat('fr-FR', {timeZone: 'UTC', weekday: 'long', day: 'numeric',
    month: 'long', year: 'numeric'}).format(d);
  return `${day} à ${m[4]}:${m[5]}`;
}

// Today in the centre's zone: {date: "YYYY-MM-DD", time: "HH:MM", month: "YYYY-MM"}
export function today(offsetDays = 0) {
  const d = new Date(Date.now() + offsetDays * 86400000);
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-CA', {timeZone: zone,
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
    hourCycle: 'h23'}).formatToParts(d).map((p) => [p.type, p.value]));
  return {date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}`,
    month: `${parts.year}-${parts.month}`};
}

// +33612345678 → "06 12 34 56 78"; other countries stay international, grouped.
export function phone(p) {
  if (!p) return '';
  const s = String(p);
  if (/^\+33\d{9}$/.test(s)) return `0${s.slice(3)}`.replace(/(\d{2})(?=\d)/g, '$1 ');
  return s;
}

export function plural(n, one, many) {
  return `${n} ${n === 1 || n === 0 ? one : many}`;
}

const MESSAGE_STATUS = {
  queued: 'En file d’attente',
  sending: 'En cours d’envoi',
  sent: 'Envoyé',
  delivered: 'Distribué',
  undelivered: 'Non distribué',
  failed: 'Échec',
  cancelled: 'Annulé',
  received: 'Reçu',
};
// The states the message list can filter on: the list reads the stored state, and a message in
// flight is stored 'queued' until its outcome (009_throughput); its own page shows 'sending'.
export const MESSAGE_STATUSES = Object.keys(MESSAGE_STATUS).filter((s) => s !== 'sending');
export const messageStatus = (s) => MESSAGE_STATUS[s] || s || '';

const OCCURRENCE_STATUS = {
  pending: 'Prévu',
  queued: 'Envoyé au départ',
  sent: 'Envoyé',
  skipped: 'Non envoyé',
  cancelled: 'Annulé',
  expired: 'Expiré',
};
export const occurrenceStatus = (s) => OCCURRENCE_STATUS[s] || s || '';

const REASON = {
  missed: 'manqué pendant une interruption',
  too_late: 'trop tard',
  after_appointment: 'après le rendez-vous',
  opted_out: 'l’habitant a demandé STOP',
  quiet_hours: 'heures calmes',
  daily_cap: 'limite quotidienne',
  not_understood: 'message non compris',
  unknown_number: 'numéro inconnu',
  loop: 'trop de messages (boucle)',
};
export const reason = (r) => REASON[r] || r || '';

const REMINDER_STATUS = {active: 'Actif', finished: 'Terminé', cancelled: 'Annulé'};
export const reminderStatus = (s) => REMINDER_STATUS[s] || s || '';

const LOAN_STATUS = {
  requested: 'Demandé',
  confirmed: 'Prêté',
  return_requested: 'Retour annoncé',
  returned: 'Rendu',
  refused: 'Refusé',
  cancelled: 'Annulé',
};
export const loanStatus = (s) => LOAN_STATUS[s] || s || '';

const CONSENT = {
  paper: 'formulaire papier',
  verbal: 'accord oral',
  sms: 'SMS START',
  ussd: 'menu USSD',
  admin: 'saisi par l’équipe',
  import: 'import',
};
export const consent = (c) => (c ? CONSENT[c] || c : 'aucun');

// The languages the reply templates exist in (the API refuses others).
const LANGUAGE = {fr: 'français', en: 'anglais'};
export const LANGUAGES = Object.entries(LANGUAGE);
export const language = (l) => LANGUAGE[l] || l || '';

const ROLE = {admin: 'administrateur', referent: 'référent', staff: 'animateur', viewer: 'lecture seule'};
export const role = (r) => ROLE[r] || r || '';

const CHANNEL = {sms: 'SMS', ussd: 'USSD', admin: 'accueil', staff: 'accueil', web: 'accueil'};
export const channel = (c) => CHANNEL[c] || c || '';

export const direction = (d) => (d === 'in' ? 'Reçu' : 'Envoyé');

const ITEM_STATE = {available: 'Disponible', reserved: 'Réservé', lent: 'Prêté', unavailable: 'Indisponible'};
export const itemState = (s) => ITEM_STATE[s] || s || '';
