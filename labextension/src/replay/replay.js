// The replay of one task, step by step: one renderer for three hosts.
//
// - the notebook widget (jupyter_delegate.notebook.replay_view.ReplayView, anywidget): the
//   model is the widget's; a diff the data does not carry is asked from the kernel
//   ({action: "diff", index, tree}) and arrives as a custom message ({kind: "diff", tree,
//   diff} or {kind: "diff", tree, error});
// - the offline page (jupyter_delegate/replay_page.py, built from page.js);
// - the JupyterLab MIME renderer of application/vnd.jupyter-delegate.replay+json (no kernel).
// The last two wrap the data in `staticModel(data)`: their diffs are the data's own.
// Its stylesheet, replay.css, is each host's to load (anywidget's _css, the page's <style>,
// the extension's style/index.css).
//
// The data is the replay contract (jupyter_delegate/replaying.py, Replay.to_dict): the task,
// its steps, and `diffs` ({tree: unified diff base..tree}) when they were included.
// The step list is drawn once; a step change updates only the detail pane, the cursor and
// the list's two marks, and the diff only when the step's tree differs from the one shown,
// so a replay of thousands of steps moves as fast as the slider does.
import { html as diffToHtml } from 'diff2html/lib-esm/diff2html.js';

import { h } from '../dom.js';

const PLAY_MS = 700; // one step per this, when playing
const SETTLE_MS = 120; // steps closer together than this (a drag, a held key) defer the diff


/** `node`'s children replaced by `children` (nested lists flattened, null and false left out). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

/** A model for data that carries everything (the offline page, the MIME renderer). */
export function staticModel(data) {
  return { get: (name) => (name === 'data' ? data : undefined), on() {}, off() {} };
}

export function usd(value) {
  const x = Number(value) || 0;
  return `$${x < 10 ? x.toFixed(4) : x.toFixed(2)}`;
}

export function tokens(value) {
  const n = Number(value) || 0;
  return n >= 1000 ? `${(n / 1000).toFixed(n >= 100000 ? 0 : 1)}k` : String(n);
}

function elapsed(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `+${s}s`;
  if (s < 3600) return `+${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `+${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** What a step did, in a few words: its tool's main argument, or its words. */
export function gist(step) {
  const tool = step.tool;
  if (!tool) return (step.text || step.thinking || '').split('\n')[0];
  const input = tool.input || {};
  for (const key of ['command', 'file_path', 'path', 'pattern', 'query', 'url', 'description']) {
    if (typeof input[key] === 'string' && input[key]) return input[key].split('\n')[0];
  }
  const first = Object.values(input).find((v) => typeof v === 'string');
  return first ? first.split('\n')[0] : '';
}

function failed(step) {
  const r = step.result;
  return Boolean(r && (r.denied || r.is_error || (r.exit_code !== null && r.exit_code !== undefined && r.exit_code !== 0)));
}

function resultBadges(result) {
  const badges = [];
  if (result.denied) badges.push(h('span', { class: 'jdp-badge jdp-bad' }, 'denied'));
  if (result.exit_code !== null && result.exit_code !== undefined) {
    badges.push(h('span', { class: `jdp-badge ${result.exit_code === 0 ? 'jdp-ok' : 'jdp-bad'}` }, `exit ${result.exit_code}`));
  }
  if (result.is_error && !result.denied) badges.push(h('span', { class: 'jdp-badge jdp-bad' }, 'error'));
  if (result.sandbox) badges.push(h('span', { class: 'jdp-badge jdp-dim' }, `sandbox: ${result.sandbox}`));
  return badges;
}

function decisionClass(decision) {
  if (/^(allow|approved?|yes)/i.test(decision)) return 'jdp-ok';
  if (/^(deny|denied|reject|no)/i.test(decision)) return 'jdp-bad';
  return 'jdp-warn';
}

/** A tool call's input, readable: a command as a shell line; otherwise each argument on
 * its own line, a long or multi-line one (a file's content, an edit's old and new text)
 * as a block of its own. */
function toolInput(tool) {
  const input = tool.input || {};
  const keys = Object.keys(input);
  if (typeof input.command === 'string') {
    const rest = keys.filter((k) => k !== 'command').map((k) => h('div', { class: 'jdp-arg' }, `${k}: ${JSON.stringify(input[k])}`));
    return [h('pre', { class: 'jdp-input jdp-command' }, `$ ${input.command}`), ...rest];
  }
  return keys.map((key) => {
    const value = input[key];
    if (typeof value === 'string' && (value.includes('\n') || value.length > 80)) {
      return h('div', { class: 'jdp-arg' }, h('span', { class: 'jdp-arg-name' }, `${key}:`), h('pre', { class: 'jdp-input' }, value));
    }
    const shown = typeof value === 'string' ? value : JSON.stringify(value);
    return h('div', { class: 'jdp-arg' }, h('span', { class: 'jdp-arg-name' }, `${key}: `), h('code', {}, shown));
  });
}

export function render({ model, el }) {
  let data = model.get('data') || {};
  let steps = data.steps || [];
  const diffs = new Map(Object.entries(data.diffs || {})); // tree -> diff text
  const asked = new Map(); // tree -> 'pending' | error text
  const rendered = new Map(); // tree -> HTML of its diff (the last few)
  const canAsk = typeof model.send === 'function';
  let current = -1;
  let shownTree; // the tree whose diff the diff pane shows
  let timer = null;
  let frame = 0;
  let wanted = 0;
  let diffTimer = 0;
  let lastMove = 0;

  const root = h('div', { class: 'jdp', tabindex: '0' });
  el.replaceChildren(root);

  // -- the frame: head, controls, meter, list, detail ----------------------------------------
  const head = h('div', { class: 'jdp-head' });
  const first = h('button', { class: 'jdp-button jdp-first', type: 'button', title: 'first step (Home)' }, '\u25ae\u25c0');
  const prev = h('button', { class: 'jdp-button jdp-prev', type: 'button', title: 'previous step (\u2190, k)' }, '\u25c0');
  const next = h('button', { class: 'jdp-button jdp-next', type: 'button', title: 'next step (\u2192, j)' }, '\u25b6');
  const last = h('button', { class: 'jdp-button jdp-last', type: 'button', title: 'last step (End)' }, '\u25b6\u25ae');
  const play = h('button', { class: 'jdp-button jdp-play', type: 'button', title: 'play from here, one step a second or so (space)' }, 'Play');
  const slider = h('input', { class: 'jdp-slider', type: 'range', min: '0', step: '1', 'aria-label': 'step' });
  const position = h('span', { class: 'jdp-position', role: 'status' });
  const meter = h('div', { class: 'jdp-meter' }); // the chart under the slider, the same width
  const legend = h('span', { class: 'jdp-legend' }); // the step's cost and context
  const key = h('span', { class: 'jdp-legend jdp-dim' }); // what the chart's colours are
  const controls = h('div', { class: 'jdp-controls' },
    h('span', { class: 'jdp-buttons' }, first, prev, next, last, play),
    h('div', { class: 'jdp-track' }, slider, meter),
    h('div', { class: 'jdp-side' }, position, legend, key));
  const list = h('ul', { class: 'jdp-steps', role: 'listbox', 'aria-label': 'steps' });
  const detail = h('div', { class: 'jdp-detail' });
  const stepPane = h('div', { class: 'jdp-step-pane' });
  const diffHead = h('div', { class: 'jdp-diff-head' });
  const diffBodyEl = h('div', { class: 'jdp-diff' });
  detail.append(stepPane, diffHead, diffBodyEl);
  root.append(head, controls, h('div', { class: 'jdp-body' }, list, detail));

  let items = [];
  let cursor = null;

  function build() {
    const task = data.task || {};
    const lastStep = steps[steps.length - 1];
    fill(head,
      h('span', { class: 'jdp-name' }, task.name || task.id || 'task'),
      task.name && task.id ? h('code', { class: 'jdp-dim' }, task.id) : null,
      task.state ? h('span', { class: `jdp-state jdp-state-${task.state}` }, task.state) : null,
      h('span', { class: 'jdp-dim' }, [
        task.model,
        task.rounds ? `${task.rounds} round${task.rounds === 1 ? '' : 's'}` : null,
        `${steps.length} step${steps.length === 1 ? '' : 's'}`,
        lastStep ? usd(lastStep.cost_usd) : null
      ].filter(Boolean).join(' \u00b7 ')),
      task.goal ? h('div', { class: 'jdp-goal', title: task.goal }, task.goal) : null,
      ...(data.warnings || []).map((w) => h('div', { class: 'jdp-warning' }, `\u26a0 ${w}`))
    );
    slider.max = String(Math.max(0, steps.length - 1));
    slider.disabled = steps.length < 2;

    // the list, once: a row per step, a separator where a round begins
    const fragment = document.createDocumentFragment();
    items = new Array(steps.length);
    let round = null;
    steps.forEach((step, i) => {
      if (step.round !== round) {
        round = step.round;
        fragment.append(h('li', { class: 'jdp-round-sep', role: 'presentation' }, `Round ${round}`));
      }
      const flags = [];
      if (step.compaction) flags.push('\u21e3');
      if (step.notes && step.notes.length) flags.push('\u2691');
      const item = h('li', {
        class: `jdp-step${failed(step) ? ' jdp-step-bad' : ''}${step.tool ? '' : ' jdp-step-says'}`,
        role: 'option',
        'data-index': String(i),
        title: gist(step)
      },
      h('span', { class: 'jdp-step-n' }, String(i + 1)),
      h('span', { class: 'jdp-step-tool' }, step.tool ? step.tool.name : 'says'),
      flags.length ? h('span', { class: 'jdp-step-flag' }, flags.join('')) : null,
      h('span', { class: 'jdp-step-what' }, gist(step)));
      items[i] = item;
      fragment.append(item);
    });
    list.replaceChildren(fragment);
    buildMeter();
  }

  function buildMeter() {
    const n = steps.length;
    if (!n) {
      meter.replaceChildren();
      return;
    }
    const width = Math.max(n - 1, 1);
    const maxTokens = Math.max(1, ...steps.map((s) => s.context_tokens || 0));
    const maxCost = Math.max(1e-9, ...steps.map((s) => s.cost_usd || 0));
    const y = (v, max) => (100 - (v / max) * 94).toFixed(2);
    const x = (i) => (n === 1 ? 0.5 : i);
    const area = steps.map((s, i) => `L${x(i)},${y(s.context_tokens || 0, maxTokens)}`).join('');
    const cost = steps.map((s, i) => `${i ? 'L' : 'M'}${x(i)},${y(s.cost_usd || 0, maxCost)}`).join('');
    const chart = svg('svg', { viewBox: `0 0 ${width} 100`, preserveAspectRatio: 'none', class: 'jdp-chart', role: 'img' });
    const context = svg('path', { d: `M${x(0)},100${area}L${x(n - 1)},100Z`, class: 'jdp-meter-context', 'vector-effect': 'non-scaling-stroke' });
    chart.append(context, svg('path', { d: cost, class: 'jdp-meter-cost', 'vector-effect': 'non-scaling-stroke' }));
    let compactions = 0;
    steps.forEach((s, i) => {
      if (s.compaction) {
        compactions += 1;
        const mark = svg('line', { x1: x(i), x2: x(i), y1: 0, y2: 100, class: 'jdp-meter-compaction', 'vector-effect': 'non-scaling-stroke' });
        const title = svg('title');
        title.textContent = `compaction before step ${i + 1}: ${tokens(s.compaction.tokens_before)} \u2192 ${tokens(s.compaction.tokens_after)} tokens (${s.compaction.by})`;
        mark.append(title);
        chart.append(mark);
      }
    });
    cursor = svg('line', { y1: 0, y2: 100, class: 'jdp-meter-cursor', 'vector-effect': 'non-scaling-stroke' });
    chart.append(cursor);
    chart.addEventListener('click', (event) => {
      const box = chart.getBoundingClientRect();
      if (box.width > 0) go(Math.round(((event.clientX - box.left) / box.width) * (n - 1)));
    });
    key.replaceChildren(
      h('span', { class: 'jdp-key-context' }, '\u25a0 context'), ' ',
      h('span', { class: 'jdp-key-cost' }, '\u2014 cost'),
      ...(compactions ? [' ', h('span', { class: 'jdp-key-compaction' }, `\u2506 ${compactions} compaction${compactions === 1 ? '' : 's'}`)] : []));
    meter.replaceChildren(chart);
  }

  // -- one step ----------------------------------------------------------------------------
  function show(index) {
    const n = steps.length;
    if (!n) {
      position.textContent = 'no steps';
      stepPane.replaceChildren(h('div', { class: 'jdp-dim' }, 'This task has no steps yet.'));
      return;
    }
    index = Math.max(0, Math.min(n - 1, index));
    if (index === current) return;
    if (items[current]) {
      items[current].classList.remove('jdp-on');
      items[current].removeAttribute('aria-selected');
    }
    current = index;
    const step = steps[index];
    const item = items[index];
    item.classList.add('jdp-on');
    item.setAttribute('aria-selected', 'true');
    keepInView(item);
    slider.value = String(index);
    root.dataset.step = String(index);
    position.textContent = `step ${index + 1} of ${n}`;
    if (cursor) {
      const x = String(n === 1 ? 0.5 : index);
      cursor.setAttribute('x1', x);
      cursor.setAttribute('x2', x);
    }
    legend.replaceChildren(
      h('span', { class: 'jdp-cost' }, usd(step.cost_usd)), ' \u00b7 ',
      h('span', { class: 'jdp-context' }, `${tokens(step.context_tokens)} tokens`));
    stepPane.replaceChildren(...stepDetail(step, index));
    showDiff(step);
  }

  function keepInView(item) {
    // scroll the list only (never the notebook or the page around it)
    const top = item.offsetTop;
    const bottom = top + item.offsetHeight;
    if (top < list.scrollTop + 20) list.scrollTop = Math.max(0, top - 20);
    else if (bottom > list.scrollTop + list.clientHeight) list.scrollTop = bottom - list.clientHeight;
  }

  function stepDetail(step, index) {
    const started = steps[0] ? steps[0].at : step.at;
    const parts = [];
    parts.push(h('div', { class: 'jdp-step-head' },
      h('span', { class: 'jdp-step-title' }, `Step ${index + 1}`),
      h('span', {}, `round ${step.round}`),
      h('span', { class: 'jdp-dim', title: new Date(step.at * 1000).toLocaleString() }, elapsed(step.at - started)),
      h('span', {}, 'cost so far ', h('b', { class: 'jdp-cost-now' }, usd(step.cost_usd))),
      h('span', {}, 'context ', h('b', {}, `${Number(step.context_tokens || 0).toLocaleString('en')} tokens`))));
    if (step.compaction) {
      const c = step.compaction;
      parts.push(h('div', { class: 'jdp-compaction' },
        `Context compacted before this step (${c.by}): ${Number(c.tokens_before).toLocaleString('en')} \u2192 ${Number(c.tokens_after).toLocaleString('en')} tokens`));
    }
    if (step.notes && step.notes.length) {
      parts.push(h('ul', { class: 'jdp-notes' }, step.notes.map((note) => h('li', { class: 'jdp-note' }, note))));
    }
    if (step.text) {
      parts.push(h('div', { class: 'jdp-section jdp-words' }, h('div', { class: 'jdp-label' }, 'The agent says'), step.text));
    }
    if (step.thinking) {
      parts.push(h('details', { class: 'jdp-section jdp-thinking' },
        h('summary', {}, 'Thinking (summarised)'), h('div', {}, step.thinking)));
    }
    if (step.tool) {
      parts.push(h('div', { class: 'jdp-section jdp-tool' },
        h('div', { class: 'jdp-label' }, 'Tool call: ', h('b', {}, step.tool.name)),
        toolInput(step.tool)));
    }
    if (step.permissions && step.permissions.length) {
      parts.push(h('div', { class: 'jdp-section jdp-perms' },
        h('div', { class: 'jdp-label' }, 'Permission'),
        h('ul', { class: 'jdp-permissions' }, step.permissions.map((p) => h('li', {},
          h('code', {}, p.tool), ' ', h('b', { class: decisionClass(p.decision) }, p.decision),
          p.rule ? [' by rule ', h('code', {}, p.rule)] : null,
          p.by ? h('span', { class: 'jdp-dim' }, ` (${p.by})`) : null)))));
    }
    if (step.result) {
      const r = step.result;
      parts.push(h('div', { class: `jdp-section jdp-result ${failed(step) ? 'jdp-failed' : 'jdp-passed'}` },
        h('div', { class: 'jdp-label' }, 'Result', h('span', { class: 'jdp-badges' }, resultBadges(r))),
        r.text ? h('pre', { class: 'jdp-output' }, r.text) : h('div', { class: 'jdp-dim' }, '(no output)')));
    }
    return parts;
  }

  // -- the diff as of the step --------------------------------------------------------------
  // Its heading (the files that differ) follows every step; its body, the one slow part,
  // waits while the steps go by quickly, and is redrawn only when the tree changes.
  function showDiff(step) {
    const files = step.files || [];
    const changed = current > 0 && steps[current - 1].tree !== step.tree;
    fill(diffHead,
      h('span', { class: 'jdp-label jdp-section' }, 'Worktree vs base'),
      h('span', { class: 'jdp-dim jdp-files', title: files.join('\n') }, files.length
        ? `${files.length} file${files.length === 1 ? '' : 's'} differ: ${files.slice(0, 8).join(', ')}${files.length > 8 ? `, and ${files.length - 8} more` : ''}`
        : 'no file differs from the base'),
      step.reconstructed ? h('span', { class: 'jdp-badge jdp-warn', title: 'No snapshot of the worktree was recorded at this step: it is rebuilt from the file tools\u2019 inputs, and a command may have changed files it does not show.' }, 'reconstructed') : null,
      changed ? h('span', { class: 'jdp-badge jdp-warn' }, 'changed by this step') : null);
    clearTimeout(diffTimer);
    const now = Date.now();
    const quick = now - lastMove < SETTLE_MS;
    lastMove = now;
    if (!quick || (step.tree === shownTree && !asked.has(step.tree))) return drawDiff(step);
    diffBodyEl.classList.add('jdp-stale');
    diffTimer = setTimeout(() => drawDiff(steps[current]), SETTLE_MS);
  }

  function drawDiff(step) {
    const tree = step.tree;
    diffBodyEl.classList.remove('jdp-stale');
    root.dataset.diffStep = String(current); // the diff shown is this step's
    if (tree === shownTree && !asked.has(tree)) return; // same worktree: nothing to redraw
    if (!tree) {
      shownTree = tree;
      diffBodyEl.replaceChildren(h('div', { class: 'jdp-diff-empty' }, 'The worktree at this step was not recorded.'));
      return;
    }
    if (diffs.has(tree)) {
      shownTree = tree;
      diffBodyEl.replaceChildren(diffBody(tree));
      return;
    }
    if (canAsk && !asked.has(tree)) {
      asked.set(tree, 'pending');
      model.send({ action: 'diff', index: current, tree });
    }
    const state = asked.get(tree);
    shownTree = undefined; // redraw when the answer comes
    const why = !canAsk
      ? data.diffs_pending
        ? 'The kernel is still making the diffs of this long task; they appear here when done.'
        : 'This export does not carry the diff of this step.'
      : state === 'pending' ? 'Loading the diff\u2026' : `The diff could not be read: ${state}`;
    diffBodyEl.replaceChildren(h('div', { class: 'jdp-diff-empty jdp-diff-wait' }, why));
  }

  function diffBody(tree) {
    const text = diffs.get(tree);
    if (!text.trim()) return h('div', { class: 'jdp-diff-empty' }, 'No changes from the base yet.');
    let html = rendered.get(tree);
    if (html === undefined) {
      html = diffToHtml(text, { outputFormat: 'line-by-line', drawFileList: false, matching: 'none' });
      rendered.set(tree, html);
      if (rendered.size > 32) rendered.delete(rendered.keys().next().value);
    }
    const body = h('div', { class: 'jdp-diff-body' });
    body.innerHTML = html; // diff2html escapes the diff's text
    return body;
  }

  function onMessage(message) {
    if (!message || message.kind !== 'diff') return;
    if (typeof message.diff === 'string') {
      diffs.set(message.tree, message.diff);
      asked.delete(message.tree);
    } else {
      asked.set(message.tree, message.error || 'no answer');
    }
    if (steps[current] && steps[current].tree === message.tree) {
      shownTree = undefined;
      drawDiff(steps[current]);
    }
  }

  // -- moving ------------------------------------------------------------------------------
  function go(index) {
    // coalesced to one redraw a frame: a dragged slider or a held key never queues work
    wanted = Math.max(0, Math.min(steps.length - 1, index));
    if (frame) return;
    const raf = typeof requestAnimationFrame === 'function' ? requestAnimationFrame : (f) => setTimeout(f, 0);
    frame = raf(() => {
      frame = 0;
      show(wanted);
    });
  }
  const step = (delta) => go((frame ? wanted : current) + delta);

  function stop() {
    if (timer) clearInterval(timer);
    timer = null;
    play.textContent = 'Play';
    root.classList.remove('jdp-playing');
  }
  function toggle() {
    if (timer) return stop();
    if (current >= steps.length - 1) show(0);
    play.textContent = 'Pause';
    root.classList.add('jdp-playing');
    timer = setInterval(() => (current >= steps.length - 1 ? stop() : show(current + 1)), PLAY_MS);
  }

  slider.addEventListener('input', () => go(Number(slider.value)));
  first.addEventListener('click', () => go(0));
  prev.addEventListener('click', () => step(-1));
  next.addEventListener('click', () => step(1));
  last.addEventListener('click', () => go(steps.length - 1));
  play.addEventListener('click', toggle);
  list.addEventListener('click', (event) => {
    const item = event.target.closest('.jdp-step');
    if (item) {
      go(Number(item.dataset.index));
      root.focus({ preventScroll: true });
    }
  });
  // The keys, taken while the focus is in the replay, before JupyterLab's shortcuts see
  // them (its j, k and arrows move the cell selection; it listens in the capture phase on
  // the document, so this listens on the window); any other key, Ctrl+S, Shift+Enter,
  // goes on to JupyterLab.
  function onKey(event) {
    if (!root.contains(event.target) || event.altKey || event.ctrlKey || event.metaKey) return;
    const key = event.key;
    const tag = event.target.tagName;
    let handled = true;
    if (key === 'j' || key === 'ArrowRight' || key === 'ArrowDown') step(1);
    else if (key === 'k' || key === 'ArrowLeft' || key === 'ArrowUp') step(-1);
    else if (key === 'Home') go(0);
    else if (key === 'End') go(steps.length - 1);
    else if (key === ' ' && tag !== 'BUTTON' && tag !== 'SUMMARY') toggle();
    else handled = false;
    if (handled) {
      event.preventDefault();
      event.stopPropagation();
    }
  }
  window.addEventListener('keydown', onKey, true);

  function onData() {
    data = model.get('data') || {};
    steps = data.steps || [];
    for (const [tree, text] of Object.entries(data.diffs || {})) diffs.set(tree, text);
    const at = current < 0 ? 0 : current;
    current = -1;
    shownTree = undefined;
    build();
    show(Math.min(at, steps.length - 1));
  }

  model.on('msg:custom', onMessage);
  model.on('change:data', onData);
  build();
  show(0);

  return () => {
    stop();
    clearTimeout(diffTimer);
    window.removeEventListener('keydown', onKey, true);
    model.off('msg:custom', onMessage);
    model.off('change:data', onData);
  };
}

export default { render };
