#!/usr/bin/env python3
"""threading_echo.py: an echo server on socketserver.ThreadingTCPServer, one
Python thread (a pthread) per connection, run by python_threading.sh
natively and under the launcher.

It binds 127.0.0.1 on a port the kernel picks and prints
"listening on 127.0.0.1:PORT".  Each connection's thread sends back every byte
it receives until the client closes.  SIGINT or SIGTERM ends serve_forever();
server_close() then joins the connection threads, and the server prints
"stopped: N connections, at most M at once, T threads left" and exits 0.
M counts handler threads that were inside handle() at the same time, so it
says how many Python threads the server really ran at once.
"""
import signal
import socketserver
import sys
import threading


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.enter()
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                self.request.sendall(data)
        finally:
            self.server.leave()


class Server(socketserver.ThreadingTCPServer):
    # 200 clients connect at once: the default backlog of 5 would make the
    # kernel drop their SYNs, and the clients retry only after a second.
    request_queue_size = 1024

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Echo)
        self.lock = threading.Lock()
        self.active = self.most = self.served = 0

    def enter(self):
        with self.lock:
            self.active += 1
            self.served += 1
            self.most = max(self.most, self.active)

    def leave(self):
        with self.lock:
            self.active -= 1


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main():
    # Set both explicitly: a shell starts background jobs with SIGINT
    # ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    server = Server()
    print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    print("stopped: %d connections, at most %d at once, %d threads left"
          % (server.served, server.most, threading.active_count()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
