/**
 * Addresses: a bare name, an absolute socket path (or `\\.\pipe\…` on Windows), or nothing for a fresh
 * private one. Bare names and fresh addresses live in a per-user directory made 0700, so the socket is
 * reachable only by its owner even before its own 0600 mode applies.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { getEnvironmentData, setEnvironmentData } from 'node:worker_threads';
import { makeError } from './errors';

const isWindows = process.platform === 'win32';
const PIPE_PREFIX = '\\\\.\\pipe\\';
const BARE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The environment variable through which `fork` hands main's address to a renderer. */
export const ADDRESS_ENV = 'IPCWIRE_ADDRESS';

/** Where the address taken from the environment is kept for worker threads started by this thread. */
const ADDRESS_DATA_KEY = 'ipcwire:address';

let inheritedAddress: string | undefined;

/**
 * Main's address as `fork` handed it to this process. It is taken out of `process.env` as soon as ipcwire
 * loads (as Node does with its own fork channel variable), so that a Node process this renderer starts does not
 * silently become a second renderer of the same main. Worker threads started afterwards still see it (through
 * the worker environment data), as they are part of this renderer. A value set in `process.env` later wins, and
 * is taken out in turn.
 */
export function envAddress(): string | undefined {
  const fromEnv = process.env[ADDRESS_ENV];
  if (fromEnv !== undefined) {
    delete process.env[ADDRESS_ENV];
    if (fromEnv !== '') {
      inheritedAddress = fromEnv;
      setEnvironmentData(ADDRESS_DATA_KEY, fromEnv);
    }
  }
  if (inheritedAddress === undefined) {
    const shared = getEnvironmentData(ADDRESS_DATA_KEY);
    if (typeof shared === 'string' && shared !== '') inheritedAddress = shared;
  }
  return inheritedAddress;
}
envAddress();

/** The per-user directory for bare names and fresh addresses (created 0700 on first use). */
export function runtimeDir(): string {
  const base = process.env.XDG_RUNTIME_DIR;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const dir = base && path.isAbsolute(base) ? path.join(base, 'ipcwire') : path.join(os.tmpdir(), `ipcwire-${uid}`);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = fs.lstatSync(dir);
  if (!st.isDirectory() || (typeof process.getuid === 'function' && st.uid !== process.getuid())) {
    throw makeError('EACCES', `ipcwire: ${dir} is not a directory owned by this user`, {
      errno: -13,
      syscall: 'mkdir',
      address: dir,
    });
  }
  if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
  return dir;
}

/** Addresses that an `IpcMain` of this thread listens on (module state is per thread). */
const localMains = new Set<string>();

function addressKey(address: string): string {
  return isWindows ? address.toLowerCase() : address;
}

/** Records that an `IpcMain` of this thread listens on `address` (listening false: no longer). */
export function setLocalMainAddress(address: string, listening: boolean): void {
  if (listening) localMains.add(addressKey(address));
  else localMains.delete(addressKey(address));
}

/** Whether an `IpcMain` of this thread listens on `address` (a `sendSync` to it could never be answered). */
export function isLocalMainAddress(address: string): boolean {
  return localMains.has(addressKey(address));
}

/** Resolves what the user gave `listen`/`connect` to the address the OS sees. */
export function resolveAddress(address: string | undefined): string {
  if (address === undefined || address === '') {
    const unique = `${process.pid}-${randomBytes(4).toString('hex')}`;
    return isWindows ? `${PIPE_PREFIX}ipcwire-${unique}` : path.join(runtimeDir(), `${unique}.sock`);
  }
  if (typeof address !== 'string') {
    throw new TypeError(`The "address" argument must be of type string. Received type ${typeof address}`);
  }
  if (isWindows) {
    // Pipe names are case-insensitive, and the namespace may be written with either slash.
    if (/^[\\/]{2}\.[\\/]pipe[\\/]/i.test(address)) return PIPE_PREFIX + address.slice(PIPE_PREFIX.length);
    if (BARE_NAME.test(address)) return `${PIPE_PREFIX}${address}`;
    throw new TypeError(`Invalid named pipe address '${address}': use a bare name or \\\\.\\pipe\\<name>`);
  }
  // A bare name ending in .sock is taken as is ('app.sock', not 'app.sock.sock').
  if (BARE_NAME.test(address)) return path.join(runtimeDir(), address.endsWith('.sock') ? address : `${address}.sock`);
  // Anything else is a path; a relative one is resolved against the current directory, as node:net does.
  return path.resolve(address);
}

/** Whether `address` (as resolved) lives in the per-user directory of bare names and fresh addresses. */
export function inRuntimeDir(address: string): boolean {
  return !isWindows && path.dirname(address) === runtimeDir();
}

/**
 * Removes dead servers' sockets from the per-user directory, so that mains stopped by a signal (Ctrl-C) do not
 * leave them piling up there. Dead means that no live server holds the socket's lock; live servers' sockets and
 * files that are not sockets are never touched (`removeStale` decides, under the lock).
 */
export function sweepRuntimeDir(removeStale: (socketPath: string) => boolean): void {
  const dir = runtimeDir();
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  const sockets = new Set<string>();
  for (const name of names) {
    if (name.endsWith('.sock')) sockets.add(name);
    else if (name.endsWith('.sock.lock')) sockets.add(name.slice(0, -'.lock'.length));
  }
  for (const name of sockets) {
    try {
      removeStale(path.join(dir, name));
    } catch {
      // a name the platform cannot take as a socket path, a file that went meanwhile: not ours to clean
    }
  }
}

/** Throws ERR_IPC_PATH_TOO_LONG instead of letting the OS truncate the path. */
export function checkPathLength(address: string, max: number): void {
  // Unix counts bytes of sun_path; Windows counts UTF-16 characters of the pipe name.
  const size = isWindows ? address.length : Buffer.byteLength(address);
  if (size > max) {
    const unit = isWindows ? 'characters' : 'bytes';
    throw makeError(
      'ERR_IPC_PATH_TOO_LONG',
      `${isWindows ? 'Pipe name' : 'Socket path'} is ${size} ${unit}, longer than the ${max} this platform allows: ${address}`,
      { address },
    );
  }
}

export { isWindows };
