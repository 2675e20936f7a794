/**
 * A stand-in for the model an anywidget module's `render` is given: `get`, `set` (which
 * fires `change:NAME` as the widget manager does), `on` and `off`; `handlers` shows what
 * a view left registered.
 */
export function fakeModel(values: Record<string, unknown>) {
  const handlers: Record<string, (() => void)[]> = {};
  return {
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
