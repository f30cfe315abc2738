'use strict';
// synckit's worker: echoes a 'ping' message, or takes a throughput message and answers only `true`.
const { runAsWorker } = require('synckit');

runAsWorker((op, msg) => (op === 'ping' ? msg : true));
