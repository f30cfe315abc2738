import type { ChannelArgs, ChannelResult } from './channels';
/**
 * `handle` / `handleOnce` / `removeHandler`, shared by main (answering `ipcRenderer.invoke`) and renderers
 * (answering `peer.invoke`), with Electron's error texts.
 */

/** A handler for `invoke`: its return value (or what its promise resolves to) is the result. */
export type InvokeHandler<E> = (event: E, ...args: any[]) => unknown;

/** A handler of channel `K` in map `C`: its arguments, and its result (or a promise of it). */
export type TypedHandler<E, C, K extends keyof C> = (
  event: E,
  ...args: ChannelArgs<C, K>
) => ChannelResult<C, K> | PromiseLike<ChannelResult<C, K>>;

export class HandlerRegistry<E> {
  private readonly map = new Map<string, InvokeHandler<E>>();

  /** Registers the one handler of `channel`. */
  handle(channel: string, fn: InvokeHandler<E>): void {
    if (this.map.has(channel)) {
      // A plain Error, so that String(err) stays Electron's text; the code is ipcwire's addition.
      const err = new Error(`Attempted to register a second handler for '${channel}'`) as Error & { code: string };
      err.code = 'ERR_IPC_HANDLER_EXISTS';
      throw err;
    }
    if (typeof fn !== 'function') {
      throw new TypeError(`Expected handler to be a function, but found type '${typeof fn}'`);
    }
    this.map.set(channel, fn);
  }

  /** Registers a handler that removes itself before it first runs. */
  handleOnce(channel: string, fn: InvokeHandler<E>): void {
    if (typeof fn !== 'function') {
      // same check and text as handle(), before the wrapper hides the type
      this.handle(channel, fn);
      return;
    }
    const once: InvokeHandler<E> = (event, ...args) => {
      this.removeHandler(channel);
      return fn(event, ...args);
    };
    this.handle(channel, once);
  }

  removeHandler(channel: string): void {
    this.map.delete(channel);
  }

  get(channel: string): InvokeHandler<E> | undefined {
    return this.map.get(channel);
  }

  get size(): number {
    return this.map.size;
  }

  clear(): void {
    this.map.clear();
  }
}
