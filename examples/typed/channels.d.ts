// The channels of examples/typed: each channel is the function it stands for (arguments → result).
export interface Channels {
  add(a: number, b: number): number; // invoke → handle
  greet(name: string): string; // sendSync → on + event.returnValue
  tick(n: number): void; // send / peer.send → on
}
