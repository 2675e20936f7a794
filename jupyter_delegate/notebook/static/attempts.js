// Best-of-N attempts side by side (jupyter_delegate/notebook/attempts_view.py,
// AttemptsView): the ranked comparison, Keep per attempt, and the difference between any
// two attempts. It draws the Python side's traits and sends the user's actions as
// messages ({action: "keep" | "not_now", ...}); the attempts compared are a trait it sets
// (`compare`). The difference is HTML the kernel rendered with every text escaped. An
// attempt's task id asks the notebook's front end for a cell running `%delegate show ID`
// (a bubbling `jd-insert-cell` event); where nobody answers, it says what to run.

const INSERT_EVENT = 'jd-insert-cell';

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'value') node.value = value;
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function button(label, cls, onclick, title) {
  return h('button', { class: `jda-button ${cls || ''}`, type: 'button', onclick, title }, label);
}

const COLUMNS = ['rank', 'attempt', 'model', 'effort', 'state', 'checks', '+/\u2212', 'files', 'cost', 'time', ''];

function render({ model, el }) {
  const root = h('div', { class: 'jda' });
  el.append(root);
  const send = (action, data = {}) => model.send({ action, ...data });
  let local = '';

  const goal = h('div', { class: 'jda-goal' });
  const table = h('table', { class: 'jda-table' });
  const ask = h('div', { class: 'jda-ask' });
  const feedback = h('div', { class: 'jda-feedback', role: 'status' });
  const first = h('select', { class: 'jda-a' });
  const second = h('select', { class: 'jda-b' });
  const pick = () => {
    model.set('compare', [Number(first.value), Number(second.value)]);
    model.save_changes();
  };
  first.addEventListener('change', pick);
  second.addEventListener('change', pick);
  const compareBar = h('div', { class: 'jda-compare' },
    'What attempt ', second, ' has that attempt ', first, ' has not:');
  const diff = h('div', { class: 'jda-diff' });
  root.append(goal, table, ask, feedback, compareBar, diff);

  function openTask(id) {
    const source = `%delegate show ${id}`;
    let answered = false;
    const event = new CustomEvent(INSERT_EVENT, {
      bubbles: true,
      cancelable: true,
      detail: {
        source,
        run: true,
        done: error => {
          answered = true;
          local = error ? `Could not insert the cell: ${error}` : `Task ${id}: its view is in the cell below.`;
          drawFeedback();
        }
      }
    });
    if (el.dispatchEvent(event) && !answered) {
      local = `Run \`${source}\` in a cell to see its review.`;
      drawFeedback();
    }
  }

  function drawFeedback() {
    const said = model.get('feedback') || {};
    const busy = model.get('busy');
    feedback.textContent = busy ? `${busy}\u2026` : local || said.text || '';
    feedback.classList.toggle('jda-error', !local && Boolean(said.error));
  }

  function drawRows() {
    const rows = model.get('rows') || [];
    const kept = model.get('kept');
    const busy = Boolean(model.get('busy'));
    goal.textContent = '';
    goal.append(h('b', {}, `${rows.length} attempts`), ` at: ${model.get('goal')} `,
      h('code', { class: 'jda-id' }, model.get('group_id')));
    table.textContent = '';
    table.append(h('thead', {}, h('tr', {}, COLUMNS.map(c => h('th', {}, c)))));
    const body = h('tbody');
    for (const row of rows) {
      const pill = h('span', { class: 'jda-pill' }, row.verdict ? `${row.state} \u00b7 ${row.verdict}` : row.state);
      pill.style.background = row.colour;
      const keep = !kept && row.state === 'review'
        ? button('Keep', 'jda-keep', () => send('keep', { index: row.index }),
          'approve this attempt (merged into the base); the others are archived')
        : '';
      if (keep) keep.disabled = busy;
      body.append(h('tr', { class: `jda-row${kept === row.index ? ' jda-kept' : ''}`, 'data-index': String(row.index), 'data-state': row.state },
        h('td', { class: 'jda-rank' }, String(row.rank)),
        h('td', {}, `#${row.index} `, h('a', { class: 'jda-task', href: '#', title: 'its live view or review, in a new cell below',
          onclick: e => { e.preventDefault(); openTask(row.task); } }, row.task)),
        h('td', {}, row.model),
        h('td', {}, row.effort || '\u2013'),
        h('td', {}, pill),
        h('td', { class: row.checks_total && row.checks_passed === row.checks_total ? 'jd-pass' : row.checks_total ? 'jd-fail' : '' },
          row.checks_total ? `${row.checks_passed}/${row.checks_total}` : '\u2013'),
        h('td', { class: 'jda-lines' }, h('span', { class: 'jd-pass' }, `+${row.added}`), ' ', h('span', { class: 'jd-fail' }, `\u2212${row.removed}`)),
        h('td', {}, String(row.files)),
        h('td', { class: 'jda-num' }, row.cost),
        h('td', { class: 'jda-num' }, row.time),
        h('td', {}, keep, kept === row.index ? h('b', { class: 'jda-kept-note' }, 'kept') : '')
      ));
    }
    table.append(body);
    // the selectors: every attempt, by its number, the chosen pair selected
    const compare = model.get('compare') || [];
    for (const [select, chosen] of [[first, compare[0]], [second, compare[1]]]) {
      const options = [...rows].sort((a, b) => a.index - b.index).map(row =>
        h('option', { value: String(row.index) }, `#${row.index} (${row.model}${row.effort ? ', ' + row.effort : ''})`));
      select.textContent = '';
      select.append(...options);
      if (chosen) select.value = String(chosen);
    }
    compareBar.style.display = rows.length >= 2 ? '' : 'none';
  }

  function drawAsk() {
    const index = model.get('asking');
    ask.textContent = '';
    ask.style.display = index ? '' : 'none';
    if (index) {
      ask.append(h('b', {}, `Attempt ${index} is not proven: `), (model.get('reasons') || []).join('; '),
        '. Nothing was merged. Keep it anyway? ',
        button('Keep anyway', 'jda-danger jda-force', () => send('keep', { index, force: true })),
        button('Not now', 'jda-not-now', () => send('not_now')));
    }
  }

  function drawDiff() {
    const error = model.get('diff_error');
    if (error) {
      diff.textContent = error;
      diff.classList.add('jda-error');
    } else {
      diff.classList.remove('jda-error');
      diff.innerHTML = model.get('diff') || ''; // the kernel's HTML, its texts escaped
    }
  }

  const all = () => { local = ''; drawRows(); drawAsk(); drawFeedback(); };
  all();
  drawDiff();
  const names = { rows: all, kept: all, compare: all, asking: all, reasons: all, busy: all, feedback: all, diff: drawDiff, diff_error: drawDiff };
  for (const [name, handler] of Object.entries(names)) model.on(`change:${name}`, handler);
  return () => {
    for (const [name, handler] of Object.entries(names)) model.off(`change:${name}`, handler);
  };
}

export default { render };
