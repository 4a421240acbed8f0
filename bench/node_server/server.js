// Node.js baseline for bench/fanout.py (--baseline node): socket.io 4.8 doing what
// bench/plain_server.py does with python-socketio. Every socket that connects with a
// non-empty auth.token joins one room; POST /emit emits one `clinic.updated` event of the same
// shape and size as carewire's envelope to that room and answers {"seq": n}; GET /health
// answers 200. Default socket.io options (ping 25 s / 20 s, no compression), one process.
//
//   node bench/node_server/server.js --port 8765
"use strict";
const http = require("node:http");
const crypto = require("node:crypto");
const { Server } = require("socket.io");

const args = process.argv.slice(2);
const portIndex = args.indexOf("--port");
const port = portIndex >= 0 ? Number(args[portIndex + 1]) : 8765;
const host = "127.0.0.1";
const ROOM = "clinic:bench:staff";
const clinicId = crypto.randomUUID();
let seq = 0;

function respond(res, status, body) {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { "content-type": "application/json", "content-length": data.length });
  res.end(data);
}

const server = http.createServer((req, res) => {
  req.resume(); // drain the request body
  req.on("end", () => {
    if (req.url === "/health") {
      respond(res, 200, { ok: true });
    } else if (req.url === "/emit" && req.method === "POST") {
      seq += 1;
      const envelope = {
        id: crypto.randomUUID(), seq, clinic_id: clinicId,
        type: "clinic.updated", category: "CLINIC", priority: "NORMAL",
        occurred_at: new Date().toISOString(),
        data: { clinic_id: clinicId, fields: ["name"] },
      };
      io.to(ROOM).emit("clinic.updated", envelope);
      respond(res, 200, { seq });
    } else {
      respond(res, 404, { error: "not found" });
    }
  });
});

const io = new Server(server, { path: "/socket.io/", serveClient: false });
io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (!token) return next(new Error("unauthenticated"));
  next();
});
io.on("connection", (socket) => socket.join(ROOM));

server.listen(port, host, () => console.log(`node socket.io ${require("socket.io/package.json").version} on ${host}:${port}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => { io.close(); process.exit(0); });
