/**
 * Every Electron error text, byte for byte, on main's handle/invoke side and on the renderer's
 * handle / peer.invoke side.
 */
import { describe, expect, test } from 'vitest';
import { catchSync, errInfo, exitsCleanly, ipcwire, makeMain, once, runNode, useHarness } from './helpers';

useHarness();

const NOT_FUNCTIONS: Array<[string, unknown]> = [
  ['number', 42],
  ['string', 'handler'],
  ['undefined', undefined],
  ['object', null],
  ['object', {}],
  ['boolean', true],
  ['bigint', 1n],
  ['symbol', Symbol('x')],
];

/** Registration rules shared by IpcMain and IpcRenderer. */
function registrationRules(make: () => any) {
  const a = make();
  a.handle('ch', () => 1);
  const second = catchSync(() => a.handle('ch', () => 2));
  expect(second).toBeInstanceOf(Error);
  expect(String(second)).toBe("Error: Attempted to register a second handler for 'ch'");
  expect(second.code).toBe('ERR_IPC_HANDLER_EXISTS');
  const secondOnce = catchSync(() => a.handleOnce('ch', () => 2));
  expect(String(secondOnce)).toBe("Error: Attempted to register a second handler for 'ch'");
  expect(secondOnce.code).toBe('ERR_IPC_HANDLER_EXISTS');
  a.removeHandler('ch');
  expect(() => a.handle('ch', () => 3)).not.toThrow();

  const b = make();
  b.handleOnce('once', () => 1);
  expect(String(catchSync(() => b.handle('once', () => 2)))).toBe(
    "Error: Attempted to register a second handler for 'once'",
  );
  for (const [type, value] of NOT_FUNCTIONS) {
    const c = make();
    for (const method of ['handle', 'handleOnce']) {
      const err = catchSync(() => c[method]('ch', value));
      expect(err).toBeInstanceOf(TypeError);
      expect(String(err), `${method}(${String(value)})`).toBe(
        `TypeError: Expected handler to be a function, but found type '${type}'`,
      );
    }
  }
}

describe('errors-electron', () => {
  test('errors-electron: main handle rejects a second handler and non-functions with Electron texts', () => {
    const { IpcMain } = ipcwire();
    registrationRules(() => new IpcMain());
  });

  test('errors-electron: renderer handle rejects a second handler and non-functions with Electron texts', () => {
    const { IpcRenderer } = ipcwire();
    registrationRules(() => new IpcRenderer());
  });

  test('errors-electron: invoke rejections carry Electron texts for throwing, rejecting and missing handlers', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.handle('throws', () => {
      throw new Error('some error');
    });
    main.handle('rejects', () => Promise.reject(new Error('some error')));
    main.handle('async-throws', async () => {
      await null;
      throw new Error('some error');
    });
    main.handle('rejects-string', () => Promise.reject('plain reason'));
    main.handle('throws-typed', () => {
      throw Object.assign(new TypeError('bad type'), { code: 'E_CUSTOM', detail: 42, nested: { a: [1] } });
    });
    main.handle('unclonable-result', () => ({ fn: () => {} }));
    main.handleOnce('once', () => 'first');
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const results = {};
      for (const ch of ['throws', 'rejects', 'async-throws', 'rejects-string', 'throws-typed', 'unclonable-result', 'missing', 'once', 'once']) {
        try {
          results[ch] = results[ch] ? [results[ch], { value: await r.invoke(ch) }] : { value: await r.invoke(ch) };
        } catch (e) {
          const info = { ...errInfo(e), detail: e.detail, nested: e.nested };
          results[ch] = results[ch] ? [results[ch], info] : info;
        }
      }
      out('results', results);
    `,
      { address: main.address },
    );
    const results = await child.msg('results');
    await exitsCleanly(child);
    for (const ch of ['throws', 'rejects', 'async-throws']) {
      expect(results[ch].isError, ch).toBe(true);
      expect(results[ch].message, ch).toBe(`Error invoking remote method '${ch}': Error: some error`);
    }
    expect(results['rejects-string'].message).toBe("Error invoking remote method 'rejects-string': plain reason");
    expect(results.missing.isError).toBe(true);
    expect(results.missing.message).toBe(
      "Error invoking remote method 'missing': Error: No handler registered for 'missing'",
    );
    expect(results.missing.code).toBe('ERR_IPC_NO_HANDLER');
    // Beyond Electron: the remote error's name, code and own fields travel with the rejection.
    expect(results['throws-typed'].message).toBe("Error invoking remote method 'throws-typed': TypeError: bad type");
    expect(results['throws-typed'].name).toBe('TypeError');
    expect(results['throws-typed'].code).toBe('E_CUSTOM');
    expect(results['throws-typed'].detail).toBe(42);
    expect(results['throws-typed'].nested).toEqual({ a: [1] });
    // A result main cannot clone rejects (never a hang), with the clone error's text.
    expect(results['unclonable-result'].message).toMatch(
      /^Error invoking remote method 'unclonable-result': IpcError: An object could not be cloned\./,
    );
    // handleOnce answers once, then the channel has no handler.
    expect(results.once[0]).toEqual({ value: 'first' });
    expect(results.once[1].message).toBe("Error invoking remote method 'once': Error: No handler registered for 'once'");
  });

  test('errors-electron: handleOnce removes itself before running', async () => {
    const { IpcMain } = ipcwire();
    const main = makeMain();
    let during: string | undefined;
    main.handleOnce('ch', () => {
      // Removed already: registering again from inside the handler works.
      try {
        main.handle('ch', () => 'second');
        during = 'registered';
      } catch (e) {
        during = String(e);
      }
      return 'first';
    });
    const child = runNode(`out('r', [await ipcwire.ipcRenderer.invoke('ch'), await ipcwire.ipcRenderer.invoke('ch')]);`, {
      address: main.address,
    });
    expect(await child.msg('r')).toEqual(['first', 'second']);
    expect(during).toBe('registered');
    await exitsCleanly(child);
    expect(IpcMain).toBeTypeOf('function');
  });

  test('errors-electron: send/sendSync/invoke of a function fail with "An object could not be cloned."', { timeout: 20_000 }, async () => {
    const main = makeMain();
    main.on('s', () => {});
    main.on('sync', (e: any) => (e.returnValue = 1));
    main.handle('inv', () => 1);
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      const res = {};
      try { r.send('s', () => {}); res.send = 'no throw'; } catch (e) { res.send = errInfo(e); }
      try { r.sendSync('sync', () => {}); res.sendSync = 'no throw'; } catch (e) { res.sendSync = errInfo(e); }
      let p;
      try { p = r.invoke('inv', () => {}); res.invokeSync = 'no throw'; } catch (e) { res.invokeSync = errInfo(e); }
      try { await p; res.invoke = 'resolved'; } catch (e) { res.invoke = errInfo(e); }
      out('res', res);
    `,
      { address: main.address },
    );
    const res = await child.msg('res');
    await exitsCleanly(child);
    for (const k of ['send', 'sendSync', 'invoke']) {
      expect(res[k].isError, k).toBe(true);
      expect(res[k].message, k).toMatch(/^An object could not be cloned\./);
      // Electron's message; the error is ipcwire's own IpcError (its name), with a stable code.
      expect(res[k].name, k).toBe('IpcError');
      expect(res[k].string, k).toMatch(/^IpcError: An object could not be cloned\./);
      expect(res[k].code, k).toBe('ERR_IPC_UNCLONABLE');
    }
    // invoke reports through its promise, not by throwing.
    expect(res.invokeSync).toBe('no throw');
  });

  test('errors-electron: peer.invoke rejections carry Electron texts from the renderer handle side', { timeout: 20_000 }, async () => {
    const main = makeMain();
    const child = runNode(
      `
      const r = ipcwire.ipcRenderer;
      r.handle('throws', () => { throw new Error('some error'); });
      r.handle('rejects', async () => { throw new Error('some error'); });
      r.handle('rejects-string', () => Promise.reject('plain reason'));
      r.handle('typed', () => { throw Object.assign(new RangeError('out of range'), { code: 'E_R', extra: 'x' }); });
      r.handle('echo', (event, ...args) => ({ args, hasSender: event.sender === r }));
      r.handle('unclonable', () => Symbol('nope'));
      r.on('done', () => { r.removeAllListeners('done'); r.removeHandler('throws'); r.removeHandler('rejects'); r.removeHandler('rejects-string'); r.removeHandler('typed'); r.removeHandler('echo'); r.removeHandler('unclonable'); });
      r.send('ready');
    `,
      { address: main.address },
    );
    const [event] = await once(main, 'ready');
    const peer = event.sender;
    const settle = async (ch: string, ...args: unknown[]) => {
      try {
        return { value: await peer.invoke(ch, ...args) };
      } catch (e: any) {
        return { ...errInfo(e), extra: e.extra };
      }
    };
    expect(await settle('echo', 1, 'two')).toEqual({ value: { args: [1, 'two'], hasSender: true } });
    for (const ch of ['throws', 'rejects']) {
      const r = await settle(ch);
      expect(r.isError, ch).toBe(true);
      expect(r.message, ch).toBe(`Error invoking remote method '${ch}': Error: some error`);
    }
    expect((await settle('rejects-string')).message).toBe("Error invoking remote method 'rejects-string': plain reason");
    const typed = await settle('typed');
    expect(typed.message).toBe("Error invoking remote method 'typed': RangeError: out of range");
    expect(typed.name).toBe('RangeError');
    expect(typed.code).toBe('E_R');
    expect(typed.extra).toBe('x');
    const missing = await settle('missing');
    expect(missing.message).toBe("Error invoking remote method 'missing': Error: No handler registered for 'missing'");
    expect(missing.code).toBe('ERR_IPC_NO_HANDLER');
    expect((await settle('unclonable')).message).toMatch(
      /^Error invoking remote method 'unclonable': IpcError: An object could not be cloned\./,
    );
    // Main's own clone check: peer.invoke / peer.send of a function fail at once with the same text.
    const sendErr = catchSync(() => peer.send('x', { onDone() {} }));
    expect(sendErr.message).toMatch(/^An object could not be cloned\./);
    expect(sendErr.code).toBe('ERR_IPC_UNCLONABLE');
    const invErr = await settle('echo', () => {});
    expect(invErr.message).toMatch(/^An object could not be cloned\./);
    expect(invErr.code).toBe('ERR_IPC_UNCLONABLE');
    peer.send('done');
    await exitsCleanly(child);
  });
});
