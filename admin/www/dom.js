// Small DOM helpers. Text always goes in as text nodes (never innerHTML), so what residents
// text us can never become markup.

// h('button', {type: 'button', onclick: f, class: 'x', 'aria-label': '…'}, 'text', child…)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') {
        el.addEventListener(k.slice(2), v);
      } else if (k === 'class') {
        el.className = v;
      } else if (k === 'for') {
        el.htmlFor = v;
      } else if (k === 'value') {
        el.value = v;
      } else if (k === 'checked' || k === 'selected' || k === 'disabled' || k === 'hidden'
                 || k === 'required' || k === 'multiple') {
        el[k] = Boolean(v);
        if (k !== 'checked' && k !== 'selected') el.setAttribute(k, '');
      } else if (v === true) {
        el.setAttribute(k, '');
      } else {
        el.setAttribute(k, String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

// el.append(...) that skips null/false and flattens arrays (the DOM's own append would write
// "null" or "[object HTMLElement]").
export function put(el, ...children) {
  return append(el, children);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let uid = 0;
export function newId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

// A labelled form field: label above the control, an optional hint tied with aria-describedby.
// control is an element (input, select, textarea); its id is set if missing.
export function field(labelText, control, hint) {
  if (!control.id) control.id = newId('f');
  const parts = [h('label', {for: control.id}, labelText)];
  if (hint) {
    const hid = newId('hint');
    const describedby = control.getAttribute('aria-describedby');
    control.setAttribute('aria-describedby', describedby ? `${describedby} ${hid}` : hid);
    parts.push(h('p', {class: 'hint', id: hid}, hint));
  }
  parts.push(control);
  return h('div', {class: 'field'}, parts);
}

// A table with a caption and column headers (<th scope="col">). rows: arrays of cells; a cell
// is a string/node, or {th: true, content} for a row header (<th scope="row">).
export function table(caption, headers, rows, opts = {}) {
  const thead = h('thead', null, h('tr', null, headers.map((t) => h('th', {scope: 'col'}, t))));
  const tbody = h('tbody', null, rows.map((r) => row(r)));
  const t = h('table', {class: opts.class || 'data'}, h('caption', opts.captionHidden
    ? {class: 'sr-only'} : null, caption), thead, tbody);
  return h('div', {class: 'table-wrap'}, t);
}

export function row(cells, attrs) {
  return h('tr', attrs || null, cells.map((c) => (c && c.th
    ? h('th', {scope: 'row'}, c.content)
    : h('td', null, c))));
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
