'use strict';
// Reading sanitizer output of test processes (no addon loaded here).

/**
 * Whether a LeakSanitizer report holds a leak allocated by our code: scanning the stack from the
 * allocation upwards, a frame in src/native/ (or node-addon-api) comes before any V8/Node internal
 * frame. V8 heap pages allocated while our code happened to be on the stack are Node's, not ours.
 */
function ourLeaks(text) {
  const blocks = (text || '').split(/\n(?=(?:Direct|Indirect) leak)/).filter((b) => /^(Direct|Indirect) leak/.test(b));
  return blocks.filter((b) => {
    for (const line of b.split('\n\n')[0].split('\n').slice(2)) {
      if (/src\/native\/|node-addon-api/.test(line)) return true;
      if (/v8::|node::|uv_|libuv|\(\/usr\/bin\/node\+/.test(line) && !/napi_/.test(line)) return false;
    }
    return false;
  });
}

/**
 * Exit status of a child, forgiving LeakSanitizer's exit code (23) when none of the leaks is ours
 * (Node itself leaves some allocations unfreed at exit).
 */
function childStatus(status, stderr) {
  if (status === 23 && /LeakSanitizer/.test(stderr || '')) return ourLeaks(stderr).length ? 23 : 0;
  return status;
}

module.exports = { childStatus, ourLeaks };
