// The plain-French recurrence picker's model: what staff choose → an RFC 5545 RRULE (the
// time of day is the start's, as the scheduler wants: BYHOUR/BYMINUTE are refused), and the
// sentence that says it back to them.

export const WEEKDAYS = [
  ['MO', 'lundi'], ['TU', 'mardi'], ['WE', 'mercredi'], ['TH', 'jeudi'], ['FR', 'vendredi'],
  ['SA', 'samedi'], ['SU', 'dimanche'],
];

export const PATTERNS = [
  ['monthly', 'Tous les mois, un jour fixe'],
  ['weekly', 'Chaque semaine, certains jours'],
  ['lastworkday', 'Le dernier jour ouvré du mois'],
  ['daily', 'Tous les jours'],
];

// choice: {pattern, monthday, days: ['TU', …]} → {rrule} or {error: 'French message'}
export function buildRrule(choice) {
  switch (choice.pattern) {
    case 'monthly': {
      const n = Number(choice.monthday);
      if (!Number.isInteger(n) || n < 1 || n > 31) {
        return {error: 'Choisissez un jour du mois entre 1 et 31.'};
      }
      return {rrule: `FREQ=MONTHLY;BYMONTHDAY=${n}`};
    }
    case 'weekly': {
      const days = WEEKDAYS.map(([c]) => c).filter((c) => (choice.days || []).includes(c));
      if (days.length === 0) return {error: 'Cochez au moins un jour de la semaine.'};
      return {rrule: `FREQ=WEEKLY;BYDAY=${days.join(',')}`};
    }
    case 'lastworkday':
      return {rrule: 'FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1'};
    case 'daily':
      return {rrule: 'FREQ=DAILY'};
    default:
      return {error: 'Choisissez une fréquence.'};
  }
}

function joinFr(words) {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} et ${words[words.length - 1]}`;
}

// "tous les mois le 28 à 10:00"
export function describe(choice, time) {
  const at = time ? ` à ${time}` : '';
  switch (choice.pattern) {
    case 'monthly':
      return `tous les mois le ${Number(choice.monthday) === 1 ? '1er' : choice.monthday}${at}`;
    case 'weekly': {
      const names = WEEKDAYS.filter(([c]) => (choice.days || []).includes(c)).map(([, n]) => n);
      return `chaque semaine le ${joinFr(names)}${at}`;
    }
    case 'lastworkday':
      return `le dernier jour ouvré du mois${at}`;
    case 'daily':
      return `tous les jours${at}`;
    default:
      return '';
  }
}

// Reminders before an appointment: the choices offered, as the API's offsets.
export const OFFSETS = [
  ['d7', 'une semaine avant, à 10 h', {days: 7, time: '10:00'}],
  ['d2', 'l’avant-veille à 18 h', {days: 2, time: '18:00'}],
  ['d1', 'la veille à 18 h', {days: 1, time: '18:00'}],
  ['d0', 'le jour même à 8 h 30', {days: 0, time: '08:30'}],
  ['m120', '2 heures avant', {minutes: 120}],
  ['m60', '1 heure avant', {minutes: 60}],
];

// A stored rule → its sentence when the picker could have made it, else the rule itself.
export function describeRrule(rrule, time) {
  const parts = Object.fromEntries(String(rrule || '').toUpperCase().split(';')
    .filter(Boolean).map((p) => p.split('=')));
  const keys = Object.keys(parts).sort().join(',');
  const at = time || '';
  if (keys === 'FREQ' && parts.FREQ === 'DAILY') return describe({pattern: 'daily'}, at);
  if (keys === 'BYMONTHDAY,FREQ' && parts.FREQ === 'MONTHLY' && /^\d+$/.test(parts.BYMONTHDAY)) {
    return describe({pattern: 'monthly', monthday: Number(parts.BYMONTHDAY)}, at);
  }
  if (keys === 'BYDAY,FREQ' && parts.FREQ === 'WEEKLY') {
    return describe({pattern: 'weekly', days: parts.BYDAY.split(',')}, at);
  }
  if (keys === 'BYDAY,BYSETPOS,FREQ' && parts.FREQ === 'MONTHLY' && parts.BYSETPOS === '-1'
      && parts.BYDAY === 'MO,TU,WE,TH,FR') {
    return describe({pattern: 'lastworkday'}, at);
  }
  return `règle ${rrule}${at ? ` à ${at}` : ''}`;
}
