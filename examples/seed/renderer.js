// renderer.js
var ipc = require('ipcwire/ipc');
console.log(ipc.sendSync('synchronous-message', 'ping')); // prints "pong"
ipc.on('asynchronous-reply', function(arg) { console.log(arg); }); // prints "pong"
ipc.send('asynchronous-message', 'ping');
