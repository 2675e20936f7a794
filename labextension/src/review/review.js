// The review of one delegated task: the front end of jupyter_delegate.notebook.review.ReviewView
// (an anywidget ES module, bundled with diff2html and highlight.js into
// jupyter_delegate/notebook/static/review.js by `npm run build`).
//
// It draws what the Python side's traits say and sends it the user's actions as messages
// ({action: "approve" | "force" | "keep" | "reject" | "request_changes" | "whole_file" |
// "edit" | "save" | "commit_edits", ...}); it decides nothing itself. Things only the user
// changes (the diff style, the viewed ticks, the draft comments, the page, the round shown)
// are traits it sets, so they are kept in the widget's state.
import { Diff2HtmlUI } from 'diff2html/lib-esm/ui/js/diff2html-ui-slim.js';

import { h } from '../dom.js';

const VERDICT_NOTE = {
  proven: 'the checks pass',
  'checks fail': 'the checks FAIL: the summary below is the agent\u2019s claim, not proof',
  'stopped by budget': 'a budget stopped the agent before it finished',
  'no checks': 'no checks: nothing proves it works',
  'no changes': 'the agent changed nothing: there is nothing to merge'
};


function button(label, cls, onclick, title) {
  return h('button', { class: `jdr-button ${cls || ''}`, type: 'button', onclick, title }, label);
}

function anchorOf(c) {
  const end = c.end_line && c.end_line !== c.line ? `-${c.end_line}` : '';
  return `${c.path}:${c.line}${end}${c.side === 'old' ? ' (old)' : ''}`;
}

function render({ model, el }) {
  const root = h('div', { class: 'jdr' });
  el.append(root);
  const send = (action, data = {}) => model.send({ action, ...data });
  const set = (name, value) => {
    model.set(name, value);
    model.save_changes();
  };

  // -- the bar ------------------------------------------------------------------------------
  const verdict = h('span', { class: 'jdr-verdict' });
  const counts = h('span', { class: 'jdr-counts' });
  const strategy = h('select', { class: 'jdr-strategy', title: 'how to merge' },
    h('option', { value: 'merge' }, 'merge'), h('option', { value: 'squash' }, 'squash'));
  const approve = button('Approve', 'jdr-approve', () => send('approve', { strategy: strategy.value }));
  const requestToggle = button('Request changes', 'jdr-request-toggle', () => togglePanel('request'));
  const rejectToggle = button('Reject\u2026', 'jdr-reject-toggle', () => togglePanel('reject'));
  const actions = h('span', { class: 'jdr-actions' }, approve, strategy, requestToggle, rejectToggle);
  const feedback = h('span', { class: 'jdr-feedback', role: 'status' });
  const decision = h('div', { class: 'jdr-decision' });

  // "merge anyway?", asked in place
  const askReasons = h('span', { class: 'jdr-ask-reasons' });
  const ask = h('div', { class: 'jdr-panel jdr-ask' },
    h('b', {}, 'Not proven: '), askReasons, '. Nothing was merged. Merge anyway? ',
    button('Merge anyway', 'jdr-danger jdr-force', () => send('force', { strategy: strategy.value })),
    button('Keep in review', 'jdr-keep', () => send('keep')));

  // reject, confirmed, with an optional reason
  const rejectReason = h('input', { class: 'jdr-reject-reason', placeholder: 'reason (optional, shown afterwards)' });
  const rejectPanel = h('div', { class: 'jdr-panel jdr-reject' },
    'Reject this task? Its branch is archived, nothing is merged. ', rejectReason,
    button('Reject', 'jdr-danger jdr-reject-confirm', () => send('reject', { reason: rejectReason.value })),
    button('Cancel', 'jdr-cancel', () => togglePanel('')));

  // request changes: the draft comments and the general feedback, sent together
  const draftList = h('ul', { class: 'jdr-drafts' });
  const changesText = h('textarea', { class: 'jdr-changes-text', rows: 3, placeholder: 'What should change? (with the line comments below)' });
  const remember = h('select', { class: 'jdr-remember' },
    h('option', { value: '' }, 'don\u2019t remember it'),
    h('option', { value: 'repo' }, 'remember for this repository'),
    h('option', { value: 'user' }, 'remember everywhere'));
  const requestPanel = h('div', { class: 'jdr-panel jdr-request' },
    draftList, changesText,
    h('div', {}, remember,
      button('Send request changes', 'jdr-primary jdr-request-send', () =>
        send('request_changes', {
          feedback: changesText.value,
          remember: remember.value,
          comments: model.get('draft_comments')
        })),
      button('Cancel', 'jdr-cancel', () => togglePanel(''))));

  const bar = h('div', { class: 'jdr-bar' },
    h('div', { class: 'jdr-bar-line' }, verdict, counts, actions, feedback),
    decision, ask, rejectPanel, requestPanel);
  let panel = '';
  function togglePanel(name) {
    panel = panel === name ? '' : name;
    updateBar();
    if (panel === 'request') changesText.focus();
    if (panel === 'reject') rejectReason.focus();
  }

  // -- summary, checks, rounds --------------------------------------------------------------
  const summary = h('div', { class: 'jdr-summary' });
  const checks = h('div', { class: 'jdr-checks' });
  const rounds = h('div', { class: 'jdr-rounds' });
  const edits = h('div', { class: 'jdr-edits' });

  // -- the diff's toolbar, file list, diff, whole file / editor -------------------------------
  const styleToggle = button('', 'jdr-style-toggle', () =>
    set('diff_style', model.get('diff_style') === 'side-by-side' ? 'line-by-line' : 'side-by-side'));
  const pager = h('span', { class: 'jdr-pager' });
  const worktree = h('span', { class: 'jdr-worktree' });
  const toolbar = h('div', { class: 'jdr-toolbar' }, styleToggle, pager, worktree);
  const fileList = h('ul', { class: 'jdr-files' });
  const goneComments = h('div', { class: 'jdr-gone-comments' });
  const diffError = h('div', { class: 'jdr-error' });
  const diff = h('div', { class: 'jdr-diff' });
  const viewer = h('div', { class: 'jdr-viewer' });

  root.append(bar, summary, checks, rounds, edits, toolbar, fileList, goneComments, diffError, diff, viewer);

  function inReview() {
    return model.get('state') === 'review';
  }

  function updateBar() {
    const v = model.get('verdict');
    const state = model.get('state');
    root.dataset.state = state;
    root.dataset.verdict = v || '';
    root.dataset.taskId = model.get('task_id');
    root.dataset.name = model.get('name');
    verdict.textContent = v || state;
    verdict.className = `jdr-verdict jdr-v-${(v || state).replace(/ /g, '-')}`;
    verdict.title = VERDICT_NOTE[v] || '';
    const c = model.get('counts') || {};
    const checkText = c.checks_passed || c.checks_failed
      ? ` \u00b7 checks ${c.checks_passed} passed, ${c.checks_failed} failed` : ' \u00b7 no checks';
    counts.textContent = `${c.files || 0} ${c.files === 1 ? 'file' : 'files'} +${c.added || 0} \u2212${c.removed || 0}${checkText} \u00b7 ${c.cost || ''}`;
    const busy = model.get('busy');
    for (const b of bar.querySelectorAll('button')) b.disabled = Boolean(busy);
    actions.style.display = inReview() ? '' : 'none';
    approve.textContent = v === 'proven' ? 'Approve' : 'Approve\u2026';
    approve.classList.toggle('jdr-primary', v === 'proven');
    approve.style.display = v === 'no changes' ? 'none' : '';
    strategy.style.display = approve.style.display;
    const drafts = model.get('draft_comments') || [];
    requestToggle.textContent = drafts.length ? `Request changes (${drafts.length})` : 'Request changes';
    const fb = model.get('feedback') || {};
    feedback.textContent = busy ? `${busy.replace('_', ' ')}\u2026` : fb.text || '';
    feedback.classList.toggle('jdr-error', Boolean(fb.error) && !busy);
    decision.textContent = model.get('decision') || '';
    decision.style.display = model.get('decision') ? '' : 'none';
    const asking = model.get('asking') === 'force' && inReview();
    askReasons.textContent = (model.get('reasons') || []).join('; ') || 'its checks fail';
    ask.style.display = asking ? '' : 'none';
    rejectPanel.style.display = panel === 'reject' && inReview() ? '' : 'none';
    requestPanel.style.display = panel === 'request' && inReview() ? '' : 'none';
    draftList.replaceChildren(...drafts.map((d, i) => h('li', {},
      h('code', {}, anchorOf(d)), ' ', d.body, ' ',
      button('remove', 'jdr-link', () => set('draft_comments', drafts.filter((_, j) => j !== i))))));
  }

  function updateInfo() {
    const v = model.get('verdict');
    summary.replaceChildren(h('b', {}, 'The agent says: '), model.get('summary') || '(no summary)');
    summary.classList.toggle('jdr-unproven', Boolean(v) && v !== 'proven');
    if (v && v !== 'proven' && VERDICT_NOTE[v]) {
      summary.append(h('div', { class: 'jdr-flag' }, `\u26a0 ${VERDICT_NOTE[v]}`));
    }
    const rows = (model.get('checks') || []).map((c) => h('tr', {},
      h('td', {}, h('code', {}, c.command)),
      h('td', { class: c.passed ? 'jdr-pass' : 'jdr-fail' }, c.passed ? 'PASS' : 'FAIL'),
      h('td', {}, `exit ${c.exit_code}, ${Number(c.duration_s).toFixed(1)}s`),
      h('td', {}, c.passed ? '' : h('pre', { class: 'jdr-tail' }, c.tail.split('\n').slice(-12).join('\n')))));
    checks.style.display = model.get('show_checks') ? '' : 'none';
    checks.replaceChildren(rows.length
      ? h('table', {}, h('tr', {}, h('th', {}, 'check (run by the harness)'), h('th', {}, 'result'), h('th', {}, ''), h('th', {}, '')), rows)
      : h('span', { class: 'jdr-note' }, 'No checks were given.'));
    const rs = model.get('rounds') || [];
    const latest = rs[rs.length - 1];
    const since = model.get('since');
    const tabs = h('span', { class: 'jdr-tabs' },
      button('All changes', `jdr-tab ${since ? '' : 'jdr-tab-on'}`, () => set('since', '')));
    if (latest && latest.number > 1) {
      tabs.append(button(`Changes since the last review (round ${latest.number})`,
        `jdr-tab jdr-since ${since ? 'jdr-tab-on' : ''}`, () => set('since', latest.base)));
    }
    const told = rs.filter((r) => r.number > 1).map((r) => h('div', { class: 'jdr-round' },
      h('b', {}, `Round ${r.number}`), ' \u2014 you asked: ', r.feedback || '(line comments only)',
      r.comments.length ? h('ul', {}, r.comments.map((c) => h('li', {}, h('code', {}, anchorOf(c)), ' ', c.body))) : null));
    rounds.replaceChildren(tabs, ...told);
    const he = model.get('human_edits') || [];
    edits.replaceChildren(...he.map((e) => h('div', { class: 'jdr-human' },
      h('span', { class: 'jdr-human-tag' }, 'your edit'), ' ', h('code', {}, String(e.commit).slice(0, 10)), ' ',
      e.message || '', ' (', (e.files || []).join(', '), ')')));
  }

  function updateFiles() {
    const viewed = new Set(model.get('viewed') || []);
    const files = model.get('files') || [];
    const page = model.get('page');
    fileList.replaceChildren(...files.map((f) => {
      const tick = h('input', { type: 'checkbox', class: 'jdr-viewed', title: 'viewed' });
      tick.checked = viewed.has(f.path);
      tick.addEventListener('change', () => {
        const now = new Set(model.get('viewed') || []);
        if (tick.checked) now.add(f.path); else now.delete(f.path);
        set('viewed', [...now]);
      });
      const name = f.status === 'renamed' ? `${f.old_path} \u2192 ${f.path}` : f.path;
      const status = f.status === 'modified' ? null : h('span', { class: `jdr-status jdr-status-${f.status}` }, f.status);
      return h('li', { class: viewed.has(f.path) ? 'jdr-file jdr-file-viewed' : 'jdr-file' },
        h('label', {}, tick, ' viewed'), ' ',
        h('a', { href: '#', class: 'jdr-file-name', onclick: (e) => { e.preventDefault(); goTo(f); } }, name), ' ',
        status,
        h('span', { class: 'jdr-plus' }, ` +${f.added}`), h('span', { class: 'jdr-minus' }, ` \u2212${f.removed}`),
        f.page !== page ? h('span', { class: 'jdr-note' }, ` (page ${f.page + 1})`) : null,
        f.cut ? h('span', { class: 'jdr-note' }, ` (${f.cut} more lines not shown: Whole file shows it)`) : null,
        f.status === 'deleted' || f.status === 'binary' ? null
          : [button('Whole file', 'jdr-link jdr-whole-button', () => send('whole_file', { path: f.path })),
            inReview() ? button('Edit', 'jdr-link jdr-edit-button', () => send('edit', { path: f.path })) : null]);
    }));
    const count = model.get('page_count');
    pager.replaceChildren(...(count > 1 ? [
      button('\u2039 previous', 'jdr-link', () => set('page', Math.max(0, page - 1))),
      ` files page ${page + 1} of ${count} `,
      button('next \u203a', 'jdr-link', () => set('page', Math.min(count - 1, page + 1)))] : []));
    const wt = model.get('worktree');
    worktree.textContent = wt ? `worktree: ${wt}` : '';
    styleToggle.textContent = model.get('diff_style') === 'side-by-side' ? 'Unified view' : 'Split view';
    for (const [i, wrapper] of diff.querySelectorAll('.d2h-file-wrapper').entries()) {
      wrapper.classList.toggle('jdr-collapsed', viewed.has((model.get('page_files') || [])[i]));
    }
  }

  function goTo(f) {
    if (f.page !== model.get('page')) {
      set('page', f.page);
      return;
    }
    const i = (model.get('page_files') || []).indexOf(f.path);
    const wrapper = diff.querySelectorAll('.d2h-file-wrapper')[i];
    if (wrapper) wrapper.scrollIntoView({ block: 'start' });
  }

  // -- the diff, and the comments beside its lines ------------------------------------------------
  function updateDiff() {
    const text = model.get('page_diff');
    diff.dataset.since = model.get('shown_since');
    diffError.textContent = model.get('diff_error') || '';
    if (!text) {
      diff.replaceChildren(h('div', { class: 'jdr-note' }, model.get('since') ? 'No changes since the last review.' : 'No changes.'));
      return;
    }
    const ui = new Diff2HtmlUI(diff, text, {
      outputFormat: model.get('diff_style'),
      drawFileList: false,
      matching: 'lines',
      highlight: true,
      fileContentToggle: false,
      stickyFileHeaders: false,
      synchronisedScroll: true,
      colorScheme: 'light'
    });
    ui.draw();
    ui.highlightCode();
    const paths = model.get('page_files') || [];
    const files = model.get('files') || [];
    for (const [i, wrapper] of diff.querySelectorAll('.d2h-file-wrapper').entries()) {
      wrapper.dataset.path = paths[i] || '';
      const f = files.find((x) => x.path === paths[i]);
      const tag = wrapper.querySelector('.d2h-tag');
      if (f && tag && (f.status === 'binary' || f.status === 'renamed')) tag.textContent = f.status.toUpperCase();
      if (f && f.status === 'binary' && !wrapper.querySelector('.d2h-code-line-ctn')) {
        wrapper.querySelector('.d2h-file-header').after(h('div', { class: 'jdr-note jdr-binary' }, 'binary file: not shown'));
      }
    }
    showRoundComments();
    updateFiles();
  }

  // The line a line-number cell is about: {path, line, side, row}.
  function lineOf(cell) {
    const wrapper = cell.closest('.d2h-file-wrapper');
    if (!wrapper) return null;
    let line;
    let side = 'new';
    const n1 = cell.querySelector('.line-num1');
    const n2 = cell.querySelector('.line-num2');
    if (n1 || n2) {
      line = parseInt((n2 && n2.textContent.trim()) || '', 10);
      if (!line) {
        line = parseInt((n1 && n1.textContent.trim()) || '', 10);
        side = 'old';
      }
    } else {
      line = parseInt(cell.textContent.trim(), 10);
      const sides = [...wrapper.querySelectorAll('.d2h-file-side-diff')];
      if (sides.indexOf(cell.closest('.d2h-file-side-diff')) === 0) side = 'old';
    }
    if (!line) return null;
    return { path: wrapper.dataset.path, line, side, row: cell.closest('tr') };
  }

  function rowOf(path, line, side) {
    const wrapper = [...diff.querySelectorAll('.d2h-file-wrapper')].find((w) => w.dataset.path === path);
    if (!wrapper) return null;
    for (const cell of wrapper.querySelectorAll('.d2h-code-linenumber, .d2h-code-side-linenumber')) {
      const at = lineOf(cell);
      if (at && at.line === line && at.side === side) return at.row;
    }
    return null;
  }

  let anchor = null;
  diff.addEventListener('click', (event) => {
    const cell = event.target.closest('.d2h-code-linenumber, .d2h-code-side-linenumber');
    if (!cell || !inReview()) return;
    const at = lineOf(cell);
    if (!at) return;
    let start = at.line;
    let end = null;
    if (event.shiftKey && anchor && anchor.path === at.path && anchor.side === at.side) {
      start = Math.min(anchor.line, at.line);
      end = Math.max(anchor.line, at.line);
      if (end === start) end = null;
    }
    anchor = at;
    openCommentForm(at, start, end);
  });

  function openCommentForm(at, start, end) {
    for (const old of diff.querySelectorAll('.jdr-comment-form')) old.remove();
    const body = h('textarea', { class: 'jdr-comment-body', rows: 2, placeholder: `Comment on ${anchorOf({ path: at.path, line: start, end_line: end, side: at.side })}` });
    const cols = at.row.children.length || 2;
    const form = h('tr', { class: 'jdr-comment-form' }, h('td', { colspan: cols },
      h('div', { class: 'jdr-comment-box' }, body,
        button('Add comment', 'jdr-primary jdr-comment-add', () => {
          if (!body.value.trim()) return;
          const comment = { path: at.path, line: start, body: body.value.trim() };
          if (end) comment.end_line = end;
          if (at.side === 'old') comment.side = 'old';
          set('draft_comments', [...(model.get('draft_comments') || []), comment]);
          form.remove();
          showRoundComments();
        }),
        button('Cancel', 'jdr-cancel', () => form.remove()))));
    at.row.after(form);
    body.focus();
  }

  // The previous round's comments (and the drafts) beside their lines; the ones whose
  // line is not in this diff are listed with their anchors.
  function showRoundComments() {
    for (const old of diff.querySelectorAll('.jdr-comment-row')) old.remove();
    const rs = model.get('rounds') || [];
    const latest = rs[rs.length - 1];
    const earlier = latest && latest.number > 1 ? latest.comments : [];
    const gone = [];
    const place = (c, kind) => {
      const row = rowOf(c.path, c.end_line || c.line, c.side || 'new');
      if (!row) {
        if (kind === 'earlier') gone.push(c);
        return;
      }
      const label = kind === 'earlier' ? `your comment in the last review, ${anchorOf(c)}` : `draft, ${anchorOf(c)}`;
      row.after(h('tr', { class: `jdr-comment-row jdr-comment-${kind}` },
        h('td', { colspan: row.children.length || 2 },
          h('div', { class: 'jdr-comment-box' }, h('span', { class: 'jdr-note' }, label), h('div', {}, c.body)))));
    };
    for (const c of earlier) place(c, 'earlier');
    for (const c of model.get('draft_comments') || []) place(c, 'draft');
    goneComments.replaceChildren(...(gone.length ? [
      h('b', {}, 'Comments from the last review on lines this diff does not show:'),
      h('ul', {}, gone.map((c) => h('li', {}, h('code', {}, anchorOf(c)), ' ', c.body)))] : []));
  }

  // -- whole file and the editor ------------------------------------------------------------------
  model.on('msg:custom', (msg) => {
    if (msg.kind === 'whole_file') {
      const lines = msg.text.split('\n');
      viewer.replaceChildren(h('div', { class: 'jdr-viewer-head' }, h('b', {}, msg.path), ' (whole file) ',
        button('Close', 'jdr-link', () => viewer.replaceChildren())),
        h('pre', { class: 'jdr-whole' }, lines.map((l, i) => h('div', {}, h('span', { class: 'jdr-ln' }, String(i + 1)), l))));
      viewer.scrollIntoView({ block: 'nearest' });
    } else if (msg.kind === 'edit') {
      const area = h('textarea', { class: 'jdr-editor', rows: Math.min(30, msg.text.split('\n').length + 2), spellcheck: 'false' });
      area.value = msg.text;
      const message = h('input', { class: 'jdr-commit-message', placeholder: 'commit message (optional)' });
      viewer.replaceChildren(h('div', { class: 'jdr-viewer-head' }, h('b', {}, `Editing ${msg.path}`),
        h('span', { class: 'jdr-note' }, ` in ${model.get('worktree')} (or edit it there with any editor)`)),
        area,
        h('div', {}, button('Save', 'jdr-save', () => send('save', { path: msg.path, text: area.value })),
          message,
          button('Commit my edits', 'jdr-primary jdr-commit', () => send('commit_edits', { message: message.value })),
          button('Close', 'jdr-link', () => viewer.replaceChildren())));
      area.focus();
    }
  });

  updateBar();
  updateInfo();
  updateDiff();
  model.on('change:state', () => { updateBar(); updateInfo(); updateFiles(); });
  for (const name of ['verdict', 'counts', 'busy', 'feedback', 'decision', 'asking', 'reasons', 'draft_comments']) {
    model.on(`change:${name}`, updateBar);
  }
  for (const name of ['summary', 'checks', 'rounds', 'human_edits', 'since', 'verdict']) {
    model.on(`change:${name}`, updateInfo);
  }
  model.on('change:draft_comments', showRoundComments);
  model.on('change:rounds', showRoundComments);
  for (const name of ['files', 'viewed', 'page_count', 'worktree']) model.on(`change:${name}`, updateFiles);
  for (const name of ['page_diff', 'diff_style', 'diff_error', 'shown_since']) model.on(`change:${name}`, updateDiff);
  // after a decision, its panels close
  model.on('change:state', () => { panel = ''; updateBar(); });
  return () => root.remove();
}

export default { render };
