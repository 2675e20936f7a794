// A plan of subtasks (jupyter_delegate/notebook/plan_view.py, PlanView): the editable
// table of a draft, the graph of its subtasks as it runs, and the plan's actions.
//
// It draws what the Python side's traits say and sends it the user's actions as messages
// ({action: "edit" | "run" | "approve" | "cancel" | "resume" | "restart" | "approve_task" |
// "discard", ...}); it decides nothing and validates nothing itself (the kernel's
// PlanSpec does, and its problems come back in `errors`). The draft being edited lives
// here until it is saved: a change from the kernel (a new `revision`) replaces it only
// when it has no unsaved edits. "Insert as cell" and a task's id ask the notebook's front
// end (labextension/src/restart.ts) for a new cell by a bubbling `jd-insert-cell` event;
// where nobody answers, the widget shows what to copy. Built with textContent only,
// except the graph, SVG the kernel made with every text escaped.

const INSERT_EVENT = 'jd-insert-cell';

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'value') node.value = value;
    else if (key === 'checked') node.checked = Boolean(value);
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
  return h('button', { class: `jdp-button ${cls || ''}`, type: 'button', onclick, title }, label);
}

const lines = text => text.split('\n').map(s => s.trim()).filter(Boolean);
const names = text => text.split(/[,\s]+/).map(s => s.trim()).filter(Boolean);
const clone = value => JSON.parse(JSON.stringify(value || {}));

// The draft as the kernel's PlanSpec reads it: empty lists and budgets left out.
function cleaned(draft) {
  const spec = clone(draft);
  for (const key of ['checks']) {
    if (!spec[key] || !spec[key].length) delete spec[key];
  }
  if (spec.budget && !Object.keys(spec.budget).length) delete spec.budget;
  spec.subtasks = (spec.subtasks || []).map(sub => {
    const out = { ...sub };
    for (const key of ['checks', 'scope', 'depends_on', 'constraints']) {
      if (!out[key] || !out[key].length) delete out[key];
    }
    if (out.budget && !Object.keys(out.budget).length) delete out.budget;
    return out;
  });
  return spec;
}

function render({ model, el }) {
  const root = h('div', { class: 'jdp' });
  el.append(root);
  const send = (action, data = {}) => model.send({ action, ...data });
  let draft = null; // the spec being edited
  let dirty = false; // edits not saved yet
  let revision = -1; // the spec revision the draft was taken from
  let local = ''; // what the widget itself says beside the buttons (no kernel answer)
  let saving = false; // the draft was sent to be saved: the kernel's next spec replaces it
  const saveDraft = action => {
    saving = true;
    send(action, { spec: cleaned(draft) });
  };

  // -- the header and the actions ----------------------------------------------------------
  const title = h('b', { class: 'jdp-title' });
  const badge = h('span', { class: 'jdp-badge' });
  const planId = h('code', { class: 'jdp-id' });
  const cost = h('span', { class: 'jdp-cost' });
  const reason = h('div', { class: 'jdp-reason' });
  const planning = h('div', { class: 'jdp-planning' });
  const run = button('Run plan', 'jdp-run jdp-primary', () =>
    dirty ? saveDraft('run') : send('run')
  );
  const approve = button('Approve plan', 'jdp-approve jdp-primary', () => send('approve'),
    'merge every approved subtask into the base in dependency order, run the plan\u2019s checks there, then fast-forward the base');
  const resume = button('Resume', 'jdp-resume jdp-primary', () => send('resume'),
    'no process runs this plan any more: take it up here');
  // Cancel asks first, in place (as the review's Reject and Cancel do).
  const confirmCancel = h('div', { class: 'jdp-confirm' },
    'Cancel the plan? Its running subtasks are cancelled and none starts any more; what is approved stays on the plan\u2019s branches. ',
    button('Cancel the plan', 'jdp-danger jdp-cancel-confirm', () => {
      confirmCancel.style.display = 'none';
      send('cancel');
    }),
    button('Keep it running', 'jdp-keep-running', () => { confirmCancel.style.display = 'none'; }));
  confirmCancel.style.display = 'none';
  const cancel = button('Cancel plan\u2026', 'jdp-cancel', () => { confirmCancel.style.display = ''; });
  const insert = button('Insert as cell', 'jdp-insert', () => insertPlanCell(),
    'a %%delegate-plan cell holding this plan\u2019s YAML, below this one');
  const feedback = h('span', { class: 'jdp-feedback', role: 'status' });
  const actions = h('div', { class: 'jdp-actions' }, run, approve, resume, cancel, insert, feedback);
  const errors = h('div', { class: 'jdp-errors' });
  const graph = h('div', { class: 'jdp-graph' });
  const settings = h('div', { class: 'jdp-settings' });
  const table = h('table', { class: 'jdp-table' });
  const add = button('+ Add subtask', 'jdp-add', () => {
    editing().subtasks.push({ name: `step-${editing().subtasks.length + 1}`, goal: '' });
    changed(true);
  });
  const save = button('Save edits', 'jdp-save jdp-primary', () => saveDraft('edit'));
  const discard = button('Discard edits', 'jdp-discard', () => {
    dirty = false;
    draft = clone(model.get('spec'));
    send('discard');
    changed(true);
  });
  const unsaved = h('span', { class: 'jdp-unsaved' });
  const editbar = h('div', { class: 'jdp-editbar' }, add, save, discard, unsaved);
  const copy = h('div', { class: 'jdp-copy' });
  root.append(
    h('div', { class: 'jdp-head' }, title, ' ', badge, ' ', planId, ' ', cost),
    reason, planning, actions, confirmCancel, errors, graph, settings, table, editbar, copy
  );

  const isDraft = () => model.get('state') === 'draft';
  function editing() {
    if (!draft) draft = clone(model.get('spec'));
    if (!draft.subtasks) draft.subtasks = [];
    return draft;
  }

  // -- asking the notebook for a cell ------------------------------------------------------
  function askForCell(source, run, what) {
    let answered = false;
    const event = new CustomEvent(INSERT_EVENT, {
      bubbles: true,
      cancelable: true,
      detail: {
        source,
        run,
        done: error => {
          answered = true;
          local = error ? `Could not insert the cell: ${error}` : what;
          drawFeedback(Boolean(error));
        }
      }
    });
    const handled = !el.dispatchEvent(event);
    return handled || answered;
  }

  function insertPlanCell() {
    const source = model.get('cell');
    copy.textContent = '';
    if (!askForCell(source, false, 'A %%delegate-plan cell with this plan is below.')) {
      // No front end of ours: the YAML to copy into a new cell.
      const pre = h('pre', { class: 'jdp-yaml' }, source);
      copy.append(h('div', {}, 'Copy this into a new cell (this front end cannot insert one):'), pre);
      try {
        const range = document.createRange();
        range.selectNodeContents(pre);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      } catch (e) {
        // selecting is a convenience only
      }
    }
  }

  function openTask(id) {
    const source = `%delegate show ${id}`;
    if (!askForCell(source, true, `Task ${id}: its view is in the cell below.`)) {
      local = `Run \`${source}\` in a cell to see its review.`;
      drawFeedback(false);
    }
  }

  // -- drawing -----------------------------------------------------------------------------
  function drawFeedback(error) {
    const said = model.get('feedback') || {};
    const busy = model.get('busy');
    const text = busy ? `${busy}\u2026` : local || said.text || '';
    feedback.textContent = text === model.get('guide') ? '' : text; // said once is enough
    feedback.classList.toggle('jdp-error', Boolean(local ? error : said.error));
  }

  function drawHead() {
    const state = model.get('state');
    title.textContent = model.get('title');
    badge.textContent = model.get('state_text') || state;
    badge.dataset.state = state;
    planId.textContent = model.get('plan_id');
    cost.textContent = model.get('cost');
    root.dataset.state = state;
    root.dataset.cutOff = model.get('cut_off') ? '1' : '';
    reason.textContent = model.get('guide') || '';
    planning.textContent = '';
    const planner = model.get('planner') || {};
    if (state === 'planning') {
      const facts = planner.task
        ? ` (task ${planner.task}: ${planner.steps} step${planner.steps === 1 ? '' : 's'}, ${planner.cost})`
        : '';
      planning.append(h('span', { class: 'jdp-pulse' }), `The agent is reading the repository and planning${facts}\u2026`);
    }
    planning.style.display = state === 'planning' ? '' : 'none';
    const busy = Boolean(model.get('busy'));
    const show = (node, on) => {
      node.style.display = on ? '' : 'none';
      node.disabled = busy;
    };
    show(run, state === 'draft');
    show(approve, state === 'ready' || (state === 'running' && !model.get('cut_off')) || state === 'failed');
    approve.disabled = busy || state !== 'ready';
    approve.title = state === 'ready'
      ? 'merge every approved subtask into the base in dependency order, run the plan\u2019s checks there, then fast-forward the base'
      : 'once every subtask is approved';
    show(resume, Boolean(model.get('cut_off')));
    show(cancel, state === 'running' && !model.get('cut_off'));
    if (state !== 'running') confirmCancel.style.display = 'none';
    show(insert, Boolean(model.get('cell')));
    show(save, true);
    show(discard, true);
    editbar.style.display = state === 'draft' ? '' : 'none';
    unsaved.textContent = dirty ? 'unsaved edits' : '';
    drawFeedback(false);
  }

  function drawErrors() {
    const problems = model.get('errors') || [];
    errors.textContent = '';
    if (problems.length) {
      errors.append(h('b', {}, 'Not saved: '), h('ul', {}, problems.map(p => h('li', {}, p))));
    }
    errors.style.display = problems.length ? '' : 'none';
  }

  function drawGraph() {
    graph.innerHTML = model.get('graph') || ''; // the kernel's SVG, its texts escaped
    for (const node of graph.querySelectorAll('.jdg-node')) {
      const task = node.dataset.task;
      if (task) {
        node.classList.add('jdp-link');
        node.addEventListener('click', () => openTask(task));
      }
    }
  }

  // The plan's own settings, editable in a draft.
  function drawSettings() {
    settings.textContent = '';
    if (!isDraft()) {
      settings.style.display = 'none';
      return;
    }
    settings.style.display = '';
    const spec = editing();
    const field = (label, input) => h('label', { class: 'jdp-field' }, h('span', {}, label), input);
    settings.append(
      field('plan', h('input', {
        class: 'jdp-plan-title', value: spec.plan || '',
        oninput: e => { spec.plan = e.target.value; changed(false); }
      })),
      field('checks of the integration', h('input', {
        class: 'jdp-plan-checks', value: (spec.checks || []).join('; '), placeholder: 'pytest -q; ruff check .',
        oninput: e => { spec.checks = e.target.value.split(';').map(s => s.trim()).filter(Boolean); changed(false); }
      })),
      field('budget $', h('input', {
        class: 'jdp-plan-budget', type: 'number', min: '0', step: '0.5',
        value: spec.budget && spec.budget.max_usd !== undefined ? spec.budget.max_usd : '',
        oninput: e => {
          spec.budget = { ...(spec.budget || {}) };
          if (e.target.value === '') delete spec.budget.max_usd;
          else spec.budget.max_usd = Number(e.target.value);
          changed(false);
        }
      })),
      field('parallel', h('input', {
        class: 'jdp-plan-parallel', type: 'number', min: '1', max: '8', step: '1', value: spec.parallel || 2,
        oninput: e => { spec.parallel = Number(e.target.value); changed(false); }
      })),
      field('stack', h('input', {
        class: 'jdp-plan-stack', type: 'checkbox', checked: spec.stack,
        title: 'a subtask starts from its parents in review, not only once they are approved',
        onchange: e => { spec.stack = e.target.checked; changed(false); }
      }))
    );
  }

  // A draft: one row per subtask, every field editable.
  function drawEditor() {
    const spec = editing();
    const head = ['#', 'name', 'goal', 'checks (one a line)', 'scope (one a line)', 'budget $', 'after', ''];
    table.textContent = '';
    table.className = 'jdp-table jdp-editor';
    table.append(h('thead', {}, h('tr', {}, head.map(t => h('th', {}, t)))));
    const body = h('tbody');
    spec.subtasks.forEach((sub, index) => {
      const set = (key, value) => { sub[key] = value; changed(false); };
      const move = delta => {
        const to = index + delta;
        if (to < 0 || to >= spec.subtasks.length) return;
        spec.subtasks.splice(to, 0, spec.subtasks.splice(index, 1)[0]);
        changed(true);
      };
      body.append(h('tr', { class: 'jdp-row', 'data-name': sub.name },
        h('td', { class: 'jdp-num' }, String(index + 1)),
        h('td', {}, h('input', { class: 'jdp-name', value: sub.name || '', size: '12',
          oninput: e => set('name', e.target.value.trim()) })),
        h('td', {}, h('textarea', { class: 'jdp-goal', rows: '2', value: sub.goal || '',
          oninput: e => set('goal', e.target.value) })),
        h('td', {}, h('textarea', { class: 'jdp-checks', rows: '2', value: (sub.checks || []).join('\n'),
          placeholder: 'pytest -q tests/x.py', oninput: e => set('checks', lines(e.target.value)) })),
        h('td', {}, h('textarea', { class: 'jdp-scope', rows: '2', value: (sub.scope || []).join('\n'),
          placeholder: 'src/x.py', oninput: e => set('scope', lines(e.target.value)) })),
        h('td', {}, h('input', { class: 'jdp-budget', type: 'number', min: '0', step: '0.25', size: '5',
          value: sub.budget && sub.budget.max_usd !== undefined ? sub.budget.max_usd : '',
          placeholder: 'share',
          oninput: e => {
            const budget = { ...(sub.budget || {}) };
            if (e.target.value === '') delete budget.max_usd;
            else budget.max_usd = Number(e.target.value);
            set('budget', budget);
          } })),
        h('td', {}, h('input', { class: 'jdp-depends', value: (sub.depends_on || []).join(', '), size: '12',
          placeholder: 'names', title: 'the subtasks it starts after, comma separated',
          oninput: e => set('depends_on', names(e.target.value)) })),
        h('td', { class: 'jdp-moves' },
          button('\u2191', 'jdp-up', () => move(-1), 'move up'),
          button('\u2193', 'jdp-down', () => move(1), 'move down'),
          button('\u2715', 'jdp-remove', () => { spec.subtasks.splice(index, 1); changed(true); }, 'remove'))
      ));
    });
    table.append(body);
  }

  // Running or done: each subtask's state, its task, checks and cost, and what to do.
  function drawStatuses() {
    const head = ['subtask', 'state', 'task', 'checks', 'cost', 'goal', ''];
    table.textContent = '';
    table.className = 'jdp-table jdp-statuses';
    table.append(h('thead', {}, h('tr', {}, head.map(t => h('th', {}, t)))));
    const body = h('tbody');
    const state = model.get('state');
    const acting = ['running', 'ready', 'failed'].includes(state) && !model.get('cut_off');
    for (const sub of model.get('subtasks') || []) {
      const notes = [sub.why, sub.stale].filter(Boolean).map(n => h('div', { class: 'jdp-note' }, n));
      const actions = [];
      if (acting && sub.task && sub.state === 'review') {
        actions.push(button('Approve', 'jdp-approve-task', () => send('approve_task', { name: sub.name }),
          'merge it into the plan\u2019s branch (not the base): its dependents start from it'));
      }
      const restartable = ['failed', 'rejected', 'cancelled', 'interrupted', 'paused'].includes(sub.state);
      if (acting && sub.task && (sub.stale || restartable)) {
        actions.push(button('Restart', 'jdp-restart', () => send('restart', { name: sub.name }),
          'archive its task and start it again from its parents\u2019 heads'));
      }
      const pill = h('span', { class: 'jdp-pill' }, sub.state);
      pill.style.background = sub.colour;
      body.append(h('tr', { class: 'jdp-row', 'data-name': sub.name, 'data-state': sub.state },
        h('td', {}, h('b', {}, sub.name)),
        h('td', {}, pill, sub.stale ? h('span', { class: 'jdp-stale' }, ' stale') : ''),
        h('td', {}, sub.task
          ? h('a', { class: 'jdp-task', href: '#', title: 'its live view or review, in a new cell below',
            onclick: e => { e.preventDefault(); openTask(sub.task); } }, sub.task)
          : ''),
        h('td', {}, sub.checks || ''),
        h('td', {}, sub.task ? `$${Number(sub.cost_usd || 0).toFixed(4)}` : ''),
        h('td', { class: 'jdp-goal-text' }, sub.goal || '', notes),
        h('td', { class: 'jdp-row-actions' }, actions)
      ));
    }
    table.append(body);
  }

  function drawTable() {
    if (isDraft()) drawEditor();
    else drawStatuses();
  }

  // Something in the draft changed: `structure` (a row added, removed or moved) redraws
  // the table; a typed value does not (the input keeps its focus).
  function changed(structure) {
    dirty = JSON.stringify(cleaned(draft)) !== JSON.stringify(cleaned(model.get('spec')));
    local = '';
    if (structure) {
      drawSettings();
      drawTable();
    }
    drawHead();
  }

  function fromKernel() {
    const saved = model.get('revision');
    if (saved !== revision) {
      revision = saved;
      if (!dirty || saving) {
        saving = false;
        dirty = false;
        draft = clone(model.get('spec'));
        drawSettings();
        drawTable();
      }
    }
    if (!isDraft()) {
      dirty = false;
      draft = null;
      drawSettings();
      drawStatuses();
    }
    drawHead();
    drawErrors();
  }

  fromKernel();
  drawGraph();
  const onState = () => { local = ''; fromKernel(); };
  const onFacts = () => fromKernel();
  const onGraph = () => drawGraph();
  const onFeedback = () => {
    if ((model.get('feedback') || {}).error) saving = false; // refused: the draft stays
    local = '';
    drawHead();
    drawErrors();
  };
  const handlers = {
    state: onState,
    revision: onFacts,
    subtasks: onFacts,
    cost: onFacts,
    reason: onFacts,
    guide: onFacts,
    cut_off: onFacts,
    planner: onFacts,
    integration: onFacts,
    failure: onFacts,
    graph: onGraph,
    errors: onFeedback,
    feedback: onFeedback,
    busy: onFeedback
  };
  for (const [name, handler] of Object.entries(handlers)) {
    model.on(`change:${name}`, handler);
  }
  return () => {
    for (const [name, handler] of Object.entries(handlers)) {
      model.off(`change:${name}`, handler);
    }
  };
}

export default { render };
