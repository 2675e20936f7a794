// One DOM helper for the bundled front ends (review, replay): h(tag, attrs, ...children)
// makes an element; `class` sets its class, `on...` adds a listener, other attributes are
// set unless undefined, null or false; children are nodes or text (null/false skipped).
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}
