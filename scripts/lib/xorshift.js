'use strict';
/**
 * xorshift32, the seeded generator of the soak run and the fuzz tests: the same seed gives the same sequence,
 * so a failing run can be replayed from the seed it printed. Not for anything that needs real randomness.
 * @param {number} seed any integer; 0 (which would stay 0 for ever) counts as 1
 * @returns {() => number} the next unsigned 32-bit integer, each call
 */
function xorshift32(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

module.exports = { xorshift32 };
