// The overview: the context map (the gateway's own SVG) and every route the token may read,
// with live rates computed here from the gateway's counters (GET /v1/routes/{route}/stats).

import { get, path } from './api.js';
import { badge, describe, fill, h, number } from './dom.js';

/** How often the counters are read. */
export const POLL_MS = 2000;

/**
 * Rates from two readings of a route's counters: per second over the time between them, and
 * the share of inputs that failed (dead-lettered or retried) among those the route settled.
 */
export function rates(previous, current, seconds) {
  if (!previous || seconds <= 0) return null;
  const delta = (key) => Math.max(0, current[key] - previous[key]);
  const forwarded = delta('forwarded');
  const dropped = delta('dropped');
  const deadLettered = delta('dead_lettered');
  const retried = delta('retried');
  const settled = forwarded + dropped + deadLettered + retried;
  return {
    forwarded: forwarded / seconds,
    dropped: dropped / seconds,
    deadLettered: deadLettered / seconds,
    retried: retried / seconds,
    failureShare: settled === 0 ? null : (deadLettered + retried) / settled,
  };
}

/**
 * Polls the counters of `routes` every POLL_MS and calls `show(route, stats, rates)` for each;
 * returns the function that stops it.
 */
export function pollStats(routes, show) {
  const readings = new Map();
  let stopped = false;
  let timer;
  async function tick() {
    await Promise.all(routes.map(async (route) => {
      try {
        const stats = await get(path('v1', 'routes', route, 'stats'));
        const now = performance.now();
        const previous = readings.get(route);
        readings.set(route, { stats, at: now });
        if (!stopped) show(route, stats, previous ? rates(previous.stats, stats, (now - previous.at) / 1000) : null);
      } catch (error) {
        if (!stopped) show(route, null, null, error);
      }
    }));
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

export async function showOverview(page) {
  const { view } = page;
  const mapFigure = h('figure', { class: 'map card' }, h('figcaption', {}, 'Context map'), h('p', { class: 'muted' }, 'Loading the map…'));
  const routesCard = h('section', { class: 'card' }, h('h2', {}, 'Routes'), h('p', { class: 'muted' }, 'Loading the routes…'));
  fill(view, h('h1', {}, 'Map & routes'), mapFigure, routesCard);
  let objectUrl = null;
  let stopPolling = () => {};
  page.setStop(() => { stopPolling(); if (objectUrl) URL.revokeObjectURL(objectUrl); });

  get('v1/map', { query: { format: 'svg' }, blob: true }).then((svg) => {
    objectUrl = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
    fill(mapFigure, h('figcaption', {}, 'Context map'),
      h('img', { id: 'context-map', src: objectUrl, alt: 'The context map: contexts and the routes between them, labelled with their relationship.' }));
  }, (error) => fill(mapFigure, h('figcaption', {}, 'Context map'), h('p', { class: 'error' }, describe(error))));

  let routes;
  try {
    routes = await get('v1/routes');
  } catch (error) {
    fill(routesCard, h('h2', {}, 'Routes'), h('p', { class: 'error' }, describe(error)));
    return;
  }
  const cells = new Map();
  const rows = routes.map((route) => {
    const cell = () => h('td', { class: 'num rate' }, '…');
    const row = {
      forwarded: cell(), deadLettered: cell(), retried: cell(), failure: cell(), totals: h('td', { class: 'num muted totals' }, '…'),
    };
    cells.set(route.name, row);
    return h('tr', { dataset: { route: route.name } },
      h('td', { class: 'nowrap' }, h('a', { href: `#/routes/${encodeURIComponent(route.name)}` }, route.name)),
      h('td', { class: 'nowrap' }, `${route.upstream} → ${route.downstream}`),
      h('td', {}, badge(route.mode, 'mode')),
      row.forwarded, row.deadLettered, row.retried, row.failure, row.totals);
  });
  fill(routesCard,
    h('h2', {}, 'Routes'),
    h('p', { class: 'muted' }, `Rates per second between two readings of the gateway's counters, every ${POLL_MS / 1000} s; failures are dead-lettered or retried inputs among all the route settled.`),
    routes.length === 0 ? h('p', {}, 'No route this token may read.') : h('table', { id: 'routes' },
      h('thead', {}, h('tr', {}, ['Route', 'Upstream → downstream', 'Mode', 'Forwarded/s', 'Dead-lettered/s', 'Retried/s', 'Failures', 'Totals'].map((title) => h('th', {}, title)))),
      h('tbody', {}, rows)));
  if (!page.active) return;
  stopPolling = pollStats(routes.map((route) => route.name), (name, stats, rate, error) => {
    const row = cells.get(name);
    if (error) { fill(row.totals, describe(error)); return; }
    showRates(row, stats, rate);
  });
}

/** Fills a row's cells with a reading. */
export function showRates(row, stats, rate) {
  fill(row.totals, `${number(stats.forwarded)} fwd · ${number(stats.dead_lettered)} dl · ${number(stats.dropped)} drop`);
  if (!rate) return;
  fill(row.forwarded, number(rate.forwarded, 2));
  fill(row.deadLettered, number(rate.deadLettered, 2));
  fill(row.retried, number(rate.retried, 2));
  fill(row.failure, rate.failureShare === null ? '–'
    : badge(`${number(rate.failureShare * 100, 1)} %`, rate.failureShare > 0 ? 'bad' : 'ok'));
}
