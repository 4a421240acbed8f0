// The official Socket.IO JS client against carewire, for tests/realtime/test_fanout.py.
//   node client.mjs URL TOKEN [default|websocket|polling]
// Prints one JSON object per line: {kind: "connect"|"upgrade"|"event"|"connect_error"|
// "disconnect", ...}. Exits when the server disconnects it, or disconnects when stdin closes.
import { io } from "socket.io-client";

const [url, token, mode = "default"] = process.argv.slice(2);
const options = { auth: { token }, reconnection: false, forceNew: true };
if (mode === "websocket") options.transports = ["websocket"];
if (mode === "polling") options.transports = ["polling"];

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const transport = () => socket.io.engine?.transport?.name ?? null;

const socket = io(url, options);
socket.io.on("open", () => {
  socket.io.engine.on("upgrade", (t) => out({ kind: "upgrade", transport: t.name }));
});
socket.on("connect", () => out({ kind: "connect", id: socket.id, transport: transport() }));
socket.on("connect_error", (err) => {
  out({ kind: "connect_error", message: err.message, data: err.data ?? null });
  process.exit(2);
});
socket.onAny((event, data) => out({ kind: "event", event, data, transport: transport() }));
socket.on("disconnect", (reason) => {
  out({ kind: "disconnect", reason });
  process.exit(0);
});
process.stdin.on("end", () => socket.disconnect());
process.stdin.resume();
