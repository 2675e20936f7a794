// The header and live line of a task's view (jupyter_delegate/notebook/live.py,
// LiveStatus). The header is the kernel's HTML (header.header_html escapes every value in
// it), shown as an HTML widget would show it. The live line says how long the task has
// run and what it does now, redrawn as each second turns from the kernel's facts (epoch
// times and the current activity), so the clock ticks with no message from the kernel;
// it is built with textContent only, in the words of live.py's status_line.

function duration(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const minutes = Math.floor(total / 60);
  const secs = total % 60;
  return minutes ? `${minutes}m ${String(secs).padStart(2, '0')}s` : `${secs}s`;
}

function since(seconds) {
  return seconds < 60 ? `${Math.max(0, Math.floor(seconds))} s` : duration(seconds);
}

function span(className, text) {
  const node = document.createElement('span');
  node.className = className;
  node.textContent = text;
  return node;
}

// The early header (jupyter_delegate/notebook/header.py): the same header as plain HTML,
// shown by the cell before this view's widgets existed. This view takes its place as it
// draws: hidden here at once, emptied in the notebook by our extension (the bubbling
// `jd-live-shown` event) and, for front ends that apply it, by the kernel (`shown`).
function replaceEarly(model) {
  const task = model.get('early');
  if (!task) {
    return;
  }
  const early = [...document.querySelectorAll('.jd-early')].filter(n => n.dataset.task === task);
  for (const node of early) {
    node.style.display = 'none';
  }
  // The rest once this view is on screen: emptying the output lays the notebook out again.
  setTimeout(() => {
    for (const node of early) {
      node.dispatchEvent(new CustomEvent('jd-live-shown', { bubbles: true, detail: { task } }));
    }
    model.send({ shown: true });
  }, 0);
}

// Set a node's text, or whether it shows, only when that changes: with many views in a
// notebook every write to the DOM makes the page recalculate style and lay itself out,
// and the line is redrawn every second and at every change of the task's activity.
function setText(node, text) {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

function setShown(node, shown) {
  const display = shown ? '' : 'none';
  if (node.style.display !== display) {
    node.style.display = display;
  }
}

function setData(node, name, value) {
  if (node.dataset[name] !== value) {
    node.dataset[name] = value;
  }
}

function render({ model, el }) {
  const header = document.createElement('div');
  header.className = 'jd-live-header';
  const drawHeader = () => {
    header.innerHTML = model.get('header') || '';
  };
  drawHeader();
  model.on('change:header', drawHeader);
  el.append(header);
  replaceEarly(model);
  const root = document.createElement('div');
  root.className = 'jd-live';
  // The line's parts, made once: "2m 05s · ● now: running `pytest -q` (4 s)".
  const line = document.createElement('div');
  line.className = 'jd-live-line';
  const clock = span('jd-live-clock', '');
  const dot = span('jd-live-pulse', '');
  const verb = document.createTextNode('');
  const code = document.createElement('code');
  const elapsed = span('jd-live-since', '');
  const what = span('jd-live-now', '');
  what.append(dot, verb, code, elapsed);
  const separator = document.createTextNode('');
  line.append(clock, separator, what);
  const tail = document.createElement('pre');
  tail.className = 'jd-live-tail';
  root.append(line, tail);
  el.append(root);

  function draw() {
    const started = model.get('started_at');
    const ended = model.get('ended_at');
    const activity = model.get('activity') || {};
    const now = Date.now() / 1000;
    const doing = started && !ended ? activity.kind || '' : '';
    setData(root, 'kind', ended ? '' : activity.kind || '');
    setShown(root, started);
    setText(clock, started && ended ? `took ${duration(ended - started)}` : started ? duration(now - started) : '');
    setText(separator, doing ? ' · ' : '');
    setShown(what, doing);
    if (doing) {
      setShown(dot, doing === 'model');
      const said = doing === 'model' ? `the model is ${activity.verb}` : activity.verb;
      setText(verb, `now: ${said}${activity.subject ? ' ' : ''}`);
      setText(code, activity.subject || '');
      setShown(code, activity.subject);
      setText(elapsed, ` (${since(now - (activity.since || now))})`);
    } else {
      // nothing left behind in the hidden part: the line's text is what it shows
      [verb, code, elapsed].forEach(node => setText(node, ''));
    }
    const text = ended ? '' : model.get('tail') || '';
    setText(tail, text);
    setShown(tail, text);
  }

  // Each redraw lands just after the clock's next whole second, as a stopwatch turns,
  // rather than up to a second late on an interval of its own phase.
  let timer = 0;
  function tick() {
    draw();
    const started = model.get('started_at');
    const into = started ? (Date.now() / 1000 - started) % 1 : 0;
    timer = setTimeout(tick, Math.round((1 - into) * 1000) + 10);
  }
  tick();
  const redraw = () => draw();
  for (const name of ['started_at', 'ended_at', 'activity', 'tail', 'state']) {
    model.on(`change:${name}`, redraw);
  }
  return () => {
    clearTimeout(timer);
    model.off('change:header', drawHeader);
    for (const name of ['started_at', 'ended_at', 'activity', 'tail', 'state']) {
      model.off(`change:${name}`, redraw);
    }
  };
}

export default { render };
