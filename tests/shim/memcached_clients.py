#!/usr/bin/env python3
"""memcached_clients.py PORT CONNS: many memcached clients at once.

CONNS threads each open a connection to 127.0.0.1:PORT (all of them are
connected before any sends a command, so the server holds CONNS connections
at the same time), store KEYS values of their own (1 byte to 200 kB, random
bytes, so the server's reads and writes come in many pieces), read every one
back with `get`, then all of them with one multi-key `get`, and compare every
byte.  Prints "ok CONNS connections, N values, B bytes verified" and exits 0,
or names the first mismatch and exits 1.  Each socket has a 20 s timeout, so
a stuck server fails the run instead of hanging it.
"""
import os
import socket
import sys
import threading

KEYS = 7
SIZES = [1, 100, 1000, 4096, 10000, 65536, 200000]


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        self.buf += chunk

    def set(self, key, value):
        self.sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
        reply = self.line()
        if reply != b"STORED":
            raise RuntimeError("set %s: %r" % (key.decode(), reply))

    def get(self, keys):
        self.sock.sendall(b"get " + b" ".join(keys) + b"\r\n")
        found = {}
        while True:
            head = self.line()
            if head == b"END":
                return found
            parts = head.split()
            if len(parts) != 4 or parts[0] != b"VALUE":
                raise RuntimeError("get: unexpected line %r" % head)
            found[parts[1]] = self.exact(int(parts[3]))
            if self.exact(2) != b"\r\n":
                raise RuntimeError("get: value of %s not followed by CRLF" % parts[1].decode())


def client(port, n, barrier, results):
    try:
        conn = Conn(port)
        barrier.wait()
        values = {}
        for k in range(KEYS):
            key = b"kz-%d-%d" % (n, k)
            values[key] = os.urandom(SIZES[(n + k) % len(SIZES)])
            conn.set(key, values[key])
        for key, value in values.items():
            if conn.get([key]).get(key) != value:
                raise RuntimeError("get %s: wrong value" % key.decode())
        if conn.get(list(values)) != values:
            raise RuntimeError("multi-key get of connection %d: wrong values" % n)
        conn.sock.close()
        results[n] = sum(len(v) for v in values.values()) * 2
    except Exception as e:  # reported by the main thread
        results[n] = e
        barrier.abort()


def main():
    port, conns = int(sys.argv[1]), int(sys.argv[2])
    barrier = threading.Barrier(conns, timeout=20)
    results = [None] * conns
    threads = [threading.Thread(target=client, args=(port, n, barrier, results)) for n in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if not isinstance(r, int)]
    errors.sort(key=lambda e: isinstance(e, threading.BrokenBarrierError))  # the cause first
    if errors:
        print("FAIL: %d of %d clients: %s" % (len(errors), conns, errors[0]))
        return 1
    print("ok %d connections, %d values, %d bytes verified" % (conns, conns * KEYS, sum(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
