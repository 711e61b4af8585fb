// Building the page from data, never from HTML strings: every text from the API goes in as text.

/** An element: `h('a', {href: '#/', class: 'x', onclick: f}, 'text', child, [more])`. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') element.className = value;
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key === 'value') element.value = value;
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Empties `element` and fills it with `children`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** JSON, indented, as a `<pre>`. */
export function json(value, props = {}) {
  return h('pre', { class: 'code', ...props }, JSON.stringify(value, null, 2));
}

/** A small coloured label: `badge('compatible', 'ok')`. */
export function badge(text, tone = 'neutral') {
  return h('span', { class: `badge ${tone}` }, text);
}

/** The message of an API error, for people. */
export function describe(error) {
  if (error && error.status === 403) return 'This token may not see or do this.';
  if (error && error.status === 404) return error.message || 'Not found.';
  return error && error.message ? error.message : String(error);
}

/** A short-lived message at the bottom of the window. */
let flashTimer;
export function flash(text, tone = 'ok') {
  const element = document.getElementById('flash');
  element.textContent = text;
  element.className = `flash ${tone}`;
  element.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => { element.hidden = true; }, 6000);
}

/** A number for people: 1234.5 → "1,234.5"; rates with two decimals at most. */
export function number(value, digits = 0) {
  if (value === undefined || value === null || Number.isNaN(value)) return '–';
  return value.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
