// The API client: every request carries the session's token; errors are problem documents.

const KEY = 'contextgate.token';
// The API's root: the console is served at /ui/, the API beside it.
const ROOT = new URL('..', import.meta.url);

/** An answer that is not 2xx, with its problem document when it has one. */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && (problem.detail || problem.title);
    const problems = problem && Array.isArray(problem.problems)
      ? problem.problems.map((p) => (p.pointer ? `${p.pointer}: ${p.message}` : p.message))
      : [];
    super([detail || `HTTP ${status}`, ...problems].join('\n'));
    this.status = status;
    this.problem = problem;
  }
}

/** The token of this browser tab (sessionStorage: gone when the tab closes). */
export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  keep(token) { sessionStorage.setItem(KEY, token); },
  forget() { sessionStorage.removeItem(KEY); },
};

let unauthorized = () => {};
/** What to do when the API says the token is not (or no longer) valid. */
export function onUnauthorized(handler) { unauthorized = handler; }

/** `path` segments, each encoded: `path('v1', 'routes', name)`. */
export function path(...segments) {
  return segments.map(encodeURIComponent).join('/');
}

/**
 * One request. `body` is sent as JSON; `token` overrides the session's (signing in); answers
 * are JSON, text, or a Blob when `blob` is set. A 401 signs out, unless `token` was given.
 */
export async function request(method, relative, { body, token, blob = false, query } = {}) {
  const url = new URL(relative, ROOT);
  for (const [key, value] of Object.entries(query || {})) url.searchParams.set(key, value);
  const bearer = token !== undefined ? token : session.token;
  const headers = { Accept: blob ? '*/*' : 'application/json, application/problem+json;q=0.9, */*;q=0.5' };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
    redirect: 'error',
  });
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { problem = null; }
    const error = new ApiError(response.status, problem);
    if (response.status === 401 && token === undefined) unauthorized(error);
    throw error;
  }
  if (response.status === 204) return null;
  if (blob) return response.blob();
  const type = response.headers.get('Content-Type') || '';
  return type.includes('json') ? response.json() : response.text();
}

export const get = (relative, options) => request('GET', relative, options);
export const post = (relative, body, options = {}) => request('POST', relative, { ...options, body });
export const del = (relative, options) => request('DELETE', relative, options);
