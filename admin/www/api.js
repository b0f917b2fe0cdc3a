// The /admin/api/ client (contract: admin/API.md). Every call sends the session cookie
// (credentials: 'same-origin'); every POST/PATCH/DELETE sends the CSRF token we were given by
// login or GET me. A 401 (no session, or it expired) calls the handler set with
// onUnauthenticated (the app goes back to the login screen).

const BASE = new URL('api/', document.baseURI);

let csrf = null;
let unauthenticated = () => {};

export function setCsrf(token) {
  csrf = token || null;
}

export function onUnauthenticated(fn) {
  unauthenticated = fn;
}

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

const FALLBACK = {
  400: 'La demande est incorrecte.',
  401: 'Votre session a expiré : reconnectez-vous.',
  403: 'Vous n’avez pas le droit de faire cela.',
  404: 'Introuvable.',
  409: 'Cela existe déjà.',
  413: 'Le texte est trop long.',
  422: 'Certaines informations ne sont pas valides.',
  429: 'Trop de tentatives : attendez quelques minutes.',
  503: 'Le service est momentanément indisponible : réessayez dans un instant.',
};

export function url(path, query) {
  const u = new URL(path, BASE);
  if (query) {
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
    }
  }
  return u;
}

// request('GET', 'residents', {query: {q: 'ali'}}) → parsed JSON (or null for 204).
export async function request(method, path, {body, query, signal} = {}) {
  const headers = {Accept: 'application/json'};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  let res;
  try {
    res = await fetch(url(path, query), {
      method,
      headers,
      credentials: 'same-origin',
      cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network',
      'Le serveur ne répond pas. Vérifiez la connexion puis réessayez.', null);
  }
  let data = null;
  const type = res.headers.get('Content-Type') || '';
  if (res.status !== 204) {
    if (type.includes('json')) {
      try {
        data = await res.json();
      } catch (e) {
        data = null;
      }
    } else {
      data = await res.text();
    }
  }
  if (res.ok) return data;
  const err = data && typeof data === 'object' && data.error ? data.error : {};
  const e = new ApiError(res.status, err.code || String(res.status),
    err.message || FALLBACK[res.status] || `Erreur ${res.status}.`, data);
  if (res.status === 401 && path !== 'login') unauthenticated(e);
  throw e;
}

export const get = (path, query, opts = {}) => request('GET', path, {...opts, query});
export const post = (path, body) => request('POST', path, {body: body === undefined ? {} : body});
export const patch = (path, body) => request('PATCH', path, {body});
export const put = (path, body) => request('PUT', path, {body});
export const del = (path) => request('DELETE', path);
