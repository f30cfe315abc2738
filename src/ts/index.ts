/**
 * ipcwire: Electron's IPC model for plain Node.js processes.
 * Main process: `ipcMain`, `IpcMain`, `fork`. Renderer processes: `ipcRenderer`, `IpcRenderer`.
 */
export { ipcMain, IpcMain, IpcMainChannels, IpcMainEvent, Peer, PeerRegistry } from './main';
export type { IpcMainOptions, IpcMainInvokeEvent, MainListener } from './main';
export { ipcRenderer, IpcRenderer } from './renderer';
export type { IpcRendererOptions, IpcRendererEvent, IpcRendererInvokeEvent, ReconnectOptions, ReconnectingInfo, ReconnectInfo } from './renderer';
export { fork } from './fork';
export { MessageChannelMain, MessagePortMain, PortMessageEvent, PORT_QUEUE_MAX_BYTES, PORT_QUEUE_MAX_MESSAGES, PORT_MAX_QUEUED_BYTES } from './ports';
export { IpcError, AbortError } from './errors';
export type { IpcErrorCode, CallOptions } from './errors';
export type { NativeCredentials as PeerCredentials } from './native';
export { DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_QUEUED_BYTES, releaseShared } from './link';
export { MAX_ARGS, MAX_SPARSE_LENGTH } from './codec';
export { PROTOCOL_VERSION } from './native';
export { ADDRESS_ENV } from './address';
export { typed } from './typed';
export { IpcStream, DEFAULT_STREAM_WINDOW } from './streams';
export { IpcHandle, keepOpen } from './handles';
export type { InvokeCall, StreamWindow, StreamChunk, Collected } from './streams';
export type { AnyChannels, ChannelArgs, ChannelName, ChannelResult } from './channels';
export type { TypedHandler } from './handlers';
export type { SeedRenderer } from './seed';
export { TRACE_CHANNELS, setTraceparentProvider } from './trace';
export type { IpcTraceMessage } from './trace';
