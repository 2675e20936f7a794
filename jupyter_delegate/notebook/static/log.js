// The live log's pages and the words being streamed (jupyter_delegate/notebook/live.py,
// LogPages). The kernel sends a slot's HTML only when its page changed (views.page_html
// escapes every value in it), so a slot is redrawn only then: a tool call the user opened
// in another page stays open while the task runs. `order` names the page each slot shows;
// the slots are laid out in page order (CSS `order` in a flex column), never moved in the
// DOM, and the streamed words stay below them.

const SLOTS = ['page_0', 'page_1', 'page_2'];

function render({ model, el }) {
  const root = document.createElement('div');
  root.className = 'jd-log';
  const slots = SLOTS.map(() => {
    const slot = document.createElement('div');
    slot.className = 'jd-log-page';
    root.append(slot);
    return slot;
  });
  const text = document.createElement('div');
  text.className = 'jd-log-text';
  root.append(text);
  el.append(root);

  const drawers = SLOTS.map((name, i) => () => {
    slots[i].innerHTML = model.get(name) || '';
  });
  const drawOrder = () => {
    const order = model.get('order') || [];
    slots.forEach((slot, i) => {
      const page = order[i] ?? -1;
      slot.style.order = String(page);
      slot.style.display = page >= 0 ? '' : 'none';
    });
  };
  const drawText = () => {
    const html = model.get('text') || '';
    text.innerHTML = html;
    text.style.display = html ? '' : 'none';
  };
  drawers.forEach((draw) => draw());
  drawOrder();
  drawText();
  SLOTS.forEach((name, i) => model.on(`change:${name}`, drawers[i]));
  model.on('change:order', drawOrder);
  model.on('change:text', drawText);
  return () => {
    SLOTS.forEach((name, i) => model.off(`change:${name}`, drawers[i]));
    model.off('change:order', drawOrder);
    model.off('change:text', drawText);
  };
}

export default { render };
