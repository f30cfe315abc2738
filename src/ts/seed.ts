/** The renderer side of the seed-compatible `ipcwire/ipc` module (listeners receive the arguments only). */
import type { IpcRenderer } from './renderer';

export type ArgsListener = (...args: any[]) => void;

/** The renderer side of `ipcwire/ipc`: listeners get `(...args)`. */
export interface SeedRenderer {
  send(channel: string, ...args: unknown[]): void;
  sendSync(channel: string, ...args: unknown[]): any;
  invoke(channel: string, ...args: unknown[]): Promise<any>;
  on(channel: string, listener: ArgsListener): SeedRenderer;
  addListener(channel: string, listener: ArgsListener): SeedRenderer;
  once(channel: string, listener: ArgsListener): SeedRenderer;
  off(channel: string, listener: ArgsListener): SeedRenderer;
  removeListener(channel: string, listener: ArgsListener): SeedRenderer;
  removeAllListeners(channel?: string): SeedRenderer;
  listenerCount(channel: string): number;
  handle: IpcRenderer['handle'];
  handleOnce: IpcRenderer['handleOnce'];
  removeHandler: IpcRenderer['removeHandler'];
  /** The underlying modern `ipcRenderer` (listeners there receive `(event, ...args)`). */
  readonly ipcRenderer: IpcRenderer;
}

export function seedRenderer(r: IpcRenderer): SeedRenderer {
  // channel → user listener → the (event, ...args) wrapper registered on ipcRenderer
  const wrappers = new Map<string, Map<ArgsListener, ArgsListener[]>>();
  const wrap = (channel: string, fn: ArgsListener, once: boolean): ArgsListener => {
    const wrapper: ArgsListener = (_event, ...args) => {
      if (once) forget(channel, fn, wrapper);
      fn(...args);
    };
    let byFn = wrappers.get(channel);
    if (!byFn) wrappers.set(channel, (byFn = new Map()));
    byFn.set(fn, [...(byFn.get(fn) ?? []), wrapper]);
    return wrapper;
  };
  const forget = (channel: string, fn: ArgsListener, wrapper?: ArgsListener): ArgsListener | undefined => {
    const list = wrappers.get(channel)?.get(fn);
    if (!list || list.length === 0) return undefined;
    const index = wrapper ? list.indexOf(wrapper) : list.length - 1;
    const [found] = list.splice(index, 1);
    if (list.length === 0) wrappers.get(channel)!.delete(fn);
    return found;
  };
  const api: SeedRenderer = {
    send: (channel, ...args) => r.send(channel, ...args),
    sendSync: (channel, ...args) => r.sendSync(channel, ...args),
    invoke: (channel, ...args) => r.invoke(channel, ...args),
    on(channel, listener) {
      r.on(channel, wrap(channel, listener, false));
      return api;
    },
    addListener(channel, listener) {
      return api.on(channel, listener);
    },
    once(channel, listener) {
      r.once(channel, wrap(channel, listener, true));
      return api;
    },
    removeListener(channel, listener) {
      const wrapper = forget(channel, listener);
      if (wrapper) r.removeListener(channel, wrapper);
      return api;
    },
    off(channel, listener) {
      return api.removeListener(channel, listener);
    },
    removeAllListeners(channel) {
      if (channel === undefined) wrappers.clear();
      else wrappers.delete(channel);
      r.removeAllListeners(channel);
      return api;
    },
    listenerCount: (channel) => r.listenerCount(channel),
    handle: (channel, fn) => r.handle(channel, fn),
    handleOnce: (channel, fn) => r.handleOnce(channel, fn),
    removeHandler: (channel) => r.removeHandler(channel),
    ipcRenderer: r,
  };
  return api;
}

