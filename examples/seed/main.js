// main.js
var ipc = require('ipcwire/ipc');
ipc.on('asynchronous-message', function(event, arg) { console.log(arg); event.sender.send('asynchronous-reply', 'pong'); });
ipc.on('synchronous-message', function(event, arg) { console.log(arg); event.returnValue = 'pong'; });
require('ipcwire').fork(__dirname + '/renderer.js');
