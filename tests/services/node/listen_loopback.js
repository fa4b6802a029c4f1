// Preloaded (node -r) by tests/services/solid_server.py: the Community Solid Server has no option
// for the address it listens on and takes every interface; a server the tests run listens on
// 127.0.0.1 only, so a listen(port, ...) without a host gets that host.
"use strict";
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && typeof args[1] !== "string") {
    const callbacks = args.slice(1).filter((a) => typeof a === "function");
    return listen.call(this, args[0], "127.0.0.1", ...callbacks);
  }
  return listen.apply(this, args);
};
