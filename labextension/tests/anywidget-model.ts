/**
 * A stand-in for the model an anywidget module's `render` is given: `get`, `set` (which
 * fires `change:NAME` as the widget manager does), `on`, `off` and `send`; `handlers` shows
 * what a view left registered, `sent` what it sent the kernel.
 */
export function fakeModel(values: Record<string, unknown>) {
  const handlers: Record<string, (() => void)[]> = {};
  const sent: unknown[] = [];
  return {
    send: (content: unknown) => sent.push(content),
    sent,
    get: (name: string) => values[name],
    set(name: string, value: unknown) {
      values[name] = value;
      (handlers[`change:${name}`] || []).forEach((f) => f());
    },
    on: (event: string, f: () => void) => (handlers[event] ||= []).push(f),
    off: (event: string, f: () => void) => {
      handlers[event] = (handlers[event] || []).filter((g) => g !== f);
    },
    handlers
  };
}
