// The console's entry: sign-in, the navigation, and the view for the address's #fragment.
//   #/                      the context map and every route's live rates (overview.js)
//   #/contexts/<context>    its contracts, translators and inbound routes (context.js)
//   #/routes/<route>        one route's rates and dead letters (dead_letters.js)
//   #/dead-letters          dead letters that failed before any route was picked (operator)

import { get, onUnauthorized, session } from './api.js';
import { describe, fill, h } from './dom.js';
import { showOverview } from './overview.js';
import { showContext } from './context.js';
import { showRoute, showUnrouted } from './dead_letters.js';

const elements = {
  signin: document.getElementById('signin'),
  form: document.getElementById('signin-form'),
  token: document.getElementById('token'),
  error: document.getElementById('signin-error'),
  app: document.getElementById('app'),
  nav: document.getElementById('nav'),
  view: document.getElementById('view'),
  who: document.getElementById('who'),
  signOut: document.getElementById('sign-out'),
};

/** Who is signed in (`GET /v1/whoami`), and the contexts they may open. */
let identity = null;
/** Stops what the current view polls; set by each view. */
let stopView = () => {};

/** Shows the sign-in form and nothing else. */
function showSignIn(message) {
  stopView();
  stopView = () => {};
  identity = null;
  elements.app.hidden = true;
  fill(elements.nav);
  fill(elements.view);
  elements.who.hidden = true;
  elements.signOut.hidden = true;
  elements.signin.hidden = false;
  elements.error.hidden = !message;
  elements.error.textContent = message || '';
  elements.token.value = '';
  elements.token.focus();
}

/** Asks who `token` is; on success keeps it and opens the console. */
async function signIn(token) {
  let who;
  try {
    who = await get('v1/whoami', { token: token || null });
  } catch (error) {
    if (error.status === 401) {
      session.forget();
      showSignIn(token ? 'This token was refused.' : '');
    } else {
      // Busy or away: the token may be good, so it is kept for the next try (a reload).
      showSignIn(`The gateway did not answer as expected: ${describe(error)}`);
    }
    return;
  }
  if (token && !who.open) session.keep(token);
  identity = who;
  await openConsole();
}

async function openConsole() {
  elements.signin.hidden = true;
  elements.app.hidden = false;
  elements.who.hidden = false;
  elements.who.textContent = identity.open
    ? 'open API (no credentials configured)'
    : identity.role === 'operator' ? 'signed in as operator' : `signed in as context ${identity.context}`;
  elements.signOut.hidden = identity.open;
  let contexts = [];
  if (identity.role === 'context') {
    contexts = [identity.context];
  } else {
    try {
      const map = await get('v1/map');
      contexts = map.nodes.map((node) => node.name);
    } catch (error) {
      if (error.status === 401) return;
      contexts = [];
    }
  }
  identity.contexts = contexts;
  fill(elements.nav,
    h('a', { href: '#/', dataset: { view: 'overview' } }, 'Map & routes'),
    h('h2', {}, 'Contexts'),
    contexts.map((name) => h('a', { href: `#/contexts/${encodeURIComponent(name)}`, dataset: { context: name } }, name)),
    identity.role === 'operator' ? [h('h2', {}, 'Operator'), h('a', { href: '#/dead-letters', dataset: { view: 'unrouted' } }, 'Unrouted dead letters')] : [],
  );
  route();
}

/** Shows the view the address names. */
function route() {
  if (!identity) return;
  stopView();
  stopView = () => {};
  document.getElementById('flash').hidden = true;
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  for (const link of elements.nav.querySelectorAll('a')) {
    link.classList.toggle('current', link.getAttribute('href') === (location.hash || '#/'));
  }
  const view = elements.view;
  fill(view);
  const page = {
    view,
    identity,
    active: true,
    setStop(stop) { stopView = () => { page.active = false; stop(); }; },
  };
  stopView = () => { page.active = false; };
  if (parts[0] === 'contexts' && parts[1]) showContext(page, parts[1]);
  else if (parts[0] === 'routes' && parts[1]) showRoute(page, parts[1]);
  else if (parts[0] === 'dead-letters') showUnrouted(page);
  else showOverview(page);
}

onUnauthorized(() => {
  session.forget();
  showSignIn('The gateway no longer accepts this token: sign in again.');
});

elements.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const token = elements.token.value.trim();
  if (token) signIn(token);
});
elements.signOut.addEventListener('click', () => {
  session.forget();
  showSignIn('');
});
window.addEventListener('hashchange', route);

// A token kept by this tab, or none: an open API lets everyone in, otherwise the sign-in.
signIn(session.token || '');
