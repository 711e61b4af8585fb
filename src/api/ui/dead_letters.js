// Dead letters: a route's (its rates on top) and the unrouted ones (the operator's): list,
// inspect, redrive one or all, delete one.

import { del, get, path, post } from './api.js';
import { badge, describe, fill, flash, h, json, number } from './dom.js';
import { pollStats, showRates } from './overview.js';

/** How many dead letters one page lists. */
const PAGE = 50;

/** One route: its live rates and its dead letters. */
export async function showRoute(page, name) {
  const { view } = page;
  const row = {
    forwarded: h('dd', {}, '…'), deadLettered: h('dd', {}, '…'), retried: h('dd', {}, '…'),
    failure: h('dd', {}, '…'), totals: h('dd', {}, '…'),
  };
  const summary = h('p', { class: 'muted' }, 'Loading the route…');
  const panel = deadLetterPanel(name);
  fill(view,
    h('h1', {}, 'Route ', h('code', {}, name)),
    summary,
    h('section', { class: 'card' }, h('h2', {}, 'Live rates'),
      h('dl', { class: 'stats', id: 'route-stats' },
        h('dt', {}, 'Forwarded/s'), row.forwarded,
        h('dt', {}, 'Dead-lettered/s'), row.deadLettered,
        h('dt', {}, 'Retried/s'), row.retried,
        h('dt', {}, 'Failures'), row.failure,
        h('dt', {}, 'Totals since start'), row.totals)),
    panel.element);
  const routes = await get('v1/routes').catch(() => []);
  const route = routes.find((candidate) => candidate.name === name);
  fill(summary, route
    ? [`${route.upstream} → ${route.downstream} · `, badge(route.mode, 'mode'), ` · accepts ${route.accepts.join(', ')}`,
      route.translator ? ` · translator ${route.translator}` : '']
    : 'This token may not read this route, or there is none.');
  if (!page.active) return;
  const stopPolling = pollStats([name], (_, stats, rate, error) => {
    if (error) { fill(row.totals, describe(error)); return; }
    showRates(row, stats, rate);
  });
  page.setStop(stopPolling);
}

/** The dead letters that failed before any route was picked. */
export function showUnrouted(page) {
  const panel = deadLetterPanel(null);
  fill(page.view, h('h1', {}, 'Unrouted dead letters'),
    h('p', { class: 'muted' }, 'Inputs that failed before any route was picked (on RabbitMQ). The operator reads and deletes them; there is no route to redrive them through.'),
    panel.element);
}

/**
 * A card listing `route`'s dead letters (unrouted ones when `route` is null), with inspect,
 * redrive and delete; `element` is the card, `reload()` reads them again.
 */
export function deadLetterPanel(route) {
  const base = route === null ? 'v1/dead-letters' : path('v1', 'routes', route, 'dead-letters');
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading the dead letters…'));
  const count = h('span', { class: 'count', dataset: { deadLetterCount: route || '' } }, '…');
  const element = h('section', { class: 'card dead-letters', dataset: { deadLetters: route || '' } },
    h('h2', {}, 'Dead letters ', count), body);

  async function act(what, request, done) {
    try {
      const answer = await request();
      flash(done(answer), 'ok');
    } catch (error) {
      flash(`${what} failed: ${describe(error)}`, 'bad');
    }
    await reload();
  }

  async function reload() {
    let page;
    try {
      page = await get(base, { query: { max: PAGE } });
    } catch (error) {
      fill(count, '');
      fill(body, h('p', { class: 'error' }, describe(error)));
      return;
    }
    fill(count, badge(number(page.total), page.total > 0 ? 'bad' : 'ok'));
    const redriveAll = route === null || page.total === 0 ? null
      : h('button', {
        type: 'button', class: 'redrive-all',
        onclick: () => act('The redrive', () => post(`${base}/redrive`), outcome),
      }, `Redrive all ${number(page.total)}`);
    if (page.dead_letters.length === 0) {
      fill(body, h('p', { class: 'empty' }, 'No dead letters.'));
      return;
    }
    const rows = page.dead_letters.flatMap((deadLetter) => {
      const details = h('tr', { class: 'details', hidden: true }, h('td', { colspan: 6 }));
      const one = `${base}/${encodeURIComponent(deadLetter.id)}`;
      const problems = deadLetter.failure.problems || [];
      const first = problems[0] ? (problems[0].pointer ? `${problems[0].pointer}: ${problems[0].message}` : problems[0].message) : '';
      const deleteButton = h('button', { type: 'button', class: 'delete danger' }, 'Delete');
      deleteButton.addEventListener('click', () => {
        if (deleteButton.dataset.armed !== 'yes') {
          deleteButton.dataset.armed = 'yes';
          deleteButton.textContent = 'Really delete?';
          return;
        }
        act('The delete', () => del(one), () => `Deleted dead letter ${deadLetter.id}.`);
      });
      return [
        h('tr', { dataset: { deadLetter: deadLetter.id } },
          h('td', {}, h('code', { title: deadLetter.id }, deadLetter.id.slice(0, 13))),
          h('td', { class: 'nowrap' }, deadLetter.failed_at || '–'),
          h('td', {}, badge(deadLetter.failure.stage, 'stage'), ' ', deadLetter.failure.reason),
          h('td', { class: 'problem' }, first),
          h('td', { class: 'num' }, String(deadLetter.attempt)),
          h('td', { class: 'actions' },
            h('button', {
              type: 'button', class: 'inspect quiet',
              onclick: async () => {
                details.hidden = !details.hidden;
                if (details.hidden) return;
                try {
                  fill(details.firstChild, inspect(await get(one)));
                } catch (error) {
                  fill(details.firstChild, h('p', { class: 'error' }, describe(error)));
                }
              },
            }, 'Inspect'),
            route === null ? null : h('button', {
              type: 'button', class: 'redrive',
              onclick: () => act('The redrive', () => post(`${one}/redrive`), outcome),
            }, 'Redrive'),
            deleteButton)),
        details,
      ];
    });
    fill(body,
      redriveAll ? h('p', { class: 'toolbar' }, redriveAll) : null,
      h('table', {},
        h('thead', {}, h('tr', {}, ['Id', 'Failed at', 'Stage', 'Problem', 'Attempt', ''].map((title) => h('th', {}, title)))),
        h('tbody', {}, rows)),
      page.next ? h('p', { class: 'muted' }, `The oldest ${page.dead_letters.length} of ${number(page.total)} are listed.`) : null);
  }

  reload();
  return { element, reload };
}

/** What a redrive did, for people. */
function outcome(answer) {
  const outcomes = Object.entries(answer.outcomes || {}).map(([what, n]) => `${n} ${what}`).join(', ');
  return `Redriven: ${answer.redriven} (${outcomes || 'nothing'}); ${answer.remaining} left.`;
}

/** A dead letter in full: why it failed, and the input as kept. */
function inspect(deadLetter) {
  let bodyView;
  try {
    bodyView = json(JSON.parse(deadLetter.input.body));
  } catch {
    bodyView = h('pre', { class: 'code' }, deadLetter.input.body ?? '');
  }
  return h('div', { class: 'inspect-view' },
    h('h3', {}, 'Failure'),
    json(deadLetter.failure),
    h('h3', {}, 'Input headers'),
    (deadLetter.input.headers || []).length === 0 ? h('p', { class: 'muted' }, 'None.')
      : h('table', { class: 'headers' }, h('tbody', {}, deadLetter.input.headers.map(([name, value]) => h('tr', {}, h('td', {}, h('code', {}, name)), h('td', {}, String(value)))))),
    h('h3', {}, 'Input body', deadLetter.input.content_type ? ` (${deadLetter.input.content_type})` : ''),
    bodyView);
}
