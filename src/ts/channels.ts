/**
 * Compile-time channel maps. A map names each channel with the function it stands for:
 *
 *     interface MyChannels {
 *       sum(a: number, b: number): number;   // invoke / handle, or sendSync / returnValue
 *       log(line: string): void;             // send / on
 *     }
 *
 * `IpcMain<MyChannels>` and `IpcRenderer<MyChannels>` then check channel names, argument tuples and results of
 * `send`, `sendSync`, `invoke`, `handle`, `on`, `peer.invoke`, `event.reply` and `event.returnValue`. Without a
 * map (the default, {@link AnyChannels}) every channel is a string and every value `any`, as in Electron's own
 * typings, so code written for Electron compiles unchanged.
 */

/** The default channel map: any string channel, any arguments, any result (Electron's typings). */
export type AnyChannels = Record<string, (...args: any[]) => any>;

/** The channel names of map `C`. */
export type ChannelName<C> = Extract<keyof C, string>;

/** The argument tuple of channel `K` in map `C`. */
export type ChannelArgs<C, K extends keyof C> = C[K] extends (...args: infer A) => any ? A : never;

/** What channel `K` of map `C` answers: `invoke` resolves to it, `sendSync` returns it, a listener sets it. */
export type ChannelResult<C, K extends keyof C> = C[K] extends (...args: any[]) => infer R ? Awaited<R> : never;
