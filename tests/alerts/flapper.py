"""A small TCP proxy in front of a test camera that makes it flap: `flap()`
waits until a connection has streamed for a moment, then cuts every
connection and refuses new ones (the listening socket closed) for a while,
then accepts again; so many times. Threads only; `close()` stops it all."""
import socket
import threading
import time


class FlappingProxy:
    def __init__(self, upstream_port, port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = port
        self.listener = None
        self.conns = set()
        self.lock = threading.Lock()
        self.closed = False
        self.accepted = 0
        self.last_data = 0.0  # monotonic time of the last byte from the camera
        self.connected_at = 0.0
        self.cuts = 0

    def start(self):
        end = time.monotonic() + 10
        while True:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                s.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)
        s.listen(16)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.upstream, timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns.update((c, u))
                self.accepted += 1
                self.connected_at = time.monotonic()
            threading.Thread(target=self._pump, args=(c, u, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, True), daemon=True).start()

    def _pump(self, src, dst, from_camera):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                if from_camera:
                    self.last_data = time.monotonic()
                dst.sendall(b)
        except OSError:
            pass
        for s in (src, dst):
            self._drop(s)

    def _drop(self, s):
        with self.lock:
            self.conns.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self):
        """Closes the listener and every connection: the camera is gone."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            self._drop(s)
        self.cuts += 1

    def streaming_for(self, seconds):
        """True once a connection has been up `seconds` and data flowed in the last 0.5 s."""
        with self.lock:
            up = bool(self.conns)
        now = time.monotonic()
        return up and now - self.connected_at >= seconds and now - self.last_data < 0.5

    def flap(self, times, refuse_s=1.2, stream_s=1.2, limit_s=90):
        """Cuts `times` times, each after the camera streamed `stream_s`,
        refusing connections `refuse_s` after each cut. Returns (cuts, seconds)."""
        t0 = time.monotonic()
        for _ in range(times):
            while not self.streaming_for(stream_s):
                if time.monotonic() - t0 > limit_s:
                    return self.cuts, time.monotonic() - t0
                time.sleep(0.05)
            self.cut()
            time.sleep(refuse_s)
            self.start()
        return self.cuts, time.monotonic() - t0

    def close(self):
        self.closed = True
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            self._drop(s)
