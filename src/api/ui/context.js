// One context: its contracts (versions, schemas, a diff between two versions with the
// compatibility verdict and a counterexample), its translators (script, cases, run a case), its
// AsyncAPI document, and the routes it receives on with their dead letters.

import { get, path, post } from './api.js';
import { badge, describe, fill, h, json } from './dom.js';
import { deadLetterPanel } from './dead_letters.js';

export async function showContext(page, context) {
  const contracts = h('section', { class: 'card', id: 'contracts' }, h('h2', {}, 'Contracts'), h('p', { class: 'muted' }, 'Loading…'));
  const translators = h('section', { class: 'card', id: 'translators' }, h('h2', {}, 'Translators'), h('p', { class: 'muted' }, 'Loading…'));
  const asyncapi = asyncapiCard(context);
  const inbound = h('section', { id: 'inbound' }, h('h2', {}, 'Routes into this context'));
  fill(page.view, h('h1', {}, 'Context ', h('code', { id: 'context-name' }, context)), contracts, translators, asyncapi, inbound);
  await Promise.all([
    showContracts(contracts, context),
    showTranslators(translators, context),
    showInbound(inbound, context),
  ]);
}

/** The context's AsyncAPI 3.0 document (as much of it as the token may see), shown on demand
 * and saved as a file through a blob URL (the API wants the token, which a plain link lacks). */
function asyncapiCard(context) {
  const output = h('div', { class: 'output' });
  let objectUrl = null;
  const show = async () => {
    try {
      const doc = await get(path('v1', 'contexts', context, 'asyncapi'));
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' }));
      fill(output,
        h('p', {}, h('a', { href: objectUrl, download: `${context}.asyncapi.json`, class: 'download-asyncapi' }, `Save ${context}.asyncapi.json`)),
        json(doc, { class: 'code asyncapi-document' }));
    } catch (error) {
      fill(output, h('p', { class: 'error' }, describe(error)));
    }
  };
  return h('section', { class: 'card', id: 'asyncapi' },
    h('h2', {}, 'AsyncAPI'),
    h('p', { class: 'muted' }, 'Its channels (exchanges and route queues, with AMQP bindings), messages and operations, as AsyncAPI 3.0.'),
    h('button', { type: 'button', class: 'show-asyncapi', onclick: show }, 'Show the document'),
    output);
}

async function showContracts(card, context) {
  let list;
  try {
    list = await get(path('v1', 'contexts', context, 'contracts'));
  } catch (error) {
    fill(card, h('h2', {}, 'Contracts'), h('p', { class: 'error' }, describe(error)));
    return;
  }
  fill(card, h('h2', {}, 'Contracts'),
    list.length === 0 ? h('p', { class: 'empty' }, 'This context owns no contract.') : null,
    list.map((contract) => contractView(context, contract)));
}

function contractView(context, contract) {
  const name = contract.name.split('/').pop();
  const output = h('div', { class: 'output' });
  const versions = contract.versions.map((version) => h('button', {
    type: 'button', class: 'quiet version',
    onclick: async () => {
      try {
        const schema = await get(path('v1', 'contexts', context, 'contracts', name, 'versions', String(version)));
        fill(output, h('h4', {}, `${contract.name}@${version}`), json(schema));
      } catch (error) {
        fill(output, h('p', { class: 'error' }, describe(error)));
      }
    },
  }, `v${version}`, contract.labels && contract.labels[version] ? ` (${contract.labels[version]})` : ''));
  let compare = null;
  if (contract.versions.length >= 2) {
    const last = contract.versions.length - 1;
    const select = (chosen, label) => h('select', { 'aria-label': label },
      contract.versions.map((version, index) => h('option', { value: String(version), selected: index === chosen }, `v${version}`)));
    const from = select(last - 1, 'from version');
    const to = select(last, 'to version');
    compare = h('span', { class: 'compare' }, 'Compare ', from, ' → ', to, ' ', h('button', {
      type: 'button', class: 'diff',
      onclick: async () => {
        fill(output, h('p', { class: 'muted' }, 'Comparing…'));
        try {
          const comparison = await get(path('v1', 'contexts', context, 'contracts', name, 'compat'), { query: { from: from.value, to: to.value } });
          fill(output, comparisonView(comparison));
        } catch (error) {
          fill(output, h('p', { class: 'error' }, describe(error)));
        }
      },
    }, 'Diff'));
  }
  return h('article', { class: 'contract', dataset: { contract: contract.name } },
    h('h3', {}, h('code', {}, contract.name), ' ', badge(contract.kind, 'kind'), ' ', badge(contract.visibility, contract.visibility === 'internal' ? 'warn' : 'neutral')),
    h('p', { class: 'row' }, 'Versions: ', versions, compare),
    output);
}

function tone(verdict) {
  return verdict === 'compatible' ? 'ok' : verdict === 'incompatible' ? 'bad' : 'warn';
}

function comparisonView(comparison) {
  return h('div', { class: 'comparison' },
    h('p', {}, `${comparison.contract}: v${comparison.from} → v${comparison.to} at level `, h('code', {}, comparison.level),
      ` (${comparison.policy} policy): `, badge(comparison.verdict, tone(comparison.verdict))),
    comparison.directions.map((direction) => h('div', { class: 'direction', dataset: { direction: direction.direction } },
      h('h4', {}, direction.direction === 'backward'
        ? `Backward: documents of v${comparison.from} under v${comparison.to}`
        : `Forward: documents of v${comparison.to} under v${comparison.from}`,
      ' ', badge(direction.verdict, tone(direction.verdict)),
      direction.checked_by_level ? '' : h('span', { class: 'muted' }, ' (not checked by the level)')),
      direction.changes.length === 0 ? h('p', { class: 'muted' }, 'No difference.')
        : h('table', {}, h('tbody', {}, direction.changes.map((change) => h('tr', {},
          h('td', {}, badge(change.compatible ? 'compatible' : 'incompatible', change.compatible ? 'ok' : 'bad')),
          h('td', {}, h('code', {}, change.type)),
          h('td', {}, h('code', {}, change.path)))))),
      direction.counterexample ? [h('p', {}, 'Counterexample: ', direction.counterexample.summary), json(direction.counterexample.document, { class: 'code counterexample' })] : null,
      direction.undecided ? h('p', { class: 'warn' }, direction.undecided) : null)));
}

async function showTranslators(card, context) {
  let list;
  try {
    list = await get(path('v1', 'contexts', context, 'translators'));
  } catch (error) {
    fill(card, h('h2', {}, 'Translators'), h('p', { class: 'error' }, describe(error)));
    return;
  }
  fill(card, h('h2', {}, 'Translators'),
    list.length === 0 ? h('p', { class: 'empty' }, 'This context has no translator.') : null,
    list.map((translator) => translatorView(context, translator)));
}

function translatorView(context, summary) {
  const name = summary.name.split('/').pop();
  const body = h('div', { class: 'translator-body', hidden: true });
  const toggle = h('button', {
    type: 'button', class: 'quiet open-translator',
    onclick: async () => {
      body.hidden = !body.hidden;
      if (body.hidden || body.dataset.loaded) return;
      try {
        const translator = await get(path('v1', 'contexts', context, 'translators', name));
        body.dataset.loaded = 'yes';
        fill(body,
          translator.description ? h('p', {}, translator.description) : null,
          h('h4', {}, 'Script'),
          h('pre', { class: 'code script' }, translator.script),
          h('h4', {}, `Cases (${translator.cases.length})`),
          translator.cases.length === 0 ? h('p', { class: 'empty' }, 'No case.') : h('ul', { class: 'cases' }, translator.cases.map((item, index) => caseView(context, name, item, index))));
      } catch (error) {
        fill(body, h('p', { class: 'error' }, describe(error)));
      }
    },
  }, 'Script and cases');
  return h('article', { class: 'translator', dataset: { translator: summary.name } },
    h('h3', {}, h('code', {}, summary.name), ' ', toggle),
    h('p', { class: 'muted' }, `${summary.input} → ${summary.output} · sha256 ${summary.content_hash.slice(0, 12)}…`),
    body);
}

function expectation(item) {
  if ('expect_drop' in item) return 'expects a drop';
  if ('expect_error' in item) return `expects an error containing “${item.expect_error}”`;
  if ('expect_many' in item) return `expects ${item.expect_many.length} outputs`;
  return 'expects one output';
}

function caseView(context, name, item, index) {
  const result = h('div', { class: 'case-result' });
  const input = h('details', {}, h('summary', {}, 'Input'), json(item.input));
  return h('li', { dataset: { case: String(index) } },
    h('span', { class: 'case-name' }, item.name), ' ', h('span', { class: 'muted' }, expectation(item)), ' ',
    h('button', {
      type: 'button', class: 'run-case',
      onclick: async () => {
        fill(result, h('span', { class: 'muted' }, 'Running…'));
        try {
          const run = await post(path('v1', 'contexts', context, 'translators', name, 'run'), item);
          fill(result,
            badge(run.passed ? 'passed' : 'failed', run.passed ? 'ok' : 'bad'),
            run.error ? h('p', { class: 'error' }, run.error) : null,
            run.problems.length ? h('ul', { class: 'problems' }, run.problems.map((problem) => h('li', {}, problem))) : null,
            run.outputs.length ? [h('p', {}, `${run.outputs.length} output(s):`), json(run.outputs.length === 1 ? run.outputs[0] : run.outputs)] : h('p', { class: 'muted' }, 'No output (a drop or an error).'));
        } catch (error) {
          fill(result, h('p', { class: 'error' }, describe(error)));
        }
      },
    }, 'Run'),
    input, result);
}

async function showInbound(section, context) {
  let routes;
  try {
    routes = await get('v1/routes');
  } catch (error) {
    section.append(h('p', { class: 'error' }, describe(error)));
    return;
  }
  const mine = routes.filter((route) => route.downstream === context);
  if (mine.length === 0) {
    section.append(h('p', { class: 'empty card' }, 'No route delivers to this context.'));
    return;
  }
  for (const route of mine) {
    const panel = deadLetterPanel(route.name);
    section.append(h('div', { class: 'inbound-route' },
      h('h3', {}, h('a', { href: `#/routes/${encodeURIComponent(route.name)}` }, route.name), ' ',
        h('span', { class: 'muted' }, `from ${route.upstream}`), ' ', badge(route.mode, 'mode')),
      panel.element));
  }
}
