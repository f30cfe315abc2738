// Compile-time tests of the MessagePort API, checked by `tsc --noEmit -p test/types` in `npm test`.
import { MessageChannelMain, MessagePortMain, PortMessageEvent, ipcMain, ipcRenderer, type Peer } from 'ipcwire';

declare function expectType<T>(value: T): void;

function ports(peer: Peer) {
  const { port1, port2 } = new MessageChannelMain();
  expectType<MessagePortMain>(port1);
  peer.postMessage('chat', { hello: 1 }, [port2]);
  ipcRenderer.postMessage('chat', null, [port1]);
  port1.postMessage({ any: 'value' });
  port1.postMessage('x', [new MessageChannelMain().port1]);
  // @ts-expect-error only ports can be transferred
  port1.postMessage('x', [{}]);
  port1.on('message', (event: PortMessageEvent) => {
    expectType<unknown>(event.data);
    expectType<MessagePortMain[]>(event.ports);
  });
  port1.start();
  port1.close();
  ipcMain.on('chat', (event) => {
    expectType<MessagePortMain[]>(event.ports);
  });
  ipcRenderer.on('chat', (event) => {
    expectType<MessagePortMain[]>(event.ports);
  });
}
void ports;
